"""Serving benchmark: the same load on three servers, side by side, on this machine.

Protocol ``serving-60s``: a matrix factorisation (32 factors) trained on ml-100k and exported as a
SavedModel; three targets, each its own fresh server process (started, warmed up, measured, stopped
before the next one starts):

- ``baseline``: ``bench/serving_baseline.py``, a plain FastAPI app calling the SavedModel's
  ``serving_default`` signature once per request (TensorFlow limited to one thread, as the model server);
- ``model-server``: the workshop's KServe model server (``python -m recsys_workshop.serving``), REST V1;
- ``api``: the API layer end to end (API -> model server -> business logic), ``GET /recommendations``.

Load: Locust ``FastHttpUser`` (``bench/serving_locust.py``) in its own process on the same machine,
20 users with no think time (a closed loop), a top-10 request for a uniformly drawn known user; a warm-up
run (10 s) then the measured run (60 s). Metrics per target: ``requests_per_s``, ``p50_ms``, ``p95_ms``,
``p99_ms``, ``failures``, ``requests``, ``cpu_ms_per_request`` (user + system CPU time of the server
process(es) during the measured run, from psutil, divided by the requests answered; for ``api`` also
split into ``cpu_ms_per_request_api`` and ``cpu_ms_per_request_model_server``) and, in ``peak_mb``,
the servers' peak resident memory. ``train_seconds`` is the training time of the served model.

Issue #8 anchors on this 2-core machine (Locust on the same machine, 20 users, top-10): a plain KServe
0.21 predictor about 1,450 req/s at p99 27 ms; a plain FastAPI app about 1,600 req/s at p99 24 ms.
Targets: model server >= 1.5x the baseline's req/s at an equal or lower p99; the API >= 500 req/s,
p99 <= 50 ms and zero failures over 60 s.

    python -m bench.serving                        # ~5 minutes
    python -m bench.serving --rounds 2             # the whole protocol twice: mean and std per figure
    python -m bench.serving --seconds 10 --warmup 3 --targets model-server   # a quick look

Writes ``bench/results/serving.json`` and keeps the API run's Locust history as
``bench/results/serving-api_stats_history.csv`` (the deck's load-test chart is a step-load run instead:
``bench/serving_steps.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import RESULTS, Measurement, Results  # noqa: E402
from recsys_workshop import loadtest  # noqa: E402
from recsys_workshop.paths import REPO_ROOT  # noqa: E402

LOCUSTFILE = REPO_ROOT / "bench" / "serving_locust.py"
PROTOCOL = "serving-60s"
TARGETS = ("baseline", "model-server", "api")


def train_and_export(model_dir: Path) -> float:
    """Train the served model (MF, 32 factors, ml-100k) and export it as version 1; returns train seconds."""
    import tensorflow as tf

    from recsys_workshop import data
    from recsys_workshop.export import export_model
    from recsys_workshop.models.mf import MatrixFactorization
    from recsys_workshop.train import TrainConfig

    tf.config.threading.set_intra_op_parallelism_threads(2)
    ratings = data.load_ratings("ml-100k", progress=False)
    config = TrainConfig(epochs=5, batch_size=1024, learning_rate=5e-3, patience=0, validation_fraction=0.0,
                         seed=0, verbose=0)  # fmt: skip
    started = time.perf_counter()
    model = MatrixFactorization(32, l2=1e-4, seed=0).fit(ratings, config=config)
    seconds = time.perf_counter() - started
    export_model(model, model_dir, version=1, metadata={"dataset": "ml-100k", "train_config": {"epochs": 5}})
    return seconds


class ProcessSampler:
    """CPU time (user + system) and peak RSS of some processes and their children."""

    def __init__(self, pids: list[int]):
        import psutil

        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _family(self):
        import psutil

        family = []
        for p in self.processes:
            with contextlib.suppress(psutil.Error):
                family += [p, *p.children(recursive=True)]
        return family

    def cpu_seconds(self) -> list[float]:
        """CPU seconds so far of each process given (with its children), in the order given."""
        return list(loadtest.cpu_seconds([p.pid for p in self.processes]).values())

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            rss = 0
            for p in self._family():
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.peak_mb = max(self.peak_mb, rss / 2**20)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def baseline_server(model_dir: Path) -> Iterator[tuple[str, list[int], list[str]]]:
    from recsys_workshop.serving import stop_process, wait_ready

    port = loadtest.free_port()
    log = open(tempfile.mkstemp(prefix="bench-baseline-", suffix=".log")[1], "wb")  # noqa: SIM115
    env = {**os.environ, "BASELINE_MODEL_DIR": str(model_dir / "1"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO_ROOT)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.serving_baseline:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/v1/models/recsys", timeout=180, process=process)
        yield url, [process.pid], ["baseline"]
    finally:
        stop_process(process)
        log.close()


@contextlib.contextmanager
def model_server(model_dir: Path) -> Iterator[tuple[str, list[int], list[str]]]:
    from recsys_workshop.serving import local_server

    with local_server(model_dir, enable_grpc=False, timeout=180) as server:
        yield str(server), [server.process.pid], ["model_server"]


@contextlib.contextmanager
def api_stack(model_dir: Path) -> Iterator[tuple[str, list[int], list[str]]]:
    from recsys_workshop.api import local_stack

    # the API as it runs for real: its state in a (fresh) SQLite database, recommendation ids signed, the
    # database synced every second; the load is reads only, so the write limits do not apply
    with tempfile.TemporaryDirectory(prefix="bench-api-") as state:
        env = {"RECSYS_DATABASE_URL": f"sqlite:///{Path(state) / 'api.db'}"}
        with local_stack(model_dir, timeout=180, env=env) as stack:
            yield stack.api_url, [stack.api.process.pid, stack.model_server.process.pid], ["api", "model_server"]


SERVERS = {
    "baseline": (baseline_server, "predict"),
    "model-server": (model_server, "predict"),
    "api": (api_stack, "api"),
}


def measure_target(target: str, model_dir: Path, out: Path, *, users: int, seconds: float, warmup: float):
    start, kind = SERVERS[target]
    env = {"BENCH_TARGET": kind}
    with start(model_dir) as (url, pids, labels):
        if warmup:
            loadtest.run(url, prefix=out / f"{target}-warmup", users=users, run_time=warmup,
                         locustfile=LOCUSTFILE, env=env)  # fmt: skip
        with ProcessSampler(pids) as sampler:
            cpu_before = sampler.cpu_seconds()
            run = loadtest.run(url, prefix=out / target, users=users, run_time=seconds, locustfile=LOCUSTFILE, env=env)
            cpu = [after - before for after, before in zip(sampler.cpu_seconds(), cpu_before, strict=True)]
    verdict = loadtest.verdict(run, loadtest.SLO(p95_ms=1e9, max_error_rate=1.0))
    values = {
        "requests_per_s": verdict.rps,
        "p50_ms": verdict.p50_ms,
        "p95_ms": verdict.p95_ms,
        "p99_ms": verdict.p99_ms,
        "failures": verdict.failures,
        "requests": verdict.requests,
        "cpu_ms_per_request": 1000 * sum(cpu) / max(verdict.requests, 1),
    }
    if len(cpu) > 1:  # the API target: where the CPU goes
        for label, seconds in zip(labels, cpu, strict=True):
            values[f"cpu_ms_per_request_{label}"] = 1000 * seconds / max(verdict.requests, 1)
    return run, values, sampler.peak_mb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured run per target")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole protocol; records hold the mean and std over rounds")  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print only, keep bench/results as it is")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")

    results = Results("serving")
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    model_dir = work / "models"
    train_seconds = train_and_export(model_dir)
    rounds: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    for round_ in range(args.rounds):
        for target in targets:
            print(f"round {round_ + 1}/{args.rounds}, {target}: {args.warmup:g} s warm-up, then {args.seconds:g} s "
                  f"with {args.users} users", flush=True)  # fmt: skip
            run, values, peak_mb = measure_target(
                target, model_dir, work, users=args.users, seconds=args.seconds, warmup=args.warmup
            )
            rounds[target].append(values)
            measurement = Measurement()
            measurement.seconds, measurement.peak_mb = train_seconds, peak_mb
            results.add(PROTOCOL, "ml-100k", target, values, seed=round_, n=int(values["requests"]),
                        measurement=measurement)  # fmt: skip
            print("  " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)
            if target == "api" and not args.no_write:
                RESULTS.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run.file("stats_history"), RESULTS / "serving-api_stats_history.csv")
    figures = {t: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for t, rs in rounds.items()}

    print(results.table())
    if {"baseline", "model-server"} <= figures.keys():
        base, ms = figures["baseline"], figures["model-server"]
        print(f"model-server / baseline: req/s x{ms['requests_per_s'] / base['requests_per_s']:.2f} (target >= 1.5), "
              f"p99 {ms['p99_ms']:g} vs {base['p99_ms']:g} ms (target: equal or lower)")  # fmt: skip
    if "api" in figures:
        api = figures["api"]
        print(f"api: {api['requests_per_s']:.0f} req/s (target >= 500), p99 {api['p99_ms']:g} ms (target <= 50), "
              f"{api['failures']:.0f} failures (target 0)")  # fmt: skip
    if not args.no_write:
        print(f"wrote {results.write()}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
