"""A hybrid deep recommender: ID embeddings *and* metadata, so it can score the unknown.

- **User tower**: the user's ID embedding with embeddings of their age bucket, gender and occupation
  (ml-100k / ml-1m demographics), through a dense layer.
- **Item tower** (the "metadata tower"): the film's ID embedding with its genres (multi-hot), release
  year and popularity, through a dense layer; with ``text`` (:mod:`recsys_workshop.models.text`), also a
  learned encoder of the film's words (title, genres, tags).

``users=None`` (ml-latest-small has no demographics): the user side is the ID embedding alone.
- **Head**: an MLP on ``[user, item, user * item]``, plus a user bias and an item bias (the "wide"
  part: popularity needs no deep network). Two heads share the towers' design: ``task="rating"``
  regresses the rating (explicit feedback, MSE), ``task="ranking"`` scores a (user, item) pair as a
  logit (implicit feedback, binary cross-entropy with sampled negatives).

**Cold start.** Row 0 of each ID table means "unknown". During training every example's user ID and
item ID are replaced by 0 with probability ``id_dropout`` (fresh every epoch), so the network learns
to score from metadata alone. A user or film not seen in training is scored that way: from its
demographics or its genres, year, popularity (0 for a new film) and, with ``text``, its words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_workshop.models.implicit import ImplicitRecommender

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)  # lower bounds after "under 18" (the ml-1m buckets)
TASKS = ("rating", "ranking")
DEMOGRAPHICS = ("age", "gender", "occupation")


def age_bucket(age: pd.Series | np.ndarray) -> np.ndarray:
    """0 = unknown, 1 = under 18, 2 = 18-24, ..., 7 = 56+."""
    age = np.asarray(age, dtype=float)
    bucket = np.searchsorted(np.asarray(AGE_BUCKETS), age, side="right") + 1
    return np.where(np.isnan(age), 0, bucket).astype("int32")


def metadata_tower(
    item_id, genres, year, popularity, n_items: int, n_factors: int, seed: int | None = None, l2: float = 0.0,
    *, text=None, text_vocabulary: int = 0, text_dim: int = 8,
):  # fmt: skip
    """The item side: ID embedding + dense projection of genres + year and popularity (+ the text
    encoder's vector of the film's words, when ``text`` token ids are given), then a ReLU layer."""
    import keras
    from keras import layers

    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    reg = keras.regularizers.L2(l2) if l2 else None
    embedded_id = layers.Embedding(
        n_items + 1, n_factors, embeddings_initializer=init, embeddings_regularizer=reg, name="item_id_embedding"
    )(item_id)
    genre_vector = layers.Dense(8, activation="relu", name="genre_dense")(genres)
    numeric = layers.Concatenate(name="item_numeric")([year, popularity])
    parts = [embedded_id, genre_vector, numeric]
    if text is not None:
        from recsys_workshop.models.text import text_tower

        parts.append(text_tower(text, text_vocabulary, text_dim, seed=seed))
    features = layers.Concatenate(name="item_features")(parts)
    return layers.Dense(n_factors, activation="relu", name="item_tower")(features)


def build_hybrid(
    n_users: int,
    n_items: int,
    n_occupations: int,
    n_genres: int,
    *,
    task: str = "rating",
    n_factors: int = 32,
    hidden: tuple[int, ...] = (64, 32),
    global_mean: float = 0.0,
    dropout: float = 0.0,
    l2: float = 0.0,
    seed: int | None = None,
    demographics: bool = True,
    text_vocabulary: int = 0,
    text_length: int = 0,
    text_dim: int = 8,
):
    """``l2``: L2 penalty on the ID embeddings and biases (Keras adds it for the whole table every batch).
    ``demographics=False``: no age/gender/occupation inputs. ``text_vocabulary``/``text_length`` > 0: a
    ``text`` input of ``text_length`` token ids feeds the item tower's text encoder."""
    import keras
    from keras import layers, ops

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = {"user": keras.Input(shape=(), dtype="int32", name="user")}
    if demographics:
        inputs.update({name: keras.Input(shape=(), dtype="int32", name=name) for name in DEMOGRAPHICS})
    inputs.update({
        "item": keras.Input(shape=(), dtype="int32", name="item"),
        "genres": keras.Input(shape=(n_genres,), dtype="float32", name="genres"),
        "year": keras.Input(shape=(1,), dtype="float32", name="year"),
        "popularity": keras.Input(shape=(1,), dtype="float32", name="popularity"),
    })  # fmt: skip
    if text_vocabulary:
        inputs["text"] = keras.Input(shape=(text_length,), dtype="int32", name="text")
    user_parts = [
        layers.Embedding(
            n_users + 1, n_factors, embeddings_initializer=init, embeddings_regularizer=reg, name="user_id_embedding"
        )(inputs["user"])
    ]
    if demographics:
        user_parts += [
            layers.Embedding(len(AGE_BUCKETS) + 2, 4, name="age_embedding")(inputs["age"]),
            layers.Embedding(3, 2, name="gender_embedding")(inputs["gender"]),
            layers.Embedding(n_occupations + 1, 4, name="occupation_embedding")(inputs["occupation"]),
        ]
    joined = layers.Concatenate()(user_parts) if len(user_parts) > 1 else user_parts[0]
    user_vector = layers.Dense(n_factors, activation="relu", name="user_tower")(joined)
    item_vector = metadata_tower(
        inputs["item"], inputs["genres"], inputs["year"], inputs["popularity"], n_items, n_factors, seed, l2,
        text=inputs.get("text"), text_vocabulary=text_vocabulary, text_dim=text_dim,
    )  # fmt: skip
    x = layers.Concatenate(name="interaction")(
        [user_vector, item_vector, layers.Multiply()([user_vector, item_vector])]
    )
    for i, width in enumerate(hidden, start=1):
        x = layers.Dense(width, activation="relu", name=f"head_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, seed=seed)(x)
    output = ops.squeeze(layers.Dense(1, name=f"{task}_head")(x), -1)
    # the "wide" part: per-user and per-item biases (row 0, "unknown", learns the average newcomer)
    user_bias = layers.Embedding(
        n_users + 1, 1, embeddings_initializer="zeros", embeddings_regularizer=reg, name="user_bias"
    )(inputs["user"])
    item_bias = layers.Embedding(
        n_items + 1, 1, embeddings_initializer="zeros", embeddings_regularizer=reg, name="item_bias"
    )(inputs["item"])
    output = output + ops.squeeze(user_bias, -1) + ops.squeeze(item_bias, -1)
    if task == "rating":
        output = output + global_mean
    return keras.Model(inputs, output, name=f"hybrid_{task}")


class HybridModel(ImplicitRecommender):
    """Deep model with metadata; see the module docstring. ``users`` and ``items`` describe every
    user and film that may ever be scored (training ones and new ones); ``users=None``: no demographics.
    ``text`` (``item_id -> text``, :func:`recsys_workshop.models.text.item_text`): the item tower also
    encodes each film's words, ``text_length`` tokens from a vocabulary of at most ``text_vocabulary``
    words, adapted on the training films' text."""

    def __init__(
        self,
        users: pd.DataFrame | None,
        items: pd.DataFrame,
        *,
        task: str = "rating",
        n_factors: int = 32,
        hidden: tuple[int, ...] = (64, 32),
        id_dropout: float = 0.5,
        dropout: float = 0.0,
        l2: float = 0.0,
        n_negatives: int = 4,
        negatives: str = "uniform",
        positive_threshold: float | None = None,
        seed: int = 42,
        text: pd.Series | None = None,
        text_vocabulary: int = 5000,
        text_length: int = 32,
        text_min_films: int = 20,
        text_dim: int = 8,
        new_film_dropout: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.users, self.items, self.task = users, items, task
        self.text, self.text_vocabulary, self.text_length = text, text_vocabulary, text_length
        self.text_min_films, self.text_dim = text_min_films, text_dim
        self.new_film_dropout = new_film_dropout
        self.n_factors, self.hidden, self.id_dropout, self.dropout = n_factors, tuple(hidden), id_dropout, dropout
        self.l2 = l2
        self.n_negatives, self.negatives, self.positive_threshold, self.seed = (
            n_negatives,
            negatives,
            positive_threshold,
            seed,
        )
        self.name = f"hybrid-{task}"
        self.resample_each_epoch = True
        if task == "rating":
            self.monitor = "val_rmse"

    @property
    def loss(self):
        import keras

        return "mse" if self.task == "rating" else keras.losses.BinaryCrossentropy(from_logits=True)

    # ------------------------------------------------------------------ features

    def fit(self, train, *, items=None, config=None, validation=None):
        catalogue = self.items["item_id"] if items is None else items
        return super().fit(train, items=catalogue, config=config, validation=validation)

    def _index(self, train, items) -> None:
        super()._index(train, items)
        from recsys_workshop.data import genre_matrix

        self.global_mean_ = float(train["rating"].mean()) if "rating" in train else 0.0
        self._index_users()
        items_by_id = self.items.set_index("item_id").reindex(self.item_ids_)
        self.genres_ = genre_matrix(self.items).reindex(self.item_ids_, fill_value=0).to_numpy("float32")
        year = pd.to_numeric(items_by_id["year"], errors="coerce").astype(float)
        self.year_ = np.nan_to_num((year.to_numpy() - 1990.0) / 20.0).astype("float32")[:, None]
        self.popularity_ = np.log1p(self.item_counts_) / np.log1p(max(self.item_counts_.max(), 1))
        self.popularity_ = self.popularity_.astype("float32")[:, None]
        self.item_known_ = self.item_counts_ > 0
        self.text_tokens_ = None
        if self.text is not None:
            from recsys_workshop.models.text import TextTokens

            texts = self.text.reindex(self.item_ids_).fillna("")
            tokens = TextTokens(texts[self.item_known_], vocabulary=self.text_vocabulary, length=self.text_length,
                                min_films=self.text_min_films)  # fmt: skip
            self.text_tokens_, self.vocabulary_ = tokens(texts), tokens.vocabulary

    def _index_users(self) -> None:
        if self.users is None:
            self.occupations_ = pd.Index([])
            return
        self.occupations_ = pd.Index(sorted(self.users["occupation"].astype(str).unique()))
        users = self.users.set_index("user_id")
        self._user_age = age_bucket(users["age"]).astype("int32")
        self._user_gender = np.where(users["gender"].astype(str) == "F", 1, 2).astype("int32")
        self._user_occupation = (self.occupations_.get_indexer(users["occupation"].astype(str)) + 1).astype("int32")
        self._user_lookup = pd.Index(users.index)

    def _user_features(self, user_ids: np.ndarray, rows: np.ndarray) -> dict:
        user = {"user": np.where(rows >= 0, rows + 1, 0).astype("int32")}
        if self.users is None:
            return user
        where = self._user_lookup.get_indexer(user_ids)
        found = where >= 0

        def pick(values):
            return np.where(found, values[np.maximum(where, 0)], 0).astype("int32")

        return {
            **user,
            "age": pick(self._user_age),
            "gender": pick(self._user_gender),
            "occupation": pick(self._user_occupation),
        }

    def _item_features(self, cols: np.ndarray) -> dict:
        known = self.item_known_[cols]
        features = {
            "item": np.where(known, cols + 1, 0).astype("int32"),
            "genres": self.genres_[cols],
            "year": self.year_[cols],
            "popularity": self.popularity_[cols],
        }
        if self.text_tokens_ is not None:
            features["text"] = self.text_tokens_[cols]
        return features

    def _inputs(self, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        x = {**self._user_features(self.user_ids_[rows], rows), **self._item_features(cols)}
        if rng is not None and self.id_dropout:
            x["user"] = np.where(rng.random(len(rows)) < self.id_dropout, 0, x["user"]).astype("int32")
            dropped = rng.random(len(cols)) < self.id_dropout
            x["item"] = np.where(dropped, 0, x["item"]).astype("int32")
            if self.new_film_dropout:  # a film whose ID is hidden looks new in every way: nobody has rated it
                x["popularity"] = np.where(dropped[:, None], 0.0, x["popularity"]).astype("float32")
        return x

    # ------------------------------------------------------------------ training

    def build(self):
        return build_hybrid(
            len(self.user_ids_),
            len(self.item_ids_),
            len(self.occupations_),
            self.genres_.shape[1],
            task=self.task,
            n_factors=self.n_factors,
            hidden=self.hidden,
            global_mean=self.global_mean_,
            dropout=self.dropout,
            l2=self.l2,
            seed=self.seed,
            demographics=self.users is not None,
            text_vocabulary=len(self.vocabulary_) if self.text_tokens_ is not None else 0,
            text_length=self.text_length,
            text_dim=self.text_dim,
        )

    def examples(self, interactions, epoch: int = 0):
        rng = self._rng(epoch) if epoch >= 0 else None  # no ID dropout on the validation set
        if self.task == "rating":
            rows = self.user_rows(interactions["user_id"].to_numpy())
            cols = self.item_columns(interactions["item_id"].to_numpy())
            keep = (rows >= 0) & (cols >= 0)
            return self._inputs(rows[keep], cols[keep], rng), interactions["rating"].to_numpy("float32")[keep]
        x, y = self.pointwise_examples(interactions, epoch)
        return self._inputs(x["user"], x["item"], rng), y

    def _after_fit(self, network) -> None:
        self.scorer_ = network

    # ------------------------------------------------------------------ scoring

    def _score_users(self, user_ids: np.ndarray, rows: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
        n_items = len(self.item_ids_)
        user_x = self._user_features(user_ids, rows)
        item_x = self._item_features(np.arange(n_items))
        out = np.empty((len(user_ids), n_items))
        per_chunk = max(1, chunk // n_items)
        for start in range(0, len(user_ids), per_chunk):
            block = slice(start, start + per_chunk)
            n = len(user_ids[block])
            x = {k: np.repeat(v[block], n_items, axis=0) for k, v in user_x.items()}
            x.update({k: np.tile(v, (n,) + (1,) * (v.ndim - 1)) for k, v in item_x.items()})
            out[block] = np.asarray(self.scorer_(x, training=False)).reshape(n, n_items)
        return out

    def _score_rows(self, user_rows):
        return self._score_users(self.user_ids_[user_rows], user_rows)

    def _score_pairs(self, user_ids, user_rows, item_cols, chunk: int = 1 << 16):
        """Pairs straight through the network (cold users from their demographics)."""
        x = {**self._user_features(np.asarray(user_ids), user_rows), **self._item_features(item_cols)}
        out = np.empty(len(item_cols))
        for start in range(0, len(item_cols), chunk):
            part = {name: values[start : start + chunk] for name, values in x.items()}
            out[start : start + chunk] = np.asarray(self.scorer_(part, training=False)).reshape(-1)
        return out

    def _score_cold(self, user_ids):
        """A user unknown at training time: scored from their demographics (``users``), no ID."""
        return self._score_users(np.asarray(user_ids), np.full(len(user_ids), -1))

    def score_new_user(self, age: int, gender: str, occupation: str, item_ids=None) -> pd.Series:
        """Scores for a brand-new user described only by demographics (the API's cold-start path)."""
        if self.users is None:
            raise ValueError("this model was built without demographics (users=None): it cannot score by them")
        cols = np.arange(len(self.item_ids_)) if item_ids is None else self.item_columns(item_ids)
        user_x = {
            "user": np.zeros(1, "int32"),
            "age": age_bucket([age]),
            "gender": np.array([1 if gender == "F" else 2], "int32"),
            "occupation": np.array([self.occupations_.get_indexer([occupation])[0] + 1], "int32"),
        }
        x = {k: np.repeat(v, len(cols), axis=0) for k, v in user_x.items()}
        x.update(self._item_features(cols))
        return pd.Series(np.asarray(self.scorer_(x, training=False)).reshape(-1), index=self.item_ids_[cols])
