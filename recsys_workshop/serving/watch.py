"""Waiting for the first model: a server started before any version exists (a cluster's model server, which
starts before the training job has exported anything) stays up and not ready, and looks for a complete
version every few seconds; the first that loads becomes active and the server ready.

A version counts as *complete* when its folder holds ``saved_model.pb``, ``variables/variables.index`` and
``metadata.json``. :func:`recsys_workshop.export.export_model` and the pipeline's push step write a version
into a hidden folder and rename it into place, so a version folder is complete as soon as it appears; the
check also keeps the server from loading a version that someone is still copying by hand. A version that
fails to load is tried again only when its files change (size or modification time).

Once a version is active, the watcher ends: later versions are served when pinned or activated, as always
(the server never switches by itself).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from recsys_workshop.export import METADATA_FILE, list_versions
from recsys_workshop.serving.model import VersionError
from recsys_workshop.serving.versions import VersionManager

__all__ = ["DEFAULT_POLL_INTERVAL", "FirstVersionWatcher", "complete_versions", "is_complete"]

DEFAULT_POLL_INTERVAL = 5.0  # seconds between two looks at the model folder while no version is active
REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", METADATA_FILE)


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Does this version folder hold everything a server loads (the SavedModel and its metadata)?"""
    return all((Path(path) / name).is_file() for name in REQUIRED_FILES)


def complete_versions(base: str | os.PathLike[str]) -> list[int]:
    """The complete versions under ``base`` (see :func:`is_complete`), ascending."""
    return [v for v in list_versions(base) if is_complete(Path(base) / str(v))]


def _fingerprint(base: Path, versions: list[int]) -> tuple:
    """What the complete versions' files look like now: a failed version is retried when this changes."""
    entries = []
    for version in versions:
        folder = base / str(version)
        for path in sorted(folder.rglob("*")):
            try:
                stat = path.stat()
            except OSError:  # removed while we looked: the next look sees the new state
                continue
            entries.append((str(path.relative_to(base)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class FirstVersionWatcher(threading.Thread):
    """A daemon thread that activates the first version that loads (``version``: only that one), then ends.

    ``interval``: seconds between two looks. It also ends when a version became active by other means (an
    admin's ``:activate``) or when :meth:`stop` is called."""

    def __init__(self, manager: VersionManager, version: int | None = None, interval: float = DEFAULT_POLL_INTERVAL):
        super().__init__(name="recsys-first-version", daemon=True)
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.manager, self.version, self.interval = manager, version, interval
        self._stopped = threading.Event()
        self.loaded = threading.Event()  # set once a version is active

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        base = self.manager.base
        wanted = f"version {self.version}" if self.version is not None else "the first model version"
        print(f"waiting for {wanted} under {base} (a look every {self.interval:g} s): not ready until one loads",
              flush=True)  # fmt: skip
        tried = None
        while not self._stopped.is_set():
            if self.manager.active is not None:
                break
            versions = complete_versions(base)
            if self.version is not None:
                versions = [v for v in versions if v == self.version]
            state = _fingerprint(base, versions)
            if versions and state != tried:
                tried = state
                if self._try_start(versions):
                    break
            self._stopped.wait(self.interval)
        if self.manager.active is not None:
            self.loaded.set()

    def _try_start(self, versions: list[int]) -> bool:
        """Activate the highest of ``versions`` (complete ones) that loads; say why when none does."""
        errors = []
        for version in reversed(versions):
            try:
                self.manager.start(version, preload=0)
            except VersionError as error:
                errors.append(str(error))
                continue
            print(f"version {version} loaded: the model is ready", flush=True)
            self.manager.preload()  # the other recent versions, so that pinning them answers at once
            return True
        print("still waiting, no version loads: " + "; ".join(errors), flush=True)
        return False
