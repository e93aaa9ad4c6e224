"""Policy: what the workshop asks of every container, wherever a manifest nests it, and of every Service.

Resources (requests and limits, read as Kubernetes quantities), a pinned image, a locked-down security
context, probes on long-running servers, credentials from Secrets (never a literal value in the manifest),
and no Service open to the whole internet. :func:`policy_violations` returns a list of
:class:`~recsys_workshop.kube.manifests.Finding` like the schema checks do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from recsys_workshop.kube.manifests import Finding, _containers, resource_id

# Kinds whose pods run until stopped: a container there that listens on a port is a server and needs probes.
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"})
# Every container of an InferenceService component is a server, declared ports or not (KServe: 8080).
SERVING_KINDS = frozenset({"InferenceService"})
# Environment variables that hold a credential by their name: they must come from a Secret (valueFrom), so the
# value is in the cluster and never in the repository.
_CREDENTIAL_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|_KEY|DATABASE_URL|_DSN)$")
_ANYWHERE = frozenset({"0.0.0.0/0", "::/0"})


def _image_problem(image: str | None) -> str | None:
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    name_and_tag = image.rsplit("/", 1)[-1]
    if ":" not in name_and_tag:
        return f"image {image!r} has no tag (pin a version, never rely on latest)"
    if name_and_tag.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the 'latest' tag (pin a version)"
    return None


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2Gi", 1) as a number of base units."""
    match = _QUANTITY.match(str(value))
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _resource_problems(container: Mapping[str, Any]) -> list[str]:
    resources = container.get("resources") or {}
    problems = []
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                problems.append(f"no {resource} {kind[:-1]}")
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        try:
            if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
                problems.append(f"{resource} request {request} is above its limit {limit}")
        except ValueError as error:
            problems.append(str(error))
    return problems


def _security_problems(container: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    ctx = container.get("securityContext") or {}
    pod_ctx = pod.get("securityContext") or {}

    def effective(field: str) -> Any:
        return ctx[field] if field in ctx else pod_ctx.get(field)

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    user = effective("runAsUser")
    if user is None:
        problems.append("no runAsUser (set a numeric non-root user)")
    elif user == 0:
        problems.append("runAsUser is 0 (root)")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if ctx.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true (mount an emptyDir where it must write)")
    if ((effective("seccompProfile") or {}).get("type")) not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile is not RuntimeDefault")
    return problems


def _credential_problems(container: Mapping[str, Any]) -> list[str]:
    return [
        f"env {env['name']} holds a literal value; a credential comes from a Secret (valueFrom.secretKeyRef)"
        for env in container.get("env") or []
        if isinstance(env, Mapping) and _CREDENTIAL_ENV.search(str(env.get("name", ""))) and "value" in env
    ]


def _service_problems(doc: Mapping[str, Any]) -> list[str]:
    spec = doc.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return []
    ranges = spec.get("loadBalancerSourceRanges") or []
    if not ranges:
        return ["type LoadBalancer without loadBalancerSourceRanges: open to the whole internet"]
    if _ANYWHERE & set(ranges):
        return [f"loadBalancerSourceRanges {ranges} let the whole internet in"]
    return []


def policy_violations(docs: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """The workshop's rules for every container, wherever it is nested (Deployments, StatefulSets, TFJob
    replicas, InferenceService predictors, Katib trial templates): CPU and memory requests and limits, a
    pinned image (tag other than ``latest``, or a digest), non-root with no privilege escalation, all
    capabilities dropped, a read-only root filesystem, the RuntimeDefault seccomp profile; readiness and
    liveness probes on long-running servers (a container with ports in a Deployment-like workload, or any
    InferenceService container); credentials (an env var named like ``*_TOKEN``, ``*_KEY``,
    ``*PASSWORD``, ``*DATABASE_URL``) from a Secret, never a literal value. And for Services: no
    LoadBalancer without ``loadBalancerSourceRanges`` (or with 0.0.0.0/0). A Namespace, PVC or ConfigMap
    has nothing to check."""
    findings = []
    for doc in docs:
        kind = str(doc.get("kind"))
        if kind == "Service":
            findings += [Finding(resource_id(doc), "policy", problem) for problem in _service_problems(doc)]
        for container, pod, is_init in _containers(doc):
            rid = f"{resource_id(doc)}[{container.get('name', '?')}]"
            problems = _resource_problems(container) + _security_problems(container, pod)
            problems += _credential_problems(container)
            image_problem = _image_problem(container.get("image"))
            if image_problem:
                problems.append(image_problem)
            server = (kind in SERVING_KINDS) or (kind in LONG_RUNNING_KINDS and container.get("ports"))
            if server and not is_init:
                problems += [
                    f"server without {probe}" for probe in ("readinessProbe", "livenessProbe") if probe not in container
                ]
            findings += [Finding(rid, "policy", problem) for problem in problems]
    return findings
