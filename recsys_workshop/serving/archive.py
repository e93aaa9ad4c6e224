"""Version archives: a version folder as a ``.tar.gz`` (the model server's download route, and what the
pipeline's push step uploads), and the checked publication of an uploaded archive as the next version.

    GET  /v1/models/{name}/versions/{version|latest}/archive   -> the folder as .tar.gz (admin)
    POST /v1/models/{name}/versions  (Content-Type: application/gzip)  -> 201 {"version": N} (admin)

An upload is untrusted input written to the server's disk, so :func:`unpack_checked` reads it member by
member and refuses (:class:`ArchiveError`, a 4xx with the reason) anything but regular files and folders
with plain relative names: no absolute path, no ``..``, no link, device or FIFO, at most
:data:`MAX_MEMBERS` members and ``max_unpacked`` bytes once unpacked (counted as they are written, not only
as the headers declare). :func:`publish_archive` then requires a complete version (:data:`.watch.
REQUIRED_FILES`) that loads (:meth:`.model.LoadedVersion.load`), gives it the next version number, sets
``version`` in its ``metadata.json`` and renames its hidden staging folder into place: a version folder is
complete as soon as it appears, and a refused upload leaves nothing behind. Publishing does not activate:
as for a version exported by hand, the server serves it when pinned or after ``:activate``.

Standard library only (TensorFlow is imported by the load check).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from recsys_workshop.export import METADATA_FILE, next_version

__all__ = [
    "ARCHIVE_MEDIA_TYPES",
    "DEFAULT_MAX_UNPACKED",
    "MAX_MEMBERS",
    "ArchiveError",
    "pack_version",
    "publish_archive",
    "unpack_checked",
]

ARCHIVE_MEDIA_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")
MAX_MEMBERS = 1000  # a SavedModel version holds about ten files
DEFAULT_MAX_UNPACKED = 2 * 2**30  # bytes, all members together
_CHUNK = 2**20
_publish_lock = threading.Lock()  # one publication at a time chooses a version number


class ArchiveError(Exception):
    """An archive the server refuses: ``status`` 400 (not a safe .tar.gz), 413 (too large once unpacked or
    too many members), 415 (wrong content type) or 422 (not a complete, loadable version)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# --------------------------------------------------------------------------------------------- packing


def pack_version(folder: str | os.PathLike[str], out: IO[bytes], metadata: Mapping[str, Any] | None = None) -> None:
    """Write the version folder ``folder`` as a gzip-compressed tar to ``out``: its files and folders with
    names relative to it (``saved_model.pb``, ``variables/...``, ``metadata.json``), regular files only.
    ``metadata``: written as ``metadata.json`` instead of the folder's own (e.g. with the pipeline's metrics)."""
    folder = Path(folder)
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if path.is_symlink() or (metadata is not None and name == METADATA_FILE):
                continue
            if path.is_dir() or path.is_file():
                tar.add(path, arcname=name, recursive=False)
        if metadata is not None:
            data = (json.dumps(dict(metadata), indent=2) + "\n").encode()
            info = tarfile.TarInfo(METADATA_FILE)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, fileobj=_BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset : end], min(end, len(self.data))
        return chunk


# --------------------------------------------------------------------------------------------- unpacking


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's relative path, None for the archive's own root (``.``); raises for an unsafe name."""
    name = member.name
    if not name or "\\" in name or "\x00" in name:
        raise ArchiveError(400, "the archive holds a member with an empty or invalid name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ArchiveError(400, f"the archive holds an absolute path ({_shown(name)}): names must be relative")
    parts = [part for part in path.parts if part != "."]
    if ".." in parts:
        raise ArchiveError(400, f"the archive holds a path leaving its folder ({_shown(name)})")
    return PurePosixPath(*parts) if parts else None


def _shown(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


def unpack_checked(archive: str | os.PathLike[str], target: str | os.PathLike[str], *,
                   max_unpacked: int = DEFAULT_MAX_UNPACKED, max_members: int = MAX_MEMBERS) -> None:  # fmt: skip
    """Unpack the ``.tar.gz`` file ``archive`` into the (existing, empty) folder ``target``, refusing with
    :class:`ArchiveError` anything unsafe (see the module docstring). On an error ``target`` may hold part
    of the archive: the caller removes it."""
    target = Path(target)
    count, written = 0, 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                count += 1
                if count > max_members:
                    raise ArchiveError(413, f"the archive holds more than {max_members} members")
                relative = _member_path(member)
                if not (member.isreg() or member.isdir()):
                    raise ArchiveError(400, f"the archive member {_shown(member.name)} is not a regular file or "
                                       "folder (links, devices and FIFOs are refused)")  # fmt: skip
                if relative is None:
                    continue
                destination = target.joinpath(*relative.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                if written + member.size > max_unpacked:
                    raise ArchiveError(413, f"the archive unpacks to more than {max_unpacked} bytes")
                destination.parent.mkdir(parents=True, exist_ok=True)
                if destination.exists():
                    raise ArchiveError(400, f"the archive holds {_shown(member.name)} twice")
                written += _copy_member(tar, member, destination, max_unpacked - written)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise ArchiveError(400, "the archive holds members that conflict (a file and a folder of one name)") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        if isinstance(error, OSError) and not _is_format_error(error):
            raise
        reason = f"the body is not a valid gzip-compressed tar archive ({type(error).__name__})"
        raise ArchiveError(400, reason) from None
    if count == 0:
        raise ArchiveError(400, "the archive is empty")


def _is_format_error(error: OSError) -> bool:
    import gzip

    return isinstance(error, gzip.BadGzipFile) or error.errno is None


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path, budget: int) -> int:
    """Write one regular member, at most ``budget`` bytes (a header that lies about its size is caught)."""
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveError(400, f"the archive member {_shown(member.name)} has no data")
    size = 0
    with source, open(destination, "xb") as sink:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > budget:
                raise ArchiveError(413, "the archive unpacks to more bytes than allowed")
            sink.write(chunk)
    os.chmod(destination, 0o644)
    return size


# --------------------------------------------------------------------------------------------- publishing


def _checked_version(staging: Path):
    """The staged version loaded (as a check), and its metadata; :class:`ArchiveError` 422 otherwise."""
    from recsys_workshop.serving.model import LoadedVersion, VersionError
    from recsys_workshop.serving.watch import REQUIRED_FILES

    missing = [name for name in REQUIRED_FILES if not (staging / name).is_file()]
    if missing:
        raise ArchiveError(422, f"the archive is not a complete model version: it lacks {', '.join(missing)}")
    try:
        metadata = json.loads((staging / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metadata = None
    if not isinstance(metadata, dict):
        raise ArchiveError(422, f"the archive's {METADATA_FILE} is not a JSON object")
    try:
        loaded = LoadedVersion.load(staging, version=0)
    except VersionError as error:
        reason = str(error).replace("version 0", "the uploaded version", 1)
        raise ArchiveError(422, reason) from None
    return loaded, metadata


def publish_archive(archive: str | os.PathLike[str], base_dir: str | os.PathLike[str], *,
                    max_unpacked: int = DEFAULT_MAX_UNPACKED):  # fmt: skip
    """Check the uploaded ``archive`` and publish it as the next version under ``base_dir``; returns the
    :class:`~.model.LoadedVersion` (already loaded, with its final number and path). Atomic: the version
    folder appears complete (a rename) or not at all. Raises :class:`ArchiveError` for a refused archive."""
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=base))
    try:
        unpack_checked(archive, staging, max_unpacked=max_unpacked)
        loaded, metadata = _checked_version(staging)
        with _publish_lock:
            while True:
                version = next_version(base)
                metadata["version"] = version
                (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
                os.chmod(staging, 0o755)  # mkdtemp makes it 0700
                try:
                    os.rename(staging, base / str(version))  # fails if an export took the number meanwhile
                except OSError:
                    if (base / str(version)).exists():
                        continue
                    raise
                break
        _fsync_dir(base)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    loaded.version, loaded.path, loaded.metadata = version, base / str(version), metadata
    return loaded


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where the file system allows opening a folder)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
