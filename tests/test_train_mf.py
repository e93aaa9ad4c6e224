"""The training function and the Keras matrix factorisation model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import metrics
from recsys_workshop.models.mf import MatrixFactorization, build_mf
from recsys_workshop.train import TrainConfig

pytestmark = pytest.mark.tf


def planted_low_rank(n_users=120, n_items=80, rank=3, density=0.5, noise=0.05, seed=0):
    """Ratings that are exactly ``3 + u . v`` (plus a little noise) on a random half of the matrix."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(0, 0.7, (n_users, rank)), rng.normal(0, 0.7, (n_items, rank))
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    rating = 3 + (u[users] * v[items]).sum(axis=1) + rng.normal(0, noise, len(users))
    frame = pd.DataFrame({"user_id": users + 1, "item_id": items + 1, "rating": rating.astype("float32")})
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


QUIET = {"verbose": 0}


def test_mf_learns_a_planted_low_rank_structure():
    ratings = planted_low_rank()
    train, test = ratings.iloc[:4000], ratings.iloc[4000:]
    model = MatrixFactorization(8, l2=1e-3, seed=1)
    history = model.fit(
        train, config=TrainConfig(epochs=60, learning_rate=1e-2, batch_size=64, patience=5, **QUIET)
    ).history_
    test = test[test.user_id.isin(train.user_id) & test.item_id.isin(train.item_id)]
    baseline = metrics.rmse(test.rating, np.full(len(test), train.rating.mean()))
    learned = metrics.rmse(test.rating, model.score(test.user_id, test.item_id))
    assert baseline > 0.7
    assert learned < 0.25, f"MF should recover the planted structure (RMSE {learned:.3f})"
    assert {"loss", "val_loss", "rmse", "val_rmse", "seconds"} <= set(history.columns)
    assert history.index[0] == 1 and len(history) <= 60


def test_early_stopping_keeps_the_best_epoch():
    ratings = planted_low_rank(seed=3)
    train, valid = ratings.iloc[:3500], ratings.iloc[3500:]
    model = MatrixFactorization(16, l2=0.0, seed=0)
    model.fit(
        train, validation=valid, config=TrainConfig(epochs=40, learning_rate=3e-2, batch_size=32, patience=2, **QUIET)
    )
    history = model.history_
    known = valid[valid.user_id.isin(train.user_id) & valid.item_id.isin(train.item_id)]
    restored = metrics.rmse(known.rating, model.score(known.user_id, known.item_id))
    assert restored == pytest.approx(history.val_rmse.min(), rel=1e-3)
    assert len(history) < 40, "without regularisation the model overfits and training stops early"


def test_training_is_deterministic_given_the_seed():
    ratings = planted_low_rank(n_users=30, n_items=20)
    config = TrainConfig(epochs=3, batch_size=32, seed=7, **QUIET)
    a = MatrixFactorization(4, seed=7).fit(ratings, config=config)
    b = MatrixFactorization(4, seed=7).fit(ratings, config=config)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_recommend_contract_for_mf():
    ratings = planted_low_rank(n_users=30, n_items=20)
    model = MatrixFactorization(4).fit(ratings, config=TrainConfig(epochs=2, **QUIET))
    recs = model.recommend([1, 2, 999], k=5)
    seen = set(map(tuple, ratings[["user_id", "item_id"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["user_id", "item_id"]].to_numpy())
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert (recs.groupby("user_id").size() <= 5).all() and set(recs.user_id) == {1, 2, 999}
    # unknown item: the prediction falls back on the biases, never NaN
    assert np.isfinite(model.score([1, 999], [12345, 12345])).all()


def test_numpy_scoring_matches_the_keras_network():
    ratings = planted_low_rank(n_users=25, n_items=15)
    model = MatrixFactorization(5).fit(ratings, config=TrainConfig(epochs=2, **QUIET))
    x, _ = model.examples(ratings.iloc[:50])
    keras_out = np.asarray(model.network_.predict(x, verbose=0))
    np.testing.assert_allclose(model.score(ratings.user_id[:50], ratings.item_id[:50]), keras_out, rtol=1e-4, atol=1e-4)


def test_build_mf_shapes():
    network = build_mf(10, 7, 3, use_bias=True)
    assert network.get_layer("user_factors").get_weights()[0].shape == (10, 3)
    assert network.get_layer("item_bias").get_weights()[0].shape == (7, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"epochs": 0}, "epochs"), ({"learning_rate": 0}, "learning_rate"), ({"validation_fraction": 1.0}, "validation")],
)
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
