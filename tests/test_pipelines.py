"""The continuous-training pipeline: data checks, the KFP YAML, and real local runs (push, refuse, stop)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

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
    spec = next(yaml.safe_load_all(path.read_text()))
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
    # force_push: off unless a run asks for it, and it reaches the push step (and only the push step)
    assert spec["root"]["inputDefinitions"]["parameters"]["force_push"] == {
        "defaultValue": False,
        "isOptional": True,
        "parameterType": "BOOLEAN",
    }
    assert tasks["push-model"]["inputs"]["parameters"]["force"] == {"componentInputParameter": "force_push"}
    assert [t for t, body in tasks.items() if "force_push" in json.dumps(body)] == ["push-model"]


def test_the_compiled_pipeline_takes_the_feedback_database_as_a_parameter(tmp_path):
    spec = next(yaml.safe_load_all(pipelines.compile_pipeline(tmp_path / "pipeline.yaml").read_text()))
    parameter = spec["root"]["inputDefinitions"]["parameters"]["feedback_db"]
    assert parameter == {"defaultValue": "", "isOptional": True, "parameterType": "STRING"}
    ingest = spec["root"]["dag"]["tasks"]["ingest"]["inputs"]["parameters"]
    assert ingest["feedback_db"] == {"componentInputParameter": "feedback_db"}
    assert spec["components"]["comp-ingest"]["inputDefinitions"]["parameters"]["feedback_db"] == {
        "parameterType": "STRING"
    }
    # the database URL reaches the ingest task from the Secret (kfp-kubernetes' platform spec, the YAML's second
    # document), never as a literal value; no other task gets it
    documents = list(yaml.safe_load_all((tmp_path / "pipeline.yaml").read_text()))
    assert len(documents) == 2
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-ingest"]["secretAsEnv"] == [{
        "keyToEnv": [{"envVar": "RECSYS_DATABASE_URL", "secretKey": "database-url"}],
        "optional": True, "secretName": "recsys-postgres",
        "secretNameParameter": {"runtimeValue": {"constant": "recsys-postgres"}},
    }]
    assert [name for name, e in spec["deploymentSpec"]["executors"].items() if "env" in e["container"]] == []


def test_the_compare_and_push_steps_get_the_admin_token_and_mount_nothing(tmp_path):
    """On a cluster the gate downloads, and the push uploads, through the model server's admin API: the two
    tasks (and only they) get $RECSYS_ADMIN_TOKEN from the Secret recsys-admin; no task mounts a claim or
    takes a node selector (KFP standalone runs them in namespace kubeflow, where the model claim is not)."""
    spec, platform = yaml.safe_load_all(pipelines.compile_pipeline(tmp_path / "pipeline.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    admin = {name: e["secretAsEnv"] for name, e in executors.items()
             if any(s["secretName"] == "recsys-admin" for s in e.get("secretAsEnv", []))}  # fmt: skip
    assert set(admin) == {"exec-compare-with-deployed", "exec-push-model"}
    for name, entries in admin.items():
        (entry,) = entries
        assert not entry.pop("optional", False), "required: a run without the token could not push"
        assert entry == {
            "keyToEnv": [{"envVar": "RECSYS_ADMIN_TOKEN", "secretKey": "token"}],
            "secretName": "recsys-admin",
            "secretNameParameter": {"runtimeValue": {"constant": "recsys-admin"}},
        }, name
    assert {name for name, e in executors.items() if "secretAsEnv" in e} == {"exec-ingest", *admin}
    text = (tmp_path / "pipeline.yaml").read_text()
    assert not any("pvcMount" in e or "nodeSelector" in e for e in executors.values())
    assert "recsys-models" not in text and "model_node_selector" not in spec["root"]["inputDefinitions"]["parameters"]
    assert "RECSYS_ADMIN_TOKEN" not in str(spec), "the token is never a parameter nor a literal of the spec"
    for task in ("compare-with-deployed", "push-model"):
        inputs = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
        assert inputs["deployed_dir"] == {"componentInputParameter": "deployed_dir"}


class _FakeCoreApi:
    """The CoreV1Api call :mod:`recsys_workshop.pipelines.cluster` makes, on made-up namespaces:
    ``secrets`` maps (namespace, name) to the Secret's keys; ``status`` is the error for any other."""

    def __init__(self, secrets, status=404):
        self.secrets, self.status, self.asked = secrets, status, []

    def read_namespaced_secret(self, name, namespace):
        self.asked.append((namespace, name))
        if (namespace, name) not in self.secrets:
            raise _ApiError(self.status)
        return SimpleNamespace(data=dict.fromkeys(self.secrets[namespace, name], "c2VjcmV0"))


class _ApiError(Exception):
    def __init__(self, status):
        super().__init__(f"({status})")
        self.status = status


def test_cluster_arguments_point_the_run_at_the_model_server():
    api = _FakeCoreApi({("team", "recsys-admin"): ["token"]})
    arguments = pipelines.cluster_arguments(SMALL_JOB, namespace="team", core_api=api, feedback_db="env")
    assert arguments == {
        "deployed_dir": "http://recsys-model-predictor.recsys.svc.cluster.local",
        "job_config": json.dumps(SMALL_JOB),
        "feedback_db": "env",
    }
    assert api.asked == [("team", "recsys-admin")]
    standalone = _FakeCoreApi({("kubeflow", "recsys-admin"): ["token"]})
    assert pipelines.cluster_arguments("{}", core_api=standalone)["job_config"] == "{}"
    assert standalone.asked == [("kubeflow", "recsys-admin")], "KFP standalone runs every pipeline in kubeflow"


@pytest.mark.parametrize(
    ("secrets", "status", "reason"),
    [
        ({("recsys", "recsys-admin"): ["token"]}, 404, "'kubeflow', where the run's pods execute, has no Secret "
         "'recsys-admin'.*Re-run cluster-setup/kind/up"),
        ({}, 403, "no Secret 'recsys-admin' readable by you"),
        ({("kubeflow", "recsys-admin"): ["other"]}, 404, "has no key 'token'"),
    ],
)
def test_cluster_arguments_refuse_a_run_that_cannot_reach_the_model_server(secrets, status, reason):
    with pytest.raises(pipelines.ClusterNotReady, match=reason):
        pipelines.cluster_arguments({}, core_api=_FakeCoreApi(secrets, status))


def test_cluster_arguments_let_other_api_errors_through():
    with pytest.raises(_ApiError):
        pipelines.cluster_arguments({}, core_api=_FakeCoreApi({}, status=500))


def test_lab_08_submits_with_the_cluster_arguments():
    """The lab's cluster cell passes what cluster_arguments returns (deployed_dir: the model server's URL),
    not a path or URL of its own."""
    import ast

    from recsys_workshop.paths import REPO_ROOT

    tree = ast.parse((REPO_ROOT / "source" / "09_pipelines.py").read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") ==
             "create_run_from_pipeline_package"]  # fmt: skip
    assert len(calls) == 1
    passed = next(k.value for k in calls[0].keywords if k.arg == "arguments")
    assigned = [n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and
                any(isinstance(t, ast.Name) and t.id == getattr(passed, "id", None) for t in n.targets)]  # fmt: skip
    assert assigned and all(ast.unparse(v.func) == "pipelines.cluster_arguments" for v in assigned)
    assert "/models/recsys" not in ast.unparse(calls[0]), "no hard-coded path beside the helper's"
    assert "recsys-model-predictor" not in ast.unparse(tree), "no hard-coded URL beside the helper's"


# ------------------------------------------------------------------------------ feedback as interactions

FEEDBACK_TIME = 1_700_000_000.0  # 2023: newer than every rating of GOOD


def _feedback(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "action", "arm", "time"])


def test_feedback_maps_like_click_dislike_to_5_4_1_and_the_latest_event_of_a_pair_wins():
    events = _feedback(
        [
            (1, 10, "click", "latest", 100.9),
            (2, 20, "dislike", "latest", 150.0),
            (1, 10, "like", "latest", 200.5),  # the same pair later: it wins
            (3, 30, "click", "latest", 50.0),
            (4, 40, "like", "latest", 300.0),
            (4, 40, "dislike", "latest", 300.0),  # same second, stored later: it wins
            (5, 50, "dislike", "latest", 400.0),
            (5, 50, "click", "latest", 399.0),  # stored later but older: it loses
        ]
    )
    rows = steps.feedback_to_ratings(events)
    assert list(rows.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert rows.dtypes.to_dict() == {"user_id": "int64", "item_id": "int64", "rating": "float64", "timestamp": "int64"}
    assert rows.values.tolist() == [[3, 30, 4.0, 50], [2, 20, 1.0, 150], [1, 10, 5.0, 200], [4, 40, 1.0, 300],
                                    [5, 50, 1.0, 400]]  # fmt: skip
    assert steps.FEEDBACK_RATINGS == {"like": 5.0, "click": 4.0, "dislike": 1.0}
    assert steps.feedback_to_ratings(_feedback([])).empty
    with pytest.raises(ValueError, match=r"unknown feedback action\(s\) \['share'\]"):
        steps.feedback_to_ratings(_feedback([(1, 10, "share", None, 1.0)]))


def test_feedback_rows_are_added_or_replace_an_older_rating_of_the_same_pair():
    ratings = pd.DataFrame(GOOD).astype({"rating": "float32"})  # the loader's dtype
    ratings.loc[3, "timestamp"] = 1_750_000_000  # (2, 12) rated after the feedback below
    new = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [10, 12, 10], "rating": [5.0, 1.0, 4.0],
                        "timestamp": [1_700_000_000] * 3})  # fmt: skip
    merged, counts = steps.add_interactions(ratings, new)
    assert counts == {"added": 1, "changed": 1}
    assert merged.values.tolist() == [
        [1, 11, 3.5, 881250949],
        [2, 10, 5.0, 881250949],
        [2, 12, 1.0, 1_750_000_000],  # the newer rating stays
        [1, 10, 5.0, 1_700_000_000],  # replaced by the like
        [3, 10, 4.0, 1_700_000_000],  # a new pair
    ]
    assert data.check_ratings(merged) == [], "one row per pair: the validation step passes"
    dupes = pd.concat([ratings, ratings.tail(1)], ignore_index=True)  # a pair the feedback does not touch
    assert len(steps.add_interactions(dupes, new.head(1))[0]) == 5, "the validation step must still see them"
    assert steps.add_interactions(ratings, new.head(0)) == (ratings, {"added": 0, "changed": 0})


@pytest.fixture
def feedback_store(tmp_path):
    """An SQLite store (namespace ml-100k) with five events: 1 changes a rating of GOOD, 2 add pairs, 1 is
    older than the rating of its pair, 1 is superseded by a later event of the same pair."""
    from recsys_workshop.store import Store

    url = f"sqlite:///{tmp_path}/feedback.db"
    with Store.open(url, namespace="ml-100k") as store:
        newcomer = store.create_user([50, 172], 30, "F", "writer", first_id=944)
        events = [
            (1, 10, "like", FEEDBACK_TIME),  # GOOD rates (1, 10) 4.0 in 1997: now 5.0
            (2, 13, "click", FEEDBACK_TIME + 1),  # a new pair: 4.0
            (newcomer, 10, "dislike", FEEDBACK_TIME + 2),
            (newcomer, 10, "like", FEEDBACK_TIME + 3),  # the same pair later: 5.0, one row
            (1, 11, "dislike", 800_000_000.0),  # older than GOOD's 3.5: ignored
        ]
        for n, (user, item, action, moment) in enumerate(events):
            event = {"user_id": user, "item_id": item, "action": action, "arm": "latest", "time": moment}
            assert store.add_feedback(event, idempotency_key=f"event-{n}").stored
    with Store.open(url, namespace="ml-1m") as other:  # another dataset's feedback: never read for ml-100k
        other.add_feedback({"user_id": 1, "item_id": 10, "action": "dislike", "time": FEEDBACK_TIME + 9},
                           idempotency_key="other-dataset")  # fmt: skip
    csv = tmp_path / "ratings.csv"
    pd.DataFrame(GOOD).to_csv(csv, index=False)
    return url, csv, newcomer


def test_ingest_appends_the_stored_feedback_as_interactions(feedback_store, tmp_path):
    url, csv, newcomer = feedback_store
    out = tmp_path / "out.csv"
    figures = steps.step_ingest("ml-100k", str(csv), str(out), feedback_db=url)
    assert figures == {"rows": 6, "columns": 4, "feedback_events": 5, "feedback_added": 2, "feedback_changed": 1}
    ingested = steps.read_ratings(str(out))
    assert ingested.values.tolist() == [
        [1, 11, 3.5, 881250949],
        [2, 10, 5.0, 881250949],
        [2, 12, 1.0, 881250949],
        [1, 10, 5.0, 1_700_000_000],
        [2, 13, 4.0, 1_700_000_001],
        [newcomer, 10, 5.0, 1_700_000_003],
    ]
    assert data.check_ratings(ingested) == []


def test_ingest_reads_the_database_url_from_the_environment_with_env(feedback_store, tmp_path, monkeypatch):
    url, csv, _ = feedback_store
    by_url, by_env = tmp_path / "url.csv", tmp_path / "env.csv"
    steps.step_ingest("ml-100k", str(csv), str(by_url), feedback_db=url)
    monkeypatch.setenv("RECSYS_DATABASE_URL", url)
    assert steps.step_ingest("ml-100k", str(csv), str(by_env), feedback_db="env")["feedback_events"] == 5
    assert by_env.read_text() == by_url.read_text()
    monkeypatch.delenv("RECSYS_DATABASE_URL")
    with pytest.raises(ValueError, match=r"feedback_db='env' but \$RECSYS_DATABASE_URL is not set"):
        steps.step_ingest("ml-100k", str(csv), str(by_env), feedback_db="env")


def test_ingest_without_feedback_db_changes_nothing(feedback_store, tmp_path):
    url, csv, _ = feedback_store
    out = tmp_path / "out.csv"
    assert steps.step_ingest("ml-100k", str(csv), str(out)) == {"rows": 4, "columns": 4}
    assert out.read_text() == csv.read_text()
    empty = f"sqlite:///{tmp_path}/empty.db"
    from recsys_workshop.store import Store

    Store.open(empty, namespace="ml-100k").close()  # a database the API created, without feedback yet
    figures = steps.step_ingest("ml-100k", str(csv), str(out), feedback_db=empty)
    assert figures == {"rows": 4, "columns": 4, "feedback_events": 0, "feedback_added": 0, "feedback_changed": 0}
    assert out.read_text() == csv.read_text()
    with pytest.raises(FileNotFoundError, match="no feedback database at"):
        steps.step_ingest("ml-100k", str(csv), str(out), feedback_db=f"sqlite:///{tmp_path}/typo.db")
    assert not (tmp_path / "typo.db").exists(), "a mistyped path does not create an empty store"


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
    """A first local run, with three feedback events in the API's database (``root/api.db``): nothing is
    deployed yet, so the candidate is pushed as version 1."""
    from recsys_workshop.store import Store

    root = tmp_path_factory.mktemp("pipeline")
    url = f"sqlite:///{root}/api.db"
    with Store.open(url, namespace="ml-100k") as store:
        for n, (user, item, action) in enumerate([(1, 300, "like"), (1, 301, "click"), (196, 242, "dislike")]):
            event = {"user_id": user, "item_id": item, "action": action, "time": FEEDBACK_TIME + n}
            store.add_feedback(event, idempotency_key=f"e{n}")
    pipelines.run_local(root / "runs", root / "deployed", job_config=SMALL_JOB, feedback_db=url)
    return root


def test_a_run_with_feedback_db_trains_on_the_feedback_too(deployed):
    run = sorted((deployed / "runs").iterdir())[0]  # the fixture's run (the names hold the start time)
    ingested = pipelines.task_outputs(run, "ingest")["ratings"]
    # (1, 300) and (1, 301) are new pairs, user 196 rated item 242 in 1997: the dislike replaces it
    assert ingested == {"rows": 100_002, "columns": 4, "feedback_events": 3, "feedback_added": 2,
                        "feedback_changed": 1}  # fmt: skip
    ratings = steps.read_ratings(str(run / "ingest" / "ratings")).set_index(["user_id", "item_id"])
    assert ratings.loc[(196, 242), "rating"] == 1.0 and ratings.loc[(1, 300), "rating"] == 5.0
    assert pipelines.task_outputs(run, "compare-with-deployed") == {"Output": True}, "nothing deployed yet"
    assert pipelines.task_outputs(run, "no-such-task") == {}


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


def test_force_push_pushes_a_model_the_gate_refuses_and_says_so(deployed, tmp_path):
    models = tmp_path / "deployed"
    shutil.copytree(deployed / "deployed", models)  # version 1, as the module's first run left it
    pipelines.run_local(
        tmp_path / "runs", models, job_config=WORSE_JOB, force_push=True, log_path=tmp_path / "log"
    )
    out = (tmp_path / "log").read_text()
    assert "not better" in out and "force_push is set: pushing it anyway" in out
    assert list_versions(models) == [1, 2], "force_push overrides the gate"
    assert load_metadata(models / "2")["metrics"]["ndcg@10"] < load_metadata(models / "1")["metrics"]["ndcg@10"]


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
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "recsys-continuous-training"
    assert pipelines.main(["run", "--deployed-dir", str(tmp_path / "d"), "not-an-override"]) == 2
    assert "error: expected key=value, got 'not-an-override'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists(), "nothing ran"
