"""The contract between a Keras model and :func:`recsys_workshop.train.fit`.

A ``KerasRecommender`` is a :class:`~recsys_workshop.models.base.Recommender` that also says

- ``build()``: its Keras graph, sized from the fitted index (``user_ids_``, ``item_ids_``);
- ``loss``: the Keras loss to compile with;
- ``examples(interactions)``: the ``(x, y)`` arrays for Keras;
- ``_after_fit(network)``: what to keep once trained (typically numpy copies of the weights, so
  scoring needs no TensorFlow call).

``fit(train, config=..., validation=...)`` simply calls :func:`recsys_workshop.train.fit`.
TensorFlow is imported only when a model is built.
"""

from __future__ import annotations

import pandas as pd

from recsys_workshop.models.base import Recommender


class KerasRecommender(Recommender):
    loss: str = "mse"
    monitor: str = "val_loss"  # what early stopping watches; "val_rmse" adds an RMSE metric
    resample_each_epoch: bool = False  # examples(...) called again every epoch (fresh negatives)
    in_batch_targets: bool = False  # each batch's target is the identity matrix (in-batch softmax)

    def metrics(self) -> list:
        """Keras metrics to compile with (an RMSE for models that monitor ``val_rmse``)."""
        import keras

        return [keras.metrics.RootMeanSquaredError(name="rmse")] if self.monitor == "val_rmse" else []

    def fit(self, train: pd.DataFrame, *, items=None, config=None, validation=None) -> KerasRecommender:
        from recsys_workshop import train as training

        training.fit(self, train, config=config, validation=validation, items=items)
        return self

    def build(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def examples(self, interactions: pd.DataFrame, epoch: int = 0):  # pragma: no cover - abstract
        """``(x, y)`` for Keras: ``x`` a dict of equal-length arrays. ``epoch`` is the training epoch (models
        with ``resample_each_epoch`` draw fresh negatives from it) or -1 for the fixed validation set."""
        raise NotImplementedError

    def _after_fit(self, network) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
