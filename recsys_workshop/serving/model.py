"""One exported version in memory: :class:`LoadedVersion`, its top-k and scoring in numpy (the set of versions
a server knows is :class:`recsys_workshop.serving.versions.VersionManager`).

A version answers a known user's top-k in two stages (export format 2, see :mod:`recsys_workshop.export`):
retrieval of the version's ``candidates`` items from its HNSW index (plus as many as the request excludes),
then ranking of those candidates by the model's full score, the seen-item filter and the top-k. A version
whose retrieval is ``"exact"`` scores every item (the same answer as retrieving the whole catalogue), which
is what a small catalogue wants. A version of an older format is refused (409) with the reason.

Error messages never carry an absolute path: they may reach a client (``GET .../versions``, a refused
``:activate``), and the folder layout of the server is none of its business.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys_workshop.export import ARRAY_NAMES, FORMAT, METADATA_FILE
from recsys_workshop.ranking import MLPHead
from recsys_workshop.retrieval import INDEX_FILE, HnswSearch, RetrievalConfig, augment_queries

__all__ = ["LoadedVersion", "RequestError", "VersionError", "scrub_paths"]

MAX_ERROR_CHARS = 300
HEAD_BLOCK_VALUES = 1 << 23  # the exact path runs the ranking head over users x items x width in blocks of this
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
        head: MLPHead | None = None,
    ):
        self.version, self.path, self.metadata = version, path, metadata
        self.searcher, self.candidates = searcher, candidates  # no searcher: every item is scored
        self.head = head  # ranking "mlp-head": its term is added to the dot product of every candidate
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
        head_layers = _ranking_layers(metadata, version)
        try:
            arrays, signatures = _read_saved_model(path, head_layers)
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
        head = None
        if head_layers is not None:
            try:
                head = MLPHead.from_arrays(arrays, head_layers)
            except ValueError as error:
                raise VersionError(f"version {version}: its ranking head is inconsistent: {error}", 409) from None
            if len(head.user_first) != n_users or len(head.item_first) != n_items:
                raise VersionError(f"version {version}: its ranking head does not cover its users and items", 409)
        searcher = _load_searcher(path, version, retrieval, n_items, arrays["item_vectors"].shape[1] + 1)
        return cls(version, path, arrays, metadata, searcher, retrieval.candidates, head)

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
            if self.head is not None:
                self._add_head_to_every_item(rows[warm], block)
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

        First ``candidates`` items per user; a user for whom fewer than ``k`` unseen ones remain among them
        (rare: most of its best items already seen) is searched again with ``candidates`` plus as many
        items as it excludes, so that ``k`` unseen ones remain. The candidates are re-scored exactly and put
        in column order first, so that ties go to the smaller item id as in the exact path."""
        excluded = [self._excluded_columns(exclude[row]) for row in warm]
        first = min(self.n_items, max(self.candidates, k))
        found = self._ranked(rows[warm], excluded, first, k)
        short = [i for i, (cols, _) in enumerate(found) if len(cols) < min(k, self.n_items - len(excluded[i]))]
        if short:
            wider = min(self.n_items, first + max(len(excluded[i]) for i in short))
            again = self._ranked(rows[warm[short]], [excluded[i] for i in short], wider, k)
            for i, answer in zip(short, again, strict=True):
                found[i] = answer
        for row, (cols, values) in zip(warm, found, strict=True):
            items[row], scores[row] = self.item_ids[cols], values

    def _ranked(self, user_rows, excluded: list[np.ndarray], n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Columns and scores of each user's best ``k`` unseen items among its ``n`` retrieved candidates."""
        cols = self.searcher.search(augment_queries(self.user_vectors[user_rows]), n)
        cols = np.sort(np.where(cols >= 0, cols, self.n_items), axis=1)  # invalid (-1) last, as n_items
        valid = cols < self.n_items
        safe = np.where(valid, cols, 0)
        block = np.einsum("ud,und->un", self.user_vectors[user_rows], self.item_vectors[safe])
        block += self.user_bias[user_rows][:, None] + self.item_bias[safe] + self.global_bias
        if self.head is not None:  # the ranking stage's heavier term, for the candidates only
            block += self.head.scores(user_rows, safe)
        block[~valid] = -np.inf
        for i, cut in enumerate(excluded):
            if len(cut):
                block[i, np.isin(safe[i], cut)] = -np.inf
        top, values = _top_k_rows(block, min(k, n))
        out = []
        for i in range(len(user_rows)):
            finite = np.isfinite(values[i])
            out.append((safe[i, top[i][finite]], values[i][finite]))
        return out

    def _add_head_to_every_item(self, user_rows: np.ndarray, block: np.ndarray) -> None:
        """``block`` (users x items) plus the ranking head's term, users in blocks of bounded size."""
        width = self.head.user_first.shape[1]
        step = max(1, HEAD_BLOCK_VALUES // (self.n_items * width))
        every = np.arange(self.n_items)
        for start in range(0, len(user_rows), step):
            rows = user_rows[start : start + step]
            block[start : start + step] += self.head.scores(rows, np.broadcast_to(every, (len(rows), self.n_items)))

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
        if self.head is not None:
            out = out + self.head.pair_scores(rows, cols)
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


def _read_saved_model(path: Path, head_layers: int | None = None) -> tuple[dict[str, np.ndarray], set[str]]:
    """The arrays a version stores (from its checkpoint; a ranking head's too) and the names of its signatures."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    signatures = {name for graph in proto.meta_graphs for name in graph.signature_def}
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    names = [*ARRAY_NAMES, "global_bias", *(MLPHead.array_names(head_layers) if head_layers is not None else [])]
    arrays = {name: reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE") for name in names}
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


def _ranking_layers(metadata: dict[str, Any], version: int) -> int | None:
    """None for ``ranking: "dot"``; for ``"mlp-head"``, the head's layers after its first."""
    ranking = metadata.get("ranking", "dot")
    if ranking == "dot":
        return None
    layers = metadata.get("ranking_layers")
    if ranking != "mlp-head" or isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
        raise VersionError(f"version {version}: ranking {ranking!r} with ranking_layers {layers!r} in "
                           f"{METADATA_FILE}: this server ranks with 'dot' or 'mlp-head'", 409)  # fmt: skip
    return layers


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
