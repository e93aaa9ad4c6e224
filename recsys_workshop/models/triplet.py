"""A triplet network for implicit feedback: (user, liked item, other item).

The user and item embeddings are trained so that a user is closer to an item they liked than to a
sampled item they did not interact with:

- **margin** (hinge) loss: ``max(0, margin - s(u, i+) + s(u, i-))`` with ``s`` the cosine similarity
  (as in Olivier Grisel's triplet-loss lab and Maciej Kula's Keras recommender);
- **BPR** loss (Rendle et al., 2009): ``-log sigma(s(u, i+) - s(u, i-))`` with ``s`` the dot product:
  maximise the probability that the liked item is ranked above the other.

One item embedding table serves both the positive and the negative item (a "siamese" item tower).
Negatives are sampled uniformly or by popularity (:mod:`.sampling`), fresh every epoch.
"""

from __future__ import annotations

import numpy as np

from recsys_workshop.models.implicit import ImplicitRecommender

LOSSES = ("margin", "bpr")


def margin_loss(positive_similarity, negative_similarity, margin: float = 1.0):
    """Per-triplet hinge loss ``max(0, margin - s+ + s-)``."""
    from keras import ops

    return ops.maximum(margin - positive_similarity + negative_similarity, 0.0)


def bpr_loss(positive_score, negative_score):
    """Per-triplet BPR loss ``-log sigma(s+ - s-)``, computed stably as ``softplus(s- - s+)``."""
    from keras import ops

    return ops.softplus(negative_score - positive_score)


def build_triplet(
    n_users: int,
    n_items: int,
    n_factors: int = 64,
    loss: str = "margin",
    margin: float = 1.0,
    l2: float = 1e-6,
    seed: int | None = None,
):
    """Keras model ``{"user", "positive", "negative"} -> per-triplet loss`` (train with an identity loss)."""
    import keras
    from keras import layers, ops

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    user = keras.Input(shape=(), dtype="int32", name="user")
    positive = keras.Input(shape=(), dtype="int32", name="positive")
    negative = keras.Input(shape=(), dtype="int32", name="negative")
    reg = keras.regularizers.L2(l2) if l2 else None
    init = keras.initializers.RandomNormal(stddev=0.1, seed=seed)
    user_embedding = layers.Embedding(
        n_users, n_factors, embeddings_initializer=init, embeddings_regularizer=reg, name="user_embedding"
    )
    item_embedding = layers.Embedding(
        n_items, n_factors, embeddings_initializer=init, embeddings_regularizer=reg, name="item_embedding"
    )
    u, pos, neg = user_embedding(user), item_embedding(positive), item_embedding(negative)
    if loss == "margin":
        similarity = layers.Dot(axes=1, normalize=True)
        per_triplet = margin_loss(similarity([u, pos]), similarity([u, neg]), margin)
    else:
        per_triplet = bpr_loss(ops.sum(u * pos, axis=-1, keepdims=True), ops.sum(u * neg, axis=-1, keepdims=True))
    return keras.Model(
        {"user": user, "positive": positive, "negative": negative}, ops.squeeze(per_triplet, -1), name=f"triplet_{loss}"
    )


def identity_loss(y_true, y_pred):
    """The network already outputs the loss of each triplet: average it."""
    from keras import ops

    return ops.mean(y_pred)


class TripletModel(ImplicitRecommender):
    """User and item embeddings trained with a triplet (margin) or BPR loss; scores by cosine (margin)
    or dot product (BPR) of the embeddings."""

    loss = staticmethod(identity_loss)

    def __init__(
        self,
        n_factors: int = 64,
        *,
        loss: str = "margin",
        margin: float = 1.0,
        negatives: str = "uniform",
        l2: float = 1e-6,
        positive_threshold: float | None = None,
        seed: int = 42,
    ):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.n_factors, self.triplet_loss, self.margin, self.l2 = n_factors, loss, margin, l2
        self.negatives, self.positive_threshold, self.seed = negatives, positive_threshold, seed
        self.n_negatives = 1
        self.name = f"triplet-{loss}" if negatives == "uniform" else f"triplet-{loss}-{negatives}"

    def build(self):
        return build_triplet(
            len(self.user_ids_), len(self.item_ids_), self.n_factors, self.triplet_loss, self.margin, self.l2, self.seed
        )

    def examples(self, interactions, epoch: int = 0):
        rows, cols = self._rows_cols(interactions)
        negatives = self._sampler().sample(rows, self._rng(epoch)).astype("int32")
        return {"user": rows, "positive": cols, "negative": negatives}, np.zeros(len(rows), dtype="float32")

    def _after_fit(self, network) -> None:
        self.user_factors_ = network.get_layer("user_embedding").get_weights()[0]
        self.item_factors_ = network.get_layer("item_embedding").get_weights()[0]
        if self.triplet_loss == "margin":  # cosine similarity: compare directions only
            self.user_factors_ = _unit(self.user_factors_)
            self.item_factors_ = _unit(self.item_factors_)

    def _score_rows(self, user_rows):
        return (self.user_factors_[user_rows] @ self.item_factors_.T).astype(np.float64)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
