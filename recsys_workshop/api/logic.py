"""The API's business logic: what happens between the model's raw top-k and the list a user sees.

Pure numpy (no TensorFlow, no web framework), so lab 11 can build each step by hand and the tests can
check it in milliseconds:

- :func:`filter_seen` drops the films a user has already rated or given feedback on;
- :func:`popular_items` and :func:`metadata_scores` are the cold-start fallback (popular films, or
  films whose genres match what a new user said they like, mixed with what is popular with people of
  the same age group, gender and occupation);
- :func:`mmr_rerank` re-ranks by *maximal marginal relevance*: each next film maximises
  ``lam * relevance - (1 - lam) * (its highest similarity to a film already chosen)``, so ``lam = 1`` keeps
  the model's order and smaller values trade relevance for variety;
- :class:`EpsilonGreedy` and :class:`ThompsonSampling` choose the arm (a model version) that serves a
  request and learn from click feedback;
- :class:`Catalogue` and :class:`Histories` hold everything precomputed at start-up (arrays and dicts,
  so that no request touches a DataFrame), and :func:`because_you_liked` writes the reason shown with
  each recommendation.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "Bandit",
    "Catalogue",
    "EpsilonGreedy",
    "Histories",
    "ThompsonSampling",
    "because_you_liked",
    "filter_seen",
    "make_bandit",
    "metadata_scores",
    "mmr_rerank",
    "popular_items",
]

LIKED_RATING = 4  # a rating of 4 or 5 counts as "liked" (the threshold of data.to_implicit)


# --------------------------------------------------------------------------------------------
# Seen-item filter and popularity
# --------------------------------------------------------------------------------------------


def filter_seen(
    item_ids: Sequence[int], scores: Sequence[float], seen: Iterable[int], k: int | None = None
) -> tuple[list[int], list[float]]:
    """Drop the items in ``seen`` from a ranked list, keeping the order; keep at most ``k`` items.

    ``item_ids`` and ``scores`` are parallel, best first. Duplicates in the input are kept once (the
    first, best-scored occurrence). Returns two new lists; the arguments are left as they are.
    """
    if len(item_ids) != len(scores):
        raise ValueError(f"item_ids and scores differ in length: {len(item_ids)} != {len(scores)}")
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    skip = set(seen)
    kept_ids: list[int] = []
    kept_scores: list[float] = []
    for item, score in zip(item_ids, scores, strict=True):
        if k is not None and len(kept_ids) >= k:
            break
        item = int(item)
        if item in skip:
            continue
        skip.add(item)
        kept_ids.append(item)
        kept_scores.append(float(score))
    return kept_ids, kept_scores


def popular_items(ranked: Sequence[int], exclude: Iterable[int], k: int) -> list[int]:
    """The first ``k`` items of ``ranked`` (most popular first) that are not in ``exclude``."""
    return filter_seen(ranked, [0.0] * len(ranked), exclude, k)[0]


# --------------------------------------------------------------------------------------------
# Maximal marginal relevance
# --------------------------------------------------------------------------------------------


def _minmax(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


def mmr_rerank(
    item_ids: Sequence[int],
    scores: Sequence[float],
    features: np.ndarray,
    k: int,
    lam: float = 0.7,
) -> tuple[list[int], list[float]]:
    """Re-rank candidates by maximal marginal relevance (Carbonell and Goldstein, 1998).

    ``features`` holds one row per candidate (same order as ``item_ids``); similarity is the cosine of
    two rows (0 for a row of zeros). Relevance is the score min-max scaled to [0, 1] (all equal: 1).
    Greedily, the next item maximises ``lam * relevance - (1 - lam) * max similarity to the items
    already chosen``; ties go to the earlier (better-scored) candidate. ``lam = 1`` returns the first
    ``k`` candidates unchanged. Returns ``(item_ids, scores)`` of at most ``k`` items with their
    original scores.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    n = len(item_ids)
    if len(scores) != n:
        raise ValueError(f"item_ids and scores differ in length: {n} != {len(scores)}")
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features must have one row per candidate ({n}), got shape {features.shape}")
    k = min(int(k), n)
    if k <= 0:
        return [], []
    score_array = np.asarray(scores, dtype=np.float64)
    relevance = _minmax(score_array)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)
    similarity = unit @ unit.T
    chosen: list[int] = []
    max_sim = np.zeros(n)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        gain = lam * relevance - (1.0 - lam) * max_sim
        gain[~available] = -np.inf
        best = int(np.argmax(gain))  # first maximum: ties go to the better-scored candidate
        chosen.append(best)
        available[best] = False
        np.maximum(max_sim, similarity[best], out=max_sim)
    return [int(item_ids[i]) for i in chosen], [float(score_array[i]) for i in chosen]


# --------------------------------------------------------------------------------------------
# Bandits over model versions
# --------------------------------------------------------------------------------------------


class Bandit:
    """Arms with pull and reward counts. A *pull* is a response served by that arm; a *reward* is a
    click or like on one of its recommendations (a dislike is a pull without reward)."""

    policy = "bandit"

    def __init__(self, arms: Sequence[str], seed: int | None = None):
        arms = [str(a) for a in arms]
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        if len(set(arms)) != len(arms):
            raise ValueError(f"arm names must be unique, got {arms}")
        self.arms = arms
        self.pulls = dict.fromkeys(arms, 0)
        self.rewards = dict.fromkeys(arms, 0.0)
        self.rng = random.Random(seed)

    def choose(self) -> str:
        raise NotImplementedError

    def record_pull(self, arm: str) -> None:
        self._known(arm)
        self.pulls[arm] += 1

    def record_reward(self, arm: str, reward: float = 1.0) -> None:
        """Credit ``reward`` (0..1) to ``arm``; the reward never exceeds the arm's pulls."""
        self._known(arm)
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        self.rewards[arm] = min(self.rewards[arm] + reward, float(self.pulls[arm]))

    def mean(self, arm: str) -> float:
        """Observed click rate of ``arm`` (0 before its first pull)."""
        return self.rewards[arm] / self.pulls[arm] if self.pulls[arm] else 0.0

    def _known(self, arm: str) -> None:
        if arm not in self.pulls:
            raise KeyError(f"unknown arm {arm!r}; arms are {self.arms}")

    def state(self) -> dict[str, dict[str, float]]:
        return {a: {"pulls": self.pulls[a], "rewards": self.rewards[a], "mean": self.mean(a)} for a in self.arms}


class EpsilonGreedy(Bandit):
    """With probability ``epsilon`` a uniformly random arm (explore), else the arm with the highest
    observed click rate (exploit; ties, including "no data yet", go to the arm listed first)."""

    policy = "epsilon-greedy"

    def __init__(self, arms: Sequence[str], epsilon: float = 0.1, seed: int | None = None):
        super().__init__(arms, seed)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon

    def choose(self) -> str:
        if self.rng.random() < self.epsilon:
            return self.rng.choice(self.arms)
        return max(self.arms, key=self.mean)  # max keeps the first of equal means


class ThompsonSampling(Bandit):
    """Draw a click rate for each arm from its Beta(prior_a + rewards, prior_b + pulls - rewards)
    posterior and play the arm with the highest draw."""

    policy = "thompson"

    def __init__(self, arms: Sequence[str], prior: tuple[float, float] = (1.0, 1.0), seed: int | None = None):
        super().__init__(arms, seed)
        if min(prior) <= 0:
            raise ValueError(f"the Beta prior's parameters must be positive, got {prior}")
        self.prior = prior

    def posterior(self, arm: str) -> tuple[float, float]:
        a, b = self.prior
        return a + self.rewards[arm], b + self.pulls[arm] - self.rewards[arm]

    def choose(self) -> str:
        draws = [self.rng.betavariate(*self.posterior(arm)) for arm in self.arms]
        return self.arms[max(range(len(draws)), key=draws.__getitem__)]


def make_bandit(policy: str, arms: Sequence[str], *, epsilon: float = 0.1, seed: int | None = None) -> Bandit:
    """``"thompson"`` or ``"epsilon-greedy"`` over ``arms``."""
    if policy == "thompson":
        return ThompsonSampling(arms, seed=seed)
    if policy in ("epsilon-greedy", "epsilon"):
        return EpsilonGreedy(arms, epsilon=epsilon, seed=seed)
    raise ValueError(f"unknown bandit policy {policy!r}; choose 'thompson' or 'epsilon-greedy'")


# --------------------------------------------------------------------------------------------
# Precomputed state: catalogue and histories
# --------------------------------------------------------------------------------------------


def _age_group(age: int | None) -> str | None:
    if age is None:
        return None
    for bound, label in ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55")):
        if age < bound:
            return label
    return "56+"


@dataclasses.dataclass
class Catalogue:
    """Films as arrays indexed by *row* (``row_of[item_id]``), precomputed once.

    ``genre_unit`` holds each film's multi-hot genres scaled to unit length (cosine similarity is a dot
    product); ``popularity`` the number of ratings; ``popular`` the item ids, most rated first (ties by
    id); ``group_popularity`` the number of ratings from each demographic group (``"gender:F"``,
    ``"occupation:writer"``, ``"age:25-34"``) per row.
    """

    item_ids: np.ndarray
    titles: list[str]
    genres: list[list[str]]
    genre_unit: np.ndarray
    popularity: np.ndarray
    popular: list[int]
    row_of: dict[int, int]
    group_popularity: dict[str, np.ndarray]

    @classmethod
    def build(cls, items, ratings, users=None) -> Catalogue:
        """From ``data.load_items``, ``data.load_ratings`` (and ``data.load_users``) DataFrames."""
        items = items.sort_values("item_id").reset_index(drop=True)
        item_ids = items["item_id"].to_numpy(dtype=np.int64)
        row_of = {int(i): r for r, i in enumerate(item_ids)}
        names = sorted({g for gs in items["genres"] for g in gs})
        column = {g: c for c, g in enumerate(names)}
        multi_hot = np.zeros((len(items), len(names)), dtype=np.float64)
        for r, gs in enumerate(items["genres"]):
            for g in gs:
                multi_hot[r, column[g]] = 1.0
        norms = np.linalg.norm(multi_hot, axis=1, keepdims=True)
        genre_unit = np.divide(multi_hot, norms, out=np.zeros_like(multi_hot), where=norms > 0)
        rows = np.array([row_of.get(int(i), -1) for i in ratings["item_id"].to_numpy()], dtype=np.int64)
        known = rows >= 0
        popularity = np.bincount(rows[known], minlength=len(items)).astype(np.float64)
        order = np.lexsort((item_ids, -popularity))
        group_popularity: dict[str, np.ndarray] = {}
        if users is not None:
            profile = users.set_index("user_id")
            rated_by = ratings["user_id"].to_numpy()[known]
            for key, values in (
                ("gender", profile["gender"].astype(str)),
                ("occupation", profile["occupation"].astype(str)),
                ("age", profile["age"].map(_age_group)),
            ):
                per_rating = values.reindex(rated_by).to_numpy()
                for group in sorted(set(values)):
                    mask = per_rating == group
                    group_popularity[f"{key}:{group}"] = np.bincount(
                        rows[known][mask], minlength=len(items)
                    ).astype(np.float64)
        return cls(
            item_ids=item_ids,
            titles=items["title"].astype(str).tolist(),
            genres=[list(gs) for gs in items["genres"]],
            genre_unit=genre_unit,
            popularity=popularity,
            popular=[int(i) for i in item_ids[order]],
            row_of=row_of,
            group_popularity=group_popularity,
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self, item_ids: Iterable[int]) -> np.ndarray:
        return np.fromiter((self.row_of[int(i)] for i in item_ids), dtype=np.int64)

    def log_popularity(self, groups: tuple[str, ...] | None) -> np.ndarray:
        """log(1 + ratings) per row, overall (``None``) or summed over ``groups``, scaled to max 1; cached."""
        cache = self.__dict__.setdefault("_log_popularity", {})
        if groups not in cache:
            if groups is None:
                values = np.log1p(self.popularity)
            else:
                values = sum(np.log1p(self.group_popularity[g]) for g in groups)
            cache[groups] = values / max(float(values.max()), 1e-12)
        return cache[groups]

    def groups(self, age: int | None = None, gender: str | None = None, occupation: str | None = None) -> list[str]:
        """The demographic groups (keys of ``group_popularity``) that a profile belongs to."""
        keys = [f"gender:{gender}", f"occupation:{occupation}", f"age:{_age_group(age)}"]
        return [key for key in keys if key in self.group_popularity]


@dataclasses.dataclass
class Histories:
    """Per user: every rated item (``seen``) and the liked ones (rating >= 4), most recent first."""

    seen: dict[int, frozenset[int]]
    liked: dict[int, list[int]]

    @classmethod
    def build(cls, ratings, max_liked: int = 50) -> Histories:
        ordered = ratings.sort_values(["user_id", "timestamp", "item_id"], ascending=[True, False, True])
        users = ordered["user_id"].to_numpy()
        item = ordered["item_id"].to_numpy()
        rating = ordered["rating"].to_numpy()
        bounds = np.flatnonzero(np.diff(users)) + 1
        seen, liked = {}, {}
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(users)], strict=True):
            user = int(users[start])
            seen[user] = frozenset(int(i) for i in item[start:stop])
            good = item[start:stop][rating[start:stop] >= LIKED_RATING]
            liked[user] = [int(i) for i in good[:max_liked]]
        return cls(seen=seen, liked=liked)

    def __contains__(self, user_id: int) -> bool:
        return user_id in self.seen


# --------------------------------------------------------------------------------------------
# Cold start and reasons
# --------------------------------------------------------------------------------------------


def metadata_scores(
    catalogue: Catalogue,
    liked_item_ids: Sequence[int] = (),
    *,
    age: int | None = None,
    gender: str | None = None,
    occupation: str | None = None,
    weights: tuple[float, float, float] = (0.5, 0.25, 0.25),
) -> np.ndarray:
    """Cold-start score of every film (one per catalogue row, higher is better) for a new user.

    A weighted sum of three parts, each scaled to [0, 1]: the cosine between each film's genres and
    the mean genre vector of the films the user likes; the film's overall popularity (log number of
    ratings); and its popularity among users of the same age group, gender and occupation. A part
    with nothing to go on (no liked films, no demographics) gets weight 0.
    """
    w_genre, w_pop, w_group = weights
    parts, part_weights = [], []
    rows = catalogue.rows(liked_item_ids) if len(liked_item_ids) else np.empty(0, dtype=np.int64)
    if len(rows):
        profile = catalogue.genre_unit[rows].mean(axis=0)
        parts.append(catalogue.genre_unit @ profile / max(float(np.linalg.norm(profile)), 1e-12))
        part_weights.append(w_genre)
    parts.append(catalogue.log_popularity(None))
    part_weights.append(w_pop)
    groups = tuple(catalogue.groups(age=age, gender=gender, occupation=occupation))
    if groups:
        parts.append(catalogue.log_popularity(groups))
        part_weights.append(w_group)
    return sum(w * p for w, p in zip(part_weights, parts, strict=True)) / sum(part_weights)


def because_you_liked(
    catalogue: Catalogue, item_ids: Sequence[int], liked: Sequence[int], min_similarity: float = 0.5
) -> list[int | None]:
    """For each recommended item, the liked item it is most similar to (genre cosine), or ``None``.

    Ties go to the earlier liked item (``liked`` is most recent first); a best similarity below
    ``min_similarity`` gives ``None`` (no honest "because you liked" reason).
    """
    if not len(item_ids):
        return []
    if not len(liked):
        return [None] * len(item_ids)
    sim = catalogue.genre_unit[catalogue.rows(liked)] @ catalogue.genre_unit[catalogue.rows(item_ids)].T
    best = sim.argmax(axis=0)
    return [int(liked[b]) if sim[b, j] >= min_similarity - 1e-9 else None for j, b in enumerate(best)]


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN or infinity: such a score is reported as ``null``."""
    return x if math.isfinite(x) else None
