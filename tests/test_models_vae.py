"""Mult-VAE / Mult-DAE: the loss against a hand computation, shapes, the validation protocol, the
recommender contract, and a quality floor against most-popular on a planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import metrics, models
from recsys_workshop.models.vae import MultVAE, build_autoencoder, multinomial_nll, multinomial_nll_numpy
from recsys_workshop.train import TrainConfig

pytestmark = pytest.mark.tf

FAST = {"verbose": 0, "patience": 0, "validation_fraction": 0.0}


def test_multinomial_nll_matches_a_hand_computation():
    # one user, three items, liked items 0 and 2; softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]
    logits = np.array([[0.0, np.log(2.0), np.log(3.0)]])
    liked = np.array([[1.0, 0.0, 1.0]])
    expected = -(np.log(1 / 6) + np.log(3 / 6))
    assert multinomial_nll_numpy(liked, logits) == pytest.approx([expected])
    keras_value = np.asarray(multinomial_nll(liked.astype("float32"), logits.astype("float32")))
    assert keras_value == pytest.approx([expected], rel=1e-5)
    # adding a constant to every logit changes nothing (softmax is shift invariant)
    assert multinomial_nll_numpy(liked, logits + 7.0) == pytest.approx([expected])


def test_multinomial_nll_keras_and_numpy_agree_on_random_batches():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 11)).astype("float32") * 3
    liked = (rng.random((5, 11)) < 0.3).astype("float32")
    np.testing.assert_allclose(
        np.asarray(multinomial_nll(liked, logits)), multinomial_nll_numpy(liked, logits), rtol=1e-5
    )


@pytest.mark.parametrize("variational", [True, False])
def test_network_shapes_and_deterministic_inference(variational):
    network = build_autoencoder(7, hidden=(5,), latent=3, variational=variational, seed=0)
    history = np.zeros((4, 7), dtype="float32")
    history[0, [1, 2]] = 1.0
    history[3, 6] = 1.0
    logits = np.asarray(network({"history": history}, training=False))
    assert logits.shape == (4, 7)
    assert np.isfinite(logits).all()  # an empty history (rows 1, 2) is fine too
    again = np.asarray(network({"history": history}, training=False))
    np.testing.assert_array_equal(logits, again)  # no sampling, no dropout at inference
    if variational:  # while training the code is sampled: outputs differ between calls
        first = np.asarray(network({"history": history}, training=True))
        second = np.asarray(network({"history": history}, training=True))
        assert not np.allclose(first, second)


def test_variational_model_adds_its_kl_term_only_while_training():
    network = build_autoencoder(6, hidden=(), latent=2, variational=True, beta=0.5, anneal_steps=0, seed=0)
    history = np.eye(6, dtype="float32")[:3]
    network({"history": history}, training=False)
    assert not network.losses
    network({"history": history}, training=True)
    assert len(network.losses) == 1 and float(network.losses[0]) >= 0.0


def blocks(n_users=90, n_items=60, density=0.5, seed=0) -> pd.DataFrame:
    """Three taste groups: users in group g interact with items of block g (and nothing else)."""
    rng = np.random.default_rng(seed)
    per_user, per_item = n_users // 3, n_items // 3
    rows = [
        (user + 1, item + 1, 5.0, 0)
        for user in range(n_users)
        for item in range((user // per_user) * per_item, (user // per_user + 1) * per_item)
        if rng.random() < density
    ]
    # a few very popular items of block 0 liked by everybody: most-popular recommends them to all
    rows += [(user + 1, item + 1, 3.0, 0) for user in range(n_users) for item in range(3)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return frame.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)


def test_validation_examples_hide_the_held_out_items():
    interactions = blocks()
    held_out = interactions.groupby("user_id").head(2)
    model = MultVAE(hidden=(), latent=4, seed=0)
    model._index(interactions, None)
    x, y = model.examples(held_out, epoch=-1)
    assert x["history"].shape == y.shape == (interactions.user_id.nunique(), model.item_ids_.size)
    assert (y.sum(axis=1) == 2).all()
    assert not (x["history"] * y).any(), "a held-out item leaked into the encoder's input"
    assert (x["history"] + y).sum() == len(interactions)
    x_train, y_train = model.examples(interactions, epoch=0)
    np.testing.assert_array_equal(x_train["history"], y_train)


@pytest.mark.parametrize("variational", [True, False])
def test_learns_the_blocks_and_beats_most_popular(variational):
    interactions = blocks()
    rng = np.random.default_rng(1)
    is_test = rng.random(len(interactions)) < 0.25
    train, test = interactions[~is_test], interactions[is_test]
    model = MultVAE(hidden=(32,), latent=8, variational=variational, dropout=0.3, anneal_steps=0, seed=3)
    model.fit(train, config=TrainConfig(epochs=60, batch_size=16, learning_rate=3e-3, **FAST))

    recs = model.recommend(train.user_id.unique(), k=5)
    seen = set(map(tuple, train[["user_id", "item_id"]].to_numpy()))
    assert not any((u, i) in seen for u, i in recs[["user_id", "item_id"]].to_numpy())
    assert not recs.duplicated(["user_id", "item_id"]).any()
    # apart from the three items everybody likes, a user's top 3 comes from their own block
    top = recs[(recs["rank"] <= 3) & (recs.item_id > 3)]
    assert len(top) > 200
    assert ((top.user_id - 1) // 30 == (top.item_id - 1) // 20).mean() > 0.9

    ours = metrics.evaluate(model, train, test, k=5).iloc[0]["ndcg@5"]
    popular = metrics.evaluate(models.MostPopular().fit(train), train, test, k=5).iloc[0]["ndcg@5"]
    assert ours > popular + 0.1, (ours, popular)


def test_cold_user_gets_popularity_and_unknown_item_nan():
    train = blocks(density=0.6)
    model = MultVAE(hidden=(), latent=4, seed=0)
    model.fit(train, config=TrainConfig(epochs=2, batch_size=32, **FAST))
    recs = model.recommend([10_000], k=3, exclude_seen=False)
    assert list(recs.item_id) == [1, 2, 3]  # the three items everybody interacted with
    scores = model.score([1, 1], [1, 99_999])
    assert np.isfinite(scores[0]) and np.isnan(scores[1])


def test_positive_threshold_keeps_low_ratings_out_of_the_input_but_seen():
    train = blocks()
    model = MultVAE(hidden=(), latent=4, positive_threshold=4.0, seed=0)
    model._index(train, None)
    assert model.inputs_.sum() == (train.rating >= 4).sum()
    assert model.seen_.sum() == len(train)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="dropout"):
        MultVAE(dropout=1.0)
    with pytest.raises(ValueError, match="latent"):
        MultVAE(latent=0)
    with pytest.raises(ValueError, match="beta"):
        MultVAE(beta=-0.1)
