"""The model-server manifests: the deployed custom predictor, and the TensorFlow-format and canary examples
(kept out of the default build with kustomize's local-config annotation), checked offline."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from recsys_workshop import kube, serving

pytestmark = pytest.mark.cluster

MANIFEST = kube.MANIFESTS_DIR / "base" / "model-server.yaml"
LOCAL_CONFIG = "config.kubernetes.io/local-config"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    return {doc["metadata"]["name"]: doc for doc in docs}


def test_the_file_holds_the_custom_predictor_and_two_examples(documents):
    assert set(documents) == {"recsys-model", "recsys-model-tf", "recsys-model-canary"}
    for doc in documents.values():
        assert doc["kind"] == "InferenceService" and doc["apiVersion"] == "serving.kserve.io/v1beta1"
    annotations = {name: d["metadata"].get("annotations", {}) for name, d in documents.items()}
    assert LOCAL_CONFIG not in annotations["recsys-model"]
    assert annotations["recsys-model-tf"][LOCAL_CONFIG] == "true"
    assert annotations["recsys-model-canary"][LOCAL_CONFIG] == "true"


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_only_the_custom_predictor_is_deployed(overlay):
    services = [d for d in kube.kustomize_build(kube.overlay_dir(overlay)) if d["kind"] == "InferenceService"]
    assert [s["metadata"]["name"] for s in services] == ["recsys-model"]


def test_the_examples_pass_the_crd_schema_and_the_policy(documents):
    docs = copy.deepcopy(list(documents.values()))
    assert kube.validate_custom(docs) == []
    # the image name is pinned by the kustomization's images: entry, as kustomize would do
    pinned = yaml.safe_load((MANIFEST.parent / "kustomization.yaml").read_text())["images"][0]
    for doc in docs:
        for container, _, _ in kube._containers(doc):
            assert container["image"] == pinned["name"]
            container["image"] = f"{pinned['newName']}:{pinned['newTag']}"
    assert kube.policy_violations(docs) == []
    broken = copy.deepcopy(documents["recsys-model-canary"])
    broken["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert kube.validate_custom([broken]), "the CRD schema check notices a non-integer traffic share"


def test_the_container_args_are_the_servers_command_line(documents):
    parser = serving.build_parser()
    for name in ("recsys-model", "recsys-model-canary"):
        container = documents[name]["spec"]["predictor"]["containers"][0]
        assert container["command"] == ["python", "-m", "recsys_workshop.serving"]
        options = parser.parse_args(container["args"])
        assert options.host == "0.0.0.0", "in a pod the server must listen on the pod IP, not loopback"
        assert options.http_port == container["ports"][0]["containerPort"]
        # The server starts before any model exists and waits for one (--wait-for-model): readiness asks KServe's
        # V2 model-ready endpoint (503 until a version is active: no traffic), liveness only whether the process
        # answers (a restart would not bring a model: no crash loop)
        assert options.wait_for_model, name
        assert container["readinessProbe"]["httpGet"] == {
            "path": f"/v2/models/{options.model_name}/ready",
            "port": options.http_port,
        }, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": options.http_port}, name
        assert {e["name"]: e.get("valueFrom") for e in container["env"]}["RECSYS_ADMIN_TOKEN"] == {
            "secretKeyRef": {"name": "recsys-admin", "key": "token"}
        }
        mount = next(m for m in container["volumeMounts"] if options.model_dir.startswith(m["mountPath"]))
        # the deployed server publishes the versions the pipeline uploads (serving/archive.py); the canary only reads
        assert mount.get("readOnly", False) is (name == "recsys-model-canary"), name
    predictor = documents["recsys-model"]["spec"]["predictor"]
    deployed = predictor["containers"][0]
    options = parser.parse_args(deployed["args"])
    # SIGTERM comes after preStop; the server's own drain (--grace-period) must end before the SIGKILL
    pre_stop = deployed["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert predictor["terminationGracePeriodSeconds"] > pre_stop + options.grace_period
    assert deployed["startupProbe"]["httpGet"]["path"] == "/v2/health/live", "a server waiting for a model has started"
    assert [(p["name"], p["containerPort"]) for p in deployed["ports"]] == [
        ("http", options.http_port),
        ("grpc", options.grpc_port),
    ], "REST first (KServe maps the Service's port 80 to the first port), then gRPC"
    canary = parser.parse_args(documents["recsys-model-canary"]["spec"]["predictor"]["containers"][0]["args"])
    assert canary.version == 2, "the canary serves the new version"


def test_canary_and_tensorflow_format(documents):
    canary = documents["recsys-model-canary"]
    assert 0 < canary["spec"]["predictor"]["canaryTrafficPercent"] < 100
    assert canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless", (
        "traffic splitting between revisions needs Knative (Serverless mode)"
    )
    model = documents["recsys-model-tf"]["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    # TF Serving reads the same base folder as the custom predictor: claim recsys-models, path recsys
    custom = documents["recsys-model"]["spec"]["predictor"]
    claim = custom["volumes"][0]["persistentVolumeClaim"]["claimName"]
    mount_path = custom["containers"][0]["volumeMounts"][0]["mountPath"]
    model_dir = serving.build_parser().parse_args(custom["containers"][0]["args"]).model_dir
    assert model["storageUri"] == f"pvc://{claim}/{Path(model_dir).relative_to(mount_path)}"
