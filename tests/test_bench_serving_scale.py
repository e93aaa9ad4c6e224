"""The catalogue-scale serving benchmark (``bench/serving_scale.py``) at a tiny size: its pieces on their own,
then the whole protocol (generation, both exports, the two model servers, records and chart) on 500 items.
The full-size run (1.7k to 1M items) is a benchmark, not a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import common, serving_scale

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def record(dataset: str, model: str, metric: str, value: float) -> dict:
    return {"protocol": serving_scale.PROTOCOL, "dataset": dataset, "model": model, "metric": metric, "value": value}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("label", "items"), [("1.7k", 1_700), ("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000), ("500", 500),
                         ("2.5m", 2_500_000), ("1234", 1_234)],
)  # fmt: skip
def test_size_labels_round_trip(label, items):
    assert common.parse_size(label) == items
    assert common.size_label(items) == label


@pytest.mark.unit
@pytest.mark.parametrize("label", ["", "k", "0", "1.5", "1.2345k", "10 k", "1g", "-5"])
def test_a_size_that_is_not_a_whole_number_of_items_is_refused(label):
    with pytest.raises(ValueError, match="positive whole number"):
        common.parse_size(label)


@pytest.mark.unit
def test_an_unknown_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serving_scale.main(["--sizes", "10x", "--no-write"])
    assert exit_info.value.code == 2
    assert "size '10x'" in capsys.readouterr().err


@pytest.mark.unit
def test_exact_top_k_in_small_batches_is_the_full_sort(monkeypatch):
    rng = np.random.default_rng(3)
    keys, queries = rng.standard_normal((300, 9), dtype=np.float32), rng.standard_normal((25, 9), dtype=np.float32)
    monkeypatch.setattr(serving_scale, "EXACT_BATCH_SCORES", 700)  # two queries per batch: 13 batches
    top = serving_scale.exact_top_k(keys, queries, 10)
    np.testing.assert_array_equal(top, np.argsort(-(queries @ keys.T), axis=1)[:, :10])


@pytest.mark.unit
def test_rerank_orders_candidates_by_the_full_score_and_skips_padding():
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.5, 0.5], [3.0, 0.0]], dtype=np.float32)
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    candidates = np.array([[0, 1, 2, -1], [3, -1, 1, 0]])  # item 4 (the best of query 0) was not retrieved
    np.testing.assert_array_equal(serving_scale.rerank(keys, queries, candidates, 2), [[2, 0], [1, 3]])


@pytest.mark.unit
def test_verdicts_judge_the_largest_catalogue_against_the_targets():
    records = [
        record("synthetic-10k", "ann", "p99_ms", 50.0),  # a smaller catalogue is not judged
        record("synthetic-1m", "ann", "recall@10", 0.97),
        record("synthetic-1m", "ann", "p99_ms", 12.5),
        record("synthetic-1m", "api-ann", "requests_per_s", 510.0),
        record("synthetic-1m", "api-ann", "failures", 3.0),
        record("synthetic-1m", "exact", "p99_ms", 80.0),  # exact search has no target
    ]
    assert serving_scale.verdicts(records) == [
        "synthetic-1m ann recall@10 0.97 (target >= 0.95): met",
        "synthetic-1m ann p99_ms 12.5 (target <= 10): MISSED",
        "synthetic-1m api-ann requests_per_s 510 (target >= 500): met",
        "synthetic-1m api-ann failures 3 (target <= 0): MISSED",
    ]


@pytest.mark.unit
def test_the_table_has_a_line_per_size_and_model_in_size_order():
    records = [
        record("synthetic-1m", "ann", "p99_ms", 4.0),
        record("synthetic-10k", "exact", "p99_ms", 2.0),
        record("synthetic-10k", "exact", "rss_mb", 700.0),
    ]
    lines = serving_scale.table(records).splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [["synthetic-10k", "exact"], ["synthetic-1m", "ann"]]
    assert lines[1].split()[2:] == ["-", "-", "-", "2", "700", "-", "-", "-"]


@pytest.mark.unit
def test_the_chart_draws_both_curves(tmp_path):
    records = [
        record(f"synthetic-{size}", model, metric, value)
        for size, scale in (("1.7k", 1.0), ("10k", 3.0), ("1m", 90.0))
        for model, metric, value in (
            ("exact", "p99_ms", 2 * scale), ("ann", "p99_ms", 2.0), ("exact", "rss_mb", 700 * scale),
            ("ann", "rss_mb", 750 * scale),
        )
    ]  # fmt: skip
    path = serving_scale.chart(records, tmp_path / "out" / "chart.png")
    assert path.read_bytes()[:8] == PNG
    assert serving_scale._curve(records, "exact", "p99_ms") == ([1_700, 10_000, 1_000_000], [2.0, 6.0, 180.0])


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


@pytest.mark.unit
def test_the_benchmark_runs_as_a_module_and_imports_nothing_heavy():
    result = run_python("-m", "bench.serving_scale", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--ef-search" in result.stdout
    heavy = "{'tensorflow', 'keras', 'faiss', 'locust', 'kserve', 'matplotlib'}"
    result = run_python("-c", f"import sys, bench.serving_scale; print(sorted({heavy} & set(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


EXPECTED = {
    ("ann", "build_seconds"), ("ann", "recall@10"), ("ann-two-stage", "recall@10"),
    *((model, metric) for model in ("exact", "ann")
      for metric in ("p50_ms", "p95_ms", "p99_ms", "rss_mb", "served_recall@10")),
}  # fmt: skip


@pytest.mark.tf
@pytest.mark.slow
def test_the_whole_protocol_at_a_tiny_size(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    argv = ["--sizes", "500", "--users", "2000", "--sample", "100", "--requests", "40", "--warmup", "5"]
    assert serving_scale.main(argv) == 0

    records = json.loads((tmp_path / "serving-scale.json").read_text())
    assert {(r["model"], r["metric"]) for r in records} == EXPECTED  # no api-ann below 1M items
    assert {(r["benchmark"], r["protocol"], r["dataset"]) for r in records} == {
        ("serving-scale", "serving-scale", "synthetic-500")
    }
    value = {(r["model"], r["metric"]): r["value"] for r in records}
    n = {(r["model"], r["metric"]): r["n"] for r in records}
    for key in [k for k in value if "recall" in k[1]]:
        assert 0.0 <= value[key] <= 1.0, key
    # a planted catalogue of 500 items: the HNSW graph finds (nearly) every true top-10 item
    assert value[("ann", "recall@10")] >= 0.9
    assert value[("ann-two-stage", "recall@10")] >= value[("ann", "recall@10")] - 0.02
    assert value[("exact", "served_recall@10")] >= 0.99  # the server's exact path is the in-process one
    assert value[("ann", "served_recall@10")] >= 0.9
    for model in ("exact", "ann"):
        assert 0.0 < value[(model, "p50_ms")] <= value[(model, "p95_ms")] <= value[(model, "p99_ms")] < 5_000
        assert 100 < value[(model, "rss_mb")] < 3_072
        assert n[(model, "p99_ms")] == 40
    assert 0.0 < value[("ann", "build_seconds")] < 60
    assert n[("ann", "recall@10")] == 100
    assert (tmp_path / "serving-scale.png").read_bytes()[:8] == PNG
