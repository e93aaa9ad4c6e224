"""Behaviour of the deep models on small synthetic data with a planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_workshop.models.hybrid import HybridModel, age_bucket
from recsys_workshop.models.ncf import NCF
from recsys_workshop.models.sampling import NegativeSampler
from recsys_workshop.models.triplet import TripletModel
from recsys_workshop.models.two_tower import TwoTower
from recsys_workshop.train import TrainConfig

pytestmark = pytest.mark.tf

N_USERS, N_ITEMS = 60, 40


def two_groups(density=0.6, seed=0) -> pd.DataFrame:
    """Users 1-30 like items 1-20, users 31-60 like items 21-40 (each pair present with ``density``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, N_USERS + 1):
        liked = range(1, 21) if user <= 30 else range(21, 41)
        rows += [(user, item, 5.0, 0) for item in liked if rng.random() < density]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def in_group_share(recs: pd.DataFrame) -> float:
    same = np.where(recs.user_id <= 30, recs.item_id <= 20, recs.item_id > 20)
    return float(same.mean())


def check_contract(model, train: pd.DataFrame, users) -> pd.DataFrame:
    recs = model.recommend(users, k=5)
    seen = set(map(tuple, train[["user_id", "item_id"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["user_id", "item_id"]].to_numpy()), "a seen item came back"
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert set(recs.user_id) == set(users)
    return recs


FAST = {"verbose": 0, "patience": 0, "validation_fraction": 0.0}


@pytest.mark.parametrize("kind", ["gmf", "mlp", "neumf"])
def test_ncf_learns_the_groups(kind):
    train = two_groups()
    model = NCF(kind, n_factors=8, mlp_layers=(16, 8), seed=1)
    model.fit(train, config=TrainConfig(epochs=25, batch_size=64, learning_rate=1e-2, **FAST))
    recs = check_contract(model, train, range(1, N_USERS + 1))
    assert in_group_share(recs[recs["rank"] <= 3]) > 0.9


@pytest.mark.parametrize("loss", ["margin", "bpr"])
def test_triplet_learns_the_groups(loss):
    train = two_groups()
    model = TripletModel(8, loss=loss, seed=1)
    model.fit(train, config=TrainConfig(epochs=25, batch_size=32, learning_rate=1e-2, **FAST))
    recs = check_contract(model, train, range(1, N_USERS + 1))
    assert in_group_share(recs[recs["rank"] <= 3]) > 0.9


def test_two_tower_learns_the_groups_and_the_index_agrees():
    train = two_groups(density=0.8)
    model = TwoTower(8, seed=1)
    model.fit(train, config=TrainConfig(epochs=30, batch_size=16, learning_rate=1e-2, **FAST))
    recs = check_contract(model, train, range(1, N_USERS + 1))
    assert in_group_share(recs[recs["rank"] <= 3]) > 0.9
    retrieved = model.retrieve([1, 45], k=10)
    assert retrieved.shape == (2, 10)
    assert (retrieved[0] <= 20).mean() > 0.8 and (retrieved[1] > 20).mean() > 0.8
    assert model.approximate_recall(k=10, ef_search=64) > 0.95


def hybrid_world():
    """Women (F) like films of genre 'A', men (M) films of genre 'B'; ids carry no extra signal."""
    users = pd.DataFrame(
        {"user_id": np.arange(1, 81), "age": 30, "gender": ["F", "M"] * 40, "occupation": "other", "zip": "00000"}
    )
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, 41),
            "title": [f"film {i}" for i in range(1, 41)],
            "year": 1995,
            "genres": [["A"] if i <= 20 else ["B"] for i in range(1, 41)],
        }
    )
    rng = np.random.default_rng(0)
    rows = []
    for user, gender in zip(users.user_id, users.gender, strict=True):
        for item in range(1, 37):  # films 37-40 are never rated: new films
            likes = (item <= 20) == (gender == "F")
            if rng.random() < 0.5:
                rows.append((user, item, 5.0 if likes else 1.0, 0))
    return users, items, pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_hybrid_scores_cold_users_and_new_items_from_metadata():
    users, items, ratings = hybrid_world()
    train = ratings[ratings.user_id <= 60]  # users 61-80 are held out entirely: cold users
    model = HybridModel(users, items, task="rating", n_factors=8, hidden=(16,), id_dropout=0.3, seed=0)
    model.fit(train, config=TrainConfig(epochs=30, batch_size=64, learning_rate=1e-2, **FAST))
    assert model.user_rows([61])[0] == -1, "user 61 must be unknown to the model"
    # a cold woman (61) and a cold man (62), scored from gender alone, on the new films 37-40 (genre B)
    scores = model.score([61, 61, 62, 62], [3, 38, 3, 38])
    assert scores[0] > scores[1] + 1.0, "the cold woman prefers genre A"
    assert scores[3] > scores[2] + 1.0, "the cold man prefers the new genre-B film"
    recs = model.recommend([61, 62], k=5)
    assert (recs[recs.user_id == 61].item_id <= 20).all() and (recs[recs.user_id == 62].item_id > 20).all()
    new_user = model.score_new_user(age=30, gender="M", occupation="other")
    assert new_user.loc[21:40].mean() > new_user.loc[1:20].mean() + 1.0


def test_hybrid_ranking_head_learns_preferences():
    users, items, ratings = hybrid_world()
    liked = ratings[ratings.rating >= 4]
    model = HybridModel(users, items, task="ranking", n_factors=8, hidden=(16,), seed=0)
    model.fit(liked, config=TrainConfig(epochs=20, batch_size=64, learning_rate=1e-2, **FAST))
    recs = check_contract(model, liked, [1, 2])
    assert (recs[recs.user_id == 1].item_id <= 20).all() and (recs[recs.user_id == 2].item_id > 20).all()


def test_age_buckets():
    assert age_bucket([7, 18, 24, 25, 49, 50, 56, 80, np.nan]).tolist() == [1, 2, 2, 3, 5, 6, 7, 7, 0]


def test_negative_sampler_never_returns_a_seen_item():
    rng = np.random.default_rng(0)
    seen = sp.random(50, 30, density=0.6, format="csr", random_state=1) > 0
    sampler = NegativeSampler(seen)
    users = np.repeat(np.arange(50), 40)
    items = sampler.sample(users, rng)
    assert not np.asarray(seen[users, items]).any()
    again = NegativeSampler(seen).sample(users, np.random.default_rng(0))
    np.testing.assert_array_equal(items, again)


def test_popularity_sampling_prefers_popular_items():
    dense = np.array([[1, 0, 0, 0, 0, 0]] * 50 + [[0] * 6] * 5, dtype=bool)
    dense[:40, 1] = True  # item 0 seen by 50 users, item 1 by 40, items 2-5 by nobody
    seen = sp.csr_matrix(dense)
    popular = NegativeSampler(seen, "popularity", alpha=1.0).sample(
        np.arange(50, 55).repeat(2000), np.random.default_rng(0)
    )
    uniform = NegativeSampler(seen, "uniform").sample(np.arange(50, 55).repeat(2000), np.random.default_rng(0))
    assert (popular <= 1).mean() > 0.8 and 0.25 < (uniform <= 1).mean() < 0.42


def test_sampler_refuses_saturated_users():
    seen = sp.csr_matrix(np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="every item"):
        NegativeSampler(seen).sample(np.array([0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="strategy"):
        NegativeSampler(seen, "random")


def test_pair_scores_match_full_rows_for_network_models():
    """``score`` takes a shortcut through the network for pairs: it must agree with ``recommend``'s rows."""
    train = two_groups()
    users, items, _ = hybrid_world()
    ncf = NCF("neumf", n_factors=4, mlp_layers=(8, 4), seed=0).fit(train, config=TrainConfig(epochs=1, **FAST))
    pairs_users, pairs_items = np.array([1, 5, 45, 999, 1]), np.array([3, 30, 2, 7, 12345])
    scores = ncf.score(pairs_users, pairs_items)
    rows = ncf._block(ncf.user_rows(pairs_users[:4]), pairs_users[:4])
    expected = rows[np.arange(4), ncf.item_columns(pairs_items[:4])]
    np.testing.assert_allclose(scores[:4], expected, rtol=1e-5, atol=1e-6)
    assert np.isnan(scores[4])
    _, hybrid_items, hybrid_ratings = hybrid_world()
    hybrid = HybridModel(users, hybrid_items, n_factors=4, hidden=(8,), seed=0)
    hybrid.fit(hybrid_ratings[hybrid_ratings.user_id <= 60], config=TrainConfig(epochs=1, **FAST))
    who, what = np.array([1, 70, 3]), np.array([2, 38, 40])
    rows = hybrid._block(hybrid.user_rows(who), who)
    np.testing.assert_allclose(
        hybrid.score(who, what), rows[np.arange(3), hybrid.item_columns(what)], rtol=1e-5, atol=1e-5
    )


def test_hybrid_l2_penalises_exactly_the_id_embeddings_and_biases():
    from recsys_workshop.models.hybrid import build_hybrid

    plain = build_hybrid(10, 12, 3, 4, n_factors=4, hidden=(8,), seed=0)
    assert not plain.losses
    l2 = 1e-2
    network = build_hybrid(10, 12, 3, 4, n_factors=4, hidden=(8,), l2=l2, seed=0)
    penalised = ("user_id_embedding", "item_id_embedding", "user_bias", "item_bias")
    for name in penalised:  # give the (zero-initialised) biases a value so every penalty counts
        layer = network.get_layer(name)
        layer.set_weights([np.full_like(layer.get_weights()[0], 0.5)])
    expected = sum(l2 * float(np.sum(np.square(network.get_layer(n).get_weights()[0]))) for n in penalised)
    assert float(sum(np.asarray(loss) for loss in network.losses)) == pytest.approx(expected, rel=1e-5)
