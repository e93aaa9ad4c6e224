"""Behaviour of the classical recommenders and of the shared recommend/score machinery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import data, models
from recsys_workshop.models.base import NotFittedError
from recsys_workshop.models.classic import cosine_scores, tfidf_item_features, user_profiles
from recsys_workshop.models.ensemble import standardise_rows

pytestmark = pytest.mark.unit


def planted_blocks(n_users=40, n_items=20, seed=0) -> pd.DataFrame:
    """Two taste groups: users 0-19 interact with items 0-9, users 20-39 with items 10-19 (70% each)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        group = range(0, 10) if user < n_users // 2 else range(10, 20)
        for item in group:
            if rng.random() < 0.7:
                rows.append((user, item, 5.0, 0))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


ALL_MODELS = [models.MostPopular, models.ItemKNN, models.EASE, models.BiasBaseline, models.GlobalMean]


@pytest.mark.parametrize("model_class", ALL_MODELS)
def test_recommend_contract(model_class):
    train = planted_blocks()
    model = model_class().fit(train)
    recs = model.recommend([0, 25, 0, 999], k=5)
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert list(pd.unique(recs.user_id)) == [0, 25, 999], "users in the order given, duplicates removed"
    assert not recs.duplicated(["user_id", "item_id"]).any()
    seen = set(map(tuple, train[["user_id", "item_id"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["user_id", "item_id"]].to_numpy())
    assert (recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, len(r) + 1)))).all()
    assert recs.groupby("user_id").score.apply(lambda s: s.is_monotonic_decreasing).all()
    assert len(recs[recs.user_id == 999]) == 5, "a cold user still gets k recommendations"
    # with exclude_seen=False the user's seen items may come back, and results are deterministic
    again = model.recommend([0, 25, 0, 999], k=5)
    pd.testing.assert_frame_equal(recs, again)


def test_recommend_rejects_bad_k_and_unfitted():
    with pytest.raises(NotFittedError, match="fit"):
        models.MostPopular().recommend([1], k=3)
    model = models.MostPopular().fit(planted_blocks())
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match="k must be"):
            model.recommend([1], k=bad)
    with pytest.raises(TypeError, match="integers"):
        model.recommend(["alice"], k=3)


def test_recommend_returns_fewer_items_only_when_catalogue_is_exhausted():
    train = planted_blocks()
    model = models.MostPopular().fit(train)
    user_0_seen = train[train.user_id == 0].item_id.nunique()
    recs = model.recommend([0], k=100)
    assert len(recs) == 20 - user_0_seen
    assert len(model.recommend([0], k=100, exclude_seen=False)) == 20


def test_score_pairs_and_unknown_items():
    model = models.ItemKNN().fit(planted_blocks())
    scores = model.score([0, 0, 999, 1], [0, 12345, 3, 19])
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2, 3]]).all()
    biases = models.BiasBaseline().fit(planted_blocks())
    unknown_item = biases.score([0, 999], [12345, 12345])
    assert unknown_item.tolist() == pytest.approx([biases.mu_ + biases.user_bias_[0], biases.mu_])
    with pytest.raises(ValueError, match="equal length"):
        model.score([0, 1], [0])


def test_item_knn_learns_planted_groups():
    model = models.ItemKNN(n_neighbors=10).fit(planted_blocks())
    recs = model.recommend(range(40), k=3)
    in_group = np.where(recs.user_id < 20, recs.item_id < 10, recs.item_id >= 10)
    # every item with a positive score is from the user's group (others only fill the list, at score 0)
    assert in_group[recs.score > 0].all() and (recs.score[~in_group] == 0).all()
    assert in_group[recs["rank"] == 1].all()
    similar = model.similar_items(3, n=5)
    assert (similar.item_id < 10).all()


def test_ease_columns_are_ridge_regressions_on_the_other_items():
    """Each column j of EASE's B is the ridge regression of item j on every other item (sklearn's Ridge)."""
    from sklearn.linear_model import Ridge

    train = planted_blocks(seed=3)
    model = models.EASE(l2=5.0).fit(train)
    weights = model.weights_.astype(np.float64)
    assert np.all(np.diag(weights) == 0), "an item may not predict itself"
    matrix = model.seen_.toarray().astype(np.float64)
    for j in (0, 7, 15):
        others = np.delete(np.arange(matrix.shape[1]), j)
        ridge = Ridge(alpha=5.0, fit_intercept=False).fit(matrix[:, others], matrix[:, j])
        np.testing.assert_allclose(weights[others, j], ridge.coef_, atol=1e-5)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="l2 must be a finite number > 0"):
            models.EASE(l2=bad)


def test_ease_learns_planted_groups():
    train = planted_blocks()
    top = models.EASE(l2=5.0).fit(train).recommend(range(40), k=1)
    assert len(top) == 40
    in_group = np.where(top.user_id < 20, top.item_id < 10, top.item_id >= 10)
    seen_in_group = train.groupby("user_id").item_id.nunique()
    assert in_group[top.user_id.map(seen_in_group).to_numpy() < 10].all(), "the best film is from the user's group"


def test_blend_standardises_each_member_per_user_then_weights():
    train = planted_blocks()
    knn, popular = models.ItemKNN(n_neighbors=10).fit(train), models.MostPopular().fit(train)
    blend = models.Blend([knn, popular], [0.75, 0.25]).fit(train)
    assert blend.name == "item-knn+most-popular"
    rows = np.arange(len(blend.user_ids_))
    expected = 0.75 * standardise_rows(knn._score_rows(rows)) + 0.25 * standardise_rows(popular._score_rows(rows))
    np.testing.assert_allclose(blend._score_rows(rows), expected)
    standard = standardise_rows(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(standard, [[-1.224744871, 0.0, 1.224744871], [0.0, 0.0, 0.0]])
    # a member with weight 0 changes nothing: the blend ranks like the other member
    alone = models.Blend([knn, popular], [1.0, 0.0]).fit(train).recommend(range(40), k=5)
    pd.testing.assert_frame_equal(alone[["user_id", "item_id"]], knn.recommend(range(40), k=5)[["user_id", "item_id"]])
    recs = blend.recommend([0, 25, 999], k=5)
    seen = set(map(tuple, train[["user_id", "item_id"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["user_id", "item_id"]].to_numpy())
    assert not recs.duplicated(["user_id", "item_id"]).any() and len(recs[recs.user_id == 999]) == 5


def two_rating_models(seed: int):
    """Random 1-5 ratings on the planted blocks, and two bias baselines (weakly and strongly regularised)."""
    rng = np.random.default_rng(seed)
    train = planted_blocks().assign(rating=lambda df: rng.integers(1, 6, len(df)).astype(float))
    a = models.BiasBaseline(reg_user=1, reg_item=1).fit(train)
    b = models.BiasBaseline(reg_user=50, reg_item=50).fit(train)
    return train, a, b


def test_blend_without_standardising_averages_predicted_ratings():
    train, a, b = two_rating_models(seed=2)
    mean = models.Blend([a, b], [3.0, 1.0], standardise=False).fit(train)
    users, items = np.array([0, 25, 999, 3]), np.array([1, 12, 4, 12345])  # a cold user, an unknown item
    expected = (3 * a.score(users, items) + b.score(users, items)) / 4
    np.testing.assert_allclose(mean.score(users, items), expected)
    assert np.isfinite(mean.score(users, items)).all(), "each member scores unknown users and items its own way"
    rows = np.arange(len(mean.user_ids_))
    np.testing.assert_allclose(mean._score_rows(rows), (3 * a._score_rows(rows) + b._score_rows(rows)) / 4)
    assert 1 <= mean.recommend([0], k=3).score.min() and mean.recommend([0], k=3).score.max() <= 5


def test_blend_maps_its_users_and_items_to_each_members_own_index():
    """A member fitted on more users and a larger catalogue: the blend picks the right rows and columns."""
    train = planted_blocks()
    extra = pd.DataFrame({"user_id": [-5, -5, 77], "item_id": [3, 12, 4], "rating": [5.0, 5.0, 5.0], "timestamp": 0})
    wide = models.ItemKNN(n_neighbors=10).fit(pd.concat([train, extra]), items=range(-3, 30))
    narrow = models.EASE(l2=5.0).fit(train)
    blend = models.Blend([wide, narrow], [0.5, 0.5]).fit(train)
    assert list(blend.item_ids_) == list(range(20)) and len(wide.item_ids_) == 33
    assert wide.user_rows([0])[0] == 1 and wide.item_columns([0])[0] == 3, "the member's positions differ"
    users, items = np.repeat(blend.user_ids_, 20), np.tile(blend.item_ids_, len(blend.user_ids_))
    expected = 0.5 * standardise_rows(wide.score(users, items).reshape(-1, 20)) + 0.5 * standardise_rows(
        narrow.score(users, items).reshape(-1, 20)
    )
    np.testing.assert_allclose(blend.score(users, items).reshape(-1, 20), expected)
    # user 77 is unknown to the blend but known to `wide`: each member scores them its own way
    cold = blend.score(np.full(20, 77), np.arange(20))
    np.testing.assert_allclose(
        cold,
        0.5 * standardise_rows(wide.score(np.full(20, 77), np.arange(20))[None])[0]
        + 0.5 * standardise_rows(narrow.item_counts_[None].astype(float))[0],
    )


def test_blend_of_rating_models_recommends_predicted_ratings_to_a_new_user():
    train, a, b = two_rating_models(seed=4)
    mean = models.Blend([a, b], [1.0, 1.0], standardise=False).fit(train)
    recs = mean.recommend([999], k=5)
    expected = (a.score(np.full(5, 999), recs.item_id) + b.score(np.full(5, 999), recs.item_id)) / 2
    np.testing.assert_allclose(recs.score, expected)
    assert recs.score.between(1, 5).all(), "a stranger gets predicted ratings, not popularity counts"


def test_blend_rejects_bad_members_and_weights():
    train = planted_blocks()
    knn, popular = models.ItemKNN().fit(train), models.MostPopular().fit(train)
    with pytest.raises(ValueError, match="two or more members"):
        models.Blend([knn], [1.0])
    with pytest.raises(ValueError, match="one weight each"):
        models.Blend([knn, popular], [1.0])
    for bad in ([1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weights must be"):
            models.Blend([knn, popular], bad)
    with pytest.raises(NotFittedError):
        models.Blend([knn, models.EASE()], [1.0, 1.0])
    other = models.MostPopular().fit(train[train.user_id != 0])
    with pytest.raises(ValueError, match="not fitted on every user and item"):
        models.Blend([knn, other], [1.0, 1.0]).fit(train)


def test_most_popular_orders_by_count():
    train = pd.DataFrame({"user_id": [1, 2, 3, 1, 2, 1], "item_id": [7, 7, 7, 8, 8, 9]})
    recs = models.MostPopular().fit(train).recommend([4], k=3)
    assert recs.item_id.tolist() == [7, 8, 9] and recs.score.tolist() == [3, 2, 1]


def test_bias_baseline_recovers_planted_biases():
    rng = np.random.default_rng(1)
    users, items = np.meshgrid(np.arange(60), np.arange(30), indexing="ij")
    user_bias, item_bias = rng.normal(0, 0.5, 60), np.linspace(-1, 1, 30)
    ratings = 3.5 + user_bias[users] + item_bias[items] + rng.normal(0, 0.1, users.shape)
    train = pd.DataFrame({"user_id": users.ravel(), "item_id": items.ravel(), "rating": ratings.ravel()})
    model = models.BiasBaseline(reg_user=0.1, reg_item=0.1).fit(train)
    assert np.corrcoef(model.item_bias_, item_bias)[0, 1] > 0.99
    assert np.corrcoef(model.user_bias_, user_bias)[0, 1] > 0.99


def test_bias_baseline_beats_global_mean_on_movielens(ml100k_ratings):
    from recsys_workshop import metrics

    train, test = data.random_split(ml100k_ratings, 0.8, seed=0)
    rmse = {}
    for model in (models.GlobalMean(), models.BiasBaseline()):
        model.fit(train)
        rmse[model.name] = metrics.rmse(test["rating"], model.score(test.user_id, test.item_id))
    assert 1.11 < rmse["global-mean"] < 1.14
    assert rmse["bias-baseline"] < 0.96


def test_content_based_reaches_new_items_and_explains():
    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4],
            "title": ["a", "b", "c", "new western"],
            "genres": [["Western"], ["Comedy"], ["Western", "Drama"], ["Western"]],
        }
    )
    train = pd.DataFrame({"user_id": [10, 10, 11], "item_id": [1, 2, 2], "rating": [5.0, 1.0, 5.0]})
    model = models.ContentBased(items).fit(train)
    top = model.recommend([10], k=1)
    assert top.item_id.tolist() == [4], "item 4 has no ratings but matches the user's taste"
    assert model.explain(10, 4) == ["genre:Western"]
    assert model.recommend([11], k=1).item_id.tolist() != [4]


def test_profiles_and_cosine_agree_with_sklearn():
    from sklearn.metrics.pairwise import cosine_similarity

    tokens = pd.Series({1: ["genre:A", "genre:B"], 2: ["genre:B"], 3: ["genre:C", "tag:x"], 4: ["genre:A"]})
    features, names = tfidf_item_features(tokens)
    assert len(names) == 4
    ratings = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 3, 2, 4], "rating": [5.0, 4.0, 2.0, 4.0]})
    users, profiles = user_profiles(ratings, features, np.array([1, 2, 3, 4]), like_threshold=4)
    dense = features.toarray()
    expected_user_1 = 5 * dense[0] + 4 * dense[2]
    np.testing.assert_allclose(profiles[0], expected_user_1 / np.linalg.norm(expected_user_1))
    np.testing.assert_allclose(profiles[1], dense[3] / np.linalg.norm(dense[3]))
    np.testing.assert_allclose(cosine_scores(profiles, features), cosine_similarity(profiles, dense), atol=1e-12)


def test_classic_models_do_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, recsys_workshop.models; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
