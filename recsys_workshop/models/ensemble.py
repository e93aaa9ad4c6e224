"""Blend the scores of several fitted recommenders into one ranking.

Two models that are wrong in different places make a better one together: a deep autoencoder
(Mult-DAE, which compresses a user into 200 numbers) and a linear item-item model (EASE, which
keeps every item-item weight) miss different films. Their raw scores are on unrelated scales
(logits against regression outputs), so each member's scores are first standardised **per user**
over the whole catalogue (mean 0, standard deviation 1), then summed with the given weights::

    score(u, i) = sum_m w_m * (s_m(u, i) - mean_i s_m(u, .)) / std_i s_m(u, .)

For **rating predictions** the scales already agree (stars), so ``standardise=False`` takes the
weighted *mean* of the raw scores instead: averaging the predictions of several networks trained
from different random seeds (a "deep ensemble", Lakshminarayanan et al., 2017) cancels part of
each network's own noise, and is one of the most reliable ways to lower a test RMSE.

The members must be fitted on the same training interactions (the blend checks that each knows
every user and item of the blend's training set); the weights are hyper-parameters, chosen on a
validation split like any other. A user unknown at training time is scored by each member its own
way (the popularity fallback of most recommenders, metadata for a hybrid model), then combined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys_workshop.models.base import Recommender


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1 (a constant row becomes all zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = scores.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


class Blend(Recommender):
    """A weighted sum of per-user standardised scores of fitted ``members`` or, with
    ``standardise=False``, the weighted mean of their raw scores (see the module docstring).

    ``fit(train)`` does not train the members: it checks that they were fitted on ``train``'s users
    and items, and indexes ``train`` for ``recommend(exclude_seen=True)``.
    """

    def __init__(
        self,
        members: Sequence[Recommender],
        weights: Sequence[float],
        name: str | None = None,
        *,
        standardise: bool = True,
    ):
        members, weights = list(members), [float(w) for w in weights]
        if len(members) < 2 or len(members) != len(weights):
            raise ValueError(
                f"a blend needs two or more members and one weight each, got {len(members)} and {len(weights)}"
            )
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) == 0:
            raise ValueError(f"weights must be finite, >= 0 and not all zero, got {weights}")
        for member in members:
            member._check_fitted()
        self.members, self.weights, self.standardise = members, weights, standardise
        self.name = name or "+".join(getattr(m, "name", type(m).__name__) for m in members)

    def _fit(self, train: pd.DataFrame) -> None:
        self._positions = []  # each member's rows for the blend's users, columns for its items
        for member in self.members:
            rows, cols = member.user_rows(self.user_ids_), member.item_columns(self.item_ids_)
            if (rows < 0).any() or (cols < 0).any():
                raise ValueError(
                    f"member {member!r} was not fitted on every user and item of this training set: "
                    "fit every member on the same interactions as the blend"
                )
            self._positions.append((rows, cols))

    def _combine(self, member_scores) -> np.ndarray:
        """The weighted sum of standardised rows, or the weighted mean of raw ones."""
        total = None
        for weight, scores in member_scores:
            part = weight * (standardise_rows(scores) if self.standardise else scores)
            total = part if total is None else total + part
        return total if self.standardise else total / sum(self.weights)

    def _members(self):
        """``(member, weight, rows, cols)`` of every member with a weight: ``rows`` / ``cols`` are the
        member's positions of the blend's users / items."""
        members = zip(self.members, self.weights, self._positions, strict=True)
        return [(member, weight, rows, cols) for member, weight, (rows, cols) in members if weight]

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return self._combine(
            (weight, member._score_rows(rows[user_rows])[:, cols]) for member, weight, rows, cols in self._members()
        )

    def _score_cold(self, user_ids: np.ndarray) -> np.ndarray:
        """Users unknown to the blend: each member scores them its own way (a member may even know them;
        a hybrid model scores a stranger from metadata), then the scores are combined as usual."""
        return self._combine(
            (weight, member._block(member.user_rows(user_ids), user_ids)[:, cols])
            for member, weight, _, cols in self._members()
        )

    def score(self, user_ids, item_ids) -> np.ndarray:
        """Per pair. Without standardisation, the weighted mean of the members' own ``score`` (each
        member scores unknown users and items its own way, e.g. a hybrid model from metadata);
        standardised scores need whole catalogue rows, computed by the base class."""
        if self.standardise:
            return super().score(user_ids, item_ids)
        self._check_fitted()
        pairs = zip(self.members, self.weights, strict=True)
        return sum(w * member.score(user_ids, item_ids) for member, w in pairs if w) / sum(self.weights)
