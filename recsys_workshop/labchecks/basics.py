"""The checks behind the self-check cells of labs 00, 01, 02 and 05: each runs the learner's function on
named cases and, when an answer is wrong, says which case, what was expected and what came back, and,
for the usual mistakes, what the mistake probably is::

    selfcheck.check("0.1", lambda: labchecks.head_share(head_share, ratings), hint=..., code_hint=...)

Every function raises ``AssertionError`` with that message (which :func:`recsys_workshop.selfcheck.check`
turns into the verdict) and returns None when every case passes. The expected values come from the
package's own implementation (``data``, ``metrics``, ``models``) or from a small case worked out by hand
in the docstring. numpy and pandas only, except :func:`mf_model` (Keras, imported inside).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "build_profile",
    "coverage",
    "ease_weights",
    "head_share",
    "mf_model",
    "ndcg_one_user",
    "similarity_scores",
    "sparsity",
    "top_k_unseen",
]


def _number(value: Any, call: str) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise AssertionError(f"{call} returned {type(value).__name__} {value!r}, not a number")
    return float(value)


def _same(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _diagnose(call: str, got: float, expected: float, mistakes: dict[str, float]) -> str:
    """The message for a wrong number: a known mistake it matches, else expected vs got."""
    for advice, value in mistakes.items():
        if not _same(value, expected) and _same(got, value):
            return f"{call}: expected {expected:.6g}, got {got:.6g}: {advice}"
    return f"{call}: expected {expected:.6g}, got {got:.6g}"


def _array(value: Any, call: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value.toarray() if hasattr(value, "toarray") else value, dtype=float)
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{call} returned {type(value).__name__}, not an array of numbers") from err
    if array.shape != shape:
        hint = " (flatten it with .ravel())" if array.size == math.prod(shape) else ""
        raise AssertionError(f"{call}: expected shape {shape}, got shape {array.shape}{hint}")
    return array


def _first_difference(got: np.ndarray, expected: np.ndarray, atol: float) -> str:
    index = np.unravel_index(int(np.argmax(np.abs(got - expected))), got.shape)
    at = index[0] if len(index) == 1 else tuple(int(i) for i in index)
    return f"at index {at} expected {expected[index]:.6g}, got {got[index]:.6g}"


# ------------------------------------------------------------------------------------------------ lab 00


def head_share(yours: Callable[[pd.DataFrame, float], float], ratings: pd.DataFrame) -> None:
    """Exercise 0.1 against :func:`recsys_workshop.data.head_share`, for four head sizes."""
    from recsys_workshop import data

    counts = ratings.groupby("item_id").size().sort_values(ascending=False).to_numpy()
    per_user = ratings.groupby("user_id").size().sort_values(ascending=False).to_numpy()
    for fraction in (0.01, 0.1, 0.5, 1.0):
        call = f"head_share(ratings, {fraction})"
        got, expected = _number(yours(ratings, fraction), call), data.head_share(ratings, fraction)
        if _same(got, expected):
            continue
        n_head = math.ceil(fraction * len(counts))
        mistakes = {
            "a percentage? Return a share between 0 and 1": 100 * expected,
            "you took floor(top_fraction * n_films) films; the head is the ceil of it": (
                counts[: math.floor(fraction * len(counts))].sum() / counts.sum()
            ),
            "you took the least rated films: sort the counts in descending order": counts[-n_head:].sum()
            / counts.sum(),
            "you counted ratings per user: the head is made of films (item_id)": (
                per_user[: math.ceil(fraction * len(per_user))].sum() / per_user.sum()
            ),
            "that is the share of films in the head, not the share of ratings": n_head / len(counts),
        }
        raise AssertionError(_diagnose(call, got, expected, mistakes))


def sparsity(yours: Callable[[pd.DataFrame], float], ratings: pd.DataFrame) -> None:
    """Exercise 0.2: a case by hand (3 ratings by 2 users of 3 films: 3 of 6 cells empty), then ``ratings``."""
    small = pd.DataFrame({"user_id": [1, 2, 1], "item_id": [10, 30, 20], "rating": [4, 5, 3]})
    cases = [("sparsity(3 ratings by 2 users of films 10, 20, 30)", small), ("sparsity(ratings)", ratings)]
    for call, frame in cases:
        n_users, n_items = frame["user_id"].nunique(), frame["item_id"].nunique()
        expected = 1.0 - len(frame) / (n_users * n_items)
        got = _number(yours(frame), call)
        if _same(got, expected, 1e-12):
            continue
        mistakes = {
            "that is the density (the filled share): sparsity is 1 minus it": 1.0 - expected,
            "a percentage? Return a share between 0 and 1": 100 * expected,
            "count the films that appear in the ratings (nunique), not the largest item_id": (
                1.0 - len(frame) / (n_users * frame["item_id"].max())
            ),
        }
        raise AssertionError(_diagnose(call, got, expected, mistakes))


# ------------------------------------------------------------------------------------------------ lab 01


def build_profile(
    yours: Callable[..., np.ndarray], ratings: pd.DataFrame, item_features, item_ids: np.ndarray, threshold: float
) -> None:
    """Exercise 1.1 against :func:`recsys_workshop.models.classic.user_profiles`, for four users (one of
    them with ratings only below the threshold, as a made-up case)."""
    from recsys_workshop.models.classic import user_profiles

    users = [1, 2, 68, 414]
    sample = ratings[ratings["user_id"].isin(users)]
    _, expected_rows = user_profiles(sample, item_features, item_ids, threshold)  # rows in user-id order
    cases = [(f"build_profile(user {u})", sample[sample.user_id == u], row)
             for u, row in zip(sorted(users), expected_rows, strict=True)]  # fmt: skip
    disliked = sample[sample.user_id == 1].head(3).assign(rating=threshold - 1)
    cases.append(("build_profile(a user who liked nothing)", disliked, np.zeros(item_features.shape[1])))
    for call, user_ratings, expected in cases:
        got = _array(yours(user_ratings, item_features, item_ids, threshold), call, expected.shape)
        if np.allclose(got, expected, atol=1e-9):
            continue
        if not np.any(expected):
            raise AssertionError(f"{call}: expected all zeros (nothing rated >= {threshold}), got {_nonzero(got)}")
        norm = np.linalg.norm(got)
        if norm > 0 and np.allclose(got / norm, expected, atol=1e-9):
            raise AssertionError(f"{call}: the direction is right but the length is {norm:.4g}: divide by the norm")
        liked = user_ratings[user_ratings.rating >= threshold]
        rows = np.searchsorted(item_ids, liked.item_id.to_numpy())
        unweighted = np.asarray(item_features[rows].sum(axis=0)).ravel()
        if np.linalg.norm(unweighted) > 0 and np.allclose(got, unweighted / np.linalg.norm(unweighted), atol=1e-9):
            raise AssertionError(f"{call}: every liked film counts the same: weight each one by its rating")
        everything = np.asarray(item_features[np.searchsorted(item_ids, user_ratings.item_id.to_numpy())].T
                                @ user_ratings.rating.to_numpy(dtype=float)).ravel()  # fmt: skip
        if np.linalg.norm(everything) > 0 and np.allclose(got, everything / np.linalg.norm(everything), atol=1e-9):
            raise AssertionError(f"{call}: films rated below like_threshold count too: keep rating >= threshold")
        raise AssertionError(f"{call}: {_first_difference(got, expected, 1e-9)}")


def _nonzero(values: np.ndarray, name: str = "entry") -> str:
    """``values``' non-zero entries in a few words: how many, and the first (its index and value)."""
    flat = np.asarray(values, dtype=float).ravel()
    where = np.flatnonzero(flat)
    first = int(where[0])
    return f"{len(where)} non-zero of {flat.size} (the first: {name} {first} = {flat[first]:.4g})"


def similarity_scores(yours: Callable[..., np.ndarray], profile: np.ndarray, item_features) -> None:
    """Exercise 1.2 against scikit-learn's ``cosine_similarity``; a scaled profile and a zero profile."""
    from sklearn.metrics.pairwise import cosine_similarity

    n_items = item_features.shape[0]
    expected = cosine_similarity(profile.reshape(1, -1), item_features).ravel()
    got = _array(yours(profile * 3.0, item_features), "similarity_scores(3 * profile)", (n_items,))
    if not np.allclose(got, expected, atol=1e-9):
        dots = np.asarray(item_features @ profile).ravel() * 3.0
        if np.allclose(got, dots, atol=1e-9):
            raise AssertionError("similarity_scores(3 * profile): these are dot products: divide by both norms")
        if np.allclose(got * 3.0, expected * np.linalg.norm(profile) * 3.0, atol=1e-9) or np.allclose(
            got, dots / np.linalg.norm(profile * 3.0), atol=1e-9
        ):
            raise AssertionError("similarity_scores(3 * profile): divide by the films' norms as well as the profile's")
        raise AssertionError(f"similarity_scores(3 * profile): {_first_difference(got, expected, 1e-9)}")
    zero = _array(yours(np.zeros_like(profile), item_features), "similarity_scores(zero profile)", (n_items,))
    if not np.all(np.isfinite(zero)):
        raise AssertionError("similarity_scores(zero profile): got NaN or inf: return 0 where a norm is 0")
    if np.any(zero != 0):
        raise AssertionError(f"similarity_scores(zero profile): expected all zeros, got {_nonzero(zero)}")


# ------------------------------------------------------------------------------------------------ lab 02


def mf_model(build: Callable[..., Any]) -> None:
    """Exercise 2.1: the model ``build(5, 7, 3, global_mean=3.5)`` with known random weights, on 3 pairs."""
    net = build(5, 7, 3, global_mean=3.5)
    names = {"user_factors": (5, 3), "item_factors": (7, 3), "user_bias": (5, 1), "item_bias": (7, 1)}
    rng = np.random.default_rng(0)
    weights = {}
    for name, shape in names.items():
        try:
            layer = net.get_layer(name)
        except ValueError:
            raise AssertionError(f"the model has no layer named {name!r}: create the four Embedding layers with "
                                 "these names and use each in the output (Keras drops a layer it does not use)"
                                 ) from None  # fmt: skip
        got_shape = tuple(layer.get_weights()[0].shape)
        if got_shape != shape:
            raise AssertionError(f"layer {name!r}: expected a table of shape {shape}, got {got_shape}")
        weights[name] = rng.normal(size=shape)
        layer.set_weights([weights[name]])
    users, items = np.array([0, 4, 2]), np.array([6, 0, 3])
    got = np.asarray(net.predict({"user": users, "item": items}, verbose=0))
    if got.shape != (3,):
        hint = ": squeeze the (batch, 1) biases with ops.squeeze(x, -1)" if got.shape in ((3, 1), (3, 3)) else ""
        raise AssertionError(f"3 (user, item) pairs: expected output shape (3,), got {got.shape}{hint}")
    dot = (weights["user_factors"][users] * weights["item_factors"][items]).sum(axis=1)
    biases = weights["user_bias"][users, 0] + weights["item_bias"][items, 0]
    expected = 3.5 + biases + dot
    if np.allclose(got, expected, atol=1e-5):
        return
    if np.allclose(got, biases + dot, atol=1e-5):
        raise AssertionError(f"pair (user 0, item 6): expected {expected[0]:.4f}, got {got[0]:.4f}: the global mean "
                             "is missing")  # fmt: skip
    raise AssertionError(f"pairs (0, 6), (4, 0), (2, 3): {_first_difference(got, expected, 1e-5)}")


def top_k_unseen(yours: Callable[[np.ndarray, np.ndarray, int], np.ndarray], model: Any, k: int) -> None:
    """Exercise 2.2: a case with ties worked out by hand, then agreement with ``model.recommend`` on 50 users."""
    scores = np.array([[0.1, 0.9, 0.5, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0, -1.0]])
    seen = np.array([[False, True, False, False, False], [True, False, False, False, False]])
    expected = [[4, 2, 3], [1, 2, 3]]
    got = np.asarray(yours(scores, seen, 3)).tolist()
    if got != expected:
        call = "top_k_unseen(a 2 x 5 case, k=3)"
        if got == [[1, 4, 2], [0, 1, 2]]:
            raise AssertionError(f"{call}: expected {expected}, got {got}: the seen items (1 and 0) are still in")
        if got == [[4, 3, 2], [1, 2, 3]]:
            raise AssertionError(f"{call}: expected {expected}, got {got}: of two equal scores the smaller column "
                                 "comes first (a stable sort)")  # fmt: skip
        if got and got[0][:1] == [0]:
            raise AssertionError(f"{call}: expected {expected}, got {got}: best first means the highest score first")
        raise AssertionError(f"{call}: expected {expected}, got {got}")
    users = model.user_ids_[:50]
    rows = model.user_rows(users)
    yours_ids = model.item_ids_[np.asarray(yours(model._score_rows(rows), model.seen_[rows].toarray() > 0, k))]
    package = model.recommend(users, k=k).pivot(index="user_id", columns="rank", values="item_id").to_numpy()
    if yours_ids.shape != package.shape:
        raise AssertionError(f"top_k_unseen(MF scores of 50 users, k={k}): expected shape {package.shape}, "
                             f"got {yours_ids.shape}")  # fmt: skip
    wrong = np.flatnonzero((yours_ids != package).any(axis=1))
    if wrong.size:
        u = int(wrong[0])
        raise AssertionError(f"top_k_unseen on MF's scores, user {users[u]}: expected films {package[u].tolist()}, "
                             f"got {yours_ids[u].tolist()}")  # fmt: skip


# ------------------------------------------------------------------------------------------------ lab 05


def _ndcg(recommended: Sequence, relevant: set, k: int, *, first_rank: int = 1, cut: bool = True,
          ideal: str = "min(k, relevant)") -> float:
    """NDCG@k and its usual wrong variants: ranks from 0 or 1, no cut at k, another ideal list."""
    shown = list(recommended)[:k] if cut else list(recommended)
    dcg = sum(1 / math.log2(r + 1) for r, item in enumerate(shown, first_rank) if item in relevant)
    n_ideal = {"min(k, relevant)": min(k, len(relevant)), "relevant": len(relevant),
               "hits": sum(item in relevant for item in shown), "none": -1}[ideal]  # fmt: skip
    if n_ideal == -1:
        return dcg
    idcg = sum(1 / math.log2(r + 1) for r in range(first_rank, first_rank + n_ideal))
    return dcg / idcg if idcg > 0 else 0.0


def ndcg_one_user(yours: Callable[[list, set, int], float], recs: pd.DataFrame, truth: pd.DataFrame, k: int) -> None:
    """Exercise 5.1: cases worked out by hand (each built to expose one usual mistake), then the mean over
    ``recs``' users against :func:`recsys_workshop.metrics.ndcg_at_k`."""
    from recsys_workshop import metrics

    cases = [([3, 1, 2, 9], {1, 2, 8}, 3), ([5, 6], set(), 2), ([7, 8, 9, 1], {1}, 3), ([1, 2], {1, 2, 3, 4}, 2)]
    for recommended, relevant, kk in cases:
        call = f"ndcg_one_user({recommended}, {relevant or 'set()'}, k={kk})"
        try:
            got = _number(yours(list(recommended), set(relevant), kk), call)
        except ZeroDivisionError:
            got = math.inf
        expected = _ndcg(recommended, relevant, kk)
        if not math.isfinite(got):
            raise AssertionError(f"{call}: got {got} (a division by zero): log2(1) = 0, so count ranks from 1 in "
                                 "log2(r + 1); and IDCG is 0 when nothing is relevant: return 0.0 then")  # fmt: skip
        if _same(got, expected, 1e-9):
            continue
        mistakes = {
            "the discount at rank r (from 1) is 1 / log2(r + 1)": _ndcg(recommended, relevant, kk, first_rank=2),
            "only the first k recommendations count": _ndcg(recommended, relevant, kk, cut=False),
            "IDCG counts min(k, |relevant|) hits, not the hits you happened to make": _ndcg(
                recommended, relevant, kk, ideal="hits"),
            "IDCG stops at k: a perfect list of length k scores 1": _ndcg(recommended, relevant, kk, ideal="relevant"),
            "that is DCG: divide it by IDCG, the DCG of a perfect list": _ndcg(recommended, relevant, kk, ideal="none"),
        }  # fmt: skip
        raise AssertionError(_diagnose(call, got, expected, mistakes))
    users = recs.user_id.unique()
    mine = np.mean([yours(recs[recs.user_id == u].sort_values("rank").item_id.tolist(),
                          set(truth[truth.user_id == u].item_id), k) for u in users])  # fmt: skip
    expected = metrics.ndcg_at_k(truth, recs, k)
    if not _same(float(mine), expected, 1e-9):
        raise AssertionError(f"mean NDCG@{k} over {len(users)} users: expected {expected:.6f}, got {mine:.6f}")


def coverage(yours: Callable[[pd.DataFrame, int], float], recs: pd.DataFrame, catalogue_size: int) -> None:
    """Exercise 5.2 against :func:`recsys_workshop.metrics.catalogue_coverage` and a case by hand."""
    from recsys_workshop import metrics

    small = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [5, 6, 6, 7], "rank": [1, 2, 1, 2]})
    cases = [("coverage(2 lists over films 5, 6, 6, 7; catalogue of 10)", small, 10),
             (f"coverage(the recommendations, {catalogue_size})", recs, catalogue_size)]  # fmt: skip
    for call, frame, size in cases:
        expected = metrics.catalogue_coverage(frame, size)
        got = _number(yours(frame, size), call)
        if not _same(got, expected, 1e-12):
            mistakes = {
                "count each film once (distinct item_id), not every row": len(frame) / size,
                "a percentage? Return a share between 0 and 1": 100 * expected,
                "divide by the catalogue size, not by the number of users": frame.item_id.nunique()
                / frame.user_id.nunique(),
            }
            raise AssertionError(_diagnose(call, got, expected, mistakes))


def ease_weights(yours: Callable[[Any, float], np.ndarray], X, l2: float, expected: np.ndarray) -> None:
    """Exercise 5.3 against the package's fitted EASE (``expected`` = ``ease.weights_`` for ``l2``)."""
    got = _array(yours(X, l2), f"ease_weights(X, {l2:g})", expected.shape)
    if not np.allclose(np.diag(got), 0.0):
        raise AssertionError(f"the diagonal of B must be 0 (a film may not predict itself: np.fill_diagonal), got "
                             f"{_nonzero(np.diag(got), 'B[j, j]')}")  # fmt: skip
    if np.allclose(got, expected, atol=1e-5):
        return
    if np.allclose(got, expected.T, atol=1e-5):
        raise AssertionError("B is transposed: divide each column j of -P by P[j, j] (broadcast over rows)")
    if np.allclose(got, -expected, atol=1e-5):
        raise AssertionError("the sign is flipped: B = -P / diag(P)")
    raise AssertionError(f"ease_weights(X, {l2:g}): {_first_difference(got, expected, 1e-5)}; did you add l2 to "
                         "the diagonal of X.T @ X before inverting?")  # fmt: skip
