"""Training and evaluation at scale (issue #16): what keeps the two-tower model's memory bounded (scoring in
blocks, examples built once per fit), and the benchmark ``bench/training_scale.py`` at a small size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import training_scale
from recsys_workshop import synthetic
from recsys_workshop.models import base, two_tower
from recsys_workshop.models.two_tower import TwoTower

REPO = Path(__file__).resolve().parents[1]


def stable_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------ top-k by partition


@pytest.mark.unit
def test_top_k_columns_is_a_stable_sort_cut_at_k():
    """Ties (many: small integer scores), -inf (seen items), k from 1 to the row length."""
    rng = np.random.default_rng(0)
    for case in range(500):
        n_rows, n_cols = int(rng.integers(1, 12)), int(rng.integers(1, 400))
        k = int(rng.integers(1, n_cols + 1))
        scores = rng.integers(0, int(rng.integers(1, 6)), (n_rows, n_cols)).astype(float)
        scores[rng.random((n_rows, n_cols)) < rng.random()] = -np.inf
        if case % 3 == 0:
            scores = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
        got = base.top_k_columns(scores, k)
        np.testing.assert_array_equal(got, stable_top_k(scores, k), err_msg=f"case {case}: k={k}, {n_cols} columns")


# ------------------------------------------------------------------------------ nothing users x items


@pytest.fixture(scope="module")
def big_catalogue() -> TwoTower:
    """A two-tower model over 2,000 users x about 8,500 films, its vectors set without training (no
    TensorFlow): enough films that the old blocks of 1,024 users (8.7M scores) break the bound."""
    ratings = synthetic.interactions(60_000, n_users=2_000, n_items=16_000, seed=1)
    model = TwoTower(8)
    model._index(ratings, None)
    rng = np.random.default_rng(2)
    model.user_vectors_ = rng.standard_normal((len(model.user_ids_), 8)).astype(np.float32)
    model.item_vectors_ = rng.standard_normal((len(model.item_ids_), 8)).astype(np.float32)
    model._faiss_index = None
    assert 1024 * len(model.item_ids_) > 2 * base.BLOCK_CELLS
    return model


@pytest.mark.unit
def test_recommend_scores_users_in_blocks_bounded_by_block_cells(big_catalogue, monkeypatch):
    model, blocks = big_catalogue, []
    score_rows = model._score_rows
    monkeypatch.setattr(model, "_score_rows", lambda rows: blocks.append(len(rows)) or score_rows(rows))
    users = model.user_ids_
    recs = model.recommend(users, k=10)

    assert sum(blocks) == len(users)
    assert max(blocks) * len(model.item_ids_) <= base.BLOCK_CELLS  # never 1,024 users x the whole catalogue
    assert len(blocks) > 1
    # the same lists as scoring every user at once: exact scores, seen films out, ties to the smaller id
    sample = np.arange(0, len(users), 97)
    scores = model.user_vectors_[sample].astype(np.float64) @ model.item_vectors_.T.astype(np.float64)
    scores[model.seen_[sample].toarray() > 0] = -np.inf
    expected = model.item_ids_[stable_top_k(scores, 10)]
    got = recs.set_index("user_id").loc[users[sample]].sort_values(["user_id", "rank"])["item_id"]
    np.testing.assert_array_equal(got.to_numpy().reshape(len(sample), 10), expected)


@pytest.mark.unit
def test_exact_retrieval_works_in_blocks_too(big_catalogue, monkeypatch):
    model, shapes = big_catalogue, []

    def spy(scores, k):
        shapes.append(scores.shape)
        return base.top_k_columns(scores, k)

    monkeypatch.setattr(two_tower, "top_k_columns", spy)
    retrieved = model.retrieve(model.user_ids_, k=20)

    assert retrieved.shape == (len(model.user_ids_), 20)
    assert sum(rows for rows, _ in shapes) == len(model.user_ids_)
    assert max(rows * cols for rows, cols in shapes) <= base.BLOCK_CELLS
    scores = model.user_vectors_[:50] @ model.item_vectors_.T
    np.testing.assert_array_equal(retrieved[:50], model.item_ids_[stable_top_k(scores, 20)])


@pytest.mark.tf
@pytest.mark.slow
def test_training_builds_the_examples_once_per_fit_not_once_per_epoch(monkeypatch):
    """Every epoch used to rebuild the examples (a copy of the interactions' ids, their lookups and the
    probabilities); now an epoch only reshuffles them, and nothing is held once the model is fitted."""
    from recsys_workshop.train import TrainConfig

    ratings = synthetic.interactions(6_000, seed=5)
    built = []
    rows_cols = TwoTower._rows_cols
    monkeypatch.setattr(TwoTower, "_rows_cols", lambda self, frame: built.append(len(frame)) or rows_cols(self, frame))
    config = TrainConfig(epochs=4, batch_size=256, validation_fraction=0.1, patience=0, verbose=0, seed=1)
    model = TwoTower(8, seed=1).fit(ratings, config=config)

    assert len(model.history_) == 4
    fit_rows, validation_rows = 5_400, 600
    assert built.count(fit_rows) == 1  # the training examples: once for four epochs
    assert built.count(validation_rows) == 1
    assert model._training_examples is None
    assert model.recommend(model.user_ids_[:5], k=10).groupby("user_id").size().tolist() == [10] * 5


# ------------------------------------------------------------------------------ the benchmark


@pytest.mark.unit
def test_a_run_of_one_size_keeps_the_records_of_the_others(tmp_path):
    path = tmp_path / "training-scale.json"
    scale, lazy, adam = "training-scale", "two-tower-lazy-adam", "two-tower-adam"
    old = [
        {"protocol": scale, "dataset": d, "model": m, "metric": "epoch_seconds", "value": v}
        for d, m, v in (("synthetic-20m", lazy, 9.0), ("synthetic-1m", lazy, 1.0), ("synthetic-1m", adam, 3.0))
    ]
    quality = {"protocol": "msr-stratified-75", "dataset": "ml-100k", "model": adam, "metric": "ndcg@10"}
    old.append(quality | {"value": 0.4})
    path.write_text(json.dumps(old))
    fresh = [
        {"protocol": scale, "dataset": "synthetic-1m", "model": lazy, "metric": m, "value": 2.0}
        for m in ("peak_mb", "epoch_seconds")
    ]
    merged = training_scale.merged_records(path, fresh)
    assert [(r["dataset"], r["model"], r["metric"], r["value"]) for r in merged] == [
        ("synthetic-1m", adam, "epoch_seconds", 3.0),  # another optimizer's record at that size is kept
        ("synthetic-1m", lazy, "epoch_seconds", 2.0),  # the old lazy 1m record is replaced, the 20m one kept
        ("synthetic-1m", lazy, "peak_mb", 2.0),
        ("synthetic-20m", lazy, "epoch_seconds", 9.0),
        ("ml-100k", adam, "ndcg@10", 0.4),  # the quality records come last
    ]


@pytest.mark.unit
def test_the_first_optimizer_runs_every_size_and_the_others_the_compare_sizes():
    args = training_scale.parse_args(["--sizes", "20m", "1m", "5m", "--optimizers", "lazy_adam", "adam", "sgd"])
    assert training_scale.runs(args) == [
        (1_000_000, "lazy_adam"),
        (5_000_000, "lazy_adam"),
        (20_000_000, "lazy_adam"),
        (1_000_000, "adam"),
        (5_000_000, "adam"),
        (1_000_000, "sgd"),
        (5_000_000, "sgd"),
    ]
    args = training_scale.parse_args(["--sizes", "1m", "--optimizers", "adam", "--compare-sizes"])
    assert training_scale.runs(args) == [(1_000_000, "adam")]
    assert training_scale.model_name("lazy_adam") == "two-tower-lazy-adam"
    with pytest.raises(SystemExit):
        training_scale.parse_args(["--optimizers", "lazyadam"])


@pytest.mark.unit
def test_importing_the_benchmark_starts_no_tensorflow():
    code = "import sys, bench.training_scale; print(sorted({'tensorflow', 'keras', 'matplotlib'} & set(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.tf
@pytest.mark.slow
def test_the_benchmark_at_20k_rows_writes_its_records_and_chart(tmp_path):
    command = [
        sys.executable,
        "-m",
        "bench.training_scale",
        "--sizes",
        "20k",
        "--epochs",
        "1",
        "--eval-users",
        "100",
        "--threads",
        "2",
        "--optimizers",
        "lazy_adam",
        "adam",
        "--compare-sizes",
        "20k",
        "--quality-seeds",
        "--out",
        str(tmp_path),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    every = json.loads((tmp_path / "training-scale.json").read_text())
    assert {r["model"] for r in every} == {"two-tower-lazy-adam", "two-tower-adam"}
    assert {r["setup"]["optimizer"] for r in every if r["model"] == "two-tower-adam"} == {"adam"}
    records = [r for r in every if r["model"] == "two-tower-lazy-adam"]
    values = {r["metric"]: r["value"] for r in records}
    assert set(values) == set(training_scale.METRICS)
    for record in records:
        assert (record["benchmark"], record["protocol"], record["dataset"], record["setup"]["optimizer"]) == (
            "training-scale",
            "training-scale",
            "synthetic-20k",
            "lazy_adam",
        )
        assert record["n"] == 1 and record["seeds"] == [0]
        assert record["peak_mb"] == pytest.approx(values["peak_mb"], abs=0.1)
        assert record["train_seconds"] > values["epoch_seconds"]  # the block holds the warm-up and evaluation
        assert record["setup"]["rows"] == 20_000 and record["setup"]["threads"] == 2
    setup = records[0]["setup"]
    assert (setup["users"], setup["eval_users"], setup["warmup_epochs"], setup["batch_size"]) == (125, 100, 1, 1024)
    assert len(setup["epoch_seconds_each"]) == 2  # the warm-up epoch, then the measured one
    assert values["epoch_seconds"] == pytest.approx(setup["epoch_seconds_each"][1], abs=0.01)
    assert values["rows_per_second"] == pytest.approx(20_000 / values["epoch_seconds"], rel=1e-3)
    assert values["data_mb"] < values["peak_mb"] < values["data_mb"] + 1_000
    assert values["eval_users_per_second"] > 0
    png = (tmp_path / "training-scale.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
