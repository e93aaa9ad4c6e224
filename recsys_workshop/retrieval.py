"""Candidate retrieval over item embeddings: the first stage of serving at catalogue scale.

A factorised model scores item ``i`` for user ``u`` as ``u . v_i + b_i`` plus terms that are the same for
every item of one user (the user's bias, the global bias), which do not change the order. Appending ``b_i``
to each item vector and ``1`` to each user vector turns that score into one inner product, so that a
maximum-inner-product search over the augmented item vectors returns the items with the highest scores::

    key_i = [v_i, b_i]      query_u = [u, 1]      query_u . key_i = u . v_i + b_i

Two searchers answer ``search(queries, n) -> columns`` (``n`` best item columns per query, best first):

- :class:`ExactSearch`: the matrix product with every item, then a partial sort. The reference, and the
  right choice for a small catalogue; its cost grows linearly with the number of items.
- :class:`HnswSearch`: a faiss ``IndexHNSWFlat`` graph (Malkov & Yashunin 2018). Approximate: it visits a few
  thousand items instead of all of them; ``m`` (links per node) and ``ef_construction`` set the graph's
  quality and build time, ``ef_search`` (candidates kept while searching) trades recall for latency.

  The graph is built with the inner product itself as its similarity (Morozov & Babenko 2018, "Non-metric
  similarity graphs for maximum inner product search"). The classic alternative, one more coordinate that
  gives every key the same norm so that Euclidean search finds the largest inner product (Bachrach et al.
  2014), was measured and rejected: on the synthetic catalogues of ``bench/serving_scale.py`` (100k items)
  it reached recall@10 0.79 at ``ef_search`` 128 where the inner-product graph reached 0.97.

numpy and faiss only (no TensorFlow): the export writes an index with :meth:`HnswSearch.save`, the model
server reads it with :meth:`HnswSearch.load`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INDEX_FILE",
    "ExactSearch",
    "HnswSearch",
    "RetrievalConfig",
    "augment_items",
    "augment_queries",
    "build_searcher",
    "recall_at_k",
]

INDEX_FILE = "retrieval.faiss"  # the index file of an exported version, beside metadata.json
INDEXES = ("hnsw", "exact")


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """How a version retrieves its candidates (stored in ``metadata.json`` under ``retrieval``).

    ``index``: ``"hnsw"`` (approximate, faiss) or ``"exact"`` (brute force). ``candidates``: how many items
    the retrieval stage hands to the ranking stage (the server adds the number of items a request excludes,
    so that ``k`` unseen items remain). ``m``, ``ef_construction``, ``ef_search``: HNSW's parameters.
    """

    index: str = "hnsw"
    candidates: int = 200
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise ValueError(f"retrieval index must be one of {INDEXES}, got {self.index!r}")
        for name in ("candidates", "m", "ef_construction", "ef_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"retrieval {name} must be a positive integer, got {value!r}")

    def to_metadata(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> RetrievalConfig:
        """The config stored in ``metadata.json``; unknown keys are an error (a newer export format)."""
        if not isinstance(entry, dict):
            raise ValueError(f"metadata 'retrieval' must be an object, got {type(entry).__name__}")
        unknown = set(entry) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"metadata 'retrieval' has unknown keys {sorted(unknown)}")
        return cls(**entry)


def augment_items(item_vectors: np.ndarray, item_bias: np.ndarray | None = None) -> np.ndarray:
    """``[v_i, b_i]`` per item (float32, C-contiguous): the keys of the inner-product search."""
    vectors = np.asarray(item_vectors, dtype=np.float32)
    bias = np.zeros(len(vectors), np.float32) if item_bias is None else np.asarray(item_bias, np.float32)
    if bias.shape != (len(vectors),):
        raise ValueError(f"item_bias has shape {bias.shape}, expected ({len(vectors)},)")
    return np.ascontiguousarray(np.hstack([vectors, bias[:, None]]))


def augment_queries(user_vectors: np.ndarray) -> np.ndarray:
    """``[u, 1]`` per user (float32, C-contiguous): the queries that go with :func:`augment_items`."""
    vectors = np.atleast_2d(np.asarray(user_vectors, dtype=np.float32))
    return np.ascontiguousarray(np.hstack([vectors, np.ones((len(vectors), 1), np.float32)]))


class ExactSearch:
    """Brute-force maximum inner product: every item is scored."""

    def __init__(self, keys: np.ndarray):
        self.keys_t = np.ascontiguousarray(np.asarray(keys, dtype=np.float32).T)
        self.n_items = self.keys_t.shape[1]

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """The ``n`` best columns of each query, best first (``[len(queries), min(n, n_items)]``)."""
        scores = np.asarray(queries, dtype=np.float32) @ self.keys_t
        n = min(int(n), self.n_items)
        if n < self.n_items:
            best = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        else:
            best = np.broadcast_to(np.arange(self.n_items), scores.shape).copy()
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
        return np.take_along_axis(best, order, axis=1)


class HnswSearch:
    """Approximate maximum inner product with a faiss HNSW graph."""

    def __init__(self, index: Any, ef_search: int):
        self.index, self.ef_search = index, int(ef_search)
        self.n_items = int(index.ntotal)

    @classmethod
    def build(cls, keys: np.ndarray, config: RetrievalConfig) -> HnswSearch:
        """Build the graph over ``keys`` (faiss uses every core for the build)."""
        import faiss

        keys = np.ascontiguousarray(keys, dtype=np.float32)
        index = faiss.IndexHNSWFlat(keys.shape[1], config.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.add(keys)
        return cls(index, config.ef_search)

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: RetrievalConfig) -> HnswSearch:
        import faiss

        return cls(faiss.read_index(str(path)), config.ef_search)

    def save(self, path: str | os.PathLike[str]) -> Path:
        import faiss

        faiss.write_index(self.index, str(path))
        return Path(path)

    def search(self, queries: np.ndarray, n: int, ef_search: int | None = None) -> np.ndarray:
        """The ``n`` best columns found for each query, best first. ``ef_search`` (default the config's) is
        raised to ``n`` when smaller, so that the graph search keeps at least ``n`` candidates; a query for
        which the graph yields fewer than ``n`` items gets its row padded with ``-1``."""
        import faiss

        n = min(int(n), self.n_items)
        params = faiss.SearchParametersHNSW(efSearch=max(int(ef_search or self.ef_search), n))
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        _, cols = self.index.search(queries, n, params=params)
        return cols


def build_searcher(keys: np.ndarray, config: RetrievalConfig) -> ExactSearch | HnswSearch:
    """The searcher ``config`` asks for, over ``keys`` (see :func:`augment_items`)."""
    return HnswSearch.build(keys, config) if config.index == "hnsw" else ExactSearch(keys)


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's exact top-``k`` that the approximate top-``k`` also holds."""
    approximate, exact = np.asarray(approximate)[:, :k], np.asarray(exact)[:, :k]
    if approximate.shape[0] != exact.shape[0]:
        raise ValueError(f"{approximate.shape[0]} approximate rows against {exact.shape[0]} exact rows")
    hits = [len(np.intersect1d(a[a >= 0], e)) / len(e) for a, e in zip(approximate, exact, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")
