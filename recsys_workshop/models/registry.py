"""Every model a job config can name: ``model.name`` -> the class that builds it.

The training job (:mod:`recsys_workshop.train.job`), the TFJob's ConfigMap, Katib and Optuna trials and
the pipeline's train step all say which model to train as ``{"name": "ncf", "kind": "neumf", ...}``: the
name picks a row of :data:`MODELS`, the other keys are the class's constructor arguments.

A row names its module and class as strings: importing this module imports no model module (and so no
TensorFlow); :func:`model_class` imports the one a config asks for. A row may also fix constructor
arguments the name implies (``mult-dae`` is :class:`~recsys_workshop.models.vae.MultVAE` with
``variational=False``) and say which tables of the data set the constructor takes (the hybrid model reads
the users' and films' metadata: ``metadata=("users", "items")``).

Every model class the benchmarks (``bench/deep.py``, ``bench/recsys101.py``) train is here, Keras or
classical. Not here: :class:`~recsys_workshop.models.ensemble.Blend`, which combines models that are
already fitted (train its members, then blend them).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["MODELS", "ModelEntry", "build", "model_class", "needs_metadata"]

_NONE: Mapping[str, Any] = MappingProxyType({})


class ModelEntry(NamedTuple):
    """One row of :data:`MODELS`."""

    module: str
    cls: str
    defaults: Mapping[str, Any] = _NONE  # constructor arguments the name implies; a config may override them
    metadata: tuple[str, ...] = ()  # tables of the data set passed to the constructor ("users", "items")


#: model name in a config -> where its class lives (Keras models first, then the classical ones)
MODELS: Mapping[str, ModelEntry] = MappingProxyType(
    {
        "mf": ModelEntry("recsys_workshop.models.mf", "MatrixFactorization"),
        "ncf": ModelEntry("recsys_workshop.models.ncf", "NCF"),
        "triplet": ModelEntry("recsys_workshop.models.triplet", "TripletModel"),
        "two-tower": ModelEntry("recsys_workshop.models.two_tower", "TwoTower"),
        "hybrid": ModelEntry("recsys_workshop.models.hybrid", "HybridModel", metadata=("users", "items")),
        "mult-vae": ModelEntry("recsys_workshop.models.vae", "MultVAE"),
        "mult-dae": ModelEntry("recsys_workshop.models.vae", "MultVAE", MappingProxyType({"variational": False})),
        "ease": ModelEntry("recsys_workshop.models.classic", "EASE"),
        "item-knn": ModelEntry("recsys_workshop.models.classic", "ItemKNN"),
        "most-popular": ModelEntry("recsys_workshop.models.classic", "MostPopular"),
        "bias-baseline": ModelEntry("recsys_workshop.models.classic", "BiasBaseline"),
        "global-mean": ModelEntry("recsys_workshop.models.classic", "GlobalMean"),
    }
)


def _entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def model_class(name: str) -> type:
    """The class behind ``name`` (imports its module, and TensorFlow only if that module needs it)."""
    entry = _entry(name)
    return getattr(importlib.import_module(entry.module), entry.cls)


def needs_metadata(name: str) -> bool:
    """True when the model's constructor takes tables of the data set (see :func:`build`)."""
    return bool(_entry(name).metadata)


def build(spec: Mapping[str, Any], movielens=None):
    """The unfitted model a config's ``model`` section describes: ``{"name": ..., **constructor arguments}``.

    ``mlp_layers`` and ``hidden`` may be written ``"64-32-16"`` (the form a Katib categorical parameter
    takes). ``movielens`` (a :class:`recsys_workshop.data.MovieLens`) supplies the tables of models that
    read metadata. Raises ``KeyError`` for an unknown name and ``TypeError`` / ``ValueError`` for arguments
    the class refuses.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    entry = _entry(name)
    for key in ("mlp_layers", "hidden"):
        if isinstance(spec.get(key), str):
            spec[key] = tuple(int(width) for width in spec[key].split("-") if width)
    if entry.metadata:
        if movielens is None:
            raise ValueError(f"model {name!r} needs the data set's {' and '.join(entry.metadata)} tables")
        spec = {table: getattr(movielens, table) for table in entry.metadata} | spec
    return model_class(name)(**{**entry.defaults, **spec})
