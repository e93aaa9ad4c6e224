"""What every recommender shares: id indexing, seen-item masks, top-k, cold-start fallback.

A subclass implements ``_fit(train)`` and ``_score_rows(user_rows)`` (a dense block of scores, one
row per known user, one column per catalogue item). The base class turns that into

- ``recommend(user_ids, k, exclude_seen=True)``: a DataFrame ``user_id, item_id, score, rank`` with
  at most ``k`` rows per user, no duplicates and, by default, no item the user interacted with in
  training. Ties are broken by item id (smallest first), so results are deterministic;
- ``score(user_ids, item_ids)``: one score per (user, item) pair.

A user unknown at training time (cold start) is scored by ``_score_cold``: by default the items'
training popularity, so every user gets recommendations. An unknown item scores ``NaN``.

Nothing is sized users x items: users are scored in blocks of at most ``BLOCK_CELLS`` scores (fewer users
per block as the catalogue grows), and the top ``k`` of a block is selected by partition, not a full sort.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_workshop.data import validate_interactions

BLOCK_CELLS = 1 << 22  # scores of one block of users: 4M cells (32 MB of float64), whatever the catalogue


def top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` highest scores of each row, best first, ties to the smaller column: the first ``k``
    columns of a stable argsort of ``-scores``, found with a partition (linear in the row length) and a sort
    of the few candidates. ``scores`` must hold no NaN (use ``-inf``); ``1 <= k <= scores.shape[1]``."""
    n_rows, n_cols = scores.shape
    if 4 * k >= n_cols:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]  # the k-th highest score of each row
    rows, cols = np.nonzero(scores >= kth[:, None])  # at least k a row (all the ties of the k-th included)
    order = np.lexsort((cols, -scores[rows, cols], rows))  # by row, then best score, then smaller column
    rows, cols = rows[order], cols[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, np.arange(n_rows))[rows]
    return cols[position < k].reshape(n_rows, k)


def _as_ids(ids: Iterable[int]) -> np.ndarray:
    """Any iterable of ids (list, array, Series, generator) as a 1-D int64 array."""
    array = np.asarray(ids if hasattr(ids, "__len__") else list(ids))
    if array.ndim == 0:
        array = array.reshape(1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


class NotFittedError(RuntimeError):
    """``recommend`` or ``score`` was called before ``fit``."""


class Recommender:
    """Base class; see the module docstring."""

    name = "recommender"

    # ------------------------------------------------------------------ fitting

    def fit(self, train: pd.DataFrame, *, items: Iterable[int] | None = None) -> Recommender:
        """Learn from ``train`` (columns ``user_id``, ``item_id`` and, for explicit models, ``rating``).

        ``items``: the catalogue to recommend from (default: the items in ``train``). Models that can
        score items without interactions (content-based) use it to reach new items.
        """
        validate_interactions(train)
        if len(train) == 0:
            raise ValueError("cannot fit on an empty training set")
        self._index(train, items)
        self._fit(train)
        return self

    def _index(self, train: pd.DataFrame, items: Iterable[int] | None) -> None:
        self.user_ids_ = np.unique(train["user_id"].to_numpy())
        catalogue = train["item_id"].to_numpy() if items is None else np.fromiter(items, dtype=np.int64)
        self.item_ids_ = np.unique(catalogue)
        self._user_index = pd.Index(self.user_ids_)
        self._item_index = pd.Index(self.item_ids_)
        rows = self._user_index.get_indexer(train["user_id"].to_numpy())
        cols = self._item_index.get_indexer(train["item_id"].to_numpy())
        if (cols < 0).any():
            raise ValueError("training interactions contain items outside the given catalogue")
        self.seen_ = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(self.user_ids_), len(self.item_ids_))
        )
        self.seen_.sum_duplicates()
        self.seen_.data[:] = 1.0
        self.item_counts_ = np.asarray(self.seen_.sum(axis=0)).ravel()

    def _fit(self, train: pd.DataFrame) -> None:
        raise NotImplementedError

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        """Scores of every catalogue item for the known users at ``user_rows``: (len(rows), n_items)."""
        raise NotImplementedError

    # Optional hook: ``_score_pairs(user_ids, user_rows, item_cols) -> scores`` scores (user, item) pairs
    # directly (rows may be -1 for cold users); ``score`` then never builds whole catalogue rows.

    def _score_cold(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores for users without training history: item popularity (override for better)."""
        return np.broadcast_to(self.item_counts_.astype(np.float64), (len(user_ids), len(self.item_ids_)))

    # ------------------------------------------------------------------ helpers

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(train) first")

    def user_rows(self, user_ids: Iterable[int]) -> np.ndarray:
        """Row of each user in the training index, -1 for users unknown at training time."""
        self._check_fitted()
        return self._user_index.get_indexer(_as_ids(user_ids))

    def item_columns(self, item_ids: Iterable[int]) -> np.ndarray:
        """Column of each item in the catalogue, -1 for unknown items."""
        self._check_fitted()
        return self._item_index.get_indexer(_as_ids(item_ids))

    def _rows_per_block(self, batch_size: int) -> int:
        """Users scored at once: ``batch_size``, fewer when a block would exceed ``BLOCK_CELLS`` scores."""
        return max(1, min(batch_size, BLOCK_CELLS // max(len(self.item_ids_), 1)))

    def _block(self, rows: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Scores for a block of users, known or not (rows == -1 are cold)."""
        scores = np.empty((len(rows), len(self.item_ids_)), dtype=np.float64)
        known = rows >= 0
        if known.any():
            scores[known] = self._score_rows(rows[known])
        if (~known).any():
            scores[~known] = self._score_cold(users[~known])
        return scores

    # ------------------------------------------------------------------ public API

    def score(self, user_ids: Iterable[int], item_ids: Iterable[int]) -> np.ndarray:
        """Score of each (user, item) pair; ``user_ids`` and ``item_ids`` have the same length."""
        self._check_fitted()
        users, items = _as_ids(user_ids), _as_ids(item_ids)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(
                f"user_ids and item_ids must be 1-D and of equal length, got {users.shape} and {items.shape}"
            )
        out = np.full(len(users), np.nan)
        cols = self.item_columns(items)
        if hasattr(self, "_score_pairs"):  # models that score a pair directly (networks) skip full rows
            valid = cols >= 0
            out[valid] = self._score_pairs(users[valid], self.user_rows(users[valid]), cols[valid])
            return out
        unique_users, inverse = np.unique(users, return_inverse=True)
        rows = self.user_rows(unique_users)
        step = self._rows_per_block(1024)
        for start in range(0, len(unique_users), step):
            block = self._block(rows[start : start + step], unique_users[start : start + step])
            pick = (inverse >= start) & (inverse < start + step) & (cols >= 0)
            out[pick] = block[inverse[pick] - start, cols[pick]]
        return out

    def recommend(
        self, user_ids: Iterable[int], k: int = 10, exclude_seen: bool = True, *, batch_size: int = 1024
    ) -> pd.DataFrame:
        """Top-``k`` items for each user: DataFrame ``user_id, item_id, score, rank`` (rank 1 = best).

        Users are returned in the order given (duplicates removed). With ``exclude_seen`` no item the
        user interacted with in training is returned; a user may get fewer than ``k`` items only when
        fewer unseen items exist. At most ``batch_size`` users are scored at once (fewer on a large
        catalogue, see ``BLOCK_CELLS``).
        """
        self._check_fitted()
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        users = pd.unique(_as_ids(user_ids))
        rows = self.user_rows(users)
        k = min(k, len(self.item_ids_))
        frames = []
        step = self._rows_per_block(batch_size)
        for start in range(0, len(users), step):
            block_rows = rows[start : start + step]
            scores = self._block(block_rows, users[start : start + step])
            if exclude_seen:
                known = np.flatnonzero(block_rows >= 0)
                seen = self.seen_[block_rows[known]].tocoo()
                scores[known[seen.row], seen.col] = -np.inf
            scores[np.isnan(scores)] = -np.inf
            top = top_k_columns(scores, k)  # ties go to the smaller item id (the catalogue is sorted)
            top_scores = np.take_along_axis(scores, top, axis=1)
            valid = np.isfinite(top_scores)
            n_users = len(block_rows)
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": np.repeat(users[start : start + n_users], k)[valid.ravel()],
                        "item_id": self.item_ids_[top][valid],
                        "score": top_scores[valid],
                        "rank": np.tile(np.arange(1, k + 1), n_users)[valid.ravel()],
                    }
                )
            )
        if not frames:
            return pd.DataFrame({"user_id": [], "item_id": [], "score": [], "rank": []}).astype(
                {"user_id": "int64", "item_id": "int64", "score": "float64", "rank": "int64"}
            )
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "item_ids_") else "not fitted"
        return f"<{type(self).__name__} {self.name!r} ({fitted})>"
