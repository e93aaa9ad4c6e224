"""The optimizers :class:`~recsys_workshop.train.TrainConfig` names, and a lazy Adam for embedding tables.

Why a lazy Adam. An embedding lookup's gradient is sparse (a ``tf.IndexedSlices``: the rows of the batch), but
Keras 3's ``Adam`` updates its two moments as dense tensors (``m += (g - m) * (1 - beta_1)``), so every step
rewrites every row of every table and of both moments (keras-team/keras#19992): that part of a step grows
with the catalogue, not the batch. ``LazyAdam`` (:func:`lazy_adam_class`) is Adam with the rule of TensorFlow 1's
``tf.contrib.opt.LazyAdamOptimizer`` and TF Addons' ``LazyAdam`` (neither exists for Keras 3): for a sparse
gradient only the rows of the batch have their moments and weights updated; dense gradients (the towers' Dense
layers) get Keras' own Adam step unchanged. The semantics differ from Adam for rows a step does not touch:
their moments do not decay and their weights do not keep moving on old momentum
(``bench/results/training-scale.json`` measures both: on 2 CPU cores, up to 5M rows and 13,700 films, the
dense update is not what limits a step, so lazy Adam saves no time there, and it costs a little NDCG@10 on
ml-100k; it pays off when the tables are large next to the rest of the model).

TensorFlow backend only: the sparse path reads ``tf.IndexedSlices``, which the other backends never pass.
"""

from __future__ import annotations

import functools

NAMES = ("adam", "lazy_adam", "adagrad", "sgd")


def make(name: str, learning_rate: float):
    """A new Keras optimizer by its :class:`~recsys_workshop.train.TrainConfig` name."""
    import keras

    if name == "lazy_adam":
        return lazy_adam_class()(learning_rate=learning_rate)
    keras_names = {"adam": "Adam", "adagrad": "Adagrad", "sgd": "SGD"}
    if name not in keras_names:
        raise ValueError(f"optimizer must be one of {list(NAMES)}, got {name!r}")
    return getattr(keras.optimizers, keras_names[name])(learning_rate=learning_rate)


@functools.cache
def lazy_adam_class():
    """The ``LazyAdam`` class, defined on first use so that importing this module does not import Keras."""
    import keras
    import tensorflow as tf
    from keras import ops

    @keras.saving.register_keras_serializable(package="recsys_workshop")
    class LazyAdam(keras.optimizers.Adam):
        """Adam whose sparse (embedding) updates touch only the rows of the batch (see the module docstring).

        For a ``tf.IndexedSlices`` gradient with rows ``r`` (repeated rows summed first, as a dense gradient
        would), with ``t`` the step and ``alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``::

            m[r] = beta_1 * m[r] + (1 - beta_1) * g        v[r] = beta_2 * v[r] + (1 - beta_2) * g^2
            w[r] -= alpha * m[r] / (sqrt(v[r]) + epsilon)

        which is Keras' Adam restricted to ``r``: a step whose gradient touches every row is Keras' Adam step.
        """

        def __init__(self, *args, amsgrad: bool = False, name: str = "lazy_adam", **kwargs):
            if amsgrad:
                raise ValueError("LazyAdam does not support amsgrad")
            super().__init__(*args, amsgrad=False, name=name, **kwargs)

        def update_step(self, gradient, variable, learning_rate):
            if not isinstance(gradient, tf.IndexedSlices):
                return super().update_step(gradient, variable, learning_rate)
            dtype = variable.dtype
            rows, position = tf.unique(gradient.indices)
            values = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position, tf.shape(rows)[0])
            step = ops.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
            alpha = ops.cast(learning_rate, dtype) * ops.sqrt(1 - ops.power(beta_2, step))
            alpha = alpha / (1 - ops.power(beta_1, step))

            index = self._get_variable_index(variable)
            m, v = self._momentums[index], self._velocities[index]
            m_rows = ops.take(m, rows, axis=0)
            m_rows = m_rows + (values - m_rows) * (1 - beta_1)  # Keras' form of beta_1 m + (1 - beta_1) g
            v_rows = ops.take(v, rows, axis=0)
            v_rows = v_rows + (ops.square(values) - v_rows) * (1 - beta_2)
            self.assign(m, tf.IndexedSlices(m_rows, rows, gradient.dense_shape))
            self.assign(v, tf.IndexedSlices(v_rows, rows, gradient.dense_shape))
            step_rows = alpha * m_rows / (ops.sqrt(v_rows) + self.epsilon)
            self.assign_sub(variable, tf.IndexedSlices(step_rows, rows, gradient.dense_shape))
            return None

    return LazyAdam
