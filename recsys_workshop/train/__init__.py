"""The one training function every Keras model of the workshop goes through.

``train.fit(model, interactions, config=TrainConfig(...), validation=...)`` builds the model's Keras
graph, trains it with early stopping on a validation split, keeps the best weights and returns the
history as a DataFrame (one row per epoch) you can plot. It reads nothing from a notebook: the same
call is what a training job runs.

Two engines behind the one function:

- in a notebook, Keras ``model.fit`` (progress bar, callbacks);
- with ``strategy=`` (a ``tf.distribute`` strategy, e.g. ``MultiWorkerMirroredStrategy`` on a TFJob) or
  ``checkpoint_dir=``, the custom loop of :mod:`recsys_workshop.train.distributed`: Keras 3 ``fit``
  fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so the loop calls
  ``strategy.run`` itself, checkpoints every epoch and resumes from the latest checkpoint.

Both prepare the data the same way (:func:`prepare`), and both end with ``model._after_fit``.

The training *job* (``python -m recsys_workshop.train --config job.json``: data, split, model, this
function, evaluation, export) is :mod:`recsys_workshop.train.job`; :mod:`recsys_workshop.train.launcher`
starts it as N local worker processes with the ``TF_CONFIG`` a TFJob would give them.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time

import pandas as pd

from recsys_workshop.data import random_split, validate_interactions
from recsys_workshop.train import optimizers


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides how a model is trained (not what the model is)."""

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # "adam", "lazy_adam" (sparse rows only: train.optimizers), "adagrad" or "sgd"
    seed: int = 42
    patience: int = 3  # epochs without validation improvement before stopping; 0 disables early stopping
    validation_fraction: float = 0.1  # carved from the training data when no validation set is given
    verbose: int | str = "auto"  # Keras: 0 silent, 1 progress bar, 2 one line per epoch

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if self.optimizer not in optimizers.NAMES:
            raise ValueError(f"optimizer must be one of {list(optimizers.NAMES)}, got {self.optimizer!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")


# Set by :func:`restoring`: weights and history to put into the built network instead of training it.
_RESTORE: contextvars.ContextVar = contextvars.ContextVar("restore", default=None)


@contextlib.contextmanager
def restoring(weights: list, history: pd.DataFrame):
    """Within this block, :func:`fit` builds the network exactly as for training (same seed, index and
    validation split), then loads ``weights`` and ``history`` instead of training: how
    :mod:`recsys_workshop.train.saved` brings back a saved model through the model's own ``fit``."""
    token = _RESTORE.set((weights, history))
    try:
        yield
    finally:
        _RESTORE.reset(token)


def fit(
    model,
    interactions: pd.DataFrame,
    *,
    config: TrainConfig | None = None,
    validation: pd.DataFrame | None = None,
    items=None,
    strategy=None,
    checkpoint_dir=None,
    share=None,
) -> pd.DataFrame:
    """Train a Keras-backed recommender (see :class:`recsys_workshop.models.keras_base.KerasRecommender`).

    ``validation``: held-out interactions for early stopping; by default ``config.validation_fraction``
    of ``interactions`` (random, seeded). The model is indexed on all of ``interactions``, so every
    validation user and item has an embedding. Returns the per-epoch history (``loss``, ``val_loss``,
    ``seconds``).

    ``strategy`` / ``checkpoint_dir``: train with the distributed custom loop instead of Keras ``fit``
    (see the module docstring); checkpoints go to ``checkpoint_dir`` and a rerun resumes from them.
    ``share``: this process's :class:`~recsys_workshop.train.tfconfig.WorkerShare` (default: read from
    ``TF_CONFIG``), for the custom loop only.
    """
    import keras

    config = config or TrainConfig()
    fit_part, validation = prepare(model, interactions, config, validation, items)
    if strategy is not None or checkpoint_dir is not None:
        from recsys_workshop.train.distributed import fit_custom

        return fit_custom(
            model, fit_part, validation, config, strategy=strategy, checkpoint_dir=checkpoint_dir, share=share
        )

    network = model.build()
    optimizer = optimizers.make(config.optimizer, config.learning_rate)
    network.compile(optimizer=optimizer, loss=model.loss, metrics=model.metrics())
    if (restore := _RESTORE.get()) is not None:
        weights, model.history_ = restore
        network.set_weights(weights)
        model.network_ = network
        model._after_fit(network)
        return model.history_
    batched = getattr(model, "resample_each_epoch", False) or getattr(model, "in_batch_targets", False)
    if batched:  # examples drawn anew each epoch (negatives) and/or targets that depend on the batch
        inputs = {"x": _EpochDataset(model, fit_part, config.batch_size, config.seed, resample=True)}
    else:
        x, y = model.examples(fit_part)
        inputs = {"x": x, "y": y, "batch_size": config.batch_size, "shuffle": True}
    validation_data = None
    if validation is not None and len(validation):
        if getattr(model, "in_batch_targets", False):
            validation_data = _EpochDataset(model, validation, config.batch_size, config.seed, resample=False)
        else:
            validation_data = model.examples(validation, epoch=-1)
    callbacks = [_EpochTimer()]
    if config.patience and validation_data is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=model.monitor, patience=config.patience, restore_best_weights=True)
        )
    result = network.fit(
        **inputs,
        epochs=config.epochs,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=config.verbose,
    )
    model.network_ = network
    model._after_fit(network)
    history = pd.DataFrame(result.history)
    history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
    history["seconds"] = callbacks[0].seconds[: len(history)]
    model.history_ = history
    return history


def prepare(model, interactions: pd.DataFrame, config: TrainConfig, validation, items):
    """Seed, index the model on all of ``interactions`` and carve the validation split (when none is
    given). Returns ``(fit_part, validation)``, validation restricted to pairs the model can score."""
    import keras

    validate_interactions(interactions)
    keras.utils.set_random_seed(config.seed)
    model._index(interactions, items)
    fit_part = interactions
    if validation is None and config.validation_fraction > 0:
        fit_part, validation = random_split(interactions, 1 - config.validation_fraction, seed=config.seed)
    if validation is not None:
        # pairs the model has no embedding for cannot be scored by the network: leave them out
        known = (model.user_rows(validation["user_id"].to_numpy()) >= 0) & (
            model.item_columns(validation["item_id"].to_numpy()) >= 0
        )
        validation = validation[known]
    return fit_part, validation


def _EpochDataset(model, interactions: pd.DataFrame, batch_size: int, seed: int, *, resample: bool):  # noqa: N802
    """A ``keras.utils.PyDataset`` over ``model.examples(interactions, epoch)``: shuffled batches, examples
    drawn anew after every epoch when ``resample`` (fresh negatives), and, for models with
    ``in_batch_targets``, an identity matrix as each batch's target (in-batch softmax)."""
    import keras
    import numpy as np

    in_batch = getattr(model, "in_batch_targets", False)

    class EpochDataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self._draw()

        def _draw(self) -> None:
            self.x, self.y = model.examples(interactions, epoch=self.epoch if resample else -1)
            n = len(next(iter(self.x.values())))
            rng = np.random.default_rng([seed, self.epoch])
            self.order = rng.permutation(n) if resample else np.arange(n)

        def __len__(self) -> int:
            if in_batch:  # every batch must have the same size: its target is a (batch, batch) matrix
                return max(1, len(self.order) // batch_size)
            return int(np.ceil(len(self.order) / batch_size))

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            x = {name: values[rows] for name, values in self.x.items()}
            if in_batch:
                return x, np.eye(len(rows), dtype="float32")
            return x, self.y[rows]

        def on_epoch_end(self) -> None:
            if resample:
                self.epoch += 1
                self._draw()

    return EpochDataset()


class _EpochTimer:
    """Keras callback recording each epoch's wall time (created lazily to keep keras out of imports)."""

    def __new__(cls):
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return EpochTimer()
