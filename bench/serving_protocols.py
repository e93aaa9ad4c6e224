"""REST vs gRPC latency of the model server, for the same top-10 request (protocol ``rest-vs-grpc``).

One matrix-factorisation model (ml-100k, 90 % random split) is exported as version 1 and served by
``python -m recsys_workshop.serving`` on loopback ports (one process, numpy limited to one thread). The
same question, "top-10 for user u" (u cycling over every user), goes to

- ``rest``: ``POST /v1/models/recsys:predict`` with ``{"instances": [{"user_id": u, "k": 10}]}`` (JSON over
  HTTP/1.1, a keep-alive ``requests.Session``);
- ``grpc``: ``ModelInfer`` of the Open Inference Protocol v2 (protobuf over HTTP/2, one channel), through
  :class:`recsys_workshop.serving.GrpcClient`.

``--concurrency`` client threads send requests back to back for each protocol in turn; after a warm-up,
each round measures ``--requests`` requests per protocol, and rounds alternate the order of the protocols.
Metrics per protocol (the ``model`` field): ``p50_ms``, ``p95_ms``, ``p99_ms`` (client-side latency of one
request) and ``requests_per_s`` (requests completed / wall time); ``value`` is the mean over rounds (the
``seeds`` field numbers the rounds), ``std`` their spread. ``train_seconds`` is the model's training time,
``peak_mb`` the server's resident memory at the end.

    python -m bench.serving_protocols                      # 3 rounds x 2000 requests, 1 client
    python -m bench.serving_protocols --concurrency 4 --requests 4000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import Measurement, Results  # noqa: E402

BENCHMARK = "serving-protocols"
PROTOCOL = "rest-vs-grpc"
DATASET = "ml-100k"
K = 10


def train_and_export(base: Path) -> float:
    """Export one MF model as version 1 of ``base``; return its training time in seconds."""
    import tensorflow as tf

    from recsys_workshop import data, export
    from recsys_workshop.models.mf import MatrixFactorization
    from recsys_workshop.train import TrainConfig

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    ratings = data.load_ratings(DATASET, progress=False)
    train, _ = data.random_split(ratings, 0.9, seed=42)
    started = time.perf_counter()
    model = MatrixFactorization(32, seed=0).fit(
        train, config=TrainConfig(epochs=5, batch_size=1024, learning_rate=5e-3, patience=0, verbose=0)
    )
    seconds = time.perf_counter() - started
    export.export_model(model, base, metadata={"dataset": DATASET})
    return seconds


def rest_caller(server):
    import requests

    local = threading.local()

    def call(user: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(server.predict_url, json={"instances": [{"user_id": user, "k": K}]}, timeout=10)
        response.raise_for_status()
        if len(response.json()["predictions"][0]["item_ids"]) != K:
            raise RuntimeError("REST answer without k items")

    return call


def grpc_caller(server):
    from recsys_workshop.serving import GrpcClient

    client = GrpcClient(server.grpc_target, timeout=10)  # a gRPC channel is thread-safe: one for all threads

    def call(user: int) -> None:
        if client.predict([user], k=K)["item_ids"].shape != (1, K):
            raise RuntimeError("gRPC answer without k items")

    return call


def run(call, users: np.ndarray, n_requests: int, concurrency: int) -> dict[str, float]:
    """Send ``n_requests`` requests from ``concurrency`` threads; latency percentiles and throughput."""
    latencies = np.empty(n_requests)
    counter = iter(range(n_requests))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None or errors:
                return
            start = time.perf_counter()
            try:
                call(int(users[i % len(users)]))
            except BaseException as error:  # report, stop the round
                errors.append(error)
                return
            latencies[i] = time.perf_counter() - start

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a request failed: {errors[0]!r}") from errors[0]
    ms = 1000 * latencies
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests_per_s": n_requests / wall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per protocol and round")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests per protocol first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1, help="client threads")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write bench/results")
    args = parser.parse_args(argv)

    import psutil

    from recsys_workshop.serving import local_server

    results = Results(BENCHMARK)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        base = Path(scratch) / "models"
        train_seconds = train_and_export(base)
        users = np.random.default_rng(0).permutation(np.arange(1, 944))
        with local_server(base, threads=1) as server:
            callers = {"rest": rest_caller(server), "grpc": grpc_caller(server)}
            for call in callers.values():
                run(call, users, args.warmup, args.concurrency)
            rounds: list[tuple[int, dict[str, dict[str, float]]]] = []
            for round_number in range(args.rounds):
                order = list(callers) if round_number % 2 == 0 else list(reversed(callers))
                measured = {name: run(callers[name], users, args.requests, args.concurrency) for name in order}
                rounds.append((round_number, measured))
                print(f"round {round_number}: " + "  ".join(
                    f"{name} p50 {m['p50_ms']:.2f} ms p99 {m['p99_ms']:.2f} ms {m['requests_per_s']:.0f}/s"
                    for name, m in measured.items()
                ), flush=True)
            server_mb = psutil.Process(server.process.pid).memory_info().rss / 2**20
    measurement = Measurement()
    measurement.seconds, measurement.peak_mb = train_seconds, server_mb
    for round_number, measured in rounds:
        for name, values in measured.items():
            results.add(PROTOCOL, DATASET, name, values, seed=round_number, n=args.requests, measurement=measurement)
    print(results.table())
    if not args.no_write:
        print("wrote", results.write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
