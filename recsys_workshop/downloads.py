"""One way to download a pinned file: streamed, checked against its SHA-256, renamed into place.

The MovieLens archives (:mod:`recsys_workshop.data`) and the Kubeflow CRDs (:mod:`recsys_workshop.kube.crds`)
both come through :func:`fetch`. A file is written to a temporary name beside its target while its digest
is computed, and renamed to the target only when it is complete and its digest is the pinned one: an
interrupted, truncated or tampered download leaves nothing behind. The callers turn the two errors below
into messages that say what to do (which variable points at an offline copy, what to delete).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["ChecksumMismatch", "DownloadFailed", "atomic_write", "fetch", "sha256_file"]


class DownloadFailed(OSError):
    """The file could not be downloaded (no network, an HTTP error, a dropped connection)."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(f"Could not download {url}: {reason}")


class ChecksumMismatch(ValueError):
    """A complete download whose SHA-256 is not the pinned one; nothing was kept."""

    def __init__(self, url: str, expected: str, actual: str):
        self.url, self.expected, self.actual = url, expected, actual
        super().__init__(f"Checksum mismatch for {url}:\n  expected sha256 {expected}\n  actual   sha256 {actual}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(target: str | os.PathLike[str], content: bytes) -> Path:
    """Write ``content`` to ``target`` through a temporary file in the same folder and a rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def fetch(
    url: str,
    target: str | os.PathLike[str],
    *,
    sha256: str,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``target`` if and only if its SHA-256 is ``sha256`` (and its size ``size``).

    Raises :class:`DownloadFailed` (network or HTTP error, short read) or :class:`ChecksumMismatch`;
    in both cases no file is left at ``target`` or beside it.
    """
    import requests
    from tqdm.auto import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        digest, written = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=timeout) as response:
                    response.raise_for_status()
                    total = int(response.headers.get("Content-Length") or size or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                        for chunk in response.iter_content(chunk_size=1 << 16):
                            out.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            bar.update(len(chunk))
            except requests.RequestException as exc:
                raise DownloadFailed(url, str(exc)) from exc
        if size is not None and written != size:
            raise DownloadFailed(url, f"the download stopped after {written:,} of {size:,} bytes; nothing was kept")
        if digest.hexdigest() != sha256:
            raise ChecksumMismatch(url, sha256, digest.hexdigest())
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
