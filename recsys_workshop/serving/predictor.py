"""The KServe predictor: a ``kserve.Model`` answering V1 bodies and V2 tensors from a :class:`VersionManager`.

KServe is imported inside :func:`build_predictor` only (importing KServe reads ``sys.argv``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_workshop.serving.model import LoadedVersion, RequestError, VersionError
from recsys_workshop.serving.parsing import (
    DEFAULT_K,
    MAX_INSTANCES,
    MAX_K,
    VERSION_HEADER,
    header_version,
    parse_instances,
    tensor_ints,
    v2_inputs,
)
from recsys_workshop.serving.versions import VersionManager

__all__ = ["build_predictor", "predict_instances"]


def predict_instances(model: LoadedVersion, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The V1 predictions for normalised instances, top-k ones grouped into one vectorised call per k."""
    out: list[dict[str, Any] | None] = [None] * len(instances)
    by_k: dict[int, list[int]] = {}
    for i, instance in enumerate(instances):
        if "item_ids" in instance:
            items = np.asarray(instance["item_ids"], dtype=np.int64)
            scores = model.score(np.full(len(items), instance["user_id"], dtype=np.int64), items)
            out[i] = {
                "user_id": instance["user_id"],
                "item_ids": instance["item_ids"],
                "scores": [None if np.isnan(s) else float(s) for s in scores],
                "known": bool(model.rows(np.asarray([instance["user_id"]]))[1][0]),
                "version": model.version,
            }
        else:
            by_k.setdefault(instance["k"], []).append(i)
    for k, positions in by_k.items():
        users = [instances[i]["user_id"] for i in positions]
        items, scores, known = model.top_k(users, k, [instances[i]["exclude"] for i in positions])
        for j, i in enumerate(positions):
            out[i] = {
                "user_id": users[j],
                "item_ids": items[j].tolist(),
                "scores": scores[j].tolist(),
                "known": bool(known[j]),
                "version": model.version,
            }
    return out  # type: ignore[return-value]


def v2_request_values(request) -> tuple[np.ndarray, int]:
    """The user ids and ``k`` of a V2 request (REST or gRPC), checked."""
    inputs = v2_inputs(request)
    users = tensor_ints(inputs["user_id"], MAX_INSTANCES)
    if not 1 <= len(users) <= MAX_INSTANCES:
        raise RequestError(f"input 'user_id' must hold 1 to {MAX_INSTANCES} ids")
    k = DEFAULT_K
    if "k" in inputs:
        values = tensor_ints(inputs["k"], 1)
        if values.size != 1 or not 1 <= values[0] <= MAX_K:
            raise RequestError(f"input 'k' must be one integer between 1 and {MAX_K}")
        k = int(values[0])
    return users, k


def build_predictor(name: str, manager: VersionManager, initial_version: int | None = None):
    """The ``kserve.Model`` subclass instance serving ``manager``'s versions under ``name`` (starting with
    ``initial_version``, by default the latest that loads)."""
    import kserve
    from kserve.errors import InvalidInput, ModelNotReady
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class RecommenderPredictor(kserve.Model):
        def __init__(self):
            super().__init__(name, return_response_headers=True)
            self.manager = manager
            self.watcher = None  # a FirstVersionWatcher while the server waits for its first version

        def load(self) -> bool:
            if self.manager.active is None:
                if self.watcher is not None and self.watcher.is_alive():
                    # KServe calls load() on a request to a model that is not ready: answer "not ready"
                    # (503, gRPC UNAVAILABLE) while the watcher looks for the first version
                    raise ModelNotReady(name, "waiting for its first model version")
                self.manager.start(initial_version)
            self.ready = True
            return self.ready

        def wait_for_first_version(self, interval: float) -> None:
            """Serve at once, not ready until a version loads: registered with KServe (``ready``), while the
            probes' ``healthy()`` stays False until the watcher has made a version active."""
            from recsys_workshop.serving.watch import FirstVersionWatcher

            self.watcher = FirstVersionWatcher(self.manager, initial_version, interval)
            self.ready = True
            self.watcher.start()

        async def healthy(self) -> bool:
            """Ready only while a version is active (the probes of ``/v2/models/<name>/ready`` ask this)."""
            return bool(self.ready and self.manager.active is not None)

        def predict(self, payload, headers=None, response_headers=None):
            try:
                if isinstance(payload, InferRequest):
                    return self._predict_v2(payload, headers, response_headers)
                instances, body_version = parse_instances(payload)
                pinned = header_version(headers)
                if body_version is not None and pinned is not None and body_version != pinned:
                    raise RequestError(f"the body pins version {body_version} but the request asks for {pinned}")
                model = self.manager.get(pinned if pinned is not None else body_version)
                predictions = predict_instances(model, instances)
            except RequestError as error:
                raise InvalidInput(str(error)) from None
            if response_headers is not None:
                response_headers[VERSION_HEADER] = str(model.version)
            return {"predictions": predictions}

        def _predict_v2(self, request, headers, response_headers):
            users, k = v2_request_values(request)
            try:
                model = self.manager.get(header_version(headers))
            except VersionError as error:  # gRPC has no 404/409: INVALID_ARGUMENT with the reason
                raise RequestError(str(error)) from None
            items, scores, known = model.top_k(users, k)
            item_block, score_block = np.stack(items), np.stack(scores).astype(np.float32)
            outputs = []
            for out_name, array, datatype in (
                ("item_ids", item_block, "INT64"),
                ("scores", score_block, "FP32"),
                ("known", known.astype(bool), "BOOL"),
            ):
                output = InferOutput(name=out_name, shape=list(array.shape), datatype=datatype)
                output.set_data_from_numpy(array, binary_data=False)
                outputs.append(output)
            if response_headers is not None:
                response_headers[VERSION_HEADER] = str(model.version)
            return InferResponse(
                response_id=request.id or "",
                model_name=self.name,
                infer_outputs=outputs,
                model_version=str(model.version),
            )

    return RecommenderPredictor()
