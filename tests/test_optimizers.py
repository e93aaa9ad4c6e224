"""train.optimizers: the lazy Adam against Keras' own Adam, and its use through the training function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop.train import TrainConfig, optimizers

pytestmark = pytest.mark.tf


def _steps(optimizer, gradients, start):
    """Apply each gradient in turn to a fresh variable holding ``start``; the variable's value after each."""
    import keras

    variable = keras.Variable(start.copy())
    values = []
    for gradient in gradients:
        optimizer.apply_gradients([(gradient, variable)])
        values.append(np.asarray(variable.numpy()).copy())
    return values


def _sparse(rows, values, shape):
    import tensorflow as tf

    return tf.IndexedSlices(
        tf.constant(values, dtype="float32"), tf.constant(rows, dtype="int64"), tf.constant(shape, dtype="int64")
    )


def _dense(rows, values, shape):
    dense = np.zeros(shape, dtype="float32")
    np.add.at(dense, rows, values)
    return dense


def test_unknown_optimizer_names_are_refused():
    with pytest.raises(ValueError, match="lazy_adam"):
        TrainConfig(optimizer="lazy-adam")
    with pytest.raises(ValueError, match="one of"):
        optimizers.make("adamw", 1e-3)


def test_a_dense_gradient_gets_keras_adams_step():
    import keras

    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype("float32")
    gradients = [rng.normal(size=(5, 3)).astype("float32") for _ in range(4)]
    lazy = _steps(optimizers.make("lazy_adam", 0.05), gradients, start)
    adam = _steps(keras.optimizers.Adam(learning_rate=0.05), gradients, start)
    np.testing.assert_allclose(lazy[-1], adam[-1], rtol=1e-6, atol=1e-7)
    assert not np.allclose(lazy[-1], start)


def test_a_sparse_gradient_over_every_row_is_keras_adams_step_with_repeats_summed():
    import keras

    rng = np.random.default_rng(1)
    shape = (6, 4)
    start = rng.normal(size=shape).astype("float32")
    # every row at least once, rows 2 and 5 twice: a batch with repeated ids
    rows = [[0, 1, 2, 3, 4, 5, 2, 5], [5, 4, 3, 2, 1, 0, 0, 0]]
    values = [rng.normal(size=(len(r), shape[1])).astype("float32") for r in rows]
    pairs = list(zip(rows, values, strict=True))
    lazy = _steps(optimizers.make("lazy_adam", 0.1), [_sparse(r, v, shape) for r, v in pairs], start)
    adam = _steps(keras.optimizers.Adam(learning_rate=0.1), [_dense(r, v, shape) for r, v in pairs], start)
    for got, expected in zip(lazy, adam, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)  # float32 rounding; a step is ~0.1


def test_rows_a_step_does_not_touch_stay_put_while_adam_moves_them():
    import keras

    shape = (5, 2)
    start = np.ones(shape, dtype="float32")
    first = ([0, 1, 2], np.full((3, 2), 0.5, dtype="float32"))  # rows 0-2 get momentum
    second = ([0], np.full((1, 2), -0.3, dtype="float32"))  # only row 0 is in the next batch
    lazy = _steps(optimizers.make("lazy_adam", 0.1), [_sparse(*first, shape), _sparse(*second, shape)], start)
    adam = _steps(keras.optimizers.Adam(learning_rate=0.1), [_dense(*first, shape), _dense(*second, shape)], start)
    # step 1 is Adam's everywhere
    np.testing.assert_allclose(lazy[0], adam[0], rtol=1e-6)
    # step 2: Adam keeps moving rows 1 and 2 on their momentum; the lazy rule leaves them where step 1 put them
    np.testing.assert_array_equal(lazy[1][1:3], lazy[0][1:3])
    assert not np.allclose(adam[1][1:3], adam[0][1:3])
    # rows never touched stay at their start under both rules; row 0 is updated by both, identically
    np.testing.assert_array_equal(lazy[1][3:], start[3:])
    np.testing.assert_allclose(lazy[1][0], adam[1][0], rtol=1e-6)


def test_the_two_tower_model_trains_with_it_and_keeps_unseen_rows(monkeypatch):
    """Through ``fit`` (Keras' loop): the embedding gradients arrive sparse, so a film absent from the
    training rows keeps its initial embedding, and the model still learns (the loss falls)."""
    from recsys_workshop.models.two_tower import TwoTower

    rng = np.random.default_rng(0)
    users = rng.integers(1, 60, 3000)
    items = (users % 20) + 1 + 20 * rng.integers(0, 2, 3000)  # films 1-40, each user tied to two of them
    ratings = pd.DataFrame({"user_id": users, "item_id": items, "rating": 4.0, "timestamp": np.arange(3000)})
    catalogue = np.arange(1, 42)  # film 41 is in the catalogue, never rated
    lazy_adam = optimizers.lazy_adam_class()
    gradients: list[str] = []  # what each update_step was given (at trace time: tf.function calls it in Python)
    original = lazy_adam.update_step

    def spy(self, gradient, variable, learning_rate):
        gradients.append(type(gradient).__name__)
        return original(self, gradient, variable, learning_rate)

    monkeypatch.setattr(lazy_adam, "update_step", spy)
    model = TwoTower(8)
    config = TrainConfig(epochs=4, batch_size=128, optimizer="lazy_adam", learning_rate=0.01, patience=0, verbose=0)
    model._index(ratings, catalogue)
    model.build()  # the initial weights: the initializer is seeded, so fit builds the same ones
    initial = model.item_tower_.get_layer("item_embedding").get_weights()[0]
    history = model.fit(ratings, config=config, items=catalogue).history_
    final = model.item_tower_.get_layer("item_embedding").get_weights()[0]
    assert history["loss"].iloc[-1] < 0.9 * history["loss"].iloc[0]
    assert type(model.network_.optimizer).__name__ == "LazyAdam"
    assert "IndexedSlices" in gradients, f"the sparse path never ran: the steps got {sorted(set(gradients))}"
    never_rated = model.item_columns(np.array([41]))[0]
    assert never_rated >= 0
    np.testing.assert_array_equal(final[never_rated], initial[never_rated])
    rated = model.item_columns(np.array([1, 2, 3]))
    assert not np.allclose(final[rated], initial[rated])
