"""The API's business logic (recsys_workshop.api.logic): seen-item filter, MMR, bandits, cold start."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_workshop.api import logic
from recsys_workshop.api.app import Settings

pytestmark = pytest.mark.unit

# ---------------------------------------------------------------------------- seen-item filter


def test_filter_seen_drops_seen_items_keeps_order_and_truncates():
    ids, scores = [5, 3, 9, 1, 7], [0.9, 0.8, 0.7, 0.6, 0.5]
    assert logic.filter_seen(ids, scores, {3, 1}) == ([5, 9, 7], [0.9, 0.7, 0.5])
    assert logic.filter_seen(ids, scores, {3, 1}, k=2) == ([5, 9], [0.9, 0.7])
    assert logic.filter_seen(ids, scores, set(ids)) == ([], [])
    assert logic.filter_seen(ids, scores, (), k=0) == ([], [])
    assert ids == [5, 3, 9, 1, 7], "the argument must not change"


def test_filter_seen_keeps_the_first_of_duplicates_and_checks_its_input():
    assert logic.filter_seen([4, 4, 2], [3.0, 1.0, 2.0], []) == ([4, 2], [3.0, 2.0])
    with pytest.raises(ValueError, match="differ in length"):
        logic.filter_seen([1, 2], [0.5], [])
    with pytest.raises(ValueError, match="k must be"):
        logic.filter_seen([1], [0.5], [], k=-1)


@given(
    st.lists(st.integers(1, 30), max_size=40, unique=True),
    st.sets(st.integers(1, 30)),
    st.integers(0, 50),
)
def test_filter_seen_properties(ids, seen, k):
    scores = [float(-i) for i in range(len(ids))]
    kept, kept_scores = logic.filter_seen(ids, scores, seen, k)
    assert not set(kept) & seen
    assert kept == [i for i in ids if i not in seen][:k]
    assert kept_scores == [scores[ids.index(i)] for i in kept]


def test_popular_items_skips_excluded():
    assert logic.popular_items([10, 20, 30, 40], {20}, 2) == [10, 30]
    assert logic.popular_items([10, 20], {10, 20}, 5) == []


# ---------------------------------------------------------------------------- MMR


def _mmr_gains(scores, features, chosen, lam):
    """Each candidate's MMR gain given the positions already ``chosen``, straight from the definition."""
    s = np.asarray(scores, float)
    rel = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.ones_like(s)

    def cos(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))

    return {
        i: lam * rel[i] - (1 - lam) * max((cos(features[i], features[j]) for j in chosen), default=0.0)
        for i in range(len(s))
        if i not in chosen
    }


def test_mmr_hand_worked_example():
    # films 1 and 2 are both pure Sci-Fi, 3 is a Comedy; the model ranks 1 > 2 > 3
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids, scores = [1, 2, 3], [1.0, 0.9, 0.5]
    assert logic.mmr_rerank(ids, scores, features, 3, lam=1.0)[0] == [1, 2, 3]
    # lam 0.5: after 1, film 2 gains 0.5*0.8 - 0.5*1 = -0.1 and film 3 gains 0.5*0 - 0 = 0: the comedy first
    assert logic.mmr_rerank(ids, scores, features, 3, lam=0.5) == ([1, 3, 2], [1.0, 0.5, 0.9])
    # lam 0.95: film 2 gains 0.95*0.8 - 0.05 = 0.71 > film 3's 0: relevance wins
    assert logic.mmr_rerank(ids, scores, features, 2, lam=0.95)[0] == [1, 2]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 15), st.sampled_from([0, 0.1, 0.3, 0.5, 0.7, 0.9, 1]), st.integers(0, 10**4))
def test_mmr_matches_the_definition(n, k, lam, seed):
    rng = np.random.default_rng(seed)
    features = (rng.random((n, 4)) < 0.4).astype(float)
    scores = rng.normal(size=n).round(3)
    ids = list(rng.permutation(100)[:n] + 1)
    got, got_scores = logic.mmr_rerank(ids, list(scores), features, k, lam)
    assert len(set(got)) == len(got) == min(k, n)
    chosen = []
    for item in got:  # every step takes a candidate of maximal gain (up to rounding: ties may go either way)
        gains = _mmr_gains(scores, features, chosen, lam)
        position = ids.index(item)
        assert gains[position] >= max(gains.values()) - 1e-9, (item, gains)
        chosen.append(position)
    assert got_scores == [float(scores[ids.index(i)]) for i in got]


def test_mmr_lower_lambda_gives_more_genre_variety(ml_catalogue):
    popular = ml_catalogue.popular[:60]
    rows = ml_catalogue.rows(popular)
    scores = list(np.linspace(1, 0, 60))
    distinct = []
    for lam in (1.0, 0.7, 0.3):
        ids, _ = logic.mmr_rerank(popular, scores, ml_catalogue.genre_unit[rows], 10, lam)
        sims = ml_catalogue.genre_unit[ml_catalogue.rows(ids)] @ ml_catalogue.genre_unit[ml_catalogue.rows(ids)].T
        distinct.append(sims[np.triu_indices(10, 1)].mean())
    assert distinct[0] > distinct[1] > distinct[2], f"mean pairwise genre similarity {distinct}"


def test_mmr_checks_its_input():
    with pytest.raises(ValueError, match="lam"):
        logic.mmr_rerank([1], [1.0], np.ones((1, 2)), 1, lam=1.5)
    with pytest.raises(ValueError, match="one row per candidate"):
        logic.mmr_rerank([1, 2], [1.0, 0.5], np.ones((3, 2)), 1)
    assert logic.mmr_rerank([], [], np.zeros((0, 2)), 5) == ([], [])


# ---------------------------------------------------------------------------- bandits


def test_epsilon_greedy_exploits_the_best_mean_and_explores_uniformly():
    bandit = logic.EpsilonGreedy(["a", "b", "c"], epsilon=0.0, seed=1)
    assert bandit.choose() == "a", "no data: the first arm"
    for arm, clicks in (("a", 1), ("b", 3), ("c", 2)):
        for _ in range(10):
            bandit.record_pull(arm)
        for _ in range(clicks):
            bandit.record_reward(arm)
    assert bandit.mean("b") == pytest.approx(0.3)
    assert {bandit.choose() for _ in range(50)} == {"b"}
    explorer = logic.EpsilonGreedy(["a", "b", "c"], epsilon=1.0, seed=2)
    counts = {arm: 0 for arm in "abc"}
    for _ in range(3000):
        counts[explorer.choose()] += 1
    assert all(900 < c < 1100 for c in counts.values()), counts


def test_epsilon_greedy_explores_at_the_configured_rate():
    bandit = logic.EpsilonGreedy(["best", "other"], epsilon=0.2, seed=3)
    bandit.record_pull("best")
    bandit.record_reward("best")
    share_other = sum(bandit.choose() == "other" for _ in range(5000)) / 5000
    assert 0.08 < share_other < 0.12  # epsilon/2: half of the random picks are the best arm


@pytest.mark.parametrize("policy", ["thompson", "epsilon-greedy"])
def test_bandits_learn_the_arm_with_more_clicks(policy):
    bandit = logic.make_bandit(policy, ["1", "2"], epsilon=0.1, seed=7)
    truth = {"1": 0.05, "2": 0.25}
    rng = np.random.default_rng(0)
    chosen = []
    for _ in range(3000):
        arm = bandit.choose()
        bandit.record_pull(arm)
        if rng.random() < truth[arm]:
            bandit.record_reward(arm)
        chosen.append(arm)
    late = chosen[-1000:]
    assert late.count("2") / len(late) > 0.85, bandit.state()
    assert bandit.mean("2") == pytest.approx(0.25, abs=0.04)


def test_thompson_posterior_and_bookkeeping():
    bandit = logic.ThompsonSampling(["x", "y"], seed=0)
    assert bandit.posterior("x") == (1.0, 1.0)
    for _ in range(4):
        bandit.record_pull("x")
    bandit.record_reward("x")
    assert bandit.posterior("x") == (2.0, 4.0)
    bandit.record_reward("y")  # a reward without a pull cannot make the click rate exceed 1
    assert bandit.rewards["y"] == 0.0
    with pytest.raises(KeyError, match="unknown arm"):
        bandit.record_pull("z")
    with pytest.raises(ValueError, match="reward"):
        bandit.record_reward("x", 2.0)


def test_bandits_check_their_configuration():
    with pytest.raises(ValueError, match="at least one arm"):
        logic.ThompsonSampling([])
    with pytest.raises(ValueError, match="unique"):
        logic.EpsilonGreedy(["a", "a"])
    with pytest.raises(ValueError, match="epsilon"):
        logic.EpsilonGreedy(["a"], epsilon=-0.1)
    with pytest.raises(ValueError, match="unknown bandit policy"):
        logic.make_bandit("ucb", ["a"])


def test_seeded_bandits_repeat_their_choices():
    a, b = (logic.ThompsonSampling(["1", "2", "3"], seed=42) for _ in range(2))
    assert [a.choose() for _ in range(20)] == [b.choose() for _ in range(20)]


# ---------------------------------------------------------------------------- catalogue and histories

ITEMS = pd.DataFrame(
    {
        "item_id": [10, 20, 30, 40],
        "title": ["Alien", "Aliens", "Airplane!", "Casablanca"],
        "genres": [["Horror", "Sci-Fi"], ["Action", "Sci-Fi"], ["Comedy"], ["Drama", "Romance"]],
    }
)
RATINGS = pd.DataFrame(
    {
        "user_id": [1, 1, 1, 2, 2, 3],
        "item_id": [10, 20, 30, 20, 40, 20],
        "rating": [5, 4, 2, 5, 3, 1],
        "timestamp": [100, 300, 200, 50, 60, 70],
    }
)
USERS = pd.DataFrame(
    {"user_id": [1, 2, 3], "age": [30, 30, 60], "gender": ["F", "M", "F"], "occupation": ["writer", "writer", "none"]}
)


def test_catalogue_build():
    catalogue = logic.Catalogue.build(ITEMS.sample(frac=1, random_state=0), RATINGS, USERS)
    assert list(catalogue.item_ids) == [10, 20, 30, 40]
    assert catalogue.popular == [20, 10, 30, 40]  # 3 ratings, then 1 each (ties by id)
    assert list(catalogue.popularity) == [1, 3, 1, 1]
    np.testing.assert_allclose(np.linalg.norm(catalogue.genre_unit, axis=1), 1.0)
    assert catalogue.genre_unit[0] @ catalogue.genre_unit[1] == pytest.approx(0.5)  # share Sci-Fi of 2 genres
    assert list(catalogue.group_popularity["gender:F"]) == [1, 2, 1, 0]
    assert list(catalogue.group_popularity["occupation:writer"]) == [1, 2, 1, 1]
    assert catalogue.groups(age=33, gender="F", occupation="pilot") == ["gender:F", "age:25-34"]


def test_histories_build():
    histories = logic.Histories.build(RATINGS)
    assert histories.seen == {1: {10, 20, 30}, 2: {20, 40}, 3: {20}}
    assert histories.liked == {1: [20, 10], 2: [20], 3: []}  # rating >= 4, most recent first
    assert 2 in histories and 4 not in histories


def test_metadata_scores_follow_liked_genres_and_demographics():
    catalogue = logic.Catalogue.build(ITEMS, RATINGS, USERS)
    popular_only = logic.metadata_scores(catalogue)
    assert int(np.argmax(popular_only)) == 1  # Aliens: most ratings
    liked_comedy = logic.metadata_scores(catalogue, [30])
    assert int(np.argmax(liked_comedy)) == 2
    writer = logic.metadata_scores(catalogue, occupation="writer")
    other = logic.metadata_scores(catalogue, occupation="none")
    assert writer[3] > other[3], "Casablanca was rated by writers only"


def test_metadata_scores_on_movielens_pick_the_liked_genre(ml_catalogue):
    horror = [i for i in ml_catalogue.popular[:200] if ml_catalogue.genres[ml_catalogue.row_of[i]] == ["Horror"]][:3]
    scores = logic.metadata_scores(ml_catalogue, horror)
    top = ml_catalogue.item_ids[np.argsort(-scores)[:10]]
    assert sum("Horror" in ml_catalogue.genres[ml_catalogue.row_of[int(i)]] for i in top) >= 8


def test_because_you_liked():
    catalogue = logic.Catalogue.build(ITEMS, RATINGS, USERS)
    # Aliens (Action/Sci-Fi) is closest to Alien (cosine 0.5); Casablanca shares nothing with Alien or Airplane!
    assert logic.because_you_liked(catalogue, [20, 40], [30, 10], min_similarity=0.5) == [10, None]
    assert logic.because_you_liked(catalogue, [20], [10, 20]) == [20]
    assert logic.because_you_liked(catalogue, [20, 30], []) == [None, None]
    assert logic.because_you_liked(catalogue, [], [10]) == []


# ---------------------------------------------------------------------------- settings


def test_settings_from_env():
    s = Settings.from_env({"RECSYS_MODEL_URL": "http://127.0.0.1:9/", "RECSYS_ARMS": "1, 2",
                           "RECSYS_POLICY": "epsilon-greedy", "RECSYS_MMR_LAMBDA": "0.5"})
    assert (s.model_url, s.arms, s.policy, s.mmr_lambda) == ("http://127.0.0.1:9", ("1", "2"), "epsilon-greedy", 0.5)
    assert Settings.from_env({}).arms == ("latest",)
    for env, message in (
        ({"RECSYS_MMR_LAMBDA": "2"}, "RECSYS_MMR_LAMBDA must be in"),
        ({"RECSYS_MODEL_TIMEOUT": "soon"}, "must be a number"),
        ({"RECSYS_ARMS": "1,best"}, "RECSYS_ARMS"),
        ({"RECSYS_POLICY": "ucb"}, "unknown bandit policy"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)


@pytest.fixture(scope="module")
def ml_catalogue(ml100k):
    return logic.Catalogue.build(ml100k.items, ml100k.ratings, ml100k.users)


def test_catalogue_on_movielens(ml_catalogue, ml100k):
    assert len(ml_catalogue) == 1682
    top = ml100k.ratings["item_id"].value_counts()
    assert ml_catalogue.popular[0] == int(top.index[0]) == 50
    assert [ml_catalogue.popularity[ml_catalogue.row_of[i]] for i in ml_catalogue.popular[:5]] == list(top.iloc[:5])
    assert sum(ml_catalogue.group_popularity[f"gender:{g}"].sum() for g in "FM") == 100_000
    pairs = list(itertools.islice(ml_catalogue.row_of.items(), 3))
    assert all(ml_catalogue.item_ids[r] == i for i, r in pairs)


def test_importing_the_api_package_stays_cheap():
    import subprocess
    import sys

    code = ("import sys, recsys_workshop.api, recsys_workshop.api.logic; "
            "print(sorted(m for m in ('fastapi', 'tensorflow', 'aiohttp', 'pandas', 'uvicorn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
