"""What the implicit-feedback Keras models share: positives, sampled negatives, network scoring.

Every interaction passed to ``fit`` is a positive (with ``positive_threshold``, only those rated at
least that much; lower ratings still count as *seen*: they are never sampled as negatives and never
recommended). Negatives are drawn anew every epoch by :class:`~.sampling.NegativeSampler`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_workshop.models.keras_base import KerasRecommender
from recsys_workshop.models.sampling import NegativeSampler


class ImplicitRecommender(KerasRecommender):
    resample_each_epoch = True
    positive_threshold: float | None = None
    n_negatives: int = 4
    negatives: str = "uniform"
    seed: int = 42

    def positives(self, interactions: pd.DataFrame) -> pd.DataFrame:
        if self.positive_threshold is not None and "rating" in interactions:
            return interactions[interactions["rating"] >= self.positive_threshold]
        return interactions

    def _rows_cols(self, interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        positives = self.positives(interactions)
        rows = self.user_rows(positives["user_id"].to_numpy())
        cols = self.item_columns(positives["item_id"].to_numpy())
        keep = (rows >= 0) & (cols >= 0)
        return rows[keep].astype("int32"), cols[keep].astype("int32")

    def _rng(self, epoch: int) -> np.random.Generator:
        """Epoch ``e`` draws from ``(seed, e)``; the validation set (epoch -1) always from the same stream."""
        return np.random.default_rng([self.seed, epoch + 1])

    def _sampler(self) -> NegativeSampler:
        if getattr(self, "_sampler_cache", None) is None or self._sampler_cache[0] is not self.seen_:
            self._sampler_cache = (self.seen_, NegativeSampler(self.seen_, self.negatives))
        return self._sampler_cache[1]

    def pointwise_examples(self, interactions: pd.DataFrame, epoch: int):
        """(user, item, label): each positive followed by ``n_negatives`` sampled unseen items."""
        rows, cols = self._rows_cols(interactions)
        neg_users = np.repeat(rows, self.n_negatives)
        neg_items = self._sampler().sample(neg_users, self._rng(epoch)).astype("int32")
        x = {"user": np.concatenate([rows, neg_users]), "item": np.concatenate([cols, neg_items])}
        y = np.concatenate([np.ones(len(rows)), np.zeros(len(neg_users))]).astype("float32")
        return x, y

    def network_scores(self, user_rows: np.ndarray, item_cols: np.ndarray | None = None, chunk: int = 1 << 17):
        """Scores of the network for every (user row, item column) pair of the grid, in chunks."""
        item_cols = np.arange(len(self.item_ids_)) if item_cols is None else item_cols
        users = np.repeat(np.asarray(user_rows, dtype="int32"), len(item_cols))
        items = np.tile(np.asarray(item_cols, dtype="int32"), len(user_rows))
        out = np.empty(len(users), dtype=np.float64)
        for start in range(0, len(users), chunk):
            batch = {"user": users[start : start + chunk], "item": items[start : start + chunk]}
            out[start : start + chunk] = np.asarray(self.scorer_(batch, training=False)).reshape(-1)
        return out.reshape(len(user_rows), len(item_cols))
