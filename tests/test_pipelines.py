"""The continuous-training pipeline: data checks, the KFP YAML, and real local runs (push, refuse, stop)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from recsys_workshop import data, pipelines
from recsys_workshop.export import list_versions, load_metadata
from recsys_workshop.pipelines import steps

pytestmark = [pytest.mark.tf, pytest.mark.slow]

GOOD = {
    "user_id": [1, 1, 2, 2],
    "item_id": [10, 11, 10, 12],
    "rating": [4.0, 3.5, 5.0, 1.0],
    "timestamp": [881250949] * 4,
}
SMALL_JOB = {
    "model": {"name": "mf", "n_factors": 16},
    "train": {"epochs": 3, "batch_size": 1024, "learning_rate": 0.01, "patience": 0, "verbose": 0},
}
WORSE_JOB = {
    "model": {"name": "mf", "n_factors": 2},
    "train": {"epochs": 1, "batch_size": 4096, "learning_rate": 0.0001, "patience": 0, "verbose": 0},
}


def test_clean_ratings_pass_and_real_movielens_passes():
    assert data.check_ratings(pd.DataFrame(GOOD)) == []
    assert data.check_ratings(data.load_ratings("ml-100k", progress=False), rating_range=(1, 5)) == []


def test_every_kind_of_bad_data_is_reported():
    bad = pd.DataFrame(GOOD)
    bad.loc[1, "rating"] = 9.0
    bad.loc[3, "item_id"] = 10  # user 2 rates item 10 twice
    bad.loc[0, "timestamp"] = 4_102_444_800  # 2100
    problems = "\n".join(data.check_ratings(bad))
    assert "rating: 1 value(s) outside [0.5, 5.0] (e.g. 9.0)" in problems
    assert "1 duplicate (user_id, item_id) pair(s), e.g. (2, 10)" in problems
    assert "timestamp: 1 value(s) before 1995 or in the future" in problems
    assert data.check_ratings(bad.drop(columns="timestamp")) == [
        "missing column(s) ['timestamp']; the table has ['user_id', 'item_id', 'rating']"
    ]
    text = bad.astype({"user_id": str})
    assert data.check_ratings(text) == ["user_id: expected integers, found dtype object"]


def test_leakage_between_splits_is_caught():
    train = pd.DataFrame(GOOD)
    assert data.check_split(train.iloc[:3], train.iloc[3:]) == []
    leaky = data.check_split(train, train.iloc[3:])
    assert leaky == ["leakage: 1 (user_id, item_id) pair(s) are in both splits, e.g. (2, 12)"]
    cold = pd.DataFrame({**{k: [v[0]] for k, v in GOOD.items()}, "user_id": [99]})
    assert "1 test user(s) have no training interactions (e.g. [99])" in data.check_split(train, cold)


def test_the_pipeline_compiles_to_kfp_v2_yaml(tmp_path):
    path = pipelines.compile_pipeline(tmp_path / "pipeline.yaml")
    spec = yaml.safe_load(path.read_text())
    assert spec["pipelineInfo"]["name"] == "recsys-continuous-training"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "ingest",
        "validate-data",
        "split-data",
        "train-model",
        "evaluate-model",
        "compare-with-deployed",
        "push-model",
    }
    assert tasks["split-data"]["dependentTasks"] == ["ingest", "validate-data"]
    outputs = spec["components"]["comp-train-model"]["outputDefinitions"]["artifacts"]
    assert outputs["model"]["artifactType"]["schemaTitle"] == "system.Model"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {pipelines.IMAGE}


def test_step_push_adds_a_version_atomically(tmp_path):
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "metadata.json").write_text(json.dumps({"version": 1, "metrics": {}}))
    deployed = tmp_path / "deployed"
    first = steps.step_push(str(candidate), str(deployed), {"ndcg@10": 0.3})
    second = steps.step_push(str(candidate), str(deployed), {"ndcg@10": 0.4})
    assert list_versions(deployed) == [1, 2] and second.endswith("/2") and first.endswith("/1")
    assert json.loads((deployed / "2" / "metadata.json").read_text()) == {"version": 2, "metrics": {"ndcg@10": 0.4}}
    assert [p.name for p in deployed.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A first local run: nothing is deployed yet, so the candidate is pushed as version 1."""
    root = tmp_path_factory.mktemp("pipeline")
    pipelines.run_local(root / "runs", root / "deployed", job_config=SMALL_JOB)
    return root


def test_a_first_run_pushes_its_model(deployed):
    models = deployed / "deployed"
    assert list_versions(models) == [1]
    metadata = load_metadata(models / "1")
    assert 0.05 < metadata["metrics"]["ndcg@10"] < 1, "the evaluate step's metrics travel with the model"
    assert metadata["job_config"]["model"]["n_factors"] == 16
    reports = list((deployed / "runs").glob("*/validate-data/report"))
    assert reports and "Data validation: passed" in reports[0].read_text()


def test_a_model_that_is_not_better_is_refused(deployed, tmp_path):
    run = pipelines.run_local(deployed / "runs", deployed / "deployed", job_config=WORSE_JOB, log_path=tmp_path / "log")
    assert list_versions(deployed / "deployed") == [1], "the weaker model must not be pushed"
    assert (run / "push-model").is_dir() or "push-model" in (tmp_path / "log").read_text()
    out = (tmp_path / "log").read_text()
    assert "not better" in out and "nothing pushed" in out


def test_bad_data_stops_the_run_with_a_readable_report(deployed, tmp_path):
    ratings = data.load_ratings("ml-100k", progress=False).head(2000)
    broken = pd.concat([ratings, ratings.head(5)], ignore_index=True)  # duplicated rows
    broken.loc[broken.index[:3], "rating"] = 11.0
    csv = tmp_path / "ratings.csv"
    broken.to_csv(csv, index=False)
    with pytest.raises(pipelines.PipelineFailed) as failed:
        pipelines.run_local(
            tmp_path / "runs",
            deployed / "deployed",
            ratings_csv=str(csv),
            job_config=SMALL_JOB,
            log_path=tmp_path / "log",
        )
    message = str(failed.value)
    assert "Data validation: FAILED" in message and "5 duplicate (user_id, item_id) pair(s)" in message
    assert "3 value(s) outside [0.5, 5.0] (e.g. 11.0)" in message
    assert "ValidationFailed" in (tmp_path / "log").read_text(), "the task's traceback went to the log"
    assert not list((tmp_path / "runs").glob("*/train-model")), "nothing after the failed validation ran"
    assert list_versions(deployed / "deployed") == [1]


def test_the_command_line_compiles_and_reports_bad_config(tmp_path, capsys):
    assert pipelines.main(["compile", str(tmp_path / "p.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["pipelineInfo"]["name"] == "recsys-continuous-training"
    assert pipelines.main(["run", "--deployed-dir", str(tmp_path / "d"), "not-an-override"]) == 2
    assert "error: expected key=value, got 'not-an-override'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists(), "nothing ran"
