"""The pipeline's side of the model store when ``deployed_dir`` is the model server's URL (a cluster run):
download the latest deployed version, upload a candidate as the next one and activate it, over the model
server's admin API (:mod:`recsys_workshop.serving.archive`) with the bearer token of ``$RECSYS_ADMIN_TOKEN``.

Why over HTTP: Kubeflow Pipelines standalone runs every pipeline pod in its own namespace (``kubeflow``),
and a pod can only mount a claim of its own namespace, so the steps cannot reach the model server's volume;
a registry push over an authenticated API is the production pattern anyway (the server checks what it
publishes). Locally, ``deployed_dir`` stays a folder (:func:`is_url` tells them apart).

``deployed_dir`` as a URL: ``http(s)://host[:port]`` (model name ``recsys``) or
``http(s)://host[:port]/v1/models/<name>``. No KFP import here: the components' bodies run this.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ModelStoreError", "activate", "download_latest", "is_url", "upload_version"]

DEFAULT_MODEL_NAME = "recsys"
TIMEOUT = 300.0  # seconds per call: an upload of a large model over a slow link, the server's load check
_MODEL_PATH = re.compile(r"^(?P<base>https?://[^/]+)(?:/v1/models/(?P<name>[A-Za-z0-9._-]+))?/?$")


class ModelStoreError(RuntimeError):
    """The model server refused or failed a call; the message has its status and reason."""


def is_url(deployed_dir: str | os.PathLike[str]) -> bool:
    """Is ``deployed_dir`` the model server's URL (rather than a local folder)?"""
    return str(deployed_dir).startswith(("http://", "https://"))


def _split(url: str) -> tuple[str, str]:
    match = _MODEL_PATH.match(str(url).strip())
    if match is None:
        raise ValueError(f"deployed_dir {url!r} is not a model server URL (http(s)://host[:port][/v1/models/<name>])")
    return match["base"], match["name"] or DEFAULT_MODEL_NAME


def _headers(token: str | None) -> dict[str, str]:
    from recsys_workshop import security

    token = token or security.admin_token()
    if not token:
        raise ModelStoreError(
            f"no admin token: set ${security.ADMIN_TOKEN_ENV} (on a cluster the pipeline's compare and push tasks get "
            "it from the Secret recsys-admin)"
        )
    return security.bearer_headers(token)


def _refused(response, what: str) -> ModelStoreError:
    try:
        reason = response.json().get("error", response.text)
    except ValueError:
        reason = response.text
    return ModelStoreError(f"{what}: HTTP {response.status_code}: {str(reason)[:300]}")


def download_latest(url: str, target: str | os.PathLike[str], token: str | None = None) -> Path | None:
    """Download the latest version the server holds into ``target``/<version> and return that folder, or
    None when the server holds no version yet (nothing deployed)."""
    import requests

    from recsys_workshop.serving.archive import unpack_checked

    base, name = _split(url)
    response = requests.get(f"{base}/v1/models/{name}/versions/latest/archive", headers=_headers(token),
                            timeout=TIMEOUT, stream=True)  # fmt: skip
    with response:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _refused(response, f"downloading the deployed model from {base}")
        version = response.headers.get("x-model-version", "latest")
        folder = Path(target) / str(version)
        folder.mkdir(parents=True, exist_ok=False)
        with tempfile.NamedTemporaryFile(suffix=".tar.gz") as archive:
            for chunk in response.iter_content(2**20):
                archive.write(chunk)
            archive.flush()
            unpack_checked(archive.name, folder)
    return folder


def upload_version(url: str, version_dir: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None,
                   token: str | None = None) -> int:  # fmt: skip
    """Upload the version folder ``version_dir`` (its ``metadata.json`` replaced by ``metadata`` when given)
    as the server's next version; returns the number the server gave it."""
    import requests

    from recsys_workshop.serving.archive import pack_version

    base, name = _split(url)
    headers = {**_headers(token), "Content-Type": "application/gzip"}
    with tempfile.TemporaryFile() as archive:
        pack_version(version_dir, archive, metadata)
        archive.seek(0)
        response = requests.post(f"{base}/v1/models/{name}/versions", data=archive, headers=headers, timeout=TIMEOUT)
    if response.status_code != 201:
        raise _refused(response, f"uploading the candidate to {base}")
    return int(response.json()["version"])


def activate(url: str, version: int, token: str | None = None) -> dict[str, Any]:
    """Make ``version`` the one the server answers with (``:activate``); returns the server's answer."""
    import requests

    base, name = _split(url)
    response = requests.post(f"{base}/v1/models/{name}/versions/{int(version)}:activate", headers=_headers(token),
                             timeout=TIMEOUT)  # fmt: skip
    if response.status_code != 200:
        raise _refused(response, f"activating version {version} on {base}")
    return response.json()


def candidate_metadata(version_dir: str | os.PathLike[str], metrics: Mapping[str, float]) -> dict[str, Any]:
    """The candidate's ``metadata.json`` with the pipeline's metrics merged in."""
    from recsys_workshop.export import METADATA_FILE

    metadata = json.loads((Path(version_dir) / METADATA_FILE).read_text(encoding="utf-8"))
    metadata["metrics"] = {**metadata.get("metrics", {}), **metrics}
    return metadata
