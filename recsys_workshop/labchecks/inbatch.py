"""Lab 04, section 2 (two-tower retrieval): the check of Exercise 4.2, the in-batch softmax's corrections.

``correct_logits(logits, probability, item_ids)`` takes a batch's ``(B, B)`` logits (row b: user b,
column c: the film of row c), the sampling probability of each row's film and the films' ids, and
returns the logits with the logQ correction (``logits[b, c] - log p[c]``) and the accidental hits
removed (a column ``c != b`` whose film is row b's gets a huge negative logit).

:func:`check_corrections` runs the learner's function on named batches and compares it with the
package's :func:`recsys_workshop.models.two_tower.correct_logits`, whose logQ half is keras-rs'
``SamplingProbabilityCorrection`` (its real output); a masked logit counts as removed when it is at
most :data:`REMOVED` and finite (``-1e9`` or ``-1e30``; ``-inf`` is refused: TensorFlow's softmax
cross-entropy multiplies it by a zero label and the loss becomes NaN). Each usual mistake gets its own
message: nothing done, the log added, the row's probability instead of the column's, ``p`` instead of
``log p``, hits kept, the diagonal masked, hits masked with 0 or with ``-inf``, not in ``keras.ops``.
Then the function must work on the symbolic tensors of a Keras model whose batch size is unknown (as
in training), where NumPy, ``len`` or a static shape fail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["REMOVED", "check_corrections"]

REMOVED = -1e6  # a finite logit at or below this is out of the softmax: exp(-1e6 + 20) == 0 in float32


def _reference(logits, probability, item_ids) -> np.ndarray:
    from keras import ops

    from recsys_workshop.models.two_tower import correct_logits

    return ops.convert_to_numpy(correct_logits(logits, probability, item_ids))


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 6)).astype("float32")
    probability = np.array([0.3, 0.05, 0.3, 0.01, 0.2, 0.05], dtype="float32")
    return {
        "four rows, four different films": (
            logits[:4, :4], np.array([0.4, 0.1, 0.02, 0.2], "float32"), np.array([11, 12, 13, 14], "int32")),
        "six rows, film 7 in rows 0 and 2, film 9 in rows 1 and 5": (
            logits, probability, np.array([7, 9, 7, 3, 4, 9], "int32")),
        "three rows, all the same film": (
            logits[:3, :3], np.full(3, 0.5, "float32"), np.array([5, 5, 5], "int32")),
    }


def _diagnose(got: np.ndarray, logits, probability, item_ids, expected: np.ndarray) -> str:
    """The likely mistake behind a wrong answer (empty when none is recognised)."""
    log_p = np.log(probability)
    removed = expected <= REMOVED
    keep = ~removed
    n = len(item_ids)
    same = (item_ids[:, None] == item_ids[None, :]) & ~np.eye(n, dtype=bool)

    def near(a, b, where=keep) -> bool:
        return bool(np.allclose(a[where], b[where], rtol=1e-4, atol=1e-4))

    if np.isneginf(got).any():
        return ("a logit of -inf: the softmax cross-entropy multiplies it by a zero label and the loss becomes NaN; "
                "use a large finite negative number such as -1e9")
    if np.allclose(got, logits, rtol=1e-5, atol=1e-5):
        return "the logits came back unchanged: subtract log p of each column's film, and remove the accidental hits"
    if near(got, logits + log_p[None, :]):
        return "you added log p: subtract it (a popular film is a negative more often, so it must lose that edge)"
    if near(got, logits - log_p[:, None]):
        return ("you subtracted the log p of row b's film; the correction belongs to the candidate, the film of "
                "column c (broadcast the (B,) probabilities along the last axis)")
    if near(got, logits - probability[None, :]):
        return "you subtracted p itself: subtract its logarithm, log p"
    if (np.diag(got) <= REMOVED).any():
        return "you removed the diagonal too: column b is row b's own positive, the one the softmax must pick"
    if not near(got, expected):
        return ""
    if np.any(same) and np.allclose(got[same], 0.0):
        return ("accidental hits set to 0: a logit of 0 still counts in the softmax; make it a huge negative "
                "number (e.g. -1e9)")
    if np.any(same) and not (got[same] <= REMOVED).all():
        return (f"accidental hits kept: where row b's film appears again in another column c, that logit must "
                f"be a huge negative number (at most {REMOVED:g}), got {got[same].round(3).tolist()}")
    return ""


def _in_a_model(fn: Callable, logits, probability, item_ids) -> np.ndarray:
    """``fn`` as the two-tower's training graph calls it: inside a layer of a Keras model, on tensors whose
    batch size is unknown when the graph is traced (``predict`` traces it as ``fit`` does)."""
    import keras

    class Corrections(keras.layers.Layer):
        def call(self, logits, probability, item_ids):
            return fn(logits, probability, item_ids)

        def compute_output_spec(self, logits, probability, item_ids):
            return keras.KerasTensor(logits.shape, dtype=logits.dtype)

    inputs = [
        keras.Input(shape=(None,), name="logits"),
        keras.Input(shape=(), name="probability"),
        keras.Input(shape=(), dtype="int32", name="item_ids"),
    ]
    model = keras.Model(inputs, Corrections()(*inputs))
    try:
        return np.asarray(model.predict([logits, probability, item_ids], batch_size=len(item_ids), verbose=0))
    except Exception as err:  # noqa: BLE001 - any failure here means the code is not graph-ready keras.ops
        raise AssertionError(
            f"inside a Keras model your function fails ({type(err).__name__}: {str(err)[:200]}): use keras.ops "
            "(ops.log, ops.expand_dims, ops.equal, ops.where, ...), not NumPy, and ops.shape(logits)[0] rather than "
            "len() or .shape, so that it works on symbolic tensors whose batch size is unknown"
        ) from None


def check_corrections(fn: Callable) -> None:
    """Raises ``AssertionError`` naming the first batch where ``fn`` differs from the reference."""
    from keras import ops

    for name, (logits, probability, item_ids) in _cases().items():
        expected = _reference(logits, probability, item_ids)
        got = ops.convert_to_numpy(fn(logits, probability, item_ids)).astype("float64")
        if got.shape != expected.shape:
            raise AssertionError(f"{name}: expected logits of shape {expected.shape}, got {got.shape}")
        removed = expected <= REMOVED
        right = (np.isfinite(got).all() and (got[removed] <= REMOVED).all()
                 and np.allclose(got[~removed], expected[~removed], rtol=1e-5, atol=1e-5))
        if not right:
            mistake = _diagnose(got, logits, probability, item_ids, expected)
            wrong = np.argwhere(~np.isclose(got, expected, rtol=1e-5, atol=1e-5)
                                & ~(removed & (got <= REMOVED) & np.isfinite(got)))
            b, c = wrong[0]
            raise AssertionError(
                f"{name}: logit [{b}, {c}] expected {expected[b, c]:.6g}, got {got[b, c]:.6g}"
                + (f": {mistake}" if mistake else "")
            )
    logits, probability, item_ids = _cases()["six rows, film 7 in rows 0 and 2, film 9 in rows 1 and 5"]
    got = _in_a_model(fn, logits, probability, item_ids)
    expected = _reference(logits, probability, item_ids)
    removed = expected <= REMOVED
    if not (np.isfinite(got).all() and (got[removed] <= REMOVED).all()
            and np.allclose(got[~removed], expected[~removed], rtol=1e-5, atol=1e-5)):
        raise AssertionError("inside a Keras model (symbolic tensors) your function gives other logits than on arrays")
