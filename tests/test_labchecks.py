"""The lab self-checks of labs 00, 01, 02 and 05 (recsys_workshop.labchecks): the solution passes, and a
wrong answer of each usual kind gets a message that names the case and says what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from check_helpers import fails as _fails

from recsys_workshop import data, labchecks, metrics, models, selfcheck

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------------------------------------ lab 00


def _head_share(ratings, fraction, *, by="item_id", rounding=math.ceil, ascending=False, scale=1.0, films=False):
    counts = ratings.groupby(by).size().sort_values(ascending=ascending).to_numpy()
    n = int(rounding(fraction * len(counts)))
    return scale * (n / len(counts) if films else counts[:n].sum() / counts.sum())


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        ({"scale": 100.0}, "a percentage"),
        ({"rounding": math.floor}, "floor(top_fraction * n_films)"),
        ({"ascending": True}, "least rated films"),
        ({"by": "user_id"}, "ratings per user"),
        ({"films": True}, "share of films in the head"),
    ],
)
def test_head_share_names_the_mistake(ml100k_ratings, variant, says):
    labchecks.head_share(_head_share, ml100k_ratings)
    message = _fails(labchecks.head_share, lambda r, f: _head_share(r, f, **variant), ml100k_ratings, match=says)
    assert message.startswith("head_share(ratings, ") and "expected" in message and "got" in message


def test_head_share_says_when_the_answer_is_not_a_number(ml100k_ratings):
    _fails(labchecks.head_share, lambda r, f: "10%", ml100k_ratings, match="returned str '10%', not a number")


def test_sparsity_names_the_case_and_the_mistake(ml100k_ratings):
    def right(r):
        return 1 - len(r) / (r.user_id.nunique() * r.item_id.nunique())

    labchecks.sparsity(right, ml100k_ratings)
    _fails(labchecks.sparsity, lambda r: 1 - right(r), ml100k_ratings, match="that is the density")
    message = _fails(labchecks.sparsity, lambda r: 1 - len(r) / (r.user_id.nunique() * r.item_id.max()),
                     ml100k_ratings, match="not the largest item_id")  # fmt: skip
    assert message.startswith("sparsity(3 ratings by 2 users of films 10, 20, 30): expected 0.5")


# ------------------------------------------------------------------------------------------------ lab 01


@pytest.fixture(scope="module")
def content():
    rng = np.random.default_rng(0)
    item_ids = np.arange(1, 41) * 3
    features = sp.random(40, 12, density=0.3, random_state=1, format="csr")
    rows = [(u, int(i), float(r)) for u in (1, 2, 68, 414) for i, r in
            zip(rng.choice(item_ids, 8, replace=False), rng.integers(1, 6, 8), strict=True)]  # fmt: skip
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"])
    return ratings, features, item_ids


def _profile(user_ratings, features, item_ids, threshold, *, weighted=True, normalise=True, keep_all=False):
    liked = user_ratings if keep_all else user_ratings[user_ratings.rating >= threshold]
    rows = np.searchsorted(item_ids, liked.item_id.to_numpy())
    weights = liked.rating.to_numpy(dtype=float) if weighted else np.ones(len(liked))
    profile = np.asarray(features[rows].T @ weights).ravel()
    norm = np.linalg.norm(profile)
    return profile / norm if normalise and norm > 0 else profile


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        ({"weighted": False}, "weight each one by its rating"),
        ({"normalise": False}, "divide by the norm"),
        ({"keep_all": True}, "films rated below like_threshold count too"),
    ],
)
def test_build_profile_names_the_mistake(content, variant, says):
    ratings, features, item_ids = content
    labchecks.build_profile(_profile, ratings, features, item_ids, 4.0)
    wrong = lambda *args: _profile(*args, **variant)  # noqa: E731
    message = _fails(labchecks.build_profile, wrong, ratings, features, item_ids, 4.0, match=says)
    assert message.startswith("build_profile(user ")


def test_build_profile_wants_zeros_for_a_user_who_liked_nothing(content):
    ratings, features, item_ids = content

    def no_guard(user_ratings, *args):
        profile = _profile(user_ratings, *args, normalise=False)
        return profile / np.linalg.norm(profile) if len(user_ratings[user_ratings.rating >= 4.0]) else profile + 1

    message = _fails(labchecks.build_profile, no_guard, ratings, features, item_ids, 4.0,
                     match="a user who liked nothing")  # fmt: skip
    assert f"got {features.shape[1]} non-zero of {features.shape[1]} (the first: entry 0 = 1)" in message


def test_similarity_scores_names_the_mistake(content):
    _, features, _ = content
    profile = np.random.default_rng(2).random(12)

    def cosine(p, x):
        dots = np.asarray(x @ p).ravel()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel()) * np.linalg.norm(p)
        return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)

    labchecks.similarity_scores(cosine, profile, features)
    _fails(labchecks.similarity_scores, lambda p, x: np.asarray(x @ p).ravel(), profile, features,
           match="dot products")  # fmt: skip
    _fails(labchecks.similarity_scores, lambda p, x: np.asarray(x @ p).ravel() / np.linalg.norm(p), profile, features,
           match="films' norms")  # fmt: skip
    with np.errstate(all="ignore"):
        unguarded = lambda p, x: cosine(p, x) if p.any() else np.asarray(x @ p).ravel() / 0.0  # noqa: E731
        _fails(labchecks.similarity_scores, unguarded, profile, features, match="NaN or inf")
    _fails(labchecks.similarity_scores, lambda p, x: cosine(p, x).reshape(-1, 1), profile, features,
           match=".ravel()")  # fmt: skip
    ones_for_zero = lambda p, x: cosine(p, x) if p.any() else np.ones(x.shape[0])  # noqa: E731
    message = _fails(labchecks.similarity_scores, ones_for_zero, profile, features, match="expected all zeros")
    assert f"got {features.shape[0]} non-zero of {features.shape[0]} (the first: entry 0 = 1)" in message


# ------------------------------------------------------------------------------------------------ lab 02


@pytest.mark.tf
def test_mf_model_names_the_missing_term():
    import keras
    from keras import layers, ops

    def build(n_users, n_items, n_factors, global_mean, *, terms=("mean", "bias", "dot"), names=None):
        user = keras.Input(shape=(), dtype="int32", name="user")
        item = keras.Input(shape=(), dtype="int32", name="item")
        names = names or {}
        p = layers.Embedding(n_users, n_factors, name=names.get("user_factors", "user_factors"))(user)
        q = layers.Embedding(n_items, n_factors, name="item_factors")(item)
        b_u = layers.Embedding(n_users, 1, embeddings_initializer="zeros", name="user_bias")(user)
        b_i = layers.Embedding(n_items, 1, embeddings_initializer="zeros", name="item_bias")(item)
        rating = ops.zeros_like(ops.sum(p, axis=-1))
        if "mean" in terms:
            rating = rating + global_mean
        if "bias" in terms:
            rating = rating + ops.squeeze(b_u, -1) + ops.squeeze(b_i, -1)
        if "dot" in terms:
            rating = rating + ops.sum(p * q, axis=-1)
        if "unsqueezed" in terms:
            rating = ops.expand_dims(rating, -1)
        return keras.Model({"user": user, "item": item}, rating)

    labchecks.mf_model(build)
    _fails(labchecks.mf_model, lambda *a, **k: build(*a, **k, terms=("bias", "dot")), match="global mean is missing")
    _fails(labchecks.mf_model, lambda *a, **k: build(*a, **k, terms=("mean", "dot")),
           match="no layer named 'user_bias': create the four Embedding layers with these names")  # fmt: skip
    _fails(labchecks.mf_model, lambda *a, **k: build(*a, **k, terms=("mean", "bias")),
           match="no layer named 'item_factors'")  # fmt: skip
    _fails(labchecks.mf_model, lambda *a, **k: build(*a, **k, terms=("mean", "bias", "dot", "unsqueezed")),
           match="expected output shape (3,), got (3, 1)")  # fmt: skip
    _fails(labchecks.mf_model, lambda *a, **k: build(*a, **k, names={"user_factors": "users"}),
           match="no layer named 'user_factors'")  # fmt: skip


@pytest.fixture(scope="module")
def split(ml100k_ratings):
    return data.stratified_split(ml100k_ratings, 0.8, filter_by="user", seed=0)


def test_top_k_unseen_names_the_mistake(split):
    model = models.ItemKNN().fit(split[0])

    def right(scores, seen, k):
        return np.argsort(-np.where(seen, -np.inf, scores), axis=1, kind="stable")[:, :k]

    labchecks.top_k_unseen(right, model, 10)
    _fails(labchecks.top_k_unseen, lambda s, seen, k: np.argsort(-s, axis=1, kind="stable")[:, :k], model, 10,
           match="seen items (1 and 0) are still in")  # fmt: skip
    _fails(labchecks.top_k_unseen, lambda s, seen, k: np.argsort(np.where(seen, np.inf, s), axis=1)[:, :k], model, 10,
           match="highest score first")  # fmt: skip

    def unstable(scores, seen, k):  # right on real scores, but breaks the hand-made case's tie the other way
        return right(scores, seen, k) if scores.shape[0] > 2 else np.array([[4, 3, 2], [1, 2, 3]])

    _fails(labchecks.top_k_unseen, unstable, model, 10, match="a stable sort")
    late = lambda s, seen, k: right(s, seen, k) if s.shape[0] == 2 else right(s, seen, k)[:, ::-1]  # noqa: E731
    _fails(labchecks.top_k_unseen, late, model, 10, match="on MF's scores, user ")


# ------------------------------------------------------------------------------------------------ lab 05


def _ndcg_right(recommended, relevant, k):
    gains = [1.0 if i in relevant else 0.0 for i in recommended[:k]]
    dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (lambda rec, rel, k: _ndcg_right(rec, rel, k + 5), "only the first k recommendations count"),
        (lambda rec, rel, k: sum(1 / math.log2(r + 2) for r, i in enumerate(rec[:k]) if i in rel),
         "that is DCG: divide it by IDCG"),
        (lambda rec, rel, k: sum(1 / math.log2(r + 1) for r, i in enumerate(rec[:k]) if i in rel)
         / sum(1 / math.log2(r + 1) for r in range(min(k, len(rel)))), "count ranks from 1"),
        (lambda rec, rel, k: _ndcg_right(rec, rel, 10**6) if rel and len(rel) > k else _ndcg_right(rec, rel, k),
         "IDCG stops at k"),
    ],
)  # fmt: skip
def test_ndcg_one_user_names_the_mistake(split, wrong, says):
    train, test = split
    recs = models.MostPopular().fit(train).recommend(test.user_id.unique()[:20], k=10)
    truth = test[test.user_id.isin(recs.user_id)]
    labchecks.ndcg_one_user(_ndcg_right, recs, truth, 10)
    with np.errstate(all="ignore"):
        message = _fails(labchecks.ndcg_one_user, wrong, recs, truth, 10, match=says)
    assert message.startswith("ndcg_one_user([")


def test_ndcg_one_user_agrees_with_the_metric_on_real_lists(split):
    train, test = split
    recs = models.MostPopular().fit(train).recommend(test.user_id.unique()[:20], k=10)
    truth = test[test.user_id.isin(recs.user_id)]
    off = lambda rec, rel, k: _ndcg_right(rec, rel, k) * (0.5 if len(rel) > 30 else 1.0)  # noqa: E731
    _fails(labchecks.ndcg_one_user, off, recs, truth, 10, match="mean NDCG@10 over 20 users")
    assert labchecks.ndcg_one_user(_ndcg_right, recs, truth, 10) is None
    assert metrics.ndcg_at_k(truth, recs, 10) > 0


def test_coverage_names_the_mistake(split):
    train, test = split
    recs = models.ItemKNN().fit(train).recommend(test.user_id.unique(), k=10)
    size = train.item_id.nunique()
    labchecks.coverage(lambda r, n: r.item_id.nunique() / n, recs, size)
    _fails(labchecks.coverage, lambda r, n: len(r) / n, recs, size, match="distinct item_id")
    _fails(labchecks.coverage, lambda r, n: 100 * r.item_id.nunique() / n, recs, size, match="a percentage")
    _fails(labchecks.coverage, lambda r, n: r.item_id.nunique() / r.user_id.nunique(), recs, size,
           match="not by the number of users")  # fmt: skip


def test_ease_weights_names_the_mistake(split):
    model = models.EASE(l2=500.0).fit(split[0])

    def right(X, l2, *, transpose=False, sign=1.0, diagonal=True, reg=True):
        gram = (X.T @ X).toarray().astype(float)
        if reg:
            gram[np.diag_indices_from(gram)] += l2
        inverse = np.linalg.pinv(gram) if not reg else np.linalg.inv(gram)
        weights = sign * -inverse / np.diag(inverse)[None, :]
        if diagonal:
            np.fill_diagonal(weights, 0.0)
        return weights.T if transpose else weights

    labchecks.ease_weights(right, model.seen_, 500.0, model.weights_)
    X = model.seen_
    message = _fails(labchecks.ease_weights, lambda x, l2: right(x, l2, diagonal=False), X, 500.0, model.weights_,
                     match="diagonal of B must be 0")  # fmt: skip
    assert f"got {X.shape[1]} non-zero of {X.shape[1]} (the first: B[j, j] 0 = -1)" in message  # -P[j, j] / P[j, j]
    _fails(labchecks.ease_weights, lambda x, l2: right(x, l2, transpose=True), X, 500.0, model.weights_,
           match="transposed")  # fmt: skip
    _fails(labchecks.ease_weights, lambda x, l2: right(x, l2, sign=-1.0), X, 500.0, model.weights_,
           match="sign is flipped")  # fmt: skip
    _fails(labchecks.ease_weights, lambda x, l2: right(x, 5.0), X, 500.0, model.weights_,
           match="add l2 to the diagonal")  # fmt: skip


# ------------------------------------------------------------------------------------------------ hints


def test_a_failed_check_carries_both_hint_tiers():
    with pytest.raises(selfcheck.ExerciseIncorrect) as info:
        selfcheck.check("5.2", lambda: labchecks.coverage(lambda r, n: 0.0, pd.DataFrame(
            {"user_id": [1], "item_id": [2]}), 10), hint="the idea", code_hint="the code")  # fmt: skip
    message = str(info.value)
    assert "coverage(2 lists over films 5, 6, 6, 7; catalogue of 10): expected 0.3, got 0" in message
    assert "Hint: the idea" in message and "Code hint: the code" in message


def test_in_jupyter_the_hints_are_two_collapsed_boxes(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("Shell", (), {"kernel": object()})())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    with pytest.raises(selfcheck.ExerciseIncorrect) as info:
        selfcheck.check("0.2", lambda: selfcheck.equal(1, 2, "sparsity(x)"), hint="a < b", code_hint="1 - n / m")
    (html,) = shown
    assert html.data.count("<details>") == 2 and "open" not in html.data.split("<summary>")[0]
    assert "a &lt; b" in html.data and "<pre>1 - n / m</pre>" in html.data
    lines = info.value._render_traceback_()
    assert lines[0] == "❌ Exercise 0.2: not correct yet: sparsity(x): expected 2, got 1"
    assert lines[1].startswith("Hints: open the boxes above") and "1 - n / m" not in "".join(lines)
