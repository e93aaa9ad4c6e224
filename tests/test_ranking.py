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
    head = MLPHead.from_layers(np.array([[1.0], [-1.0]]), np.array([[0.0]]), [np.array([[2.0], [0.0]])],
                               [np.array([0.0])], np.array([3.0]))  # fmt: skip
    np.testing.assert_allclose(head.pair_scores(np.array([0, 1]), np.array([0, 0])), [6.0, 0.0])


def test_what_cannot_be_split_is_refused(neumf):
    with pytest.raises(ValueError, match="NCF of kind 'neumf'"):
        neumf_stages(NCF("gmf"))
    with pytest.raises(ValueError, match="first layer takes 3 inputs"):
        MLPHead.from_layers(np.zeros((2, 1)), np.zeros((3, 1)), [np.zeros((3, 2))], [np.zeros(2)], np.zeros(2))
    with pytest.raises(ValueError, match="do not chain"):
        MLPHead(np.zeros((2, 4)), np.zeros((3, 4)), [np.zeros((5, 2))], [np.zeros(2)], np.zeros(2))


def test_a_head_survives_its_arrays(neumf):
    _, head = neumf_stages(neumf)
    stored = head.arrays()
    assert list(stored) == MLPHead.array_names(len(head.weights))
    again = MLPHead.from_arrays(stored, len(head.weights))
    rows, cols = np.arange(10), np.arange(10)
    np.testing.assert_array_equal(again.pair_scores(rows, cols), head.pair_scores(rows, cols))


# --------------------------------------------------------------------------------------- NeuMF, exported and served


@pytest.fixture(scope="module")
def neumf_versions(tmp_path_factory, neumf):
    """Version 1 searched exactly, version 2 through an HNSW index over the GMF vectors (10 candidates)."""
    from recsys_workshop import export
    from recsys_workshop.retrieval import RetrievalConfig

    base = tmp_path_factory.mktemp("neumf")
    export.export_model(neumf, base, version=1, retrieval=RetrievalConfig(index="exact"))
    hnsw = RetrievalConfig(index="hnsw", candidates=10, m=8, ef_construction=40, ef_search=32)
    export.export_model(neumf, base, version=2, retrieval=hnsw)
    return base


def test_neumf_exports_its_vectors_and_head_not_a_score_matrix(neumf_versions):
    from recsys_workshop import export

    metadata = export.load_metadata(neumf_versions / "1")
    assert (metadata["vectors"], metadata["catalogue"]) == ("factors", "any")
    assert (metadata["ranking"], metadata["ranking_layers"]) == ("mlp-head", 1)  # mlp_2 after mlp_1
    assert metadata["n_factors"] == 6, "the retrieval vectors are the GMF factors, not one column per item"


def test_the_served_answer_and_scores_are_neumfs_own(neumf, neumf_versions):
    from recsys_workshop.serving import LoadedVersion

    version = LoadedVersion.load(neumf_versions / "1")
    users = neumf.user_ids_[:12]
    items, scores, known = version.top_k(users, 5)
    expected = neumf.recommend(users, 5, exclude_seen=False)
    assert known.all()
    for i, user in enumerate(users):
        mine = expected[expected.user_id == user]
        np.testing.assert_array_equal(items[i], mine.item_id.to_numpy(), err_msg=f"user {user}")
        np.testing.assert_allclose(scores[i], mine.score.to_numpy(), rtol=1e-4, atol=1e-5)
    rng = np.random.default_rng(2)
    pair_users, pair_items = rng.choice(neumf.user_ids_, 300), rng.choice(neumf.item_ids_, 300)
    logits = neumf._score_pairs(pair_users, neumf.user_rows(pair_users), neumf.item_columns(pair_items))
    np.testing.assert_allclose(version.score(pair_users, pair_items), logits, rtol=1e-4, atol=1e-5)


def test_the_index_retrieves_and_the_head_ranks(neumf, neumf_versions):
    """Version 2: each answer comes from the index's 10 candidates, ordered by NeuMF's full score."""
    from recsys_workshop.retrieval import augment_queries
    from recsys_workshop.serving import LoadedVersion

    version = LoadedVersion.load(neumf_versions / "2")
    users = neumf.user_ids_[:12]
    items, scores, _ = version.top_k(users, 5)
    rows, _ = version.rows(users)
    retrieved = version.searcher.search(augment_queries(version.user_vectors[rows]), 10)
    for i, user in enumerate(users):
        assert set(version.columns(items[i])[0]) <= set(retrieved[i]), f"user {user}: not a candidate"
        full = version.score(np.full(len(retrieved[i]), user), version.item_ids[retrieved[i]])
        best = version.item_ids[retrieved[i][np.argsort(-full, kind="stable")[:5]]]
        np.testing.assert_array_equal(items[i], best)
    assert version.tune(candidates=60).top_k(users, 5)[0][0].tolist() == LoadedVersion.load(
        neumf_versions / "1").top_k(users, 5)[0][0].tolist(), "the whole catalogue as candidates: the exact answer"


def test_the_tensorflow_signatures_give_the_same_answer(neumf, neumf_versions):
    import tensorflow as tf

    from recsys_workshop.serving import LoadedVersion

    users = neumf.user_ids_[:6]
    loaded = tf.saved_model.load(str(neumf_versions / "1"))
    out = loaded.signatures["serving_default"](user_id=tf.constant(users, tf.int64), k=tf.constant(5, tf.int32))
    items, scores, _ = LoadedVersion.load(neumf_versions / "1").top_k(users, 5)
    np.testing.assert_array_equal(out["item_ids"].numpy(), np.stack(items))
    np.testing.assert_allclose(out["scores"].numpy(), np.stack(scores), rtol=1e-4, atol=1e-5)


def test_a_version_with_an_unknown_ranking_is_refused(neumf_versions, tmp_path):
    import json
    import shutil

    from recsys_workshop.serving import LoadedVersion, VersionError

    copy = tmp_path / "3"
    shutil.copytree(neumf_versions / "1", copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**metadata, "ranking": "gbdt"}))
    with pytest.raises(VersionError, match="ranking 'gbdt'") as error:
        LoadedVersion.load(copy)
    assert error.value.status == 409
