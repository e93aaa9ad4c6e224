"""Locust users of the serving benchmark: one request type, no think time (a closed loop measuring
capacity). ``BENCH_TARGET=predict`` posts a top-10 request to the V1 predict endpoint (baseline app and
model server); ``BENCH_TARGET=api`` asks the API for 10 recommendations. User ids are drawn uniformly
from the ml-100k users (1..943), so every request is a known user. Run by ``python -m bench.serving`` in its own
process (Locust must not share a process with kserve)."""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, task

# the workshop locustfile's end-of-run listener: final totals in _stats.csv and the latency distribution
from recsys_workshop.loadtest import locustfile as _workshop  # noqa: F401

TARGET = os.environ.get("BENCH_TARGET", "predict")
MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "recsys")
K = 10

if TARGET not in ("predict", "api"):
    raise ValueError(f"BENCH_TARGET must be 'predict' or 'api', got {TARGET!r}")


class BenchUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 10.0
    connection_timeout = 5.0

    @task
    def top_10(self) -> None:
        user_id = random.randint(1, 943)
        if TARGET == "predict":
            body = {"instances": [{"user_id": user_id, "k": K}]}
            with self.client.post(f"/v1/models/{MODEL_NAME}:predict", json=body, name="predict top-10",
                                  catch_response=True) as resp:  # fmt: skip
                try:
                    ok = resp.status_code == 200 and len(resp.json()["predictions"][0]["item_ids"]) == K
                except (ValueError, KeyError, IndexError, TypeError):
                    ok = False
                if not ok:
                    resp.failure(f"status {resp.status_code} or not {K} items")
        else:
            with self.client.get(f"/recommendations/{user_id}?k={K}", name="api top-10", catch_response=True) as resp:
                try:
                    ok = resp.status_code == 200 and len(resp.json()["items"]) == K
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    resp.failure(f"status {resp.status_code} or not {K} items")
