"""A sequence-aware recommender: what a user watches next, from the order of what they watched
(GRU4Rec-style: Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016;
here over each user's whole history rather than sessions).

A user is the list of their films in time order. Each film is an embedding; a GRU reads the list and,
at every position ``t``, its state scores every film of the catalogue as the next one (a full softmax:
``1,682`` films in ml-100k). Training teaches position ``t`` to predict film ``t + 1``::

    films  :  f1  f2  f3  f4  f5
    input  :  f1  f2  f3  f4          (left-padded with 0 to max_len)
    target :  f2  f3  f4  f5          (0 = padding, ignored by the loss)

To recommend, the model reads the user's last ``max_len`` films and scores the catalogue from the state
after the last one: recent films weigh more than old ones, which a bag-of-films model (MF, EASE,
Mult-DAE) cannot express. Evaluate it on a *global* time split (``data.global_time_split``): a random
or per-user split lets the order leak.

Long histories are cut into windows of ``max_len + 1`` films (the last window ends at the latest film).
Films are columns ``1..n_items`` of the network's tables; ``0`` is the padding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_workshop.models.keras_base import KerasRecommender


def sequences(interactions: pd.DataFrame, user_rows: np.ndarray, item_cols: np.ndarray, n_users: int) -> list:
    """Each user's item columns (+1, so 0 stays the padding) in time order; ties keep the file order."""
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy(), user_rows))
    rows, cols = user_rows[order], item_cols[order] + 1
    bounds = np.searchsorted(rows, np.arange(n_users + 1))
    return [cols[bounds[u] : bounds[u + 1]] for u in range(n_users)]


def windows(history: np.ndarray, max_len: int, horizon: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(input, target)`` pairs covering ``history`` from its end backwards (so the latest films are always
    in a window); none for fewer than two films. ``input``: ``max_len`` films, left-padded with 0;
    ``target``: the ``max_len + horizon - 1`` films after each input position (0 where there are none), so
    position ``t``'s targets are ``target[t : t + horizon]``."""
    out = []
    end = len(history)
    while end >= 2:
        start = max(0, end - max_len - 1)
        chunk = history[start:end]
        pad = max_len - len(chunk) + 1
        x, y = np.zeros(max_len, np.int32), np.zeros(max_len + horizon - 1, np.int32)
        x[pad:] = chunk[:-1]
        following = history[start + 1 : end + horizon - 1]
        y[pad : pad + len(following)] = following
        out.append((x, y))
        if start == 0:
            break
        end = start + 1  # the next window's last target is this window's first input
    return out


def next_films_nll(horizon: int):
    """Loss for targets from :func:`windows`: at each input position, the multinomial negative
    log-likelihood of the next ``horizon`` films (equal weights; padding 0 ignored), averaged over the
    positions that have a target. ``horizon=1`` is the classic next-film cross-entropy."""
    from keras import ops

    def loss(y_true, logits):
        n_classes = ops.shape(logits)[-1]
        max_len = ops.shape(logits)[1]
        y_true = ops.cast(y_true, "int32")
        target = sum(ops.one_hot(y_true[:, h : h + max_len], n_classes) for h in range(horizon))
        target = target[..., 1:]  # drop the padding class
        counts = ops.sum(target, axis=-1)
        nll = -ops.sum(target * ops.log_softmax(logits, axis=-1)[..., 1:], axis=-1) / ops.maximum(counts, 1.0)
        has_target = ops.cast(counts > 0, nll.dtype)
        return ops.sum(nll * has_target) / ops.maximum(ops.sum(has_target), 1.0)

    return loss


def build_gru(n_items: int, *, max_len: int, embedding_dim: int, hidden: int, dropout: float, seed: int | None):
    """Keras model ``{"films": (batch, max_len) int} -> (batch, max_len, n_items + 1)`` next-film logits."""
    import keras
    from keras import layers

    films = keras.Input(shape=(max_len,), dtype="int32", name="films")
    x = layers.Embedding(n_items + 1, embedding_dim, mask_zero=True, name="film_embedding")(films)
    if dropout:
        x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    x = layers.GRU(hidden, return_sequences=True, seed=seed, name="gru")(x)
    logits = layers.Dense(n_items + 1, name="next_film")(x)
    return keras.Model({"films": films}, logits, name="gru4rec")


class SequenceRecommender(KerasRecommender):
    """GRU next-film model; see the module docstring. ``fit`` needs a ``timestamp`` column."""

    monitor = "val_loss"

    def __init__(self, embedding_dim: int = 64, hidden: int = 128, *, max_len: int = 50, horizon: int = 1,
                 dropout: float = 0.2, seed: int = 42):  # fmt: skip
        if min(embedding_dim, hidden, max_len, horizon) < 1 or not 0 <= dropout < 1:
            raise ValueError("embedding_dim, hidden, max_len and horizon must be >= 1 and dropout in [0, 1)")
        self.embedding_dim, self.hidden, self.max_len, self.horizon, self.dropout, self.seed = (
            embedding_dim, hidden, max_len, horizon, dropout, seed)  # fmt: skip
        self.name = "gru4rec"

    @property
    def loss(self):
        return next_films_nll(self.horizon)

    def build(self):
        return build_gru(len(self.item_ids_), max_len=self.max_len, embedding_dim=self.embedding_dim,
                         hidden=self.hidden, dropout=self.dropout, seed=self.seed)  # fmt: skip

    def _histories(self, interactions: pd.DataFrame) -> list:
        if "timestamp" not in interactions:
            raise ValueError("a sequence model needs a timestamp column to order each user's films")
        rows = self.user_rows(interactions["user_id"].to_numpy())
        cols = self.item_columns(interactions["item_id"].to_numpy())
        keep = (rows >= 0) & (cols >= 0)
        return sequences(interactions[keep], rows[keep], cols[keep], len(self.user_ids_))

    def _index(self, train, items) -> None:
        super()._index(train, items)
        self.histories_ = self._histories(train)  # what the GRU reads at scoring time

    def examples(self, interactions: pd.DataFrame, epoch: int = 0):
        """Every window of every user's films in ``interactions`` (validation: the same, on the held-out
        interactions' own order)."""
        pairs = [pair for history in self._histories(interactions)
                 for pair in windows(history, self.max_len, self.horizon)]  # fmt: skip
        if not pairs:
            raise ValueError("no user has two films in order: nothing to learn a next film from")
        x, y = (np.stack(part) for part in zip(*pairs, strict=True))
        return {"films": x}, y

    def _after_fit(self, network) -> None:
        self.scorer_ = network

    def last_films(self, user_rows: np.ndarray) -> np.ndarray:
        """The network's input for scoring: each user's latest ``max_len`` films, left-padded."""
        x = np.zeros((len(user_rows), self.max_len), np.int32)
        for i, row in enumerate(user_rows):
            recent = self.histories_[row][-self.max_len :]
            if len(recent):
                x[i, self.max_len - len(recent) :] = recent
        return x

    def _score_rows(self, user_rows: np.ndarray, chunk: int = 512) -> np.ndarray:
        out = np.empty((len(user_rows), len(self.item_ids_)), dtype=np.float64)
        for start in range(0, len(user_rows), chunk):
            films = self.last_films(user_rows[start : start + chunk])
            logits = np.asarray(self.scorer_({"films": films}, training=False))
            out[start : start + chunk] = logits[:, -1, 1:]  # the state after the latest film; drop padding
        return out
