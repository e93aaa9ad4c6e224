"""Lab 07's self-check (recsys_workshop.labchecks.training): the solution passes, a wrong ``worker_share`` of
each usual kind gets a message that names the case and the mistake, and the learner's function really runs
in the training job (shipped to the worker processes with what it uses from the notebook)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from check_helpers import solution_functions

from recsys_workshop.labchecks import training
from recsys_workshop.train import tfconfig
from recsys_workshop.train.tfconfig import WorkerShare

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
RUNNABLE = ("chief", "worker")


def share(tf_config, global_batch_size, mistake=""):
    """A right worker_share, or the one a learner who makes ``mistake`` would write."""
    if not tf_config:
        if mistake == "no_single_process":
            json.loads(tf_config)
        return WorkerShare("chief", 0, 1, global_batch_size, 0)
    config = json.loads(tf_config)
    cluster, task = config["cluster"], config["task"]
    role, index = task["type"], task["index"]
    if mistake == "task_ignored":
        role, index = "chief", 0
    if mistake != "no_task_check" and (role not in RUNNABLE or not 0 <= index < len(cluster.get(role, []))):
        raise ValueError(f"{role} {index} is not in {cluster}")
    chiefs = len(cluster.get("chief", []))
    replicas = chiefs + len(cluster.get("worker", []))
    if mistake == "chief_not_a_replica":
        replicas = len(cluster.get("worker", []))
    if mistake == "evaluator_a_replica":
        replicas = sum(len(addresses) for addresses in cluster.values())
    if mistake == "always_a_chief":
        replicas = 1 + len(cluster.get("worker", []))
    if global_batch_size % replicas and mistake != "no_even_check":
        raise ValueError(f"{global_batch_size} rows do not split among {replicas} replicas")
    per_replica = {"global_batch": global_batch_size, "multiplied": global_batch_size * replicas}.get(
        mistake, global_batch_size // replicas
    )
    shard = index if role == "chief" else chiefs + index
    if mistake == "chief_as_worker_0":
        shard = index
    elif mistake == "shards_from_1":
        shard += 1
    elif mistake == "workers_after_one_chief":
        shard = index if role == "chief" else 1 + index
    elif mistake == "listed_order":
        listed = [(r, i) for r, addresses in cluster.items() if r in RUNNABLE for i in range(len(addresses))]
        shard = listed.index((role, index))
    elif mistake == "index_from_1":
        index += 1
    return WorkerShare(role, index, replicas, per_replica, shard)


def _message(yours) -> str:
    with pytest.raises(AssertionError) as info:
        training.worker_share(yours)
    return str(info.value)


def test_the_right_answer_passes_and_agrees_with_the_package():
    training.worker_share(share)
    for case in training.CASES:
        assert share(case.tf_config, case.batch) == tfconfig.worker_share(case.tf_config, case.batch)


@pytest.mark.parametrize(
    ("mistake", "case", "says"),
    [
        ("no_single_process", "no TF_CONFIG (None: one process)", "no TF_CONFIG means one process"),
        ("task_ignored", "worker 0 of a chief and 1 worker", "expected role='worker', got 'chief': you ignored the "
         "task"),
        ("index_from_1", "chief 0 of a chief and 1 worker", "expected index=0, got 1: task.index already counts "
         "from 0"),
        ("chief_not_a_replica", "chief 0 of a chief and 1 worker", "expected replicas=2, got 1: the chief trains too"),
        ("global_batch", "chief 0 of a chief and 1 worker", "expected per_replica_batch=1024, got 2048: that is the "
         "global batch"),
        ("multiplied", "chief 0 of a chief and 1 worker", "got 4096: the replicas share the global batch"),
        ("shards_from_1", "chief 0 of a chief and 1 worker", "expected shard=0, got 1: shards count from 0"),
        ("chief_as_worker_0", "worker 0 of a chief and 1 worker", "expected shard=1, got 0: the chief takes shard 0"),
        ("always_a_chief", "worker 0 of 3 workers and no chief", "expected replicas=3, got 4: this cluster has no "
         "chief"),
        ("workers_after_one_chief", "worker 0 of 3 workers and no chief", "expected shard=0, got 1: this cluster has "
         "no chief: worker i is shard i"),
        ("evaluator_a_replica", "worker 1 of a chief and 2 workers, with an evaluator", "expected replicas=3, got 4: "
         "an evaluator does not train in sync"),
        ("listed_order", "worker 0 of a chief and 2 workers, the workers listed first", "expected shard=1, got 0: "
         "JSON objects have no order"),
    ],
)  # fmt: skip
def test_each_usual_mistake_gets_its_own_message(mistake, case, says):
    message = _message(lambda tf_config, batch: share(tf_config, batch, mistake))
    assert message.startswith(f"worker_share({case}, global batch "), message
    assert says in message, message


def test_a_shard_that_counts_the_evaluator_is_named():
    def evaluator_takes_a_shard(tf_config, batch):
        right = share(tf_config, batch)
        if tf_config and "evaluator" in json.loads(tf_config)["cluster"] and right.role == "worker":
            return WorkerShare(right.role, right.index, right.replicas, right.per_replica_batch, right.shard + 1)
        return right

    message = _message(evaluator_takes_a_shard)
    assert "with an evaluator" in message and "expected shard=2, got 3: an evaluator is not a replica" in message
    assert '(its TF_CONFIG: {"cluster": {"chief": ["recsys-train-chief-0.recsys.svc:2222"], "evaluator"' in message


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("no_even_check", "global batch 1000): expected ValueError (1000 rows do not split evenly among 3 replicas), "
         "got WorkerShare(role='worker', index=1, replicas=3, per_replica_batch=333, shard=2)"),
        ("no_task_check", "worker_share(worker 2 of a chief and 2 workers, global batch 1536): expected ValueError "
         "(there is no worker 2"),
    ],
)  # fmt: skip
def test_a_missing_value_error_is_named(mistake, says):
    assert says in _message(lambda tf_config, batch: share(tf_config, batch, mistake))


def test_other_errors_and_types_are_named():
    def key_error(tf_config, batch):
        if tf_config and json.loads(tf_config)["task"]["type"] == "evaluator":
            raise KeyError("evaluator")
        return share(tf_config, batch)

    message = _message(key_error)
    assert message.startswith("worker_share(evaluator 0 of a chief and 2 workers, with an evaluator, global batch "
                              "1536) raised KeyError: 'evaluator'; raise ValueError instead")  # fmt: skip
    message = _message(lambda tf_config, batch: share(tf_config, batch).__dict__)
    assert "returned a dict, not a WorkerShare: return WorkerShare(role=..." in message
    message = _message(lambda tf_config, batch: 1 / 0)
    assert message == "worker_share(no TF_CONFIG (None: one process), global batch 256) raised ZeroDivisionError: " \
                      "division by zero: no TF_CONFIG means one process: return WorkerShare('chief', 0, 1, " \
                      "global_batch_size, 0) before parsing anything"  # fmt: skip


def test_an_unwritten_exercise_is_not_an_error_of_the_check():
    def stub(tf_config, batch):
        raise NotImplementedError("Exercise 7.1")

    with pytest.raises(NotImplementedError, match="Exercise 7.1"):
        training.worker_share(stub)


def _solution_function():
    """The lab's ``worker_share``, as the solution notebook defines it."""
    return solution_functions("07_training_at_scale.ipynb", "worker_share", json=json,
                              WorkerShare=WorkerShare)["worker_share"]


def test_the_lab_solution_passes():
    training.worker_share(_solution_function())


# ------------------------------------------------------------------------------------ shipped to the job

PER_REPLICA_FLOOR = 1  # a module constant the shipped function reads


def _replicas(cluster):  # a helper the shipped function calls
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def uses_the_notebook(tf_config, global_batch_size):
    if not tf_config:
        return WorkerShare("chief", 0, 1, global_batch_size, 0)
    config = json.loads(tf_config)
    replicas = _replicas(config["cluster"])
    per_replica = max(PER_REPLICA_FLOOR, math.floor(global_batch_size / replicas))
    index = config["task"]["index"]
    shard = index if config["task"]["type"] == "chief" else len(config["cluster"].get("chief", [])) + index
    return WorkerShare(config["task"]["type"], index, replicas, per_replica, shard)


NOT_SHIPPABLE = re.compile(r"x")


def uses_a_pattern(tf_config, global_batch_size):
    return NOT_SHIPPABLE.match(tf_config)


def test_the_script_carries_what_the_function_uses(tmp_path):
    script = training.swap_script(uses_the_notebook)
    assert "import json as json" in script and "import math as math" in script
    assert "def _replicas(cluster):" in script and "PER_REPLICA_FLOOR = 1" in script
    assert 'mock.patch.object(tfconfig, "worker_share", uses_the_notebook)' in script
    path = tmp_path / "script.py"
    path.write_text(script)
    config = training.CASES[4].tf_config  # worker 1 of a chief and 2 workers
    probe = tmp_path / "probe.py"  # defines what the script defines (not as __main__: no job), in a new process
    probe.write_text(f"import runpy, sys\nns = runpy.run_path({str(path)!r}, run_name='probe')\n"
                     "print(ns['uses_the_notebook'](sys.argv[1], 1536))\n")  # fmt: skip
    out = subprocess.run([sys.executable, str(probe), config], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout  # fmt: skip
    assert out.strip().endswith("WorkerShare(role='worker', index=1, replicas=3, per_replica_batch=512, shard=2)")


def test_the_packages_own_function_can_be_shipped():
    script = training.swap_script(tfconfig.worker_share)
    assert "from recsys_workshop.train.tfconfig import WorkerShare as WorkerShare" in script
    assert "ROLES = ('chief', 'worker')" in script and "import json as json" in script


def test_what_cannot_be_shipped_is_named():
    with pytest.raises(AssertionError, match="uses the notebook's NOT_SHIPPABLE \\(a Pattern\\), which the worker "
                                             "processes cannot get"):  # fmt: skip
        training.swap_script(uses_a_pattern)

    def outer():
        batch = 3

        def inner(tf_config, global_batch_size):
            return batch

        return inner

    with pytest.raises(AssertionError, match="uses variables of an enclosing function"):
        training.swap_script(outer())


# ------------------------------------------------------------------------------------ the real job


@pytest.fixture(scope="module")
def job_config():
    from recsys_workshop.train.job import JobConfig

    return JobConfig.from_dict({
        "model": {"name": "mf", "n_factors": 8},
        "split": {"method": "random", "ratio": 0.8, "seed": 1},
        "train": {"epochs": 5, "batch_size": 2048, "learning_rate": 0.01, "patience": 0, "verbose": 0},
    })  # fmt: skip


@pytest.mark.tf
@pytest.mark.slow
def test_the_job_runs_with_the_learners_function(job_config, tmp_path, capsys):
    rows = training.worker_share_in_job(uses_the_notebook, job_config, tmp_path / "yours")
    assert [row["process"] for row in rows] == ["chief-0", "worker-0"]
    assert rows[0]["your worker_share"] == "chief 0: shard 0 of 2, rows 0-1023 of every global batch of 2048"
    assert rows[1]["your worker_share"] == "worker 0: shard 1 of 2, rows 1024-2047 of every global batch of 2048"
    assert len({row["weights sha256"] for row in rows}) == 1
    assert "epoch 1/1 " in (tmp_path / "yours" / "logs" / "chief-0.log").read_text(), "the check trains one epoch"
    assert "identical weights on every process" in capsys.readouterr().out


def swapped_shards(tf_config, global_batch_size):
    """Right on every named case, wrong where the local launcher's 127.0.0.1 addresses appear."""
    right = share(tf_config, global_batch_size)
    if tf_config and "127.0.0.1" in tf_config:
        return WorkerShare(right.role, right.index, right.replicas, right.per_replica_batch, 1 - right.shard)
    return right


@pytest.mark.tf
@pytest.mark.slow
def test_a_share_that_tensorflow_disagrees_with_fails_the_job_with_a_reason(job_config, tmp_path):
    training.worker_share(swapped_shards)  # the named cases cannot see it
    with pytest.raises(AssertionError) as info:
        training.worker_share_in_job(swapped_shards, job_config, tmp_path / "swapped", timeout=300)
    message = str(info.value)
    assert message.startswith("the training job with your worker_share failed: ")
    assert "worker_share says chief 0 is shard 1 of 2; TensorFlow feeds it input pipeline 0 of 2" in message or (
        "worker_share says worker 0 is shard 0 of 2; TensorFlow feeds it input pipeline 1 of 2" in message
    ), message


# ------------------------------------------------------------------------------------ exercise 7.2


def efficiency(one, many, n, mistake=""):
    if one <= 0 or many <= 0 or n < 1:
        if mistake != "no_checks":
            raise ValueError("throughputs must be positive and n >= 1")
    return {
        "speed_up": many / one,
        "upside_down": one / many / n,
        "percent": 100 * many / one / n,
        "multiplied": many / one * n,
    }.get(mistake, many / one / n)


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("speed_up", "scaling_efficiency(1000, 2000, 2): expected 1, got 2: that is the speed-up: divide it by"),
        ("upside_down", "scaling_efficiency(1000, 2000, 2): expected 1, got 0.25: the ratio is upside down"),
        ("percent", "scaling_efficiency(1000, 2000, 2): expected 1, got 100: a percentage?"),
        ("multiplied", "scaling_efficiency(1000, 2000, 2): expected 1, got 4: divide the speed-up by n, do not"),
        ("no_checks", "scaling_efficiency(0.0, 10.0, 2) raised ZeroDivisionError: check the arguments first and "
         "raise ValueError (a throughput of 0)"),
    ],
)  # fmt: skip
def test_scaling_efficiency_names_the_mistake(mistake, says):
    training.scaling_efficiency(efficiency)
    with pytest.raises(AssertionError) as info:
        training.scaling_efficiency(lambda one, many, n: efficiency(one, many, n, mistake))
    assert str(info.value).startswith(says), str(info.value)


def test_scaling_efficiency_wants_a_value_error_for_a_negative_throughput():
    def accepts_negatives(one, many, n):
        if one == 0 or n < 1:
            raise ValueError("no")
        return many / one / n

    with pytest.raises(AssertionError, match=r"scaling_efficiency\(10.0, -5.0, 2\): expected ValueError \(a negative "
                                             r"throughput\), got -0.25"):  # fmt: skip
        training.scaling_efficiency(accepts_negatives)
