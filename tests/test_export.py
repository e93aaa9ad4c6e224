"""SavedModel export: the signatures agree with the model, exports are atomic and versioned."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from model_fixtures import exported_versions, small_model, split

from recsys_workshop import export

pytestmark = pytest.mark.tf

USERS = [1, 196, 405, 943, 10**9]  # the last one is unknown to every model


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


def signature_top_k(tf, path, users, k):
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](
        user_id=tf.constant(users, tf.int64), k=tf.constant(k, tf.int32)
    )
    return {name: value.numpy() for name, value in out.items()}


def assert_matches_recommend(model, out, users, k):
    """The signature's lists are the model's own (seen items included, as the signature does not filter)."""
    recs = model.recommend(users, k, exclude_seen=False)
    known = model.user_rows(users) >= 0
    np.testing.assert_array_equal(out["known"], known)
    assert out["item_ids"].shape == (len(users), k) and out["item_ids"].dtype == np.int64
    assert out["scores"].dtype == np.float32
    for i, user in enumerate(users):
        expected = recs[recs.user_id == user]
        np.testing.assert_array_equal(out["item_ids"][i], expected.item_id.to_numpy(), err_msg=f"user {user}")
        np.testing.assert_allclose(out["scores"][i], expected.score.to_numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mf", "bpr"])
def test_top_k_signature_equals_recommend(tf, tmp_path, kind):
    model = small_model(kind, 2, 0)
    path = export.export_model(model, tmp_path)
    assert path == tmp_path / "1"
    out = signature_top_k(tf, path, USERS, 10)
    assert_matches_recommend(model, out, USERS, 10)
    # an unknown user gets the most popular items, most popular first
    popular = model.item_ids_[np.argsort(-model.item_counts_, kind="stable")[:10]]
    np.testing.assert_array_equal(out["item_ids"][-1], popular)
    assert not out["known"][-1]


@pytest.mark.slow
def test_score_signature_equals_model_score(tf, tmp_path):
    model = small_model("mf", 2, 0)
    _, test = split()
    pairs = test.sample(500, random_state=0)
    path = export.export_model(model, tmp_path)
    loaded = tf.saved_model.load(str(path))
    users = np.append(pairs.user_id.to_numpy(), [10**9, 1])
    items = np.append(pairs.item_id.to_numpy(), [50, 10**9])
    out = loaded.signatures["score"](user_id=tf.constant(users, tf.int64), item_id=tf.constant(items, tf.int64))
    scores = out["scores"].numpy()
    expected = model.score(users[:-1], items[:-1])
    np.testing.assert_allclose(scores[:-1], expected, rtol=1e-5, atol=1e-4)
    assert np.isnan(scores[-1]), "an item outside the catalogue has no score"
    assert scores[-2] == model.item_counts_[model.item_columns([50])[0]], "unknown user: the item's popularity"


def test_a_model_without_vectors_exports_its_score_matrix(tf, tmp_path):
    from recsys_workshop.models import ItemKNN

    train, _ = split()
    model = ItemKNN(n_neighbors=20).fit(train)
    path = export.export_model(model, tmp_path, metadata={"dataset": "ml-100k"})
    meta = export.load_metadata(path)
    assert meta["vectors"] == "dense" and meta["model"] == "ItemKNN"
    users = [1, 2, 3, 10**9]
    assert_matches_recommend(model, signature_top_k(tf, path, users, 5), users, 5)


def test_metadata(tmp_path):
    model = small_model("mf", 2, 0)
    path = export.export_model(
        model, tmp_path, metadata={"dataset": "ml-100k", "metrics": {"ndcg@10": 0.25}, "train_config": {"epochs": 2}}
    )
    meta = export.load_metadata(path)
    assert meta["model"] == "MatrixFactorization" and meta["version"] == 1
    assert meta["dataset"] == "ml-100k" and meta["metrics"] == {"ndcg@10": 0.25}
    assert meta["train_config"] == {"epochs": 2}
    assert meta["n_users"] == len(model.user_ids_) and meta["n_items"] == len(model.item_ids_)
    assert meta["created_at"].endswith("Z") and meta["created_at"][:2] == "20"
    assert json.loads((path / "metadata.json").read_text()) == meta
    with pytest.raises(FileNotFoundError, match="exported model version"):
        export.load_metadata(tmp_path)


def test_versions_are_numbered_like_tf_serving(tmp_path):
    model = small_model("mf", 2, 0)
    assert export.next_version(tmp_path / "missing") == 1
    (tmp_path / "3").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "10.bak").mkdir()
    assert export.list_versions(tmp_path) == [3]
    path = export.export_model(model, tmp_path)
    assert path.name == "4" and export.load_metadata(path)["version"] == 4
    assert export.next_version(tmp_path) == 5
    with pytest.raises(FileExistsError, match="never overwritten"):
        export.export_model(model, tmp_path, version=3)
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            export.export_model(model, tmp_path, version=bad)


def test_a_failed_export_leaves_nothing(tmp_path, monkeypatch, tf):
    model = small_model("mf", 2, 0)
    exported_versions(tmp_path, 1)
    before = sorted(os.listdir(tmp_path))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, tmp_path)
    assert sorted(os.listdir(tmp_path)) == before, "no version folder and no temporary folder may remain"

    with pytest.raises(TypeError, match="not JSON serialisable"):
        export.export_model(model, tmp_path, metadata={"when": object()})
    assert sorted(os.listdir(tmp_path)) == before


def test_unfitted_or_broken_models_are_refused(tmp_path):
    from recsys_workshop.models.mf import MatrixFactorization

    with pytest.raises(export.ExportError, match="not fitted"):
        export.export_model(MatrixFactorization(4), tmp_path)
    model = small_model("mf", 2, 0)
    broken = MatrixFactorization(4)
    broken.__dict__.update(model.__dict__)
    broken.user_factors_ = model.user_factors_.copy()
    broken.user_factors_[0, 0] = np.nan
    with pytest.raises(export.ExportError, match="non-finite"):
        export.export_model(broken, tmp_path)
    assert not (tmp_path / "1").exists()
