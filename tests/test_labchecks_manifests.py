"""Lab 06's Exercises 6.1 and 6.2 (recsys_workshop.labchecks.manifests): the model server's Deployment and the
broken canary repaired. The solution notebook's functions pass; each usual wrong answer gets a message of its
own (a YAML string returned, a selector that misses the pods, labels the Service does not select, the image
changed, the wrong port, a TCP probe, the argument changed in place, a mistake left in the canary)."""

from __future__ import annotations

import ast
import copy

import nbformat
import pytest
import yaml
from check_helpers import REPO, fails, solution_functions

from recsys_workshop import kube
from recsys_workshop.labchecks import manifests

pytestmark = pytest.mark.unit

NOTEBOOK = "06_kubeflow_setup.ipynb"
VERSIONS = kube.versions()
IMAGE = f"{VERSIONS['WORKSHOP_IMAGE']}:{VERSIONS['WORKSHOP_IMAGE_TAG']}"
IMAGES = [(IMAGE, 1), (f"{VERSIONS['WORKSHOP_IMAGE_LOCAL']}:{VERSIONS['WORKSHOP_IMAGE_TAG']}", 3)]
LABELS = {"app.kubernetes.io/name": "recsys-model-server"}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "recsys-model-server", "namespace": "recsys"},
    "spec": {"selector": dict(LABELS), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
}


def broken_canary() -> dict:
    """The lab's BROKEN_CANARY, read from the solution notebook (only the assignment runs)."""
    cells = [c.source for c in nbformat.read(REPO / "solutions" / NOTEBOOK, as_version=4).cells]
    cell = next(source for source in cells if "BROKEN_CANARY = yaml.safe_load" in source)
    tree = ast.parse(cell)
    tree.body = [node for node in tree.body if isinstance(node, ast.Assign)]
    namespace = {"yaml": yaml}
    exec(compile(tree, NOTEBOOK, "exec"), namespace)  # noqa: S102 - the repository's own notebook
    return namespace["BROKEN_CANARY"]


SOLUTION = solution_functions(NOTEBOOK, "model_server_deployment", "fix_canary", copy=copy, VERSIONS=VERSIONS,
                              MODEL_SERVER_LABELS=LABELS)  # fmt: skip


def deployment(change):
    """The solution's Deployment with one mistake: ``change(manifest)`` edits it in place."""

    def yours(image, replicas):
        manifest = SOLUTION["model_server_deployment"](image, replicas)
        change(manifest)
        return manifest

    return yours


def container(manifest: dict) -> dict:
    return manifest["spec"]["template"]["spec"]["containers"][0]


def test_the_solution_passes_both():
    manifests.model_server_deployment(SOLUTION["model_server_deployment"], SERVICE, IMAGES)
    manifests.fix_canary(SOLUTION["fix_canary"], broken_canary(), IMAGE)


def test_the_broken_canary_really_is_broken():
    """Each of its mistakes is found by a check (the schema stops at its first error, the policy lists all)."""
    broken = broken_canary()
    findings = " ".join(map(str, kube.validate_core([broken]) + kube.policy_violations([broken])))
    for mistake in ("containerPort", "no cpu limit", "runAsUser is 0", "'latest' tag", "without readinessProbe"):
        assert mistake in findings, f"the checks do not find {mistake!r} in the lab's broken canary: {findings}"
    assert "selector" not in findings  # what no offline check sees: the exercise's own check must
    fails(manifests.fix_canary, lambda m: copy.deepcopy(m), broken, IMAGE, match="the checks found")


def _label(m):
    m["spec"]["template"]["metadata"]["labels"] = {"app": "recsys-model-server"}


def _both_labels(m):
    m["spec"]["selector"]["matchLabels"] = {"app": "model"}
    m["spec"]["template"]["metadata"]["labels"] = {"app": "model"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_label, "spec.selector.matchLabels is {'app.kubernetes.io/name': 'recsys-model-server'}"),
        (_both_labels, "the Service selects pods labelled"),
        (lambda m: container(m).update(image="recsys-workshop:latest"), "image"),
        (lambda m: container(m).update(ports=[{"name": "http", "containerPort": 8000}]), "containerPort 8080"),
        (lambda m: container(m)["readinessProbe"].update(httpGet={"path": "/healthz", "port": "http"}),
         "readinessProbe.httpGet.path: expected '/v1/models/recsys', got '/healthz'"),
        (lambda m: container(m).pop("livenessProbe"), "livenessProbe"),
        (lambda m: container(m)["resources"].pop("limits"), "no cpu limit"),
        (lambda m: m["spec"].update(replicas=1), "spec.replicas: expected 3, got 1"),
        (lambda m: m["spec"].update(Replicas=1), "Replicas"),
    ],
)  # fmt: skip
def test_each_deployment_mistake_is_named(change, says):
    fails(manifests.model_server_deployment, deployment(change), SERVICE, IMAGES, match=says)


def test_a_yaml_string_is_refused_with_the_way_out():
    as_text = lambda image, replicas: yaml.safe_dump(SOLUTION["model_server_deployment"](image, replicas))  # noqa: E731
    fails(manifests.model_server_deployment, as_text, SERVICE, IMAGES, match="not a str (yaml.safe_load it")


def test_a_tcp_probe_is_named():
    def tcp(m):
        container(m)["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}

    fails(manifests.model_server_deployment, deployment(tcp), SERVICE, IMAGES, match="must be an HTTP GET")


def canary(*keep: str):
    """The solution's repair with the mistakes named in ``keep`` put back."""

    def yours(manifest):
        fixed = SOLUTION["fix_canary"](manifest)
        box = container(fixed)
        if "latest" in keep:
            box["image"] = manifest["spec"]["template"]["spec"]["containers"][0]["image"]
        if "port" in keep:
            box["ports"][0]["containerPort"] = "8000"
        if "root" in keep:
            fixed["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
        if "other repository" in keep:
            box["image"] = f"docker.io/library/recsys:{VERSIONS['WORKSHOP_IMAGE_TAG']}"
        if "labels" in keep:
            fixed["spec"]["template"]["metadata"]["labels"] = {"app": "recsys-api-canary"}
        if "command" in keep:
            box["args"] = ["--port", "8000"]
        return fixed

    return yours


@pytest.mark.parametrize(
    ("keep", "says"),
    [
        ("latest", "latest"),
        ("port", "containerPort"),
        ("root", "runAsUser"),
        ("other repository", "image (the same repository, the workshop's tag)"),
        ("command", "command and args"),
        ("labels", "spec.selector.matchLabels is {'app.kubernetes.io/name': 'recsys-api-canary'}"),
    ],
)
def test_each_canary_mistake_left_is_named(keep, says):
    fails(manifests.fix_canary, canary(keep), broken_canary(), IMAGE, match=says)


def test_changing_the_argument_is_named():
    def in_place(manifest):
        manifest["spec"]["template"]["metadata"]["labels"] = {"changed": "yes"}
        return SOLUTION["fix_canary"](copy.deepcopy(broken_canary()))

    fails(manifests.fix_canary, in_place, broken_canary(), IMAGE, match="changed its argument")
