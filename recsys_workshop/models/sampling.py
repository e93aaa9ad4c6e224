"""Negative sampling for implicit feedback: which items does a user *not* like?

With implicit data we only observe positives. Training a ranker needs negatives, so we sample items
the user has not interacted with:

- ``uniform``: every unseen item equally likely (the NCF paper);
- ``popularity``: proportional to ``count(i) ** alpha`` (word2vec's 0.75 by default): popular items
  the user skipped are more informative negatives than obscure ones they never heard of.

Sampling is vectorised rejection sampling: draw candidates for everyone at once, redraw only the
ones that hit a seen item. Pure numpy; deterministic given the ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

STRATEGIES = ("uniform", "popularity")


class NegativeSampler:
    """Samples item columns a user has not interacted with, from a users x items ``seen`` matrix."""

    def __init__(self, seen: sp.csr_matrix, strategy: str = "uniform", alpha: float = 0.75):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.seen = sp.csr_matrix(seen, dtype=bool)
        self.n_items = self.seen.shape[1]
        self.strategy = strategy
        if strategy == "popularity":
            counts = np.asarray(self.seen.sum(axis=0)).ravel().astype(float)
            weights = (counts + 1.0) ** alpha
            self._cdf = np.cumsum(weights / weights.sum())
        # a user who has seen every item cannot get a negative
        full = np.flatnonzero(np.diff(self.seen.indptr) >= self.n_items)
        self._saturated = set(full.tolist())

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.strategy == "uniform":
            return rng.integers(0, self.n_items, size=n)
        return np.minimum(np.searchsorted(self._cdf, rng.random(n)), self.n_items - 1)

    def _is_seen(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # vectorised membership test in CSR: position of col within each row's sorted indices
        starts, ends = self.seen.indptr[rows], self.seen.indptr[rows + 1]
        indices = self.seen.indices
        result = np.zeros(len(rows), dtype=bool)
        # binary search per element, vectorised over the concatenated index array
        lo, hi = starts.copy(), ends.copy()
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            mid_val = np.where(active, indices[np.minimum(mid, len(indices) - 1)], 0)
            less = active & (mid_val < cols)
            lo = np.where(less, mid + 1, lo)
            hi = np.where(active & ~less, mid, hi)
        found = lo < ends
        result[found] = indices[lo[found]] == cols[found]
        return result

    def sample(self, user_rows: np.ndarray, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
        """One unseen item column for each entry of ``user_rows``."""
        user_rows = np.asarray(user_rows)
        if self._saturated and np.isin(user_rows, list(self._saturated)).any():
            raise ValueError("some users have interacted with every item: no negative exists for them")
        items = self._draw(len(user_rows), rng)
        todo = np.flatnonzero(self._is_seen(user_rows, items))
        for _ in range(max_rounds):
            if len(todo) == 0:
                return items
            items[todo] = self._draw(len(todo), rng)
            todo = todo[self._is_seen(user_rows[todo], items[todo])]
        raise RuntimeError("negative sampling did not converge: users have seen almost every item")
