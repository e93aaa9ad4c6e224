"""The serving benchmark's baseline (not workshop code): a plain FastAPI app that calls the exported
SavedModel's ``serving_default`` signature once per request, with the model server's request and answer
format (``POST /v1/models/recsys:predict``, ``{"instances": [{"user_id": 196, "k": 10}]}``).

    BASELINE_MODEL_DIR=<base>/<version> uvicorn bench.serving_baseline:app --host 127.0.0.1 --port 8090

TensorFlow runs with one intra-op and one inter-op thread, as in the workshop model server, so that both
get the same share of this machine.
"""

from __future__ import annotations

import os

import tensorflow as tf
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

MODEL_DIR = os.environ["BASELINE_MODEL_DIR"]
MODEL_NAME = os.environ.get("BASELINE_MODEL_NAME", "recsys")
_loaded = tf.saved_model.load(MODEL_DIR)
signature = _loaded.signatures["serving_default"]
app = FastAPI(title="baseline: SavedModel signature per request")


@app.get(f"/v1/models/{MODEL_NAME}")
async def ready():
    return {"name": MODEL_NAME, "ready": True}


@app.post(f"/v1/models/{MODEL_NAME}:predict")
async def predict(request: Request):
    try:
        instances = (await request.json())["instances"]
        user_ids = [int(instance["user_id"]) for instance in instances]
        k = int(instances[0].get("k", 10))
    except (ValueError, KeyError, TypeError, IndexError):
        return JSONResponse({"error": "expected {'instances': [{'user_id': int, 'k': int}]}"}, status_code=400)
    out = signature(user_id=tf.constant(user_ids, tf.int64), k=tf.constant(k, tf.int32))
    items, scores, known = out["item_ids"].numpy(), out["scores"].numpy(), out["known"].numpy()
    predictions = [
        {"user_id": u, "item_ids": items[i].tolist(), "scores": scores[i].tolist(), "known": bool(known[i])}
        for i, u in enumerate(user_ids)
    ]
    return {"predictions": predictions}
