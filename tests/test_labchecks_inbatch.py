"""Lab 04's Exercise 4.2 (recsys_workshop.labchecks.inbatch): the in-batch softmax's corrections. The
solution notebook's function passes; each usual wrong answer gets a message of its own (nothing done, log p
added, the row's probability, p instead of log p, hits kept, the diagonal removed, hits set to 0 or to
-inf, NumPy instead of keras.ops, a static batch size); and the package's corrections behave as the maths
says (the logQ half is keras-rs' real output; a removed hit has no probability in the softmax)."""

from __future__ import annotations

import numpy as np
import pytest
from check_helpers import fails, solution_functions

from recsys_workshop.labchecks import inbatch

pytestmark = [pytest.mark.unit, pytest.mark.tf]

@pytest.fixture(scope="module")
def ops():
    from keras import ops

    return ops


@pytest.fixture(scope="module")
def solution(ops):
    """``correct_logits`` as the solution notebook defines it."""
    return solution_functions("04_implicit_feedback_and_retrieval.ipynb", "correct_logits", ops=ops)["correct_logits"]


def _hits(ops, item_ids, diagonal=False):
    same = ops.equal(ops.expand_dims(item_ids, 1), ops.expand_dims(item_ids, 0))
    if diagonal:
        return same
    return ops.logical_and(same, ops.logical_not(ops.cast(ops.eye(ops.shape(item_ids)[0]), "bool")))


def test_the_solution_and_the_package_pass(solution):
    from recsys_workshop.models import two_tower

    inbatch.check_corrections(solution)
    inbatch.check_corrections(two_tower.correct_logits)


def test_any_huge_finite_negative_counts_as_removed_but_not_minus_infinity(ops):
    def masked_with(value):
        def corrections(logits, probability, item_ids):
            logits = logits - ops.expand_dims(ops.log(probability), 0)
            return ops.where(_hits(ops, item_ids), value, logits)

        return corrections

    inbatch.check_corrections(masked_with(-1e30))
    fails(inbatch.check_corrections, masked_with(float("-inf")), match="the loss becomes NaN")


def test_a_static_batch_size_is_told_to_use_ops_shape(ops):
    """Training feeds batches of unknown size: len() or .shape[0] works on arrays and fails there."""
    def static(logits, probability, item_ids):
        logits = logits - ops.expand_dims(ops.log(probability), 0)
        off_diagonal = ops.logical_not(ops.cast(ops.eye(len(item_ids)), "bool"))
        same = ops.equal(ops.expand_dims(item_ids, 1), ops.expand_dims(item_ids, 0))
        return ops.where(ops.logical_and(same, off_diagonal), -1e9, logits)

    fails(inbatch.check_corrections, static, match="ops.shape(logits)[0]")


@pytest.mark.parametrize(
    ("mistake", "match"),
    [
        ("nothing", "came back unchanged"),
        ("log added", "you added log p"),
        ("row probability", "row b's film"),
        ("p not log p", "subtract its logarithm"),
        ("hits kept", "accidental hits kept"),
        ("diagonal removed", "you removed the diagonal too"),
        ("hits set to 0", "a logit of 0 still counts"),
    ],
)
def test_each_usual_mistake_gets_its_message(ops, mistake, match):
    def wrong(logits, probability, item_ids):
        log_p = ops.log(probability)
        corrected = {
            "nothing": logits,
            "log added": logits + ops.expand_dims(log_p, 0),
            "row probability": logits - ops.expand_dims(log_p, 1),
            "p not log p": logits - ops.expand_dims(probability, 0),
        }.get(mistake, logits - ops.expand_dims(log_p, 0))
        if mistake in ("nothing", "hits kept"):
            return corrected
        if mistake == "diagonal removed":
            return ops.where(_hits(ops, item_ids, diagonal=True), -1e9, corrected)
        if mistake == "hits set to 0":
            return ops.where(_hits(ops, item_ids), 0.0, corrected)
        return ops.where(_hits(ops, item_ids), -1e9, corrected)

    message = fails(inbatch.check_corrections, wrong, match=match)
    assert "expected" in message and "got" in message, message


def test_numpy_code_is_told_to_use_keras_ops():
    def in_numpy(logits, probability, item_ids):
        logits = np.asarray(logits) - np.log(np.asarray(probability))[None, :]
        ids = np.asarray(item_ids)
        hits = (ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)
        return np.where(hits, -1e9, logits)

    fails(inbatch.check_corrections, in_numpy, match="use keras.ops")


def test_the_logq_half_is_keras_rs_and_a_removed_hit_has_no_probability(ops):
    import keras_rs

    from recsys_workshop.models import two_tower

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 5)).astype("float32")
    probability = rng.uniform(0.01, 0.5, 5).astype("float32")
    item_ids = np.array([4, 8, 4, 1, 8], "int32")
    got = ops.convert_to_numpy(two_tower.correct_logits(logits, probability, item_ids))
    logq = ops.convert_to_numpy(keras_rs.layers.SamplingProbabilityCorrection()(logits, probability))
    hits = np.array([[i != j and item_ids[i] == item_ids[j] for j in range(5)] for i in range(5)])
    np.testing.assert_allclose(got[~hits], logq[~hits], rtol=1e-6)
    assert hits.sum() == 4
    softmax = ops.convert_to_numpy(ops.softmax(got, axis=-1))
    assert (softmax[hits] == 0).all()
    np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-6)


def test_keras_rs_remove_accidental_hits_is_still_a_no_op(ops):
    """keras-team/keras-rs#206: the layer adds about 1e-40 to an accidental hit's logit. When this test
    fails, a keras-rs release has fixed it: use the layer again in models/two_tower.remove_accidental_hits."""
    import keras_rs

    logits = np.array([[1.0, 2.0, 3.0, 4.0]] * 4, "float32")
    item_ids = np.array([7, 5, 7, 8], "int32")
    out = ops.convert_to_numpy(keras_rs.layers.RemoveAccidentalHits()(logits, np.eye(4, dtype="float32"), item_ids))
    np.testing.assert_array_equal(out, logits)
