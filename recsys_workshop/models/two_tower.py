"""Two-tower retrieval trained with an in-batch softmax, and top-k over the whole catalogue.

A *user tower* and an *item tower* map each side to a vector in the same space; the score is their
(temperature-scaled) cosine similarity. Training treats every other item of the batch as a negative
for a user (the in-batch softmax of Yi et al., RecSys 2019), with keras-rs layers for the two
corrections it needs:

- ``SamplingProbabilityCorrection``: popular items appear as in-batch negatives more often than
  rare ones; subtracting ``log p(item)`` from the logits removes that bias (logQ correction);
- ``RemoveAccidentalHits``: a batch can hold the user's positive twice; the duplicate must not count
  as a negative.

Because the towers are independent, item vectors can be computed once and indexed: exact top-k is a
matrix product (brute force); an approximate index (faiss HNSW) answers faster on large catalogues.
:meth:`TwoTower.approximate_recall` reports how much of the exact top-k the index finds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_workshop.models.base import top_k_columns
from recsys_workshop.models.implicit import ImplicitRecommender


def build_two_tower(
    n_users: int,
    n_items: int,
    n_factors: int = 64,
    n_genres: int = 0,
    temperature: float = 0.1,
    seed: int | None = None,
):
    """Returns (training model, user tower, item tower). The training model maps a batch of
    ``{"user", "item", "probability"[, "genres"]}`` to ``(batch, batch)`` corrected logits."""
    import keras
    from keras import layers, ops

    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    user = keras.Input(shape=(), dtype="int32", name="user")
    u = layers.Embedding(n_users, n_factors, embeddings_initializer=init, name="user_embedding")(user)
    u = layers.Dense(n_factors, name="user_projection")(u)
    user_vector = layers.UnitNormalization(name="user_vector")(u)
    user_tower = keras.Model(user, user_vector, name="user_tower")

    item = keras.Input(shape=(), dtype="int32", name="item")
    item_inputs = {"item": item}
    v = layers.Embedding(n_items, n_factors, embeddings_initializer=init, name="item_embedding")(item)
    if n_genres:
        genres = keras.Input(shape=(n_genres,), dtype="float32", name="genres")
        item_inputs["genres"] = genres
        v = layers.Concatenate()([v, layers.Dense(16, activation="relu", name="genre_dense")(genres)])
    v = layers.Dense(n_factors, name="item_projection")(v)
    item_vector = layers.UnitNormalization(name="item_vector")(v)
    item_tower = keras.Model(item_inputs, item_vector, name="item_tower")

    probability = keras.Input(shape=(), dtype="float32", name="probability")
    inputs = {"user": user, **item_inputs, "probability": probability}
    users, candidates = user_tower(user), item_tower(item_inputs)
    logits = ops.matmul(users, ops.transpose(candidates)) / temperature
    logits = _InBatchCorrections()(logits, probability, item)
    return keras.Model(inputs, logits, name="two_tower"), user_tower, item_tower


def _InBatchCorrections():  # noqa: N802 - a layer factory (keeps Keras out of module import)
    """logQ correction, then removal of accidental hits, on a batch's (batch, batch) logits."""
    import keras
    import keras_rs
    from keras import ops

    class InBatchCorrections(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.correction = keras_rs.layers.SamplingProbabilityCorrection()
            self.remove_hits = keras_rs.layers.RemoveAccidentalHits()

        def call(self, logits, probability, item):
            logits = self.correction(logits, probability)
            labels = ops.eye(ops.shape(logits)[0], dtype=logits.dtype)
            return self.remove_hits(logits, labels, item)

        def compute_output_spec(self, logits, probability, item):
            return keras.KerasTensor(logits.shape, dtype=logits.dtype)

    return InBatchCorrections(name="in_batch_corrections")


class TwoTower(ImplicitRecommender):
    """Two-tower retrieval model; pass ``items`` (with ``genres``) to feed genres to the item tower."""

    resample_each_epoch = False
    in_batch_targets = True

    def __init__(
        self,
        n_factors: int = 64,
        *,
        items: pd.DataFrame | None = None,
        temperature: float = 0.1,
        positive_threshold: float | None = None,
        seed: int = 42,
    ):
        self.n_factors, self.items, self.temperature = n_factors, items, temperature
        self.positive_threshold, self.seed = positive_threshold, seed
        self.name = "two-tower"

    @property
    def loss(self):
        import keras

        return keras.losses.CategoricalCrossentropy(from_logits=True)

    def _index(self, train, items) -> None:
        super()._index(train, items)
        self._training_examples = None
        if self.items is not None:
            from recsys_workshop.data import genre_matrix

            self.genres_ = genre_matrix(self.items).reindex(self.item_ids_, fill_value=0).to_numpy("float32")
        else:
            self.genres_ = None
        rows, cols = self._rows_cols(train)
        counts = np.bincount(cols, minlength=len(self.item_ids_)).astype("float64")
        self.item_probability_ = (counts / counts.sum()).astype("float32")

    def build(self):
        n_genres = 0 if self.genres_ is None else self.genres_.shape[1]
        network, self.user_tower_, self.item_tower_ = build_two_tower(
            len(self.user_ids_), len(self.item_ids_), self.n_factors, n_genres, self.temperature, self.seed
        )
        return network

    def _item_inputs(self, cols: np.ndarray) -> dict:
        inputs = {"item": cols.astype("int32")}
        if self.genres_ is not None:
            inputs["genres"] = self.genres_[cols]
        return inputs

    def examples(self, interactions, epoch: int = 0):
        """The examples do not change between epochs (the other items of a batch are the negatives): those of
        the training set (``epoch >= 0``) are built once per fit and handed out again, so that an epoch only
        reshuffles them instead of rebuilding a copy of the interactions."""
        cached = getattr(self, "_training_examples", None)
        if epoch >= 0 and cached is not None and cached[0] is interactions:
            return cached[1]
        rows, cols = self._rows_cols(interactions)
        x = {"user": rows, **self._item_inputs(cols), "probability": self.item_probability_[cols]}
        result = x, np.zeros(len(rows), dtype="float32")  # targets are built per batch (identity)
        if epoch >= 0:
            self._training_examples = (interactions, result)
        return result

    def _after_fit(self, network) -> None:
        self._training_examples = None
        all_users = np.arange(len(self.user_ids_), dtype="int32")
        all_items = np.arange(len(self.item_ids_), dtype="int32")
        self.user_vectors_ = np.asarray(self.user_tower_.predict(all_users, batch_size=4096, verbose=0))
        self.item_vectors_ = np.asarray(
            self.item_tower_.predict(self._item_inputs(all_items), batch_size=4096, verbose=0)
        )
        self._faiss_index = None

    def _score_rows(self, user_rows):
        return (self.user_vectors_[user_rows] @ self.item_vectors_.T).astype(np.float64)

    # -------------------------------------------------------------- retrieval without filtering

    def faiss_index(self, m: int = 16, ef_search: int = 64):
        """An HNSW inner-product index over the item vectors (built once, cached)."""
        import faiss

        if self._faiss_index is None:
            index = faiss.IndexHNSWFlat(self.item_vectors_.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.add(np.ascontiguousarray(self.item_vectors_, dtype="float32"))
            self._faiss_index = index
        self._faiss_index.hnsw.efSearch = ef_search
        return self._faiss_index

    def retrieve(self, user_ids, k: int = 10, *, approximate: bool = False, ef_search: int = 64) -> np.ndarray:
        """Item ids of the ``k`` nearest items for each (known) user, seen items included: the
        candidate-generation step of a two-stage recommender. Exact (brute force) or approximate (HNSW)."""
        rows = self.user_rows(user_ids)
        if (rows < 0).any():
            raise KeyError("retrieve() needs users known at training time")
        if approximate:
            queries = np.ascontiguousarray(self.user_vectors_[rows], dtype="float32")
            _, cols = self.faiss_index(ef_search=ef_search).search(queries, k)
        else:  # brute force, in blocks of users (never users x items at once); ties to the smaller item id
            k = min(k, len(self.item_ids_))
            step = self._rows_per_block(1024)
            blocks = [
                top_k_columns(self.user_vectors_[rows[start : start + step]] @ self.item_vectors_.T, k)
                for start in range(0, len(rows), step)
            ]
            cols = np.concatenate(blocks) if blocks else np.empty((0, k), dtype=np.int64)
        return self.item_ids_[cols]

    def approximate_recall(self, user_ids=None, k: int = 10, ef_search: int = 64) -> float:
        """Share of the exact top-k that the approximate index also returns (mean over users)."""
        users = self.user_ids_ if user_ids is None else np.asarray(user_ids)
        exact = self.retrieve(users, k)
        approx = self.retrieve(users, k, approximate=True, ef_search=ef_search)
        return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)]))
