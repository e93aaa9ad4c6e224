"""Serving at catalogue scale: exact search against an ANN index, from 1.7k to a million items (issue #16).

Protocol ``serving-scale``. For each catalogue size (``--sizes``; datasets ``synthetic-1.7k``,
``synthetic-10k``, ``synthetic-100k``, ``synthetic-1m``) a factor-model catalogue is generated with a fixed
seed by :func:`recsys_workshop.synthetic.catalogue` (64-dimensional embeddings with topic structure and a
long-tail popularity, 1M users by default: ``--users``; no download) and exported twice with
:func:`recsys_workshop.export.export_arrays`: once with exact retrieval (``RetrievalConfig(index="exact")``,
every item scored) and once with an HNSW index (``m`` 32, ``ef_construction`` 80, ``candidates`` 200:
``--candidates``; ``ef_search`` as many as the candidates: ``--ef-search``, since the server searches at
``max(ef_search, candidates)`` anyway, so the index's own top-10 is measured at the width the server really
uses; at 1M items and ``ef_search`` 128 that top-10 has recall 0.94, at 200 0.97). The generation, both
exports and the recall measurements run in a child process, which exits (and frees its memory) before any
server starts.

Measured, per size:

- in process (model ``ann``): ``build_seconds``, the HNSW build time the export records in
  ``metadata.json`` (faiss on every core); ``recall@10`` of the exported index's top-10 (at ``ef_search``)
  against exact brute force over a fixed sample of users (``--sample``, 1,000); and, as model
  ``ann-two-stage``, ``recall@10`` of the answer the model server gives: the index's ``candidates`` items
  re-scored by the model's full score, top-10;
- the model server (``python -m recsys_workshop.serving``, its own process, REST V1, numpy on one thread),
  model ``exact`` on the exact version and ``ann`` on the HNSW version, each server started, measured and
  stopped before the next: one client sends sequential top-10 requests, ``--warmup`` (200) for random known
  users, then ``--requests`` (1,000) for the sample's users in a random order; ``p50_ms``, ``p95_ms``,
  ``p99_ms`` (client-side latency of one request), ``rss_mb`` (the server's resident memory after the
  requests, psutil) and ``served_recall@10`` (the server's answers against exact top-10: 1 for ``exact``);
- at 1M items only (``--api-sizes``), the API end to end (model ``api-ann``): the local stack (API -> model
  server on the HNSW version), loaded exactly as ``bench/serving.py`` loads its ``api`` target (Locust, 20
  users, no think time, 10 s warm-up then ``--seconds`` 60): ``requests_per_s``, ``p50_ms``, ``p95_ms``,
  ``p99_ms``, ``failures``. The API cannot load a synthetic catalogue (titles, genres, histories come from a
  MovieLens release whose files are checked against GroupLens's checksums, and users it has no history for
  get 404): it runs with ml-100k (``MOVIELENS_DIR``), Locust asks for ml-100k's users 1..943 (known to the
  synthetic model too, whose user ids are 1..n), the model server searches the whole synthetic catalogue
  (seen filter included) and the API keeps the items its catalogue knows, topping the list up with popular
  films: the API's own work per request is that of ml-100k, the model server's that of the big catalogue.

Record fields: ``train_seconds`` holds the time to generate, export and measure the catalogue in the child
process (in-process records), the server's start-up until ready (server records) or the measured Locust run
(``api-ann``); ``peak_mb`` the child process's peak memory, the server's RSS, or the peak RSS of API + model
server. ``n``: the sample's users, the measured requests, or the requests Locust sent.

Issue #16 targets at 1M items on 2 cores: ANN recall@10 >= 0.95 against exact, model-server p99 <= 10 ms
for one request, the API >= 500 requests/s with p99 <= 50 ms at 20 Locust users, resident memory <= 3 GB,
index build <= 5 minutes. The chart shows where exact search stops being viable.

    python -m bench.serving_scale                          # all four sizes: ~20-30 minutes on 2 quiet cores
    python -m bench.serving_scale --sizes 1.7k 10k         # a quick look (~4 minutes)
    python -m bench.serving_scale --sizes 100k --ef-search 64 --no-write

Writes ``bench/results/serving-scale.json`` and the chart ``bench/results/serving-scale.png`` (p99 latency
and resident memory of the model server against catalogue size, exact and ANN, log x-axis).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import common  # noqa: E402
from bench.common import Measurement, Results, parse_size, size_label  # noqa: E402
from bench.serving_protocols import run as timed_requests  # noqa: E402

BENCHMARK = PROTOCOL = "serving-scale"
SIZES = ("1.7k", "10k", "100k", "1m")
API_SIZES = ("1m",)
DIM, SEED, K = 64, 0, 10
N_USERS = 1_000_000
EXACT_BATCH_SCORES = 2**24  # scores held at once by the exact ground truth (64 MB of float32)
TARGETS = {  # (model, metric) -> (bound, "min" or "max"): issue #16, at 1M items
    ("ann", "recall@10"): (0.95, "min"),
    ("ann", "p99_ms"): (10.0, "max"),
    ("ann", "rss_mb"): (3072.0, "max"),
    ("ann", "build_seconds"): (300.0, "max"),
    ("api-ann", "requests_per_s"): (500.0, "min"),
    ("api-ann", "p99_ms"): (50.0, "max"),
    ("api-ann", "failures"): (0.0, "max"),
}


# ------------------------------------------------------------------------------- in process (a child process)


@dataclasses.dataclass
class Prepared:
    """What the child process hands back: the two exported versions and the in-process figures."""

    exact_base: Path
    ann_base: Path
    sample_users: np.ndarray  # user ids of the recall sample
    exact_top: np.ndarray  # their exact top-K item ids, best first
    values: dict[str, dict[str, float]]  # model -> metric -> value
    seconds: float
    peak_mb: float


def exact_top_k(keys: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` columns of each query, in batches that keep the score block small."""
    from recsys_workshop.retrieval import ExactSearch

    search = ExactSearch(keys)
    batch = max(1, EXACT_BATCH_SCORES // search.n_items)
    return np.vstack([search.search(queries[s : s + batch], k) for s in range(0, len(queries), batch)])


def rerank(keys: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ranking stage: the ``k`` best of each row's candidate columns by the full score (``-1``: none)."""
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    scores = np.einsum("qd,qnd->qn", queries, keys[safe])
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(safe, order, axis=1)


def prepare(n_items: int, n_users: int, sample: int, retrieval, work: Path) -> Prepared:
    """Generate the catalogue, export it exactly and with HNSW under ``work``, measure the index's recall."""
    from recsys_workshop import export, synthetic
    from recsys_workshop.retrieval import INDEX_FILE, HnswSearch, augment_items, augment_queries, recall_at_k

    with common.measure() as measurement:
        arrays = synthetic.catalogue(n_items, n_users, DIM, seed=SEED)
        metadata = {"dataset": f"synthetic-{size_label(n_items)}", "generator": {"dim": DIM, "seed": SEED}}
        exact = dataclasses.replace(retrieval, index="exact")
        exact_base, ann_base = work / "exact", work / "ann"
        export.export_arrays(arrays, exact_base, version=1, metadata=metadata, retrieval=exact)
        ann_dir = export.export_arrays(arrays, ann_base, version=1, metadata=metadata, retrieval=retrieval)
        rows = np.sort(np.random.default_rng(SEED + 1).choice(n_users, size=min(sample, n_users), replace=False))
        queries = augment_queries(arrays["user_vectors"][rows])
        keys = augment_items(arrays["item_vectors"], arrays["item_bias"])
        sample_users, item_ids = arrays["user_ids"][rows], arrays["item_ids"]
        del arrays
        exact_cols = exact_top_k(keys, queries, K)
        searcher = HnswSearch.load(ann_dir / INDEX_FILE, retrieval)
        two_stage = rerank(keys, queries, searcher.search(queries, max(retrieval.candidates, K)), K)
        values = {
            "ann": {
                "build_seconds": float(export.load_metadata(ann_dir)["index_build_seconds"]),
                "recall@10": recall_at_k(searcher.search(queries, K), exact_cols, K),
            },
            "ann-two-stage": {"recall@10": recall_at_k(two_stage, exact_cols, K)},
        }
    return Prepared(exact_base, ann_base, sample_users, item_ids[exact_cols], values, measurement.seconds,
                    measurement.peak_mb)  # fmt: skip


def prepare_in_child(*args) -> Prepared:
    """:func:`prepare` in a fresh (spawned) process: TensorFlow and the arrays leave with it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(prepare, *args).result()


# ------------------------------------------------------------------------------------------ the servers


def family_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def predict_caller(server, answers: dict[int, list[int]]):
    """A top-``K`` REST V1 request for one user (one keep-alive session); the answers go in ``answers``."""
    import requests

    session = requests.Session()

    def call(user: int) -> None:
        response = session.post(server.predict_url, json={"instances": [{"user_id": user, "k": K}]}, timeout=30)
        response.raise_for_status()
        items = response.json()["predictions"][0]["item_ids"]
        if len(items) != K:
            raise RuntimeError(f"user {user}: {len(items)} items instead of {K}")
        answers[user] = items

    return call


def measure_server(base: Path, prepared: Prepared, *, n_users: int, requests: int, warmup: int):
    """Latency, memory and recall of one model server on the version under ``base``; (values, seconds to ready)."""
    from recsys_workshop.serving import local_server

    rng = np.random.default_rng(SEED + 2)
    started = time.perf_counter()
    with local_server(base, enable_grpc=False, timeout=900) as server:
        ready_seconds = time.perf_counter() - started
        answers: dict[int, list[int]] = {}
        call = predict_caller(server, answers)
        if warmup:
            timed_requests(call, rng.integers(1, n_users + 1, warmup), warmup, 1)
        answers.clear()
        values = timed_requests(call, rng.permutation(prepared.sample_users), requests, 1)
        values.pop("requests_per_s")  # one sequential client: 1 / mean latency, not a capacity figure
        values["rss_mb"] = family_rss_mb(server.process.pid)
    exact = dict(zip(prepared.sample_users.tolist(), prepared.exact_top.tolist(), strict=True))
    values["served_recall@10"] = float(np.mean([len(set(items) & set(exact[u])) / K for u, items in answers.items()]))
    return values, ready_seconds


def measure_api(base: Path, work: Path, *, seconds: float, warmup: float, users: int = 20):
    """``bench/serving.py``'s ``api`` target on the version under ``base``; (values, CPU ms per request of
    each process, peak MB of both servers)."""
    from bench.serving import measure_target

    _, values, peak_mb = measure_target("api", base, work, users=users, seconds=seconds, warmup=warmup)
    keep = ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "failures", "requests")
    cpu = {name.removeprefix("cpu_ms_per_request_"): v for name, v in values.items() if name.startswith("cpu_ms_per")}
    return {name: values[name] for name in keep}, cpu, peak_mb


def measured(seconds: float, peak_mb: float) -> Measurement:
    measurement = Measurement()
    measurement.seconds, measurement.peak_mb = seconds, peak_mb
    return measurement


def run_size(n_items: int, args, results: Results, work: Path) -> None:
    """Every measurement of one catalogue size, added to ``results``."""
    from recsys_workshop.retrieval import RetrievalConfig

    dataset = f"synthetic-{size_label(n_items)}"
    ef_search = args.candidates if args.ef_search is None else args.ef_search
    retrieval = RetrievalConfig(index="hnsw", ef_search=ef_search, candidates=args.candidates)
    print(f"{dataset}: generating {n_items:,} items x {args.users:,} users, exporting (exact, HNSW)", flush=True)
    prepared = prepare_in_child(n_items, args.users, args.sample, retrieval, work)
    print(f"  generated, exported, measured: {prepared.seconds:.0f} s, peak {prepared.peak_mb:.0f} MB", flush=True)
    in_process = measured(prepared.seconds, prepared.peak_mb)
    for model, values in prepared.values.items():
        results.add(PROTOCOL, dataset, model, values, seed=SEED, n=len(prepared.sample_users), measurement=in_process)
        print(f"  {model} (in process): " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)
    for model, base in (("exact", prepared.exact_base), ("ann", prepared.ann_base)):
        values, ready = measure_server(base, prepared, n_users=args.users, requests=args.requests, warmup=args.warmup)
        results.add(PROTOCOL, dataset, model, values, seed=SEED, n=args.requests,
                    measurement=measured(ready, values["rss_mb"]))  # fmt: skip
        print(f"  {model} (model server, ready in {ready:.0f} s): "
              + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)  # fmt: skip
    if size_label(n_items) in args.api_sizes:
        print(f"  api-ann: {args.api_warmup:g} s warm-up, then {args.seconds:g} s with 20 Locust users", flush=True)
        values, cpu, peak_mb = measure_api(prepared.ann_base, work, seconds=args.seconds, warmup=args.api_warmup)
        results.add(PROTOCOL, dataset, "api-ann", values, seed=SEED, n=int(values["requests"]),
                    measurement=measured(args.seconds, peak_mb))  # fmt: skip
        print("  api-ann: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)
        print("  api-ann CPU ms per request (the 2 cores: Locust takes the rest): "
              + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()), flush=True)  # fmt: skip


# ------------------------------------------------------------------------------------- chart and verdict


def _curve(records: list[dict], model: str, metric: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (parse_size(r["dataset"].removeprefix("synthetic-")), r["value"])
        for r in records
        if r["model"] == model and r["metric"] == metric
    )
    return [n for n, _ in points], [v for _, v in points]


def chart(records: list[dict], path: Path) -> Path:
    """p99 latency (log scale) and resident memory of the model server against catalogue size (log x-axis),
    exact search and the HNSW index, with the issue's targets as dashed lines."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    latency, memory = figure.subplots(1, 2)
    sizes = sorted({n for model in ("exact", "ann") for n in _curve(records, model, "p99_ms")[0]})
    for axes, metric, scale in ((latency, "p99_ms", 1.0), (memory, "rss_mb", 1 / 1024)):
        for model, style, label in (("exact", "o-", "exact search"), ("ann", "s-", "HNSW index")):
            x, y = _curve(records, model, metric)
            if x:
                axes.plot(x, [v * scale for v in y], style, label=label)
        target = TARGETS[("ann", metric)][0] * scale
        axes.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target at 1M items ({target:g})")
        axes.set_xscale("log")
        axes.set_xticks(sizes, [size_label(n) for n in sizes], minor=False)
        axes.set_xticks([], minor=True)
        axes.set_xlabel("items in the catalogue")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    latency.set(yscale="log", ylabel="p99 latency of one request (ms)")
    memory.set(ylim=(0, None), ylabel="model server resident memory (GB)")
    figure.suptitle("Model server at catalogue scale: 64-dim embeddings, one request at a time")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


TABLE_METRICS = ("recall@10", "served_recall@10", "p50_ms", "p99_ms", "rss_mb", "build_seconds", "requests_per_s",
                 "failures")  # fmt: skip


def table(records: list[dict]) -> str:
    """One line per catalogue size and model, one column per metric (``-``: not measured for that model)."""
    rows: dict[tuple[int, str, str], dict[str, float]] = {}
    for r in records:
        key = (parse_size(r["dataset"].removeprefix("synthetic-")), r["dataset"], r["model"])
        rows.setdefault(key, {})[r["metric"]] = r["value"]
    lines = [f"{'dataset':<16}{'model':<15}" + "".join(f"{m:>17}" for m in TABLE_METRICS)]
    for (_, dataset, model), values in sorted(rows.items()):
        cells = "".join(f"{values[m]:>17.4g}" if m in values else f"{'-':>17}" for m in TABLE_METRICS)
        lines.append(f"{dataset:<16}{model:<15}{cells}")
    return "\n".join(lines)


def verdicts(records: list[dict]) -> list[str]:
    """The issue's targets against the largest catalogue measured, one line each."""
    if not records:
        return []
    largest = max({r["dataset"] for r in records}, key=lambda d: parse_size(d.removeprefix("synthetic-")))
    values = {(r["model"], r["metric"]): r["value"] for r in records if r["dataset"] == largest}
    lines = []
    for (model, metric), (bound, kind) in TARGETS.items():
        if (model, metric) in values:
            value = values[(model, metric)]
            met = value >= bound if kind == "min" else value <= bound
            sign, outcome = (">=" if kind == "min" else "<="), ("met" if met else "MISSED")
            lines.append(f"{largest} {model} {metric} {value:.4g} (target {sign} {bound:g}): {outcome}")
    return lines


# ------------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="catalogue sizes, e.g. 1.7k 10k 100k 1m")
    parser.add_argument("--users", type=int, default=N_USERS, help="users in each synthetic catalogue")
    parser.add_argument("--sample", type=int, default=1000, help="users whose exact top-10 is the recall reference")
    parser.add_argument("--requests", type=int, default=1000, help="measured sequential requests per model server")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument(
        "--ef-search", type=int, default=None, help="HNSW efSearch of the index (default: --candidates, as the server)"
    )
    parser.add_argument("--candidates", type=int, default=200, help="items retrieval hands to ranking")
    parser.add_argument("--api-sizes", nargs="*", default=list(API_SIZES), help="sizes with the API target")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured Locust run of the API target")
    parser.add_argument("--api-warmup", type=float, default=10.0, help="Locust warm-up of the API target (s)")
    parser.add_argument("--no-write", action="store_true", help="print only, keep bench/results as it is")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({parse_size(s) for s in args.sizes})
        args.api_sizes = {size_label(parse_size(s)) for s in args.api_sizes}
    except ValueError as error:
        parser.error(str(error))
    if min(args.users, args.sample, args.requests) < 1 or args.warmup < 0:
        parser.error("--users, --sample and --requests must be positive, --warmup not negative")

    results = Results(BENCHMARK)
    for n_items in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{size_label(n_items)}-") as scratch:
            run_size(n_items, args, results, Path(scratch))
    records = results.records()
    print(table(records))
    print("\n".join(verdicts(records)))
    if not args.no_write:
        print(f"wrote {results.write()} and {chart(records, common.RESULTS / f'{BENCHMARK}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
