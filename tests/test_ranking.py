"""recsys_workshop.ranking: NeuMF split into a retrieval dot product and a numpy MLP head whose sum is the
network's own logit (compared with the Keras model's output, not with a copy of its maths)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop.models.ncf import NCF
from recsys_workshop.ranking import MLPHead, neumf_stages
from recsys_workshop.train import TrainConfig

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def neumf():
    rng = np.random.default_rng(0)
    users = rng.integers(1, 41, 2000)
    items = (users * 7 + rng.integers(0, 5, 2000)) % 60 + 1
    ratings = pd.DataFrame({"user_id": users, "item_id": items, "rating": 4.0, "timestamp": np.arange(2000)})
    model = NCF("neumf", n_factors=6, mlp_layers=(8, 6, 4), seed=0)
    return model.fit(ratings, config=TrainConfig(epochs=2, batch_size=256, patience=0, verbose=0, seed=0))


def test_the_two_stages_add_up_to_the_networks_logit(neumf):
    retrieval, head = neumf_stages(neumf)
    rng = np.random.default_rng(1)
    user_rows = rng.integers(0, len(neumf.user_ids_), 500)
    cols = rng.integers(0, len(neumf.item_ids_), 500)
    logits = neumf._score_pairs(neumf.user_ids_[user_rows], user_rows, cols)  # the Keras network's output
    dot = np.einsum("ij,ij->i", retrieval["user_vectors"][user_rows], retrieval["item_vectors"][cols])
    ours = dot + retrieval["global_bias"] + head.pair_scores(user_rows, cols)
    np.testing.assert_allclose(ours, logits, rtol=1e-4, atol=1e-5)
    assert np.std(head.pair_scores(user_rows, cols)) > 0, "the head adds something the dot product does not"


def test_candidate_blocks_match_pairs(neumf):
    _, head = neumf_stages(neumf)
    user_rows = np.array([0, 3, 7])
    cols = np.array([[0, 1, 2, 3, 4], [5, 5, 6, 7, 8], [59, 0, 10, 20, 30]]) % len(neumf.item_ids_)
    block = head.scores(user_rows, cols)
    assert block.shape == (3, 5)
    pairs = head.pair_scores(np.repeat(user_rows, 5), cols.reshape(-1)).reshape(3, 5)
    np.testing.assert_allclose(block, pairs, rtol=1e-6)


def test_a_relu_layer_cuts_negative_activations():
    head = MLPHead(np.array([[1.0], [-1.0]]), np.array([[0.0]]), [np.array([[2.0], [0.0]])], [np.array([0.0])],
                   np.array([3.0]))  # fmt: skip
    np.testing.assert_allclose(head.pair_scores(np.array([0, 1]), np.array([0, 0])), [6.0, 0.0])


def test_what_cannot_be_split_is_refused(neumf):
    with pytest.raises(ValueError, match="NCF of kind 'neumf'"):
        neumf_stages(NCF("gmf"))
    with pytest.raises(ValueError, match="first layer takes 3 inputs"):
        MLPHead(np.zeros((2, 1)), np.zeros((3, 1)), [np.zeros((3, 2))], [np.zeros(2)], np.zeros(2))
