"""The training job: ``python -m recsys_workshop.train --config job.json [key=value ...]``.

One JSON config (:class:`JobConfig`) says everything a run needs: the data set, how to split it, the
model and its hyper-parameters, the :class:`~recsys_workshop.train.TrainConfig`, where checkpoints and
the exported model go. The same file is the TFJob's ConfigMap (``cluster-setup/manifests/base/
train.json``), what a Katib trial or an Optuna trial overrides (``model.n_factors=64``), and what the
pipeline's train step runs. The job:

1. loads the data (the workshop loader: ``MOVIELENS_DIR``, the cache, or a verified download);
2. splits it (``split``), and, when ``objective`` is ``"validation"`` (tuning), carves a validation
   split from the *training* part so that the test split is never looked at while tuning;
3. builds the model ``model.name`` names (:data:`recsys_workshop.models.registry.MODELS`) and trains it
   with :func:`recsys_workshop.train.fit` under the strategy ``TF_CONFIG`` describes
   (``MultiWorkerMirroredStrategy`` on a TFJob or with the local launcher), checkpointing every epoch;
   :func:`recsys_workshop.train.tfconfig.worker_share` says which rows of every global batch this process
   trains on and whether it is the chief;
   a classical model (EASE, item-kNN, ...) is fitted by its own ``fit``, in one pass;
4. on the chief only: evaluates top-k metrics, prints them as ``name=value`` lines (what Katib's StdOut
   metrics collector reads: ``ndcg_at_10=0.4123``), writes them to ``metrics_path``, and exports a
   versioned model to ``model_dir/<version>/``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recsys_workshop.models import registry
from recsys_workshop.models.registry import MODELS
from recsys_workshop.train import TrainConfig

SPLITS = ("stratified", "random", "chrono")
OBJECTIVES = ("test", "validation")


class ConfigError(ValueError):
    """A job config that cannot be run; the message says which key and why."""


@dataclasses.dataclass
class JobConfig:
    """A training run, as one JSON document (see the module docstring)."""

    dataset: str = "ml-100k"
    model: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "ncf", "kind": "neumf", "n_factors": 32, "mlp_layers": "64-32-16"}
    )
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    split: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"method": "stratified", "ratio": 0.75, "seed": 42}
    )
    objective: str = "test"  # "validation": evaluate on a split of the training part (tuning never sees test)
    validation_ratio: float = 0.9  # share of the training part kept for training when objective="validation"
    top_k: int = 10
    model_dir: str | None = None  # export <model_dir>/<version>/ when set
    checkpoint_dir: str | None = None  # checkpoint every epoch and resume from here when set
    metrics_path: str | None = None  # also write the metrics as JSON here

    def __post_init__(self):
        if isinstance(self.train, Mapping):
            unknown = set(self.train) - {f.name for f in dataclasses.fields(TrainConfig)}
            if unknown:
                raise ConfigError(f"train: unknown key(s) {sorted(unknown)}; known: TrainConfig's fields")
            self.train = TrainConfig(**self.train)
        if self.model.get("name") not in MODELS:
            raise ConfigError(f"model.name must be one of {sorted(MODELS)}, got {self.model.get('name')!r}")
        if self.split.get("method", "stratified") not in SPLITS:
            raise ConfigError(f"split.method must be one of {SPLITS}, got {self.split.get('method')!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not 0 < self.validation_ratio < 1:
            raise ConfigError("validation_ratio must be in (0, 1)")
        if self.top_k < 1:
            raise ConfigError("top_k must be >= 1")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> JobConfig:
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in the job config")
        return cls(**copy.deepcopy(dict(config)))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> JobConfig:
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
        return cls.from_dict(merge_config(config, overrides))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def merge_config(base: Mapping[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """``base`` with ``key=value`` assignments applied; values are JSON when they parse (``0.01``, ``32``,
    ``true``), else strings; ``a.b=1`` sets a nested key."""
    merged = copy.deepcopy(dict(base))
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {assignment!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = merged
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{key}: {parent} is not a section")
        target[leaf] = value
    return merged


def build_model(spec: Mapping[str, Any], movielens=None):
    """The recommender a config's ``model`` section describes (see :func:`recsys_workshop.models.registry.build`:
    ``mlp_layers`` may be ``"64-32-16"``, the form a Katib categorical parameter takes)."""
    try:
        return registry.build(spec, movielens)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"model: {error.args[0] if error.args else error}") from None


def is_trained_by_fit(model) -> bool:
    """True for a Keras model (trained epoch by epoch by :func:`recsys_workshop.train.fit`, under the
    strategy and with checkpoints); False for a classical model, fitted in one call of its ``fit``."""
    from recsys_workshop.models.keras_base import KerasRecommender

    return isinstance(model, KerasRecommender)


def split_data(config: JobConfig, ratings):
    """``(train, evaluation)``: the test split, or (objective ``"validation"``) a validation split carved
    from the training part with the same method."""
    from recsys_workshop import data

    options = {"method": "stratified", "ratio": 0.75, "seed": 42, **config.split}
    method, ratio, seed = options["method"], options["ratio"], options["seed"]
    splitters = {
        "stratified": lambda df, r: data.stratified_split(df, r, seed=seed),
        "random": lambda df, r: data.random_split(df, r, seed=seed),
        "chrono": lambda df, r: data.chrono_split(df, r),
    }
    train, test = splitters[method](ratings, ratio)
    if config.objective == "validation":
        return splitters[method](train, config.validation_ratio)
    return train, test


def run(config: JobConfig, *, log=print, train=None, evaluation=None, model_dir: str | None = None, evaluate=True):
    """Run the job in this process (one worker of the cluster ``TF_CONFIG`` describes, if any); returns
    the metrics on the chief (an empty dict on the other workers).

    ``train`` / ``evaluation``: ready-made splits (a pipeline's split step) instead of loading and
    splitting ``config.dataset``. ``model_dir`` overrides ``config.model_dir``. ``evaluate=False``
    skips the top-k metrics (a pipeline evaluates in its own step).
    """
    from recsys_workshop import data, metrics
    from recsys_workshop.train import fit, tfconfig
    from recsys_workshop.train.distributed import strategy_from_env

    strategy = strategy_from_env()  # first: TensorFlow wants the cluster set up before any other op
    # module-qualified, so that lab 07's self-check can swap in the learner's worker_share
    share = tfconfig.worker_share(os.environ.get("TF_CONFIG"), config.train.batch_size)
    movielens = None
    if train is None:
        movielens = data.load(config.dataset, progress=False)
        train, evaluation = split_data(config, movielens.ratings)
    elif registry.needs_metadata(config.model["name"]):
        movielens = data.load(config.dataset, progress=False)  # e.g. the hybrid model reads the metadata
    model = build_model(config.model, movielens)
    held_out = f" and {len(evaluation):,} {config.objective}" if evaluation is not None else ""
    log(
        f"{config.model['name']} on {config.dataset}: {len(train):,} training{held_out} ratings, "
        f"{strategy.num_replicas_in_sync} replica(s)"
    )
    started = time.perf_counter()
    if is_trained_by_fit(model):
        log(f"this process: {share.describe()}")
        history = fit(
            model, train, config=config.train, strategy=strategy, share=share, checkpoint_dir=config.checkpoint_dir
        )
        train_seconds = time.perf_counter() - started
        log(f"weights_sha256={weights_digest(model.network_)}")  # every worker: data parallelism keeps them equal
        per_epoch = history["examples_per_second"].iloc[1:] if len(history) > 1 else history["examples_per_second"]
        epochs, examples_per_second = len(history), float(per_epoch.mean())
    else:  # a classical model: one pass over the data, no epochs, nothing to checkpoint (each worker fits alone)
        model.fit(train)
        train_seconds = time.perf_counter() - started
        epochs, examples_per_second = 1, len(train) / max(train_seconds, 1e-9)
    if not share.is_chief:
        return {}
    k = config.top_k
    results = {
        "epochs": epochs,
        "train_seconds": train_seconds,
        "examples_per_second": examples_per_second,
    }
    if evaluate and evaluation is not None:
        row = metrics.evaluate(model, train, evaluation, k).iloc[0]
        results = {
            f"ndcg_at_{k}": float(row[f"ndcg@{k}"]),
            f"precision_at_{k}": float(row[f"precision@{k}"]),
            f"recall_at_{k}": float(row[f"recall@{k}"]),
            f"map_at_{k}": float(row[f"map@{k}"]),
            **results,
        }
    for name, value in results.items():  # Katib's StdOut collector reads these lines
        log(f"{name}={value:.6g}")
    if config.metrics_path:
        Path(config.metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config.metrics_path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    model_dir = model_dir or config.model_dir
    if model_dir:
        from recsys_workshop import export

        metadata = {
            "dataset": config.dataset,
            "metrics": {name.replace("_at_", "@"): value for name, value in results.items() if "_at_" in name},
            "evaluated_on": config.objective,
            "train_config": dataclasses.asdict(config.train),
            "job_config": config.to_dict(),
        }
        path = export.export_model(model, model_dir, metadata=metadata)
        results["exported"] = str(path)
        log(f"exported {path}")
    return results


def weights_digest(network) -> str:
    """SHA-256 of a network's weights, byte for byte: equal digests mean identical models."""
    import hashlib

    digest = hashlib.sha256()
    for weights in network.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys_workshop.train",
        description="Train a workshop model from a job config (the entrypoint of the TFJob and of Katib trials).",
    )
    parser.add_argument("--config", required=True, help="the job config (JSON), e.g. cluster-setup/.../train.json")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. model.n_factors=64 train.epochs=5")
    args = parser.parse_args(argv)
    try:
        config = JobConfig.from_file(args.config, args.overrides)
        run(config, log=lambda line: print(line, flush=True))
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
