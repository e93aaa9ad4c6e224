"""The deck's benchmark tables, read from ``bench/results/<benchmark>.json``: one row per model, one column
per (protocol, metric), each metric in one format (0.483 ± 0.002, 412 ± 9, 8.5 ms), a caption with the
commit(s) and seeds. ``deck_figures.TABLES`` reaches these by name.
"""

from __future__ import annotations

import json

import deck_figures
from deck_figures import Context, Pending, Result, Table, _html_table

# How the benchmark tables name metrics and protocols, and how many decimals a metric gets (value and std alike).
METRIC_LABELS = {"ndcg@10": "NDCG@10", "precision@10": "P@10", "recall@10": "R@10", "map": "MAP", "hr@10": "HR@10",
                 "auc": "AUC", "rmse": "RMSE", "requests_per_s": "requests/s", "p50_ms": "p50 (ms)",
                 "p95_ms": "p95 (ms)", "p99_ms": "p99 (ms)", "failures": "failures"}  # fmt: skip
PROTOCOL_LABELS = {"msr-stratified-75": "MSR 75/25", "ncf-loo-99": "NCF leave-one-out", "ml100k-ua-auc": "ua split",
                   "strata2018-explicit": "Strata 2018", "global-time-split": "time cut",
                   "cold-item-text": "new films"}  # fmt: skip
METRIC_DIGITS = {"requests_per_s": 0, "failures": 0, "p50_ms": 1, "p95_ms": 1, "p99_ms": 1}  # the rest: 3


def format_value(metric: str, value: float, std: float | None = None) -> str:
    """``value`` (and ``± std``) with the metric's decimals: 0.483 ± 0.002, 412 ± 9, 3.1 ms."""
    digits = METRIC_DIGITS.get(metric, 3)
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def short_commit(commit: str) -> str:
    """7 hex digits, keeping the ``-dirty`` mark of a run from a tree with uncommitted changes."""
    base = commit.removesuffix("-dirty")
    return base[:7] + commit[len(base):]


def _bench_table(name: str, module: str, wanted: list[tuple[str, str]], minutes: str) -> Result:
    """A table of ``bench/results/<name>.json``: one row per model that has any of the ``wanted`` (protocol,
    metric) pairs, one column per pair. ``module``: the benchmark's module, e.g. ``bench.deep``."""
    path = deck_figures.BENCH_RESULTS / f"{name}.json"
    if not path.is_file():
        return Pending(
            f"This table is read from bench/results/{name}.json, written by `python -m {module}` ({minutes}). "
            "It appears here the next time the deck is built after that run."
        )
    records = [r for r in json.loads(path.read_text()) if (r["protocol"], r["metric"]) in wanted]
    models = list(dict.fromkeys(r["model"] for r in records))
    values = {(r["model"], r["protocol"], r["metric"]): format_value(r["metric"], r["value"], r.get("std"))
              for r in records}  # fmt: skip
    protocols = {protocol for protocol, _ in wanted}
    header = ["model"] + [METRIC_LABELS.get(metric, metric) + ("\n" + PROTOCOL_LABELS.get(protocol, protocol)
                                                               if len(protocols) > 1 else "")
                          for protocol, metric in wanted]  # fmt: skip
    rows = [[m] + [values.get((m, p, metric), "–") for p, metric in wanted] for m in models]
    commits = sorted({short_commit(r.get("commit", "?")) for r in records})
    seeds = max((len(r.get("seeds", [])) for r in records), default=0)
    return Table(
        _html_table(header, rows),
        f"bench/results/{name}.json · commit {', '.join(commits)} · up to {seeds} seed(s) · "
        f"protocols: {module.replace('.', '/')}.py",
    )


def bench_recsys101(ctx: Context) -> Result:
    wanted = [("strata2018-explicit", "rmse"), ("msr-stratified-75", "ndcg@10"), ("msr-stratified-75", "map")]
    return _bench_table("recsys101", "bench.recsys101", wanted, "about 10 minutes on 2 cores")


def bench_deep(ctx: Context) -> Result:
    wanted = [
        ("msr-stratified-75", "ndcg@10"),
        ("msr-stratified-75", "precision@10"),
        ("ncf-loo-99", "hr@10"),
        ("ml100k-ua-auc", "auc"),
        ("strata2018-explicit", "rmse"),
    ]
    return _bench_table("deep", "bench.deep", wanted, "about an hour on 2 cores")


def bench_beyond_ids(ctx: Context) -> Result:
    protocols, metrics = ("global-time-split", "cold-item-text"), ("ndcg@10", "precision@10")
    wanted = [(protocol, metric) for protocol in protocols for metric in metrics]
    return _bench_table("deep", "bench.deep", wanted, "about an hour on 2 cores")


def bench_serving(ctx: Context) -> Result:
    wanted = [("serving-60s", m) for m in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "failures")]
    return _bench_table("serving", "bench.serving", wanted, "about 5 minutes")
