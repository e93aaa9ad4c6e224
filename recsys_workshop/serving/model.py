"""One exported version in memory (top-k and scoring in numpy) and the set of versions a server knows
(:class:`VersionManager`: the active one, loading on demand, switching, rolling back).

A version answers a known user's top-k in two stages (export format 2, see :mod:`recsys_workshop.export`):
retrieval of the version's ``candidates`` items from its HNSW index (plus as many as the request excludes),
then ranking of those candidates by the model's full score, the seen-item filter and the top-k. A version
whose retrieval is ``"exact"`` scores every item (the same answer as retrieving the whole catalogue), which
is what a small catalogue wants. A version of an older format is refused (409) with the reason.

Error messages never carry an absolute path: they may reach a client (``GET .../versions``, a refused
``:activate``), and the folder layout of the server is none of its business.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys_workshop.export import ARRAY_NAMES, FORMAT, METADATA_FILE, list_versions
from recsys_workshop.retrieval import INDEX_FILE, HnswSearch, RetrievalConfig, augment_queries

__all__ = ["LoadedVersion", "RequestError", "VersionError", "VersionManager", "scrub_paths"]

MAX_ERROR_CHARS = 300
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.@+~-]+/)+[\w.@+~-]*")


def scrub_paths(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` with every absolute path replaced by ``<path>/<last part>``, cut to ``limit`` characters."""
    text = _ABSOLUTE_PATH.sub(lambda m: "<path>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RequestError(ValueError):
    """A request the server cannot answer as asked (HTTP 400 with the reason)."""


class VersionError(RuntimeError):
    """A version that does not exist (``status`` 404) or cannot be loaded (``status`` 409)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------- one version


class LoadedVersion:
    """The arrays of one exported version, in memory, and top-k / scoring over them in numpy."""

    def __init__(
        self,
        version: int,
        path: Path,
        arrays: dict[str, np.ndarray],
        metadata: dict[str, Any],
        searcher: HnswSearch | None = None,
        candidates: int = 0,
    ):
        self.version, self.path, self.metadata = version, path, metadata
        self.searcher, self.candidates = searcher, candidates  # no searcher: every item is scored
        self.user_ids = arrays["user_ids"]
        self.item_ids = arrays["item_ids"]
        self.user_vectors = arrays["user_vectors"]
        self.item_vectors = np.ascontiguousarray(arrays["item_vectors"])
        self.user_bias = arrays["user_bias"]
        self.item_bias = arrays["item_bias"]
        self.global_bias = np.float32(arrays["global_bias"])
        self.popularity = arrays["popularity"]
        self.popular_order = np.argsort(-self.popularity, kind="stable")  # ties: smaller item id first
        self.n_items = len(self.item_ids)

    @classmethod
    def load(cls, path: str | os.PathLike[str], version: int | None = None) -> LoadedVersion:
        """Load a version folder: ``metadata.json``, the SavedModel's arrays and, for an HNSW version, its
        index. The arrays are read straight from the SavedModel's checkpoint and its signatures from
        ``saved_model.pb``, without restoring the model: one copy of the arrays in memory, not two (at a
        million users, hundreds of MB), and no function tracing."""
        path = Path(path)
        version = int(path.name) if version is None else version
        if not (path / "saved_model.pb").is_file():
            raise VersionError(f"version {version}: no saved_model.pb in its folder", 409)
        metadata = _version_metadata(path, version)
        retrieval = _retrieval_config(metadata, version)
        try:
            arrays, signatures = _read_saved_model(path)
        except Exception as error:  # any TensorFlow or protobuf failure means: this version cannot serve
            reason = scrub_paths(f"{type(error).__name__}: {error}")
            raise VersionError(f"version {version} failed to load: {reason}", 409) from None
        missing = {"serving_default", "score"} - signatures
        if missing:
            raise VersionError(f"version {version} lacks the signatures {sorted(missing)}", 409)
        n_users, n_items = len(arrays["user_ids"]), len(arrays["item_ids"])
        shapes_ok = (
            n_items > 0
            and arrays["user_vectors"].shape[0] == n_users
            and arrays["item_vectors"].shape[0] == n_items
            and arrays["user_vectors"].shape[1] == arrays["item_vectors"].shape[1]
            and arrays["user_bias"].shape == (n_users,)
            and arrays["item_bias"].shape == (n_items,)
            and arrays["popularity"].shape == (n_items,)
        )
        if not shapes_ok:
            raise VersionError(f"version {version}: inconsistent array shapes in the SavedModel", 409)
        searcher = _load_searcher(path, version, retrieval, n_items, arrays["item_vectors"].shape[1] + 1)
        return cls(version, path, arrays, metadata, searcher, retrieval.candidates)

    def tune(self, candidates: int | None = None, ef_search: int | None = None) -> LoadedVersion:
        """Override the version's own retrieval settings (``--candidates``, ``--ef-search`` of the server):
        more candidates or a wider graph search find more of the exact top-k, at a higher cost per request."""
        if self.searcher is not None:
            self.candidates = int(candidates or self.candidates)
            self.searcher.ef_search = int(ef_search or self.searcher.ef_search)
        return self

    # ------------------------------------------------------------------ lookups

    def rows(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each user id (clipped into range) and whether the model knows the user."""
        rows = np.minimum(np.searchsorted(self.user_ids, user_ids), len(self.user_ids) - 1)
        return rows, self.user_ids[rows] == user_ids

    def columns(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = np.minimum(np.searchsorted(self.item_ids, item_ids), self.n_items - 1)
        return cols, self.item_ids[cols] == item_ids

    # ------------------------------------------------------------------ answers

    def top_k(
        self, user_ids: Sequence[int] | np.ndarray, k: int, exclude: Sequence[Sequence[int] | None] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Top-``k`` item ids and scores of each user (one list each, best first; shorter only when
        ``exclude`` leaves fewer than ``k`` items), and which users are known. Ties go to the smaller
        item id, as in ``Recommender.recommend`` and ``tf.math.top_k``."""
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        k = int(min(max(k, 1), self.n_items))
        rows, known = self.rows(users)
        exclude = exclude if exclude is not None else [None] * len(users)
        items: list[np.ndarray] = [np.empty(0, np.int64)] * len(users)
        scores: list[np.ndarray] = [np.empty(0, np.float32)] * len(users)
        warm = np.flatnonzero(known)
        if len(warm) and self.searcher is not None:
            self._two_stage(rows, warm, k, exclude, items, scores)
        elif len(warm):
            block = self.user_vectors[rows[warm]] @ self.item_vectors.T
            block += self.user_bias[rows[warm]][:, None]
            block += self.item_bias[None, :]
            block += self.global_bias
            for i, row in enumerate(warm):
                if exclude[row]:
                    cols, ok = self.columns(np.asarray(exclude[row], dtype=np.int64))
                    block[i, cols[ok]] = -np.inf
            cols, values = _top_k_rows(block, k)
            for i, row in enumerate(warm):
                finite = np.isfinite(values[i])
                items[row], scores[row] = self.item_ids[cols[i][finite]], values[i][finite]
        for row in np.flatnonzero(~known):
            order = self.popular_order
            if exclude[row]:
                order = order[~np.isin(self.item_ids[order], np.asarray(exclude[row], dtype=np.int64))]
            order = order[:k]
            items[row], scores[row] = self.item_ids[order], self.popularity[order]
        return items, scores, known

    def _two_stage(self, rows, warm, k: int, exclude, items: list, scores: list) -> None:
        """Retrieval -> ranking -> seen filter -> top-k for the known users ``warm`` (fills ``items``/``scores``).

        Each user gets ``candidates`` items plus as many as it excludes, so that ``k`` unseen ones remain;
        the candidates are re-scored exactly and put in column order first, so that ties go to the smaller
        item id as in the exact path."""
        excluded = [self._excluded_columns(exclude[row]) for row in warm]
        n = min(self.n_items, max(self.candidates, k) + max(len(e) for e in excluded))
        user_rows = rows[warm]
        cols = self.searcher.search(augment_queries(self.user_vectors[user_rows]), n)
        valid = cols >= 0
        cols = np.sort(np.where(valid, cols, self.n_items), axis=1)  # invalid (-1) last, as n_items
        valid = cols < self.n_items
        safe = np.where(valid, cols, 0)
        block = np.einsum("ud,und->un", self.user_vectors[user_rows], self.item_vectors[safe])
        block += self.user_bias[user_rows][:, None] + self.item_bias[safe] + self.global_bias
        block[~valid] = -np.inf
        for i, cut in enumerate(excluded):
            if len(cut):
                block[i, np.isin(safe[i], cut)] = -np.inf
        top, values = _top_k_rows(block, min(k, n))
        for i, row in enumerate(warm):
            finite = np.isfinite(values[i])
            items[row], scores[row] = self.item_ids[safe[i, top[i][finite]]], values[i][finite]

    def _excluded_columns(self, excluded: Sequence[int] | None) -> np.ndarray:
        if not excluded:
            return np.empty(0, np.int64)
        cols, ok = self.columns(np.asarray(excluded, dtype=np.int64))
        return np.unique(cols[ok])

    def score(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """Score of each (user, item) pair, as the ``score`` signature: the item's popularity for an
        unknown user, NaN for an unknown item."""
        rows, known = self.rows(np.asarray(user_ids, dtype=np.int64))
        cols, item_known = self.columns(np.asarray(item_ids, dtype=np.int64))
        dot = np.einsum("ij,ij->i", self.user_vectors[rows], self.item_vectors[cols])
        out = dot + self.user_bias[rows] + self.item_bias[cols] + self.global_bias
        out = np.where(known, out, self.popularity[cols]).astype(np.float32)
        out[~item_known] = np.nan
        return out


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the ``k`` largest entries of each row, best first, ties to the smaller
    column: ``argpartition`` (linear) for all rows, an exact stable sort only for rows with a tie at the
    k-th place."""
    n, m = scores.shape
    if n == 1:  # one user per request, the usual case: the same steps on a 1-D row, without the 2-D indexing
        cols, values = _top_k_row(scores[0], k)
        return cols[None, :], values[None, :]
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part.sort(axis=1)  # column order, so that the stable sort below breaks ties by column
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    cols, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    if k < m:
        tied = np.flatnonzero((scores >= values[:, -1:]).sum(axis=1) > k)
        for row in tied:  # another column equals the k-th value: settle the tie exactly
            full = np.argsort(-scores[row], kind="stable")[:k]
            cols[row], values[row] = full, scores[row, full]
    return cols, values


def _top_k_row(row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_k_rows` for one row."""
    m = len(row)
    negated = -row
    if k < m:
        part = np.argpartition(negated, k - 1)[:k]
        part.sort()
    else:
        part = np.arange(m)
    order = np.argsort(negated[part], kind="stable")
    cols = part[order]
    values = row[cols]
    if k < m and np.count_nonzero(row >= values[-1]) > k:  # a tie at the k-th place: settle it exactly
        cols = np.argsort(negated, kind="stable")[:k]
        values = row[cols]
    return cols, values


def _read_saved_model(path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """The arrays a version stores (from its checkpoint) and the names of its signatures."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    signatures = {name for graph in proto.meta_graphs for name in graph.signature_def}
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    arrays = {name: reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE") for name in (*ARRAY_NAMES, "global_bias")}
    return arrays, signatures


def _version_metadata(path: Path, version: int) -> dict[str, Any]:
    """``metadata.json`` of a version, which must be of the export format this server serves."""
    try:
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise VersionError(f"version {version}: unreadable {METADATA_FILE}: {reason}", 409) from None
    if not isinstance(metadata, dict):
        raise VersionError(f"version {version}: {METADATA_FILE} is not a JSON object", 409)
    found = metadata.get("format", 1)
    if found != FORMAT:
        if isinstance(found, int) and found < FORMAT:
            raise VersionError(
                f"version {version} was exported in format {found}, before two-stage serving (retrieval -> "
                f"ranking); this server serves format {FORMAT}: export the model again with this workshop's "
                "export_model",
                409,
            )
        raise VersionError(f"version {version} has export format {found!r}; this server serves format {FORMAT}", 409)
    return metadata


def _retrieval_config(metadata: dict[str, Any], version: int) -> RetrievalConfig:
    try:
        return RetrievalConfig.from_metadata(metadata.get("retrieval"))
    except (TypeError, ValueError) as error:
        raise VersionError(f"version {version}: invalid 'retrieval' in {METADATA_FILE}: {error}", 409) from None


def _load_searcher(path: Path, version: int, config: RetrievalConfig, n_items: int, dim: int) -> HnswSearch | None:
    """The version's HNSW index (None for exact retrieval), checked against its arrays."""
    if config.index == "exact":
        return None
    if not (path / INDEX_FILE).is_file():
        raise VersionError(f"version {version}: its retrieval is {config.index!r} but it has no {INDEX_FILE}", 409)
    try:
        searcher = HnswSearch.load(path / INDEX_FILE, config)
    except Exception as error:  # faiss raises RuntimeError with its own text for a damaged file
        reason = scrub_paths(f"{type(error).__name__}: {error}")
        raise VersionError(f"version {version}: {INDEX_FILE} cannot be read: {reason}", 409) from None
    if searcher.n_items != n_items or searcher.index.d != dim:
        raise VersionError(
            f"version {version}: {INDEX_FILE} holds {searcher.n_items} items of dimension {searcher.index.d}, "
            f"the arrays {n_items} items of dimension {dim}",
            409,
        )
    return searcher


# --------------------------------------------------------------------------------------------- versions


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
