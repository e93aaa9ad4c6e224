"""The set of versions a model server knows: which one is active, loading on demand, switching, rolling back
(:class:`VersionManager`). Error messages never carry an absolute path (see :func:`.model.scrub_paths`)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from recsys_workshop.export import METADATA_FILE, list_versions
from recsys_workshop.serving.model import LoadedVersion, VersionError

__all__ = ["VersionManager"]


class VersionManager:
    """The versions under a base folder: which one is active, loading on demand, switching, rolling back.

    Thread-safe; a version that fails to load is remembered (with its error) and never made active.
    ``candidates``, ``ef_search``: override every version's own retrieval settings (see
    :meth:`LoadedVersion.tune`)."""

    def __init__(
        self, base_dir: str | os.PathLike[str], *, candidates: int | None = None, ef_search: int | None = None
    ):
        self.base = Path(base_dir)
        self.overrides = {"candidates": candidates, "ef_search": ef_search}
        self._loaded: dict[int, LoadedVersion] = {}
        self._failed: dict[int, str] = {}
        self._history: list[int] = []  # previously active versions, most recent last
        self._lock = threading.RLock()
        self.active: int | None = None

    def available(self) -> list[int]:
        return list_versions(self.base)

    def get(self, version: int | None = None) -> LoadedVersion:
        """The loaded version (the active one by default); loads it on first use."""
        with self._lock:
            if version is None:
                if self.active is None:
                    raise VersionError("no version is active", 503)
                return self._loaded[self.active]
            if version in self._loaded:
                return self._loaded[version]
        path = self.base / str(version)
        if not 1 <= version < 2**63 or not path.is_dir():
            shown = str(version) if len(str(version)) <= 20 else str(version)[:20] + "..."
            raise VersionError(f"version {shown} does not exist (available: {self.available()})", 404)
        try:
            loaded = LoadedVersion.load(path, version).tune(**self.overrides)
        except VersionError as error:
            with self._lock:
                self._failed[version] = str(error)
            raise
        with self._lock:
            self._failed.pop(version, None)
            return self._loaded.setdefault(version, loaded)

    def start(self, version: int | None = None, preload: int = 3) -> int:
        """Activate ``version``, by default the highest version that loads; raises if it (or none) loads.
        Then load the ``preload`` most recent other versions too (failures are only recorded), so that
        pinning or switching to them answers at once."""
        versions = self.available()
        if not versions:
            raise VersionError(f"no model versions under {self.base} (expected folders 1/, 2/, ...)", 404)
        chosen = None
        if version is not None:
            self.get(version)
            chosen = version
        else:
            errors = []
            for candidate in reversed(versions):
                try:
                    self.get(candidate)
                except VersionError as error:
                    errors.append(str(error))
                    continue
                chosen = candidate
                break
            if chosen is None:
                raise VersionError("no version loads: " + "; ".join(errors), 409)
        with self._lock:
            self.active = chosen
        self.preload(preload)
        return chosen

    def preload(self, count: int = 3) -> None:
        """Load the ``count`` most recent versions besides the active one (failures are only recorded)."""
        for other in [v for v in reversed(self.available()) if v != self.active][:count]:
            with contextlib.suppress(VersionError):
                self.get(other)

    def adopt(self, loaded: LoadedVersion) -> None:
        """Keep a version loaded elsewhere (an upload checked before it was published): no second load."""
        with self._lock:
            self._failed.pop(loaded.version, None)
            self._loaded.setdefault(loaded.version, loaded)

    def activate(self, version: int) -> dict[str, Any]:
        """Make ``version`` the default; the current one keeps serving if it fails to load."""
        self.get(version)  # raises (404/409) before anything changes
        with self._lock:
            previous = self.active
            if previous is not None and previous != version:
                self._history.append(previous)
            self.active = version
        return {"active": version, "previous": previous}

    def rollback(self) -> dict[str, Any]:
        """Return to the version active before the last switch (else the highest lower one that loads)."""
        with self._lock:
            current = self.active
            candidates = list(reversed(self._history))
        candidates += [v for v in reversed(self.available()) if current is None or v < current]
        errors = []
        for version in candidates:
            if version == current:
                continue
            try:
                self.get(version)
            except VersionError as error:
                errors.append(str(error))
                continue
            with self._lock:
                if version in self._history:
                    self._history = self._history[: len(self._history) - 1 - self._history[::-1].index(version)]
                self.active = version
            return {"active": version, "previous": current}
        reason = f"no earlier version to roll back to from version {current}"
        raise VersionError(reason + (": " + "; ".join(errors) if errors else ""), 409)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            loaded, failed, active = dict(self._loaded), dict(self._failed), self.active
        entries = []
        for version in self.available():
            entry: dict[str, Any] = {"version": version}
            if version == active:
                entry["status"] = "active"
            elif version in loaded:
                entry["status"] = "loaded"
            elif version in failed:
                entry["status"], entry["error"] = "failed", failed[version]
            else:
                entry["status"] = "available"
            meta = loaded[version].metadata if version in loaded else _read_metadata(self.base / str(version))
            entry.update({key: meta.get(key) for key in ("model", "created_at", "dataset", "metrics")})
            entries.append(entry)
        return {"active": active, "versions": entries}


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
