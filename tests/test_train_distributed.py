"""The training job: TF_CONFIG read (tfconfig), config, custom loop, 2 local workers under
MultiWorkerMirroredStrategy, kill and resume."""

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
from recsys_workshop.train.tfconfig import WorkerShare, worker_share

# MF on ml-100k with big batches: a few seconds an epoch even with 2 workers doing an all-reduce per step
JOB = {
    "model": {"name": "mf", "n_factors": 16},
    "split": {"method": "random", "ratio": 0.8, "seed": 1},
    "train": {"epochs": 4, "batch_size": 1024, "learning_rate": 0.01, "patience": 0, "verbose": 0},
}


def digest(log) -> str:
    text = log.read_text().rsplit("--- attempt ", 1)[-1]
    return re.search(r"^weights_sha256=(\w+)$", text, re.M).group(1)


@pytest.mark.unit
def test_tf_config_is_what_a_tfjob_sets():
    chief, worker = tf_configs(["127.0.0.1:1", "127.0.0.1:2"])
    assert chief["cluster"] == {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    assert chief["task"] == {"type": "chief", "index": 0} and worker["task"] == {"type": "worker", "index": 0}
    on_cluster = cluster_tf_config("recsys-train", "recsys", workers=1)
    assert on_cluster["cluster"]["worker"] == ["recsys-train-worker-0.recsys.svc:2222"]


def _config(cluster: dict, role: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": role, "index": index}, "environment": "cloud"})


@pytest.mark.unit
def test_worker_share_reads_what_the_launcher_writes():
    configs = [json.dumps(c) for c in tf_configs(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"])]
    shares = [worker_share(c, 1536) for c in configs]
    assert shares == [
        WorkerShare("chief", 0, 3, 512, 0),
        WorkerShare("worker", 0, 3, 512, 1),
        WorkerShare("worker", 1, 3, 512, 2),
    ]
    assert [s.is_chief for s in shares] == [True, False, False]
    assert [s.rows for s in shares] == [range(0, 512), range(512, 1024), range(1024, 1536)]
    assert shares[2].describe() == "worker 1: shard 2 of 3, rows 1024-1535 of every global batch of 1536"
    assert worker_share(None, 96) == worker_share("", 96) == WorkerShare("chief", 0, 1, 96, 0)


@pytest.mark.unit
def test_worker_share_without_a_chief_with_an_evaluator_and_in_any_order():
    workers = {"worker": ["w0:1", "w1:1", "w2:1"]}
    assert worker_share(_config(workers, "worker", 0), 300) == WorkerShare("worker", 0, 3, 100, 0)
    assert worker_share(_config(workers, "worker", 0), 300).is_chief, "worker 0 is the chief when there is none"
    assert worker_share(_config(workers, "worker", 2), 300).shard == 2
    with_evaluator = {"chief": ["c:1"], "evaluator": ["e:1"], "worker": ["w0:1", "w1:1"]}
    assert worker_share(_config(with_evaluator, "worker", 1), 300) == WorkerShare("worker", 1, 3, 100, 2)
    workers_first = {"worker": ["w0:1"], "chief": ["c:1"]}
    assert worker_share(_config(workers_first, "worker", 0), 64) == WorkerShare("worker", 0, 2, 32, 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("cluster", "role", "index", "batch", "says"),
    [
        ({"chief": ["c:1"], "worker": ["w:1"]}, "worker", 1, 64, "task worker 1 is not a chief or worker"),
        ({"chief": ["c:1"], "evaluator": ["e:1"]}, "evaluator", 0, 64, "task evaluator 0 is not a chief or worker"),
        ({"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}, "chief", 0, 100, "100 does not split evenly among 3"),
        ({"chief": ["c:1"]}, "chief", 0, 0, "must be >= 1, got 0"),
    ],
)
def test_worker_share_refuses_what_cannot_train(cluster, role, index, batch, says):
    with pytest.raises(ValueError, match=says):
        worker_share(_config(cluster, role, index), batch)


@pytest.mark.tf
@pytest.mark.slow
def test_the_loop_refuses_a_share_that_tensorflow_disagrees_with():
    import tensorflow as tf

    from recsys_workshop.models.mf import MatrixFactorization

    train, _ = data.random_split(data.load_ratings("ml-100k", progress=False), 0.8, seed=1)
    config = TrainConfig(epochs=1, batch_size=512, verbose=0, patience=0)
    two_replicas = WorkerShare("chief", 0, 2, 256, 0)  # one process, and TensorFlow has one replica
    with pytest.raises(ValueError, match="worker_share disagrees with TensorFlow: 2 replica\\(s\\), TensorFlow has 1"):
        fit(MatrixFactorization(8), train, config=config, strategy=tf.distribute.get_strategy(), share=two_replicas)
    half = WorkerShare("chief", 0, 1, 256, 0)
    with pytest.raises(ValueError, match="1 slices of 256 rows, the global batch is 512"):
        fit(MatrixFactorization(8), train, config=config, strategy=tf.distribute.get_strategy(), share=half)


@pytest.mark.tf
@pytest.mark.slow
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


@pytest.mark.tf
@pytest.mark.slow
def test_overrides_reach_the_model_and_the_train_config(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(JOB))
    config = JobConfig.from_file(path, ["model.n_factors=64", "train.learning_rate=0.002", "objective=validation"])
    assert config.model["n_factors"] == 64 and config.train.learning_rate == 0.002
    assert config.objective == "validation"


@pytest.mark.tf
@pytest.mark.slow
def test_the_validation_objective_never_touches_the_test_split():
    from recsys_workshop.train.job import split_data

    ratings = data.load_ratings("ml-100k", progress=False)
    config = JobConfig.from_dict({**JOB, "objective": "validation"})
    train, validation = split_data(config, ratings)
    full_train, test = split_data(JobConfig.from_dict(JOB), ratings)
    assert len(train) + len(validation) == len(full_train)
    test_pairs = set(zip(test["user_id"], test["item_id"], strict=True))
    assert not test_pairs & set(zip(validation["user_id"], validation["item_id"], strict=True))


@pytest.mark.tf
@pytest.mark.slow
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


@pytest.mark.tf
@pytest.mark.slow
def test_two_workers_train_the_same_model_as_one(runs):
    one, two = runs[1], runs[2]
    assert two.returncodes == {"chief-0": 0, "worker-0": 0} and two.restarts == 0
    assert digest(two.logs["chief-0"]) == digest(two.logs["worker-0"]), "the all-reduce keeps workers identical"
    assert "2 replica(s)" in two.logs["chief-0"].read_text()
    shares = [re.search(r"^this process: (.+)$", log.read_text(), re.M).group(1) for log in two.logs.values()]
    assert shares == ["chief 0: shard 0 of 2, rows 0-511 of every global batch of 1024",
                      "worker 0: shard 1 of 2, rows 512-1023 of every global batch of 1024"]  # fmt: skip
    assert two.metrics["ndcg_at_10"] == pytest.approx(one.metrics["ndcg_at_10"], abs=2e-3)
    assert 0 < two.metrics["ndcg_at_10"] < 1 and two.metrics["epochs"] == 4
    assert "ndcg_at_10" not in read_metrics(two.logs["worker-0"]), "only the chief reports metrics"


@pytest.mark.tf
@pytest.mark.slow
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
