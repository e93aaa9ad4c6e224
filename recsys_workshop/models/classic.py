"""Classical recommenders, pure numpy/scipy: the baselines every deep model must beat.

- :class:`GlobalMean`: every rating is the mean rating (the floor for RMSE).
- :class:`BiasBaseline`: ``mu + b_user + b_item`` with regularised biases (Koren, 2010).
- :class:`MostPopular`: the items with the most training interactions.
- :class:`ItemKNN`: item-item collaborative filtering with cosine similarity.
- :class:`EASE`: a linear item-item autoencoder solved in closed form (Steck, 2019).
- :class:`ContentBased`: TF-IDF item profiles (genres, tags) and rating-weighted user profiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_workshop.data import validate_interactions
from recsys_workshop.models.base import Recommender


class GlobalMean(Recommender):
    """Predicts the training mean rating for every pair (ranks items by id: a rating baseline only)."""

    name = "global-mean"

    def _fit(self, train: pd.DataFrame) -> None:
        validate_interactions(train, require=("user_id", "item_id", "rating"))
        self.mean_ = float(train["rating"].mean())

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return np.full((len(user_rows), len(self.item_ids_)), self.mean_)

    def _score_cold(self, user_ids: np.ndarray) -> np.ndarray:
        return self._score_rows(np.zeros(len(user_ids), dtype=int))

    def score(self, user_ids, item_ids) -> np.ndarray:
        """The mean rating, for known and unknown items alike."""
        return np.nan_to_num(super().score(user_ids, item_ids), nan=self.mean_)


class BiasBaseline(Recommender):
    """``r(u, i) = mu + b_u + b_i``, the biases fitted by alternating regularised least squares.

    ``b_i = sum_u (r_ui - mu - b_u) / (reg_item + n_i)`` and ``b_u = sum_i (r_ui - mu - b_i) / (reg_user + n_u)``,
    repeated ``n_iter`` times. A cold user gets ``mu + b_i``.
    """

    name = "bias-baseline"

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_iter: int = 10):
        self.reg_user, self.reg_item, self.n_iter = reg_user, reg_item, n_iter

    def _fit(self, train: pd.DataFrame) -> None:
        validate_interactions(train, require=("user_id", "item_id", "rating"))
        rows = self.user_rows(train["user_id"].to_numpy())
        cols = self.item_columns(train["item_id"].to_numpy())
        ratings = train["rating"].to_numpy(dtype=np.float64)
        n_users, n_items = len(self.user_ids_), len(self.item_ids_)
        self.mu_ = float(ratings.mean())
        self.user_bias_ = np.zeros(n_users)
        self.item_bias_ = np.zeros(n_items)
        n_u = np.bincount(rows, minlength=n_users)
        n_i = np.bincount(cols, minlength=n_items)
        for _ in range(self.n_iter):
            residual = ratings - self.mu_ - self.user_bias_[rows]
            self.item_bias_ = np.bincount(cols, residual, minlength=n_items) / (self.reg_item + n_i)
            residual = ratings - self.mu_ - self.item_bias_[cols]
            self.user_bias_ = np.bincount(rows, residual, minlength=n_users) / (self.reg_user + n_u)

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return self.mu_ + self.user_bias_[user_rows][:, None] + self.item_bias_[None, :]

    def _score_cold(self, user_ids: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mu_ + self.item_bias_, (len(user_ids), len(self.item_ids_)))

    def score(self, user_ids, item_ids) -> np.ndarray:
        """Predicted ratings; an item unseen in training gets ``mu + b_u`` (its bias is 0)."""
        scores = super().score(user_ids, item_ids)
        missing = np.isnan(scores)
        if missing.any():
            rows = self.user_rows(np.asarray(user_ids)[missing])
            scores[missing] = self.mu_ + np.where(rows >= 0, self.user_bias_[rows], 0.0)
        return scores


class MostPopular(Recommender):
    """Scores an item by its number of training interactions: the same list for everyone."""

    name = "most-popular"

    def _fit(self, train: pd.DataFrame) -> None:
        pass

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return self._score_cold(user_rows).copy()


def _top_k_per_column(similarity: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest entries of each column of a dense matrix, zero elsewhere."""
    if k >= similarity.shape[0]:
        return similarity
    cutoff = np.partition(similarity, -k, axis=0)[-k]
    return np.where(similarity >= cutoff[None, :], similarity, 0.0)


class ItemKNN(Recommender):
    """Item-item collaborative filtering.

    Items are vectors of the users who interacted with them (binary); their cosine similarity,
    pruned to each item's ``n_neighbors`` nearest neighbours, gives
    ``score(u, i) = sum_{j seen by u} sim(j, i)``: "people who watched what you watched also watched".
    ``shrink`` damps similarities supported by few common users: ``sim * common / (common + shrink)``
    is approximated by ``dot / (|a| |b| + shrink)``.
    """

    name = "item-knn"

    def __init__(self, n_neighbors: int = 100, shrink: float = 0.0):
        self.n_neighbors, self.shrink = n_neighbors, shrink

    def _fit(self, train: pd.DataFrame) -> None:
        matrix = self.seen_.astype(np.float64)
        co_counts = (matrix.T @ matrix).toarray()
        norms = np.sqrt(np.diag(co_counts))
        similarity = co_counts / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(similarity, 0.0)
        self.similarity_ = _top_k_per_column(similarity, self.n_neighbors).astype(np.float32)

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[user_rows] @ self.similarity_, dtype=np.float64)

    def similar_items(self, item_id: int, n: int = 10) -> pd.DataFrame:
        """The ``n`` items most similar to ``item_id``: ``item_id, similarity``."""
        col = self.item_columns([item_id])[0]
        if col < 0:
            raise KeyError(f"item {item_id} is not in the training catalogue")
        sims = self.similarity_[:, col]
        top = np.argsort(-sims, kind="stable")[:n]
        return pd.DataFrame({"item_id": self.item_ids_[top], "similarity": sims[top]})


class EASE(Recommender):
    """Embarrassingly Shallow AutoEncoder (Steck, "Embarrassingly Shallow Autoencoders for Sparse
    Data", WWW 2019): ``score(u, .) = x_u @ B`` with an item-item weight matrix ``B`` learnt, not
    hand-made like item-kNN's cosine.

    ``B`` minimises ``||X - X B||^2 + l2 ||B||^2`` subject to ``diag(B) = 0`` (an item may not
    predict itself). The closed form: ``P = (X^T X + l2 I)^-1`` and ``B_ij = -P_ij / P_jj`` off the
    diagonal. Each column ``B[:, j]`` is therefore the ridge regression of item ``j`` on every other
    item. One ``n_items x n_items`` inverse: fine for ml-100k (1,682 films) or ml-1m (3,706),
    not for a million-item catalogue.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0):
        if not np.isfinite(l2) or l2 <= 0:
            raise ValueError(f"l2 must be a finite number > 0, got {l2}")
        self.l2 = l2

    def _fit(self, train: pd.DataFrame) -> None:
        matrix = self.seen_.astype(np.float64)
        gram = (matrix.T @ matrix).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = -precision / np.diag(precision)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32)

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[user_rows] @ self.weights_, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Content-based filtering
# ----------------------------------------------------------------------------------------------


def item_feature_tokens(items: pd.DataFrame, tags: pd.DataFrame | None = None) -> pd.Series:
    """One list of tokens per item: ``genre:<name>`` for each genre, ``tag:<text>`` for each tag
    users gave it (lower-cased, de-duplicated per item). Indexed by ``item_id``."""
    tokens = {
        int(item): [f"genre:{g}" for g in genres]
        for item, genres in zip(items["item_id"], items["genres"], strict=True)
    }
    if tags is not None:
        cleaned = tags.assign(tag=tags["tag"].str.strip().str.lower()).drop_duplicates(["item_id", "tag"])
        for item, group in cleaned.groupby("item_id"):
            if int(item) in tokens:
                tokens[int(item)] += [f"tag:{t}" for t in group["tag"]]
    return pd.Series(tokens, name="tokens").sort_index()


def tfidf_item_features(tokens: pd.Series) -> tuple[sp.csr_matrix, np.ndarray]:
    """TF-IDF matrix (items x features, rows L2-normalised) of token lists, and the feature names.

    Uses scikit-learn's ``TfidfVectorizer`` (smooth idf, sublinear tf off) on pre-tokenised input.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, lowercase=False, norm="l2")
    matrix = vectorizer.fit_transform(tokens.tolist())
    return sp.csr_matrix(matrix, dtype=np.float64), vectorizer.get_feature_names_out()


def user_profiles(
    ratings: pd.DataFrame, item_features: sp.csr_matrix, item_ids: np.ndarray, like_threshold: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rating-weighted profile of each user: ``sum_i r_ui * x_i`` over the items the user rated at
    least ``like_threshold``, L2-normalised. A user with no such item gets a zero profile.

    Returns (user ids, profiles as a dense users x features array).
    """
    liked = ratings[ratings["rating"] >= like_threshold]
    users = np.unique(ratings["user_id"].to_numpy())
    rows = pd.Index(users).get_indexer(liked["user_id"].to_numpy())
    cols = pd.Index(item_ids).get_indexer(liked["item_id"].to_numpy())
    keep = cols >= 0
    weights = sp.csr_matrix(
        (liked["rating"].to_numpy(dtype=np.float64)[keep], (rows[keep], cols[keep])), shape=(len(users), len(item_ids))
    )
    profiles = np.asarray((weights @ item_features).todense())
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    return users, np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)


def cosine_scores(profiles: np.ndarray, item_features: sp.csr_matrix) -> np.ndarray:
    """Cosine similarity of every profile (rows) with every item (columns).

    Profiles and item rows are L2-normalised, so the cosine is their dot product; a zero vector
    scores 0 against everything.
    """
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = np.divide(profiles, norms, out=np.zeros_like(profiles, dtype=np.float64), where=norms > 0)
    item_norms = np.sqrt(np.asarray(item_features.multiply(item_features).sum(axis=1)).ravel())
    scaled = sp.diags(np.divide(1.0, item_norms, out=np.zeros_like(item_norms), where=item_norms > 0)) @ item_features
    return np.asarray((scaled @ unit.T).T)


class ContentBased(Recommender):
    """Recommends items whose content (genres, tags) resembles what the user rated highly.

    Every item of ``items`` is in the catalogue, rated or not: a brand-new film is recommended as
    soon as it has a description. A cold user (no history) gets the most popular items.
    """

    name = "content-based"

    def __init__(self, items: pd.DataFrame, tags: pd.DataFrame | None = None, like_threshold: float = 4.0):
        self.items, self.tags, self.like_threshold = items, tags, like_threshold

    def fit(self, train: pd.DataFrame, *, items=None) -> ContentBased:
        catalogue = self.items["item_id"] if items is None else items
        return super().fit(train, items=catalogue)

    def _fit(self, train: pd.DataFrame) -> None:
        validate_interactions(train, require=("user_id", "item_id", "rating"))
        tokens = item_feature_tokens(self.items, self.tags).reindex(self.item_ids_)
        tokens = tokens.apply(lambda t: t if isinstance(t, list) else [])
        self.item_features_, self.feature_names_ = tfidf_item_features(tokens)
        users, self.profiles_ = user_profiles(train, self.item_features_, self.item_ids_, self.like_threshold)
        assert np.array_equal(users, self.user_ids_)

    def _score_rows(self, user_rows: np.ndarray) -> np.ndarray:
        return cosine_scores(self.profiles_[user_rows], self.item_features_)

    def explain(self, user_id: int, item_id: int, n: int = 3) -> list[str]:
        """The ``n`` features that contribute most to ``score(user, item)`` (profile x item weight)."""
        row, col = self.user_rows([user_id])[0], self.item_columns([item_id])[0]
        if row < 0 or col < 0:
            return []
        contribution = self.profiles_[row] * self.item_features_[col].toarray().ravel()
        top = np.argsort(-contribution, kind="stable")[:n]
        return [str(self.feature_names_[f]) for f in top if contribution[f] > 0]
