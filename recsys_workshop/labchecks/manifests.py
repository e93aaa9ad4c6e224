"""The checks of lab 06's two manifest exercises: the model server's Deployment (Exercise 6.1) and a broken
canary Deployment repaired (Exercise 6.2)::

    from recsys_workshop.labchecks import manifests

    selfcheck.check("6.1", lambda: manifests.model_server_deployment(model_server_deployment, service, images))

Both run the learner's function, then the checks the lab teaches (``kube.validate_core``: the Kubernetes
schema, as the API server applies it; ``kube.policy_violations``: the workshop's policy) and what no offline
check sees (a selector that matches no pod, a Service that selects none), and raise ``AssertionError`` naming
the case, the field, what was expected and what came back. The package modules are imported inside the
functions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["fix_canary", "model_server_deployment"]

PROBE_PATH = "/v1/models/recsys"
PORT = 8080


def _equal(actual: Any, expected: Any, what: str) -> None:
    if not actual == expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _findings(manifest: Any, case: str) -> None:
    """The schema and the policy find nothing in ``manifest``, a dict."""
    from recsys_workshop import kube

    if not isinstance(manifest, dict):
        hint = " (yaml.safe_load it, or build the dict directly)" if isinstance(manifest, str) else ""
        raise AssertionError(f"{case}: return the manifest as a dict, not a {type(manifest).__name__}{hint}")
    findings = kube.validate_core([manifest]) + kube.policy_violations([manifest])
    if findings:
        raise AssertionError(f"{case}: the checks found:\n  " + "\n  ".join(map(str, findings)))


def _selector_matches(spec: Mapping[str, Any], case: str) -> dict:
    """The pod template's labels, once the Deployment's selector is known to match them."""
    labels = spec["template"]["metadata"].get("labels") or {}
    selector = spec["selector"].get("matchLabels") or {}
    if not selector.items() <= labels.items():
        raise AssertionError(
            f"{case}: spec.selector.matchLabels is {selector}, the pod template's labels are {labels}: the selector "
            "must match them (the API server rejects the Deployment otherwise)")  # fmt: skip
    return labels


def model_server_deployment(
    yours: Callable[[str, int], Any], service: Mapping[str, Any], images: Iterable[tuple[str, int]]
) -> None:
    """Exercise 6.1: ``yours(image, replicas)`` for each of ``images``, and ``service`` selects its pods."""
    for image, replicas in images:
        case = f"model_server_deployment({image!r}, {replicas})"
        manifest = yours(image, replicas)
        _findings(manifest, case)
        _equal((manifest["apiVersion"], manifest["kind"]), ("apps/v1", "Deployment"), f"{case}: apiVersion and kind")
        _equal(manifest["metadata"].get("name"), "recsys-model-server", f"{case}: metadata.name")
        spec = manifest["spec"]
        _equal(spec.get("replicas"), replicas, f"{case}: spec.replicas")
        labels = _selector_matches(spec, case)
        if not service["spec"]["selector"].items() <= labels.items():
            raise AssertionError(
                f"{case}: the Service selects pods labelled {service['spec']['selector']}; yours are labelled "
                f"{labels}, so it would send them no traffic")  # fmt: skip
        containers = spec["template"]["spec"]["containers"]
        _equal(len(containers), 1, f"{case}: the number of containers")
        container = containers[0]
        _equal(container["image"], image, f"{case}: the image (use the argument, unchanged)")
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if PORT not in ports.values():
            raise AssertionError(f"{case}: the container must declare containerPort {PORT}; it declares {ports}")
        for probe in ("readinessProbe", "livenessProbe"):
            http = container[probe].get("httpGet") or {}
            if not http:
                raise AssertionError(f"{case}: {probe} must be an HTTP GET (httpGet), it is {container[probe]}")
            _equal(http.get("path"), PROBE_PATH, f"{case}: {probe}.httpGet.path")
            _equal(ports.get(http.get("port"), http.get("port")), PORT, f"{case}: {probe}.httpGet.port")


def fix_canary(yours: Callable[[dict], Any], broken: Mapping[str, Any], image: str) -> None:
    """Exercise 6.2: ``yours(broken)`` passes every check, leaves ``broken`` alone, runs the same thing."""
    original = copy.deepcopy(broken)
    fixed = yours(broken)
    case = "fix_canary(BROKEN_CANARY)"
    if broken != original:
        raise AssertionError(f"{case} changed its argument: change a copy (copy.deepcopy(manifest)) and return it")
    _findings(fixed, case)
    spec = fixed["spec"]
    _selector_matches(spec, case)
    _equal(fixed["metadata"]["name"], original["metadata"]["name"], f"{case}: metadata.name")
    container = spec["template"]["spec"]["containers"][0]
    before = original["spec"]["template"]["spec"]["containers"][0]
    _equal((container["command"], container["args"]), (before["command"], before["args"]), f"{case}: command and args")
    _equal(container["ports"][0]["containerPort"], 8000, f"{case}: containerPort (the port the API listens on)")
    _equal(container["image"], image, f"{case}: image (the same repository, the workshop's tag)")
