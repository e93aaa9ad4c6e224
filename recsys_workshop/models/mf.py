"""Matrix factorisation in Keras 3: ``r(u, i) = mu + b_u + b_i + p_u . q_i``.

Users and items are embedded in the same ``n_factors``-dimensional space; a rating is predicted by
the dot product of the two vectors, plus (optionally) a global mean and per-user / per-item biases.
L2 regularisation keeps the factors small. Trained on explicit ratings with the mean squared error
(so the validation loss is the squared RMSE) by :func:`recsys_workshop.train.fit`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_workshop.models.keras_base import KerasRecommender


def build_mf(
    n_users: int,
    n_items: int,
    n_factors: int = 32,
    *,
    use_bias: bool = True,
    l2: float = 1e-4,
    global_mean: float = 0.0,
    seed: int | None = None,
):
    """The Keras model: inputs ``user`` and ``item`` (integer rows), output the predicted rating.

    ``l2`` penalises the factors (and biases) *of the pairs in each batch*,
    ``l2 * mean(|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)``, as in the classic SGD formulation of matrix
    factorisation (Koren, Bell & Volinsky, 2009): the strength does not depend on the batch count.
    """
    import keras
    from keras import layers, ops

    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    p = layers.Embedding(n_users, n_factors, embeddings_initializer=init, name="user_factors")(user)
    q = layers.Embedding(n_items, n_factors, embeddings_initializer=init, name="item_factors")(item)
    penalised = [p, q]
    rating = ops.sum(p * q, axis=-1)
    if use_bias:
        b_u = layers.Embedding(n_users, 1, embeddings_initializer="zeros", name="user_bias")(user)
        b_i = layers.Embedding(n_items, 1, embeddings_initializer="zeros", name="item_bias")(item)
        penalised += [b_u, b_i]
        rating = rating + ops.squeeze(b_u, -1) + ops.squeeze(b_i, -1) + global_mean
    if l2:
        rating = PairL2(l2, name="pair_l2")([rating, *penalised])
    return keras.Model({"user": user, "item": item}, rating, name="matrix_factorization")


def PairL2(l2: float, name: str | None = None):  # noqa: N802 - a layer factory, used like a class
    """A layer that passes its first input through and adds ``l2 * mean(sum of squares)`` of the others
    to the model's loss (defined lazily so that importing this module does not import Keras)."""
    import keras
    from keras import ops

    class _PairL2(keras.layers.Layer):
        def __init__(self, l2, **kwargs):
            super().__init__(**kwargs)
            self.l2 = l2

        def call(self, inputs):
            output, *tensors = inputs
            penalty = sum(ops.sum(ops.square(t), axis=-1) for t in tensors)
            self.add_loss(self.l2 * ops.mean(penalty))
            return output

        def get_config(self):
            return {**super().get_config(), "l2": self.l2}

    return _PairL2(l2, name=name)


class MatrixFactorization(KerasRecommender):
    """Explicit-feedback matrix factorisation (with biases unless ``use_bias=False``)."""

    loss = "mse"
    monitor = "val_rmse"

    def __init__(self, n_factors: int = 32, *, use_bias: bool = True, l2: float = 1e-4, seed: int = 42):
        self.n_factors, self.use_bias, self.l2, self.seed = n_factors, use_bias, l2, seed
        self.name = "mf+bias" if use_bias else "mf"

    def build(self):
        return build_mf(
            len(self.user_ids_),
            len(self.item_ids_),
            self.n_factors,
            use_bias=self.use_bias,
            l2=self.l2,
            global_mean=self.global_mean_ if self.use_bias else 0.0,
            seed=self.seed,
        )

    def _index(self, train: pd.DataFrame, items) -> None:
        super()._index(train, items)
        self.global_mean_ = float(train["rating"].mean()) if "rating" in train else 0.0

    def examples(self, interactions: pd.DataFrame, epoch: int = 0):
        x = {
            "user": self.user_rows(interactions["user_id"].to_numpy()).astype("int32"),
            "item": self.item_columns(interactions["item_id"].to_numpy()).astype("int32"),
        }
        if (x["user"] < 0).any() or (x["item"] < 0).any():
            raise ValueError("examples contain users or items unknown to the model's index")
        return x, interactions["rating"].to_numpy(dtype="float32")

    def _after_fit(self, network) -> None:
        self.user_factors_ = network.get_layer("user_factors").get_weights()[0]
        self.item_factors_ = network.get_layer("item_factors").get_weights()[0]
        if self.use_bias:
            self.user_bias_ = network.get_layer("user_bias").get_weights()[0][:, 0]
            self.item_bias_ = network.get_layer("item_bias").get_weights()[0][:, 0]
        else:
            self.user_bias_ = np.zeros(len(self.user_ids_), dtype=np.float32)
            self.item_bias_ = np.zeros(len(self.item_ids_), dtype=np.float32)
            self.global_mean_ = 0.0

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return (
            self.user_factors_[user_rows] @ self.item_factors_.T
            + self.user_bias_[user_rows][:, None]
            + self.item_bias_[None, :]
            + self.global_mean_
        ).astype(np.float64)

    def score(self, user_ids, item_ids) -> np.ndarray:
        """Predicted ratings; pairs with an unknown user or item fall back to the known biases."""
        scores = super().score(user_ids, item_ids)
        missing = np.isnan(scores)
        if missing.any():
            rows = self.user_rows(np.asarray(user_ids)[missing])
            scores[missing] = self.global_mean_ + np.where(rows >= 0, self.user_bias_[rows], 0.0)
        return scores
