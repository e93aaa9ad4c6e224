"""Two-tower retrieval trained with an in-batch softmax, and top-k over the whole catalogue.

A *user tower* and an *item tower* map each side to a vector in the same space; the score is their
(temperature-scaled) cosine similarity. Training treats every other item of the batch as a negative
for a user (the in-batch softmax of Yi et al., RecSys 2019), with the two corrections it needs
(:func:`correct_logits`):

- the logQ correction (keras-rs ``SamplingProbabilityCorrection``): popular items appear as in-batch
  negatives more often than rare ones; subtracting ``log p(item)`` from the logits removes that bias;
- accidental hits removed (:func:`remove_accidental_hits`): a batch can hold the user's positive
  twice; the duplicate must not count as a negative.

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


MASKED = -1e9  # the logit of a removed accidental hit: exp(MASKED - max) is 0 in float32


def correct_logits(logits, probability, item):
    """The in-batch corrections on a batch's ``(batch, batch)`` logits: the logQ correction with
    keras-rs (``logits[b, c] - log p(item c)``), then :func:`remove_accidental_hits`. Lab 04's exercise
    writes the same in ``keras.ops``; the layer below looks this function up at call time, so a
    learner's version can be swapped in with ``mock.patch.object(two_tower, "correct_logits", theirs)``."""
    import keras_rs

    logits = keras_rs.layers.SamplingProbabilityCorrection()(logits, probability)
    return remove_accidental_hits(logits, item)


def remove_accidental_hits(logits, item):
    """Row b's positive is column b; a column ``c != b`` holding the same item is not a negative for
    row b, so its logit becomes :data:`MASKED` (it drops out of the softmax).

    Written here rather than taken from keras-rs: ``keras_rs.layers.RemoveAccidentalHits`` (0.4.0, the
    newest release) adds ``finfo(float32).smallest_normal / 100`` (about 1e-40) to those logits, which
    leaves them unchanged (keras-team/keras-rs#206); ``tests/test_labchecks_inbatch.py`` notices when a
    release fixes it."""
    from keras import ops

    same_item = ops.equal(ops.expand_dims(item, 1), ops.expand_dims(item, 0))
    off_diagonal = ops.logical_not(ops.cast(ops.eye(ops.shape(logits)[0]), "bool"))
    return ops.where(ops.logical_and(same_item, off_diagonal), ops.cast(MASKED, logits.dtype), logits)


def _InBatchCorrections():  # noqa: N802 - a layer factory (keeps Keras out of module import)
    """A layer applying :func:`correct_logits` (the function of the moment: see its docstring)."""
    import keras

    class InBatchCorrections(keras.layers.Layer):
        def call(self, logits, probability, item):
            return correct_logits(logits, probability, item)

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
