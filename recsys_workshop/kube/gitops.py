"""GitOps: the Argo CD Application of ``cluster-setup/argocd``, and the version bump that releases an image.

Lab 13 renders the Application for a learner's fork (:func:`render_application`), checks it
(:func:`validate_application`: the Argo CD CRD is not in the offline CRD folder, so the rules are explicit)
and releases a version with a one-line change of an overlay's ``images:`` (:func:`set_image_tag`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys_workshop.kube import manifests
from recsys_workshop.kube.manifests import (
    OVERLAYS,
    Finding,
    KubeError,
    KustomizeError,
    Manifest,
    kustomize_build,
    overlay_image,
    resource_id,
    split_image,
)
from recsys_workshop.paths import CLUSTER_SETUP_DIR, MANIFESTS_DIR, REPO_ROOT

ARGOCD_DIR = CLUSTER_SETUP_DIR / "argocd"
APPLICATION_FILE = ARGOCD_DIR / "application.yaml"
# What application.yaml says instead of a real repository: render_application() replaces it with the fork.
REPO_URL_PLACEHOLDER = "https://github.com/YOUR-GITHUB-USER/recsys-workshop.git"
# The image every container of the workshop names once the base's `images:` has run (an overlay's
# `images:` entry matches this name).
WORKSHOP_IMAGE_NAME = "ghcr.io/recsys-workshop/recsys-workshop"

# Git URLs Argo CD can clone: https://host/path, ssh://user@host/path, or scp-like git@host:path.
_REPO_URL = re.compile(r"^(https://[A-Za-z0-9.-]+(:\d+)?/|ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:\d+)?/|"
                       r"git@[A-Za-z0-9.-]+:)[A-Za-z0-9._~/@%+-]+$")
# A branch, tag or commit; the same characters the argocd/up script accepts.
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# An image tag (distribution spec): up to 128 word characters, dots and dashes, not starting with either.
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# The fields of the Application spec that the workshop may use (argoproj.io/v1alpha1, Argo CD 3.x). The
# Application CRD has a structural schema, so the API server decides what happens to a typo, not Argo CD:
# `kubectl apply` (strict field validation) rejects it; a client without strict validation has it pruned in
# silence (`selfheal: true` is dropped and heals nothing). Either way Argo CD never sees the field.
_APPLICATION_FIELDS: dict[str, frozenset[str]] = {
    "spec": frozenset({"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences",
                       "info", "revisionHistoryLimit", "sourceHydrator"}),
    "source": frozenset({"repoURL", "path", "targetRevision", "chart", "helm", "kustomize", "directory",
                         "plugin", "ref", "name"}),
    "destination": frozenset({"server", "name", "namespace"}),
    "syncPolicy": frozenset({"automated", "syncOptions", "retry", "managedNamespaceMetadata"}),
    "automated": frozenset({"prune", "selfHeal", "allowEmpty", "enabled"}),
    "retry": frozenset({"limit", "backoff", "refresh"}),
    "backoff": frozenset({"duration", "factor", "maxDuration"}),
}
_FINALIZERS = frozenset({"resources-finalizer.argocd.argoproj.io",
                         "resources-finalizer.argocd.argoproj.io/background",
                         "resources-finalizer.argocd.argoproj.io/foreground"})


def repo_url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be the repository Argo CD watches (None if it can)."""
    if not isinstance(url, str) or not url:
        return "no repoURL: set it to the Git URL of your fork"
    if url == REPO_URL_PLACEHOLDER:
        return (f"repoURL is still the placeholder {REPO_URL_PLACEHOLDER}: set it to your fork "
                "(https://github.com/<you>/<your-fork>.git)")
    if not _REPO_URL.match(url):
        return f"repoURL {url!r} is not a Git URL Argo CD can clone (https://..., ssh://... or git@host:path)"
    return None


def load_application(path: str | os.PathLike[str] = APPLICATION_FILE) -> Manifest:
    """The Argo CD Application of ``cluster-setup/argocd/application.yaml``, as a dict (placeholder and all)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise KubeError(f"{path} does not hold one YAML document")
    return doc


def render_application(
    repo_url: str,
    *,
    revision: str = "main",
    overlay: str = "kind",
    path: str | os.PathLike[str] = APPLICATION_FILE,
) -> Manifest:
    """The Application pointed at a fork: ``repo_url`` at ``revision``, syncing ``overlays/<overlay>``.

    On GKE the fork's overlay names the ``PROJECT_ID`` placeholder (Git never carries your project id): when
    ``cluster-setup/image --target gke`` has recorded your project's image on this machine, the Application
    gets it as a kustomize image override (``spec.source.kustomize.images``, the name only, so a tag bump in
    Git still applies), as ``cluster-setup/argocd/up`` patches it in.

    Raises ``ValueError`` for the placeholder, a URL Argo CD cannot clone, a malformed revision or an
    unknown overlay. ``cluster-setup/argocd/up`` applies the same document (a test checks they agree) and then
    patches the recorded GKE image in."""
    problem = repo_url_problem(repo_url)
    if problem:
        raise ValueError(problem)
    if not isinstance(revision, str) or not _REVISION.match(revision):
        raise ValueError(f"revision {revision!r} is not a branch, tag or commit name")
    if overlay not in OVERLAYS:
        raise ValueError(f"no overlay {overlay!r} (have: {', '.join(OVERLAYS)})")
    app = load_application(path)
    source = app["spec"]["source"]
    source["repoURL"] = repo_url
    source["targetRevision"] = revision
    source["path"] = (MANIFESTS_DIR / "overlays" / overlay).relative_to(REPO_ROOT).as_posix()
    recorded = manifests.recorded_gke_image() if overlay == "gke" else None
    if recorded:
        committed = split_image(overlay_image("gke"))[0]
        source["kustomize"] = {"images": [f"{committed}={split_image(recorded)[0]}"]}
    return app


# ------------------------------------------------------------------------------------------------------------
# Validating an Application: one helper per part of the document, each returning its problems in order


def validate_application(
    doc: Mapping[str, Any],
    *,
    repo_root: str | os.PathLike[str] = REPO_ROOT,
    allow_placeholder: bool = False,
    build: bool = True,
) -> list[Finding]:
    """Check an Argo CD Application the way the workshop needs it (the Argo CD CRD is not in the offline
    CRD folder, so the rules are explicit): apiVersion and kind; a name in the ``argocd`` namespace; no
    unknown fields in spec, source, destination and syncPolicy; a project; one source whose repoURL is a
    Git URL (the placeholder only with ``allow_placeholder``), with a targetRevision and a relative path
    that exists in ``repo_root`` and holds a kustomization (with ``build``: that builds with kustomize
    and puts every namespaced resource in the destination namespace); exactly one of destination server
    and name, and a namespace; automated sync that is not disabled, with ``prune`` and ``selfHeal``;
    syncOptions of the form ``Name=value``; known finalizers."""
    meta = doc.get("metadata") or {}
    rid = f"Application/{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    problems = _metadata_problems(doc)
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        problems.append("no spec")
    else:
        problems += _unknown_fields(spec, "spec", "spec")
        if not spec.get("project"):
            problems.append("spec.project is missing (use the default project: project: default)")
        problems += _source_problems(spec, Path(repo_root), allow_placeholder, build)
        problems += _destination_problems(spec.get("destination"))
        problems += _sync_policy_problems(spec.get("syncPolicy"))
    return [Finding(rid, "argocd", p) for p in problems]


def _unknown_fields(node: Any, where: str, kind: str) -> list[str]:
    """The keys of ``node`` that an Application's ``kind`` part does not have (``node`` must be an object)."""
    if isinstance(node, Mapping):
        return [f"{where}.{key}: unknown field (a typo? the API server rejects or drops it)"
                for key in sorted(set(node) - _APPLICATION_FIELDS[kind], key=str)]
    if node is not None:
        return [f"{where} must be an object, not {type(node).__name__}"]
    return []


def _metadata_problems(doc: Mapping[str, Any]) -> list[str]:
    meta = doc.get("metadata") or {}
    problems = []
    if doc.get("apiVersion") != "argoproj.io/v1alpha1" or doc.get("kind") != "Application":
        problems.append(f"apiVersion/kind are {doc.get('apiVersion')}/{doc.get('kind')}, "
                        "expected argoproj.io/v1alpha1/Application")
    if not isinstance(meta.get("name"), str) or not _DNS_LABEL.match(meta["name"]):
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS label")
    if meta.get("namespace") != "argocd":
        problems.append(f"metadata.namespace is {meta.get('namespace')!r}: Argo CD only watches Applications "
                        "in its own namespace, argocd")
    for finalizer in meta.get("finalizers") or []:
        if finalizer not in _FINALIZERS:
            problems.append(f"metadata.finalizers: unknown finalizer {finalizer!r}")
    return problems


def _source_problems(spec: Mapping[str, Any], repo_root: Path, allow_placeholder: bool, build: bool) -> list[str]:
    problems = []
    if "sources" in spec:
        problems.append("spec.sources: use one spec.source for the workshop's overlay")
    source = spec.get("source")
    if not isinstance(source, Mapping):
        return [*problems, "spec.source is missing"]
    problems += _unknown_fields(source, "spec.source", "source")
    url = source.get("repoURL")
    url_problem = repo_url_problem(url)
    if url_problem and not (allow_placeholder and url == REPO_URL_PLACEHOLDER):
        problems.append(f"spec.source.{url_problem}")
    revision = source.get("targetRevision")
    if not isinstance(revision, str) or not _REVISION.match(revision):
        problems.append(f"spec.source.targetRevision {revision!r}: name the branch, tag or commit to follow")
    path_problems = _source_path_problems(source.get("path"), repo_root, spec.get("destination"), build)
    return problems + [f"spec.source.path: {p}" for p in path_problems]


def _source_path_problems(path: Any, repo_root: Path, destination: Any, build: bool) -> list[str]:
    if not isinstance(path, str) or not path:
        return ["missing: the folder of the overlay in the repository"]
    if path.startswith("/") or ".." in Path(path).parts:
        return [f"{path!r} must be relative to the repository root, without '..'"]
    folder = repo_root / path
    if not folder.is_dir():
        return [f"{path} does not exist in the repository"]
    if not (folder / "kustomization.yaml").is_file():
        return [f"{path} has no kustomization.yaml"]
    if not build:
        return []
    try:
        docs = kustomize_build(folder)
    except KustomizeError as error:
        return [f"{path} does not build: {error}"]
    namespace = destination.get("namespace") if isinstance(destination, Mapping) else None
    elsewhere = sorted(
        resource_id(d) for d in docs
        if d.get("kind") != "Namespace" and (d.get("metadata") or {}).get("namespace") not in (None, namespace)
    )
    return [f"{rid} goes to another namespace than the destination {namespace!r}" for rid in elsewhere]


def _destination_problems(destination: Any) -> list[str]:
    if not isinstance(destination, Mapping):
        return ["spec.destination is missing"]
    problems = _unknown_fields(destination, "spec.destination", "destination")
    if ("server" in destination) == ("name" in destination):
        problems.append("spec.destination: set exactly one of server and name")
    if not destination.get("namespace"):
        problems.append("spec.destination.namespace is missing")
    return problems


def _sync_policy_problems(policy: Any) -> list[str]:
    if not isinstance(policy, Mapping):
        return ["spec.syncPolicy is missing: without it every change waits for a manual sync"]
    problems = _unknown_fields(policy, "spec.syncPolicy", "syncPolicy")
    problems += _automated_problems(policy.get("automated"))
    for option in policy.get("syncOptions") or []:
        if not isinstance(option, str) or not re.fullmatch(r"[A-Za-z]+=\S+", option):
            problems.append(f"spec.syncPolicy.syncOptions: {option!r} is not Name=value")
    return problems + _retry_problems(policy.get("retry"))


def _automated_problems(automated: Any) -> list[str]:
    if not isinstance(automated, Mapping):
        return ["spec.syncPolicy.automated is missing: Argo CD would only report drift, never sync"]
    problems = _unknown_fields(automated, "spec.syncPolicy.automated", "automated")
    if automated.get("enabled") is False:
        problems.append("spec.syncPolicy.automated.enabled is false: automated sync is switched off")
    for flag, why in (("prune", "resources removed from Git would stay in the cluster"),
                      ("selfHeal", "changes made behind Git's back would stay")):
        if automated.get(flag) is not True:
            problems.append(f"spec.syncPolicy.automated.{flag} is not true: {why}")
    return problems


def _retry_problems(retry: Any) -> list[str]:
    if retry is None:
        return []
    problems = _unknown_fields(retry, "spec.syncPolicy.retry", "retry")
    if isinstance(retry, Mapping):
        if not isinstance(retry.get("limit", 0), int):
            problems.append("spec.syncPolicy.retry.limit must be an integer")
        problems += _unknown_fields(retry.get("backoff"), "spec.syncPolicy.retry.backoff", "backoff")
    return problems


# ------------------------------------------------------------------------------------------------------------
# Releasing a version


def set_image_tag(kustomization: Mapping[str, Any], tag: str, name: str = WORKSHOP_IMAGE_NAME) -> dict[str, Any]:
    """A copy of a kustomization (as a dict) whose ``images:`` pins image ``name`` to ``tag``.

    The entry for ``name`` gets ``newTag: tag`` (its ``newName``, if any, is kept); without one, an entry
    ``{name, newTag}`` is appended. The argument is not changed. ``ValueError`` for a malformed tag and for
    ``latest``, which is not a version. This is the one-line commit that releases a new version."""
    if not isinstance(tag, str) or not _IMAGE_TAG.match(tag):
        raise ValueError(f"{tag!r} is not an image tag")
    if tag == "latest":
        raise ValueError("'latest' is not a version: pin an exact tag (a test and a rollback need one)")
    result = copy.deepcopy(dict(kustomization))
    images = result.setdefault("images", [])
    entry = next((image for image in images if image.get("name") == name), None)
    if entry is None:
        images.append({"name": name, "newTag": tag})
    else:
        entry["newTag"] = tag
    return result
