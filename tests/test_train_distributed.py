"""The training job: config, custom loop, 2 local workers under MultiWorkerMirroredStrategy, kill and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import numpy as np
import pytest

from recsys_workshop import data
from recsys_workshop.train import TrainConfig, fit
from recsys_workshop.train.job import ConfigError, JobConfig, main
from recsys_workshop.train.launcher import LocalJob, cluster_tf_config, read_metrics, tf_configs

pytestmark = [pytest.mark.tf, pytest.mark.slow]

# MF on ml-100k with big batches: a few seconds an epoch even with 2 workers doing an all-reduce per step
JOB = {
    "model": {"name": "mf", "n_factors": 16},
    "split": {"method": "random", "ratio": 0.8, "seed": 1},
    "train": {"epochs": 4, "batch_size": 1024, "learning_rate": 0.01, "patience": 0, "verbose": 0},
}


def digest(log) -> str:
    text = log.read_text().rsplit("--- attempt ", 1)[-1]
    return re.search(r"^weights_sha256=(\w+)$", text, re.M).group(1)


def test_tf_config_is_what_a_tfjob_sets():
    chief, worker = tf_configs(["127.0.0.1:1", "127.0.0.1:2"])
    assert chief["cluster"] == {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    assert chief["task"] == {"type": "chief", "index": 0} and worker["task"] == {"type": "worker", "index": 0}
    on_cluster = cluster_tf_config("recsys-train", "recsys", workers=1)
    assert on_cluster["cluster"]["worker"] == ["recsys-train-worker-0.recsys.svc:2222"]


def test_config_errors_are_clear(tmp_path, capsys):
    with pytest.raises(ConfigError, match="model.name must be one of"):
        JobConfig.from_dict({"model": {"name": "gpt"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochs'\]"):
        JobConfig.from_dict({"epochs": 3})
    with pytest.raises(ConfigError, match="train: unknown key"):
        JobConfig.from_dict({"train": {"epoch": 3}})
    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    assert main(["--config", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(JOB))
    assert main(["--config", str(good), "model.n_factors=8", "oops"]) == 2
    assert "expected key=value, got 'oops'" in capsys.readouterr().err


def test_overrides_reach_the_model_and_the_train_config(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(JOB))
    config = JobConfig.from_file(path, ["model.n_factors=64", "train.learning_rate=0.002", "objective=validation"])
    assert config.model["n_factors"] == 64 and config.train.learning_rate == 0.002
    assert config.objective == "validation"


def test_the_validation_objective_never_touches_the_test_split():
    from recsys_workshop.train.job import split_data

    ratings = data.load_ratings("ml-100k", progress=False)
    config = JobConfig.from_dict({**JOB, "objective": "validation"})
    train, validation = split_data(config, ratings)
    full_train, test = split_data(JobConfig.from_dict(JOB), ratings)
    assert len(train) + len(validation) == len(full_train)
    test_pairs = set(zip(test["user_id"], test["item_id"], strict=True))
    assert not test_pairs & set(zip(validation["user_id"], validation["item_id"], strict=True))


def test_the_custom_loop_follows_keras_fit():
    """Same data, same seed: the strategy loop and Keras fit reach the same validation RMSE."""
    import tensorflow as tf

    from recsys_workshop.models.mf import MatrixFactorization

    ratings = data.load_ratings("ml-100k", progress=False)
    train, _ = data.random_split(ratings, 0.8, seed=1)
    config = TrainConfig(epochs=3, batch_size=512, learning_rate=5e-3, verbose=0, patience=0)
    custom = fit(MatrixFactorization(16), train, config=config, strategy=tf.distribute.get_strategy())
    keras_fit = fit(MatrixFactorization(16), train, config=config)
    assert list(custom.index) == [1, 2, 3]
    assert custom["val_rmse"].iloc[-1] == pytest.approx(keras_fit["val_rmse"].iloc[-1], abs=0.01)
    assert custom["loss"].iloc[0] > custom["loss"].iloc[-1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    config = JobConfig.from_dict(JOB)
    return {n: LocalJob(config, n, workdir=root / f"workers-{n}").run(timeout=600) for n in (1, 2)}


def test_two_workers_train_the_same_model_as_one(runs):
    one, two = runs[1], runs[2]
    assert two.returncodes == {"chief-0": 0, "worker-0": 0} and two.restarts == 0
    assert digest(two.logs["chief-0"]) == digest(two.logs["worker-0"]), "the all-reduce keeps workers identical"
    assert "2 replica(s)" in two.logs["chief-0"].read_text()
    assert two.metrics["ndcg_at_10"] == pytest.approx(one.metrics["ndcg_at_10"], abs=2e-3)
    assert 0 < two.metrics["ndcg_at_10"] < 1 and two.metrics["epochs"] == 4
    assert "ndcg_at_10" not in read_metrics(two.logs["worker-0"]), "only the chief reports metrics"


def test_a_killed_worker_resumes_from_the_last_checkpoint(runs, tmp_path):
    job = LocalJob(JobConfig.from_dict(JOB), 2, workdir=tmp_path / "killed").start()
    state = tmp_path / "killed" / "checkpoints" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.exists() and len(json.loads(state.read_text())["history"]) >= 2):
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.1)
    os.kill(job.pids["worker-0"], signal.SIGKILL)
    result = job.wait(timeout=600)
    job.stop()
    assert result.restarts == 1
    chief_log = result.logs["chief-0"].read_text()
    resumed = re.search(r"resumed from ckpt-(\d+): epoch (\d+) of 4 done", chief_log)
    assert resumed and int(resumed.group(2)) >= 2
    epochs_run = len(re.findall(r"^epoch \d+/4 ", chief_log, re.M))
    assert epochs_run <= 4 + 1, "a kill costs at most one epoch"
    assert result.metrics["ndcg_at_10"] == pytest.approx(runs[2].metrics["ndcg_at_10"], abs=2e-3)
    history = json.loads(state.read_text())["history"]
    assert len(history) == 4 and np.isfinite([row["loss"] for row in history]).all()
