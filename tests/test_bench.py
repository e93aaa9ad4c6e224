"""The benchmarks run as modules from the repository root (``python -m bench.deep``), with no ``sys.path``
edits, and do no work when imported. Their results are not tested here: they are not tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    "deep", "recsys101", "training", "serving", "serving_protocols", "serving_scale", "serving_steps", "training_scale",
)


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_runs_as_a_module(name):
    result = run_python("-m", f"bench.{name}", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_importing_the_benchmarks_starts_nothing_heavy():
    heavy = "{'tensorflow', 'keras', 'optuna', 'locust', 'kserve'}"
    modules = ", ".join(f"bench.{name}" for name in BENCHMARKS)
    result = run_python("-c", f"import sys, {modules}; print(sorted({heavy} & set(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_benchmark_edits_sys_path():
    offenders = [p.name for p in sorted((REPO / "bench").glob("*.py")) if "sys.path" in p.read_text(encoding="utf-8")]
    assert offenders == [], "run benchmarks with `python -m bench.<name>` from the repository root"


def test_a_partial_run_replaces_only_what_it_measured(tmp_path):
    from bench.common import merge_records, read_records

    def record(model, metric, value):
        return {"protocol": "p", "dataset": "ml-100k", "model": model, "metric": metric, "value": value}

    assert read_records(tmp_path / "none.json") == []
    old = [record("mf", "ndcg@10", 0.1), record("mf", "auc", 0.8), record("ease", "ndcg@10", 0.3)]
    merged = merge_records(old, [record("mf", "ndcg@10", 0.2)])
    assert [(r["model"], r["metric"], r["value"]) for r in merged] == [
        ("mf", "auc", 0.8), ("ease", "ndcg@10", 0.3), ("mf", "ndcg@10", 0.2),
    ]  # fmt: skip
    by_model = merge_records(old, [record("mf", "ndcg@10", 0.2)], key=lambda r: r["model"])
    assert [(r["model"], r["value"]) for r in by_model] == [("ease", 0.3), ("mf", 0.2)]
