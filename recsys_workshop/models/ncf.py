"""Neural Collaborative Filtering (He et al., WWW 2017): GMF, MLP and their fusion, NeuMF.

- **GMF** (generalised matrix factorisation): ``sigma(h . (p_u * q_i))``: MF whose dot product has
  learned weights.
- **MLP**: ``sigma(MLP([p'_u, q'_i]))``: a tower of ReLU layers on the concatenated embeddings,
  which can learn interactions a dot product cannot.
- **NeuMF**: both, with separate embeddings, fused by concatenating the GMF vector and the last MLP
  layer before one output unit.

Trained on implicit feedback with binary cross-entropy: each positive with ``n_negatives`` sampled
unseen items, fresh every epoch.
"""

from __future__ import annotations

import numpy as np

from recsys_workshop.models.implicit import ImplicitRecommender

KINDS = ("gmf", "mlp", "neumf")


def fuse(gmf_vector, mlp_vector):
    """NeuMF's fusion layer: concatenate the GMF vector and the MLP's last layer, then one logit."""
    from keras import layers

    fused = layers.Concatenate(name="fusion")([gmf_vector, mlp_vector])
    return layers.Dense(1, name="prediction")(fused)


def build_ncf(
    n_users: int,
    n_items: int,
    kind: str = "neumf",
    n_factors: int = 32,
    mlp_layers: tuple[int, ...] = (64, 32, 16),
    l2: float = 0.0,
    seed: int | None = None,
):
    """Keras model ``{"user", "item"} -> logit`` (apply a sigmoid for a probability)."""
    import keras
    from keras import layers, ops

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    init = keras.initializers.RandomNormal(stddev=0.01, seed=seed)
    reg = keras.regularizers.L2(l2) if l2 else None

    def embed(n, dim, name, inputs):
        return layers.Embedding(n, dim, embeddings_initializer=init, embeddings_regularizer=reg, name=name)(inputs)

    gmf_vector = mlp_vector = None
    if kind in ("gmf", "neumf"):
        gmf_vector = layers.Multiply(name="gmf")(
            [embed(n_users, n_factors, "gmf_user", user), embed(n_items, n_factors, "gmf_item", item)]
        )
    if kind in ("mlp", "neumf"):
        half = mlp_layers[0] // 2
        mlp_vector = layers.Concatenate(name="mlp_input")(
            [embed(n_users, half, "mlp_user", user), embed(n_items, half, "mlp_item", item)]
        )
        for i, width in enumerate(mlp_layers[1:], start=1):
            mlp_vector = layers.Dense(width, activation="relu", kernel_regularizer=reg, name=f"mlp_{i}")(mlp_vector)
    if kind == "neumf":
        logit = fuse(gmf_vector, mlp_vector)
    else:
        logit = layers.Dense(1, name="prediction")(gmf_vector if kind == "gmf" else mlp_vector)
    return keras.Model({"user": user, "item": item}, ops.squeeze(logit, -1), name=kind)


class NCF(ImplicitRecommender):
    """GMF, MLP or NeuMF on implicit feedback (pointwise, binary cross-entropy on logits)."""

    monitor = "val_loss"

    def __init__(
        self,
        kind: str = "neumf",
        n_factors: int = 32,
        mlp_layers: tuple[int, ...] = (64, 32, 16),
        *,
        n_negatives: int = 4,
        negatives: str = "uniform",
        l2: float = 0.0,
        positive_threshold: float | None = None,
        seed: int = 42,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.n_factors, self.mlp_layers, self.l2 = kind, n_factors, tuple(mlp_layers), l2
        self.n_negatives, self.negatives, self.positive_threshold, self.seed = (
            n_negatives,
            negatives,
            positive_threshold,
            seed,
        )
        self.name = kind

    @property
    def loss(self):
        import keras

        return keras.losses.BinaryCrossentropy(from_logits=True)

    def build(self):
        return build_ncf(
            len(self.user_ids_), len(self.item_ids_), self.kind, self.n_factors, self.mlp_layers, self.l2, self.seed
        )

    def examples(self, interactions, epoch: int = 0):
        return self.pointwise_examples(interactions, epoch)

    def _after_fit(self, network) -> None:
        self.scorer_ = network

    def _score_rows(self, user_rows):
        return self.network_scores(user_rows)

    def _score_pairs(self, user_ids, user_rows, item_cols, chunk: int = 1 << 17):
        """Known users through the network; cold users get the popularity fallback, as in ``recommend``."""
        out = self.item_counts_[item_cols].astype(np.float64)
        known = np.flatnonzero(user_rows >= 0)
        for start in range(0, len(known), chunk):
            pick = known[start : start + chunk]
            batch = {"user": user_rows[pick].astype("int32"), "item": item_cols[pick].astype("int32")}
            out[pick] = np.asarray(self.scorer_(batch, training=False)).reshape(-1)
        return out
