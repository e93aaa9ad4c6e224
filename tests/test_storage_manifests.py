"""Storage that works on any node count: no ReadWriteOnce claim is mounted by pods that may land on two nodes.

A ReadWriteOnce volume is attached to one node; a second pod on another node fails with a Multi-Attach
error (GKE Persistent Disk) or is never scheduled (kind's local-path). The check below walks every pod
template of the rendered overlays (Deployments, StatefulSets, Jobs, TFJob replicas, Katib trial templates,
InferenceService predictors, ...) and, for each RWO claim, requires that every pod mounting it carries a
required pod affinity (topologyKey kubernetes.io/hostname) whose selector matches every pod mounting it:
they form one group that the scheduler keeps on one node (cluster-setup/manifests/base/model-volume.yaml).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from recsys_workshop import kube, pipelines, serving

pytestmark = pytest.mark.cluster

HOSTNAME = "kubernetes.io/hostname"
# The model store (cluster-setup/manifests/base/model-volume.yaml): the claim, where the model server and the
# training chief mount it, the base folder of the versions, and the label of every pod that mounts it.
MODEL_CLAIM = "recsys-models"
MODEL_MOUNT = "/models"
MODEL_DIR = "/models/recsys"
CLAIM_LABEL = "recsys-workshop/model-claim"
# Kinds that keep pods running (a rollout starts the new pod before the old one stops).
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "InferenceService"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass
class PodTemplate:
    """One kind of pod a document creates: where it comes from, its labels, its spec, how many at once."""

    where: str
    kind: str
    labels: dict[str, str]
    spec: dict[str, Any]
    replicas: int = 1
    claims: set[str] = field(default_factory=set)


def _claims(spec: Mapping[str, Any]) -> set[str]:
    claims = {
        v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v
    }
    uri = ((spec.get("model") or {}).get("storageUri")) or ""  # KServe mounts pvc://<claim>/<path> itself
    if uri.startswith("pvc://"):
        claims.add(uri.removeprefix("pvc://").split("/", 1)[0])
    return claims


def _template(where: str, kind: str, labels: Mapping | None, spec: Mapping, replicas: int | None = 1) -> PodTemplate:
    return PodTemplate(where, kind, dict(labels or {}), dict(spec), 1 if replicas is None else int(replicas),
                       _claims(spec))  # fmt: skip


def pod_templates(doc: Mapping[str, Any], where: str | None = None) -> Iterator[PodTemplate]:
    """Every pod template of a document, wherever its kind keeps it."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    where = where or kube.resource_id(doc)
    if kind == "Pod":
        yield _template(where, kind, doc["metadata"].get("labels"), spec)
    elif kind in POD_TEMPLATE_KINDS:
        template = spec["template"]
        yield _template(where, kind, template.get("metadata", {}).get("labels"), template["spec"], spec.get("replicas"))
    elif kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        yield _template(where, kind, template.get("metadata", {}).get("labels"), template["spec"])
    elif kind == "TFJob":
        for replica, replica_spec in spec["tfReplicaSpecs"].items():
            template = replica_spec["template"]
            labels = template.get("metadata", {}).get("labels")
            yield _template(f"{where}/{replica}", kind, labels, template["spec"], replica_spec.get("replicas"))
    elif kind == "Experiment":  # each trial creates the trial template's resource (here a TFJob)
        yield from pod_templates(spec["trialTemplate"]["trialSpec"], f"{where}/trial")
    elif kind == "InferenceService":  # KServe copies the resource's labels and the component's labels to its pods
        for component in ("predictor", "transformer", "explainer"):
            if component in spec:
                part = spec[component]
                labels = {**(doc["metadata"].get("labels") or {}), **(part.get("labels") or {})}
                yield _template(f"{where}/{component}", kind, labels, part, part.get("minReplicas"))


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if not selector:
        return False  # an empty selector in a pod affinity term selects no pod
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _hostname_terms(template: PodTemplate) -> list[dict[str, Any]]:
    affinity = (template.spec.get("affinity") or {}).get("podAffinity") or {}
    terms = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return [t for t in terms if t.get("topologyKey") == HOSTNAME and not t.get("namespaces")]


def colocation_problems(docs: list[Mapping[str, Any]]) -> list[str]:
    """For each ReadWriteOnce claim: the pods that mount it and may land on two nodes."""
    rwo = {d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim"
           and "ReadWriteOnce" in d["spec"].get("accessModes", [])}  # fmt: skip
    templates = [t for doc in docs for t in pod_templates(doc)]
    problems = []
    for claim in sorted(rwo):
        mounting = [t for t in templates if claim in t.claims]
        if len(mounting) < 2 and not any(t.replicas > 1 or t.kind in LONG_RUNNING for t in mounting):
            continue  # one pod at a time: nothing to co-locate
        for template in mounting:
            terms = _hostname_terms(template)
            if not any(all(_matches(t.get("labelSelector") or {}, other.labels) for other in mounting) for t in terms):
                others = ", ".join(t.where for t in mounting if t is not template) or "its own other replicas"
                problems.append(f"{template.where} mounts ReadWriteOnce claim {claim!r} with no required pod "
                                f"affinity ({HOSTNAME}) that selects every pod mounting it ({others})")  # fmt: skip
    return problems


# ------------------------------------------------------------------------------------------------ the overlays


@pytest.fixture(scope="module", params=kube.OVERLAYS)
def rendered(request) -> list[dict[str, Any]]:
    return kube.kustomize_build(kube.overlay_dir(request.param))


def test_every_pod_template_is_seen(rendered):
    """The walk finds every container of the build: a new kind of workload cannot slip past the check."""
    seen = sum(len(t.spec.get("containers", [])) + len(t.spec.get("initContainers") or [])
               for doc in rendered for t in pod_templates(doc))  # fmt: skip
    assert seen == sum(1 for doc in rendered for _ in kube._containers(doc)) > 0


def test_no_readwriteonce_claim_is_mounted_from_two_nodes(rendered):
    assert colocation_problems(rendered) == []
    mounting = [t.where for doc in rendered for t in pod_templates(doc) if MODEL_CLAIM in t.claims]
    assert sorted(mounting) == ["InferenceService/recsys/recsys-model/predictor", "TFJob/recsys/recsys-train/Chief"]


def test_the_check_is_not_a_rubber_stamp(rendered):
    def find(docs, kind):
        return next(d for d in docs if d["kind"] == kind)

    no_affinity = copy.deepcopy(rendered)
    del find(no_affinity, "TFJob")["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["affinity"]
    assert colocation_problems(no_affinity) == [
        "TFJob/recsys/recsys-train/Chief mounts ReadWriteOnce claim 'recsys-models' with no required pod affinity "
        "(kubernetes.io/hostname) that selects every pod mounting it (InferenceService/recsys/recsys-model/predictor)"
    ]
    unlabelled = copy.deepcopy(rendered)
    del find(unlabelled, "InferenceService")["spec"]["predictor"]["labels"][CLAIM_LABEL]
    assert len(colocation_problems(unlabelled)) == 2, "neither pod's affinity selects the model server any more"
    zone = copy.deepcopy(rendered)
    term = find(zone, "InferenceService")["spec"]["predictor"]["affinity"]["podAffinity"]
    term["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] = "topology.kubernetes.io/zone"
    assert len(colocation_problems(zone)) == 1, "the same zone is not the same node"
    lone = [d for d in copy.deepcopy(rendered) if d["kind"] in ("PersistentVolumeClaim", "Deployment")]
    api = next(d for d in lone if d["metadata"]["name"] == "recsys-api")
    volume = {"name": "m", "persistentVolumeClaim": {"claimName": "recsys-models"}}
    api["spec"]["template"]["spec"]["volumes"].append(volume)
    assert len(colocation_problems(lone)) == 1, "one Deployment alone: its replicas and its rollout need it too"


def test_only_the_chief_mounts_the_model_store_and_trials_never_do(rendered):
    tfjob = next(d for d in rendered if d["kind"] == "TFJob")
    worker = tfjob["spec"]["tfReplicaSpecs"].get("Worker")
    if worker is not None:  # GKE: the worker keeps its model in an emptyDir and may use the other node
        spec = worker["template"]["spec"]
        assert not _claims(spec) and "affinity" not in spec
        assert CLAIM_LABEL not in worker["template"]["metadata"]["labels"]
    experiment = next(d for d in rendered if d["kind"] == "Experiment")
    trials = list(pod_templates(experiment))
    assert trials and all(not t.claims for t in trials), "Katib trials keep their models in an emptyDir"


def test_the_model_store_is_the_same_folder_for_every_step(rendered):
    """Claim, mount path and base folder agree between the model server and the training job; the model
    server mounts it writable (it publishes the pipeline's uploads, serving/archive.py)."""
    predictor = next(d for d in rendered if d["kind"] == "InferenceService")["spec"]["predictor"]
    container = predictor["containers"][0]
    options = serving.build_parser().parse_args(container["args"])
    volume = next(v for v in predictor["volumes"] if "persistentVolumeClaim" in v)
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == MODEL_CLAIM
    assert mount["mountPath"] == MODEL_MOUNT and options.model_dir == MODEL_DIR
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly"), "uploads write here"
    assert options.wait_for_model, "the model server starts before training has exported anything"
    assert predictor["labels"] == {CLAIM_LABEL: MODEL_CLAIM}
    config = json.loads(next(d for d in rendered if d["kind"] == "ConfigMap")["data"]["train.json"])
    assert config["model_dir"] == MODEL_DIR
    chief = next(d for d in rendered if d["kind"] == "TFJob")["spec"]["tfReplicaSpecs"]["Chief"]["template"]
    chief_mount = next(m for m in chief["spec"]["containers"][0]["volumeMounts"] if m["name"] == "models")
    assert chief_mount["mountPath"] == MODEL_MOUNT


def test_the_examples_that_mount_the_model_store_join_it_too():
    """The TensorFlow-format and canary InferenceServices (not in the default build) mount the same claim."""
    manifests = kube.MANIFESTS_DIR / "base"
    texts = [(manifests / name).read_text() for name in ("model-volume.yaml", "model-server.yaml")]
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    mounting = [t.where for doc in docs for t in pod_templates(doc) if MODEL_CLAIM in t.claims]
    assert len(mounting) == 3
    assert colocation_problems(docs) == []


def test_the_pipeline_reaches_the_model_store_through_the_model_server(rendered):
    """The cluster pipeline mounts no claim (its pods run in namespace kubeflow): its deployed_dir is the model
    server's Service, in the workshop namespace, on the Service's port."""
    from urllib.parse import urlsplit

    url = urlsplit(pipelines.CLUSTER_DEPLOYED_DIR)
    service = next(d for d in rendered if d["kind"] == "InferenceService")
    host = f"{service['metadata']['name']}-predictor.{service['metadata']['namespace']}.svc.cluster.local"
    assert url.scheme == "http" and url.hostname == host and url.port is None, "KServe's Service: port 80 -> 8080"
    assert url.path in ("", "/")
