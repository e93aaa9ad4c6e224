"""The Kubeflow CRDs the offline checks validate against: found or downloaded, and always verified.

Treated exactly like MovieLens (:mod:`recsys_workshop.data`). The CRDs come from kubeflow/manifests at the
commit pinned in ``crds.lock.json`` beside this file (the same ``KUBEFLOW_MANIFESTS_REF`` as
``cluster-setup/versions.env``; a test keeps the two equal). They are looked for in this order:

1. ``$KUBEFLOW_CRDS_DIR``: a folder holding the CRD files (``kubeflow.org_tfjobs.yaml``, ...), for an
   offline machine or a class sharing one copy. It is only read, never written.
2. The download cache: ``<cache>/k8s-crds/<ref>/``, where ``<cache>`` is ``$RECSYS_WORKSHOP_CACHE``, else
   ``datasets/cache`` in a checkout (git-ignored), else ``~/.cache/recsys-workshop``.
3. A download of the upstream files, each streamed to a temporary file and kept only when its SHA-256 is
   the pinned one; the CRD documents are then cut out of them and written atomically into the cache.

Every CRD file, wherever it was found, is checked before use against the digest of its content in the lock
(``content_sha256``: the SHA-256 of the document as canonical JSON, so a copy that a YAML tool re-quoted
still verifies while any change of meaning does not). A mismatch names the file, both digests and what to do.

    python -m recsys_workshop.kube.crds fetch            # download (or find) and verify; prints the folder
    python -m recsys_workshop.kube.crds fetch --to DIR   # a copy for an offline machine (KUBEFLOW_CRDS_DIR=DIR)
    python -m recsys_workshop.kube.crds lock --manifests ~/src/kubeflow-manifests   # after a pin change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from recsys_workshop import downloads, paths
from recsys_workshop.kube.manifests import KubeError

__all__ = [
    "CRDS_DIR_ENV",
    "LOCK_FILE",
    "CRDChecksumError",
    "CRDError",
    "CRDUnavailableError",
    "cache_folder",
    "content_sha256",
    "crds_dir",
    "fetch",
    "load_lock",
    "make_lock",
    "verify_folder",
]

CRDS_DIR_ENV = "KUBEFLOW_CRDS_DIR"
LOCK_FILE = Path(__file__).with_name("crds.lock.json")
_DOCUMENT_SEPARATOR = re.compile(r"(?m)^---[ \t]*$\n?")


class CRDError(KubeError):
    """The Kubeflow CRDs could not be found, downloaded or verified."""


class CRDUnavailableError(CRDError):
    """No verified copy here and no way to download one (offline, HTTP error, incomplete folder)."""


class CRDChecksumError(CRDError):
    """A CRD file or a downloaded upstream file is not the pinned one."""


def load_lock(path: str | os.PathLike[str] = LOCK_FILE) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _crd_entries(lock: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for source in lock["sources"]:
        for crd in source["crds"]:
            yield source, crd


def _yaml_documents(text: str) -> list[Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


def content_sha256(document: Any) -> str:
    """SHA-256 of a parsed YAML document as canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cache_folder(lock: Mapping[str, Any] | None = None) -> Path:
    """Where downloaded CRDs are kept: one folder per pinned kubeflow/manifests commit."""
    lock = lock or load_lock()
    return paths.cache_dir() / "k8s-crds" / lock["ref"][:12]


_VERIFIED: set[tuple[str, int, int]] = set()


def _verify_file(path: Path, crd: Mapping[str, Any], advice: str) -> None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    import yaml

    try:
        documents = [doc for doc in _yaml_documents(path.read_text(encoding="utf-8"))
                     if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]
        actual = content_sha256(documents[0]) if len(documents) == 1 else f"({len(documents)} CRD documents, not 1)"
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        actual = f"(not readable YAML: {str(exc).splitlines()[0]})"
    if actual != crd["content_sha256"]:
        raise CRDChecksumError(
            f"Checksum mismatch for {path} (the CRD {crd['name']}):\n"
            f"  expected content sha256 {crd['content_sha256']}\n  actual   content sha256 {actual}\n{advice}"
        )
    _VERIFIED.add(key)


def verify_folder(folder: str | os.PathLike[str], lock: Mapping[str, Any] | None = None, *, advice: str = "") -> Path:
    """Check that ``folder`` holds every pinned CRD file with the pinned content; returns the folder."""
    lock = lock or load_lock()
    folder = Path(folder)
    missing = [crd["file"] for _, crd in _crd_entries(lock) if not (folder / crd["file"]).is_file()]
    if missing:
        raise CRDUnavailableError(f"{folder} lacks {', '.join(missing)}. {advice}".strip())
    for _, crd in _crd_entries(lock):
        _verify_file(folder / crd["file"], crd, advice)
    return folder


def _split_documents(text: str) -> Iterator[str]:
    """The documents of a multi-document YAML file, each as its own text (separators removed)."""
    for chunk in _DOCUMENT_SEPARATOR.split(text):
        if chunk.strip():
            yield chunk if chunk.endswith("\n") else chunk + "\n"


def _extract(text: str, names: set[str]) -> dict[str, str]:
    """name -> the exact text of the CRD document of that name, for the CRDs in ``names``."""
    found: dict[str, str] = {}
    for chunk in _split_documents(text):
        for doc in _yaml_documents(chunk):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition" \
                    and doc.get("metadata", {}).get("name") in names:
                found[doc["metadata"]["name"]] = chunk
    return found


def _source_url(lock: Mapping[str, Any], source: Mapping[str, Any], base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/") + "/" + source["path"]
    return lock["url"].format(ref=lock["ref"], path=source["path"])


def _offline_advice(lock: Mapping[str, Any]) -> str:
    files = ", ".join(crd["file"] for _, crd in _crd_entries(lock))
    return (
        f"If this machine is offline, set {CRDS_DIR_ENV} to a folder holding the Kubeflow CRDs ({files}), "
        "for example a copy made on a machine with internet by `python -m recsys_workshop.kube.crds fetch "
        f"--to DIR` (kubeflow/manifests at {lock['ref'][:12]}), and run again."
    )


def fetch(
    dest: str | os.PathLike[str] | None = None,
    *,
    lock: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Download the pinned upstream files, verify them, write the CRD files into ``dest`` (the cache).

    Files already present and verified are kept. Returns the folder. Raises :class:`CRDUnavailableError`
    when a download fails (the message names ``KUBEFLOW_CRDS_DIR``) and :class:`CRDChecksumError` when a
    download is not the pinned file; in both cases nothing half-written is left.
    """
    lock = lock or load_lock()
    folder = Path(dest) if dest is not None else cache_folder(lock)
    for source in lock["sources"]:
        wanted = {crd["name"]: crd for crd in source["crds"] if not _is_verified(folder / crd["file"], crd)}
        if not wanted:
            continue
        url = _source_url(lock, source, base_url)
        upstream = folder / ".upstream" / Path(source["path"]).name
        try:
            downloads.fetch(url, upstream, sha256=source["sha256"], size=source.get("size"),
                            progress=progress, timeout=timeout)
        except downloads.DownloadFailed as exc:
            raise CRDUnavailableError(f"{exc}.\n{_offline_advice(lock)}") from exc
        except downloads.ChecksumMismatch as exc:
            raise CRDChecksumError(
                f"{exc}\nThe download was discarded: it is not the file pinned in {LOCK_FILE.name}. Retry; if it "
                f"keeps failing, check the pin (`python -m recsys_workshop.kube.crds lock`) or set {CRDS_DIR_ENV}."
            ) from exc
        try:
            texts = _extract(upstream.read_text(encoding="utf-8"), set(wanted))
            for name, crd in wanted.items():
                if name not in texts:
                    raise CRDChecksumError(f"{url} holds no CRD named {name}: the lock does not match upstream")
                downloads.atomic_write(folder / crd["file"], texts[name].encode("utf-8"))
                _verify_file(folder / crd["file"], crd, "Delete the file and run again.")
        finally:
            upstream.unlink(missing_ok=True)
    return folder


def _is_verified(path: Path, crd: Mapping[str, Any]) -> bool:
    if not path.is_file():
        return False
    try:
        _verify_file(path, crd, "")
    except CRDChecksumError:
        return False
    return True


def crds_dir(*, download: bool = True, progress: bool = False) -> Path:
    """The folder of verified Kubeflow CRDs: ``$KUBEFLOW_CRDS_DIR``, else the cache (downloading if needed)."""
    lock = load_lock()
    local = os.environ.get(CRDS_DIR_ENV)
    if local:
        folder = Path(local).expanduser()
        if not folder.is_dir():
            raise CRDUnavailableError(
                f"{CRDS_DIR_ENV}={local} is not a folder. Point it at a folder of the Kubeflow CRDs, or unset it "
                "to download them into the cache."
            )
        return verify_folder(
            folder, lock,
            advice=f"{CRDS_DIR_ENV} must point at unmodified CRDs of kubeflow/manifests {lock['ref'][:12]}: replace "
            f"the file with a fresh copy (`python -m recsys_workshop.kube.crds fetch --to {local}`), or unset "
            f"{CRDS_DIR_ENV} to use the download cache.",
        )
    folder = cache_folder(lock)
    if all(_is_verified(folder / crd["file"], crd) for _, crd in _crd_entries(lock)):
        return folder
    if not download:
        raise CRDUnavailableError(f"The Kubeflow CRDs are not in {folder}. {_offline_advice(lock)}")
    return fetch(folder, lock=lock, progress=progress)


def make_lock(manifests: str | os.PathLike[str], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A new lock from a checkout of kubeflow/manifests at the commit to pin (same files and CRDs as before).

    Read from a local checkout, never from an unverified download: ``git clone`` it and check out the ref
    that ``cluster-setup/versions.env`` pins, then run ``python -m recsys_workshop.kube.crds lock``.
    """
    import subprocess

    previous = previous or load_lock()
    root = Path(manifests)
    ref = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    lock = {key: value for key, value in previous.items() if key != "sources"} | {"ref": ref, "sources": []}
    for source in previous["sources"]:
        raw = (root / source["path"]).read_bytes()
        documents = {doc["metadata"]["name"]: doc for doc in _yaml_documents(raw.decode("utf-8"))
                     if doc.get("kind") == "CustomResourceDefinition"}
        crds = []
        for crd in source["crds"]:
            if crd["name"] not in documents:
                raise CRDError(f"{source['path']} at {ref[:12]} holds no CRD named {crd['name']}")
            crds.append({**crd, "content_sha256": content_sha256(documents[crd["name"]])})
        lock["sources"].append({**source, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "crds": crds})
    return lock


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.kube.crds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="find or download the pinned CRDs, verify them, print their folder")
    get.add_argument("--to", help="write a copy into this folder (for KUBEFLOW_CRDS_DIR on an offline machine)")
    check = sub.add_parser("verify", help="verify a folder of CRDs against the lock")
    check.add_argument("folder")
    relock = sub.add_parser("lock", help="rewrite crds.lock.json from a kubeflow/manifests checkout")
    relock.add_argument("--manifests", required=True, help="a git checkout of kubeflow/manifests at the new ref")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(args.to, progress=True) if args.to else crds_dir(progress=True))
        elif args.command == "verify":
            print(f"{verify_folder(args.folder)}: every CRD matches {LOCK_FILE.name}")
        else:
            lock = make_lock(args.manifests)
            LOCK_FILE.write_text(json.dumps(lock, indent=2) + "\n", encoding="utf-8")
            print(f"{LOCK_FILE} now pins {lock['ref']}: set KUBEFLOW_MANIFESTS_REF to it in cluster-setup/versions.env")
    except CRDError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
