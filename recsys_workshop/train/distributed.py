"""The custom training loop: any ``tf.distribute`` strategy, a checkpoint every epoch, resume.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, "Attempt to
convert a value (PerReplica...)"), so this loop does what ``fit`` would: it calls ``strategy.run`` on
each batch, lets the strategy all-reduce the gradients, and keeps every worker's weights identical.

Data parallelism, concretely. The global batch (``TrainConfig.batch_size``) is cut into one contiguous
slice per process, as :func:`recsys_workshop.train.tfconfig.worker_share` reads it from ``TF_CONFIG``: with
a chief, one worker and a batch of 256, the chief (shard 0) takes rows 0-127 and worker 0 (shard 1) rows
128-255 of the same shuffled epoch; the loop checks that TensorFlow numbers its input pipelines the same
way. Each process computes the gradient of its half; the all-reduce sums them; every process applies the
same update. Because the two halves make up exactly the batch a single process would see, two workers
follow the same trajectory as one (up to float rounding), which the tests check.

Fault tolerance. After every epoch the weights, the optimizer state and the epoch number go to
``checkpoint_dir`` (a ``tf.train.CheckpointManager``; only the chief writes there, the other workers
write to a scratch folder as TensorFlow requires). A restarted job resumes from the latest checkpoint,
so a killed worker costs at most one epoch. The data order of epoch *e* depends only on the seed and
*e*, so a resumed run trains on the same batches an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_workshop.train import tfconfig
from recsys_workshop.train.tfconfig import WorkerShare

STATE = "state.json"
BEST_WEIGHTS = "best.weights.npz"


def strategy_from_env():
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster (a TFJob, or the local
    launcher), else TensorFlow's default strategy (one process, no distribution)."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def fit_custom(
    model,
    fit_part: pd.DataFrame,
    validation: pd.DataFrame | None,
    config,
    *,
    strategy=None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    share: WorkerShare | None = None,
    log=print,
) -> pd.DataFrame:
    """Train ``model`` (already indexed, see :func:`recsys_workshop.train.prepare`) on ``fit_part``.

    ``share``: this process's place in the job and its rows of every global batch (by default
    :func:`recsys_workshop.train.tfconfig.worker_share` of ``TF_CONFIG``); it must agree with ``strategy``.
    Returns the history (one row per epoch: ``loss``, ``val_loss``, ``val_rmse`` when the model monitors
    it, ``seconds``, ``examples_per_second``) and leaves the model fitted as Keras ``fit`` would.
    """
    loop = _Loop(model, fit_part, validation, config, strategy, share)
    state: dict = {"history": [], "best": None, "wait": 0, "stopped": False}
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = _Checkpoints(loop, Path(checkpoint_dir), log)
        if checkpoints.restored_state is not None:
            state = checkpoints.restored_state
    best_weights = checkpoints.best_weights(state) if checkpoints is not None else None
    monitor = model.monitor if loop.val_examples is not None else None
    patience = config.patience if monitor else 0
    best_weights = _train_epochs(loop, state, best_weights, monitor, patience, checkpoints, log)
    return _export(model, loop.network, state["history"], best_weights if patience else None)


class _Loop:
    """The pieces of one run: the network and its optimizer built under the strategy, the compiled
    training and prediction steps, and each epoch's examples cut into per-worker batches."""

    def __init__(
        self, model, fit_part: pd.DataFrame, validation: pd.DataFrame | None, config, strategy=None, share=None
    ):
        import keras
        import tensorflow as tf

        from recsys_workshop.train import optimizers

        self.strategy = strategy = strategy or tf.distribute.get_strategy()
        if share is None:
            share = tfconfig.worker_share(os.environ.get("TF_CONFIG"), config.batch_size)
        _check_share(share, strategy, config.batch_size)
        self.share, self.replicas, self.per_replica = share, share.replicas, share.per_replica_batch
        self.model, self.fit_part, self.config = model, fit_part, config
        self.in_batch = getattr(model, "in_batch_targets", False)
        resample = getattr(model, "resample_each_epoch", False)
        self.loss_fn = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss

        with strategy.scope():
            self.network = model.build()
            self.optimizer = optimizers.make(config.optimizer, config.learning_rate)
            self.optimizer.build(self.network.trainable_variables)
        self.epoch_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.train_epoch, self.predict = self._compile_steps()

        self.fixed = None if resample else model.examples(fit_part, epoch=0)
        self.val_examples = None
        if validation is not None and len(validation) and not self.in_batch:
            self.val_examples = model.examples(validation, epoch=-1)

    def _compile_steps(self):
        """``train_epoch(dataset)`` (one pass, all-reduced gradients, mean loss) and ``predict(x)``."""
        import tensorflow as tf

        strategy, network, optimizer = self.strategy, self.network, self.optimizer
        loss_fn, in_batch, replicas = self.loss_fn, self.in_batch, self.replicas

        def replica_step(batch):
            x, y = (batch, None) if in_batch else batch
            with tf.GradientTape() as tape:
                prediction = network(x, training=True)
                target = tf.eye(tf.shape(prediction)[0]) if in_batch else y
                loss = tf.reduce_mean(loss_fn(target, prediction))  # per-example losses (Mult-VAE's) to their mean
                if network.losses:
                    loss = loss + tf.add_n(network.losses)
                scaled = loss / replicas  # the all-reduce sums the replicas' gradients: this makes it a mean
            gradients = tape.gradient(scaled, network.trainable_variables)
            optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
            return scaled

        @tf.function
        def train_epoch(dataset):
            total, steps = tf.constant(0.0), tf.constant(0.0)
            for batch in dataset:
                total += strategy.reduce("SUM", strategy.run(replica_step, args=(batch,)), axis=None)
                steps += 1.0
            return total / steps

        @tf.function
        def predict(x):
            return network(x, training=False)

        return train_epoch, predict

    def epoch_dataset(self, epoch: int):
        """The distributed dataset of ``epoch`` (its order depends only on the seed and ``epoch``) and its
        number of examples."""
        import tensorflow as tf

        config, per_replica, in_batch, share = self.config, self.per_replica, self.in_batch, self.share
        x, y = self.fixed if self.fixed is not None else self.model.examples(self.fit_part, epoch=epoch)
        n = len(next(iter(x.values())))
        steps = n // config.batch_size
        if steps == 0:
            raise ValueError(f"{n} training examples are fewer than one batch of {config.batch_size}")
        order = np.random.default_rng([config.seed, epoch]).permutation(n)[: steps * config.batch_size]
        batches = order.reshape(steps, config.batch_size)

        def for_pipeline(context):
            if (context.input_pipeline_id, context.num_input_pipelines) != (share.shard, share.replicas):
                raise ValueError(
                    f"worker_share says {share.role} {share.index} is shard {share.shard} of {share.replicas}; "
                    f"TensorFlow feeds it input pipeline {context.input_pipeline_id} of {context.num_input_pipelines}"
                )
            rows = batches[:, share.rows.start : share.rows.stop].reshape(-1)  # this process's slice of every batch
            features = {name: values[rows] for name, values in x.items()}
            data = features if in_batch else (features, np.asarray(y)[rows])
            return tf.data.Dataset.from_tensor_slices(data).batch(per_replica, drop_remainder=True)

        return self.strategy.distribute_datasets_from_function(for_pipeline), steps * config.batch_size

    def validate(self) -> dict[str, float]:
        """``val_loss`` (and ``val_rmse`` when the model monitors it) on the validation examples."""
        if self.val_examples is None:
            return {}
        x, y = self.val_examples
        n = len(y)
        losses, squared = [], 0.0
        for start in range(0, n, 4096):
            part = {name: values[start : start + 4096] for name, values in x.items()}
            prediction = self.predict(part)
            target = np.asarray(y[start : start + 4096])
            losses.append(float(np.mean(self.loss_fn(target, prediction))) * len(target))
            if self.model.monitor == "val_rmse":  # one prediction per example (not a row of the catalogue)
                squared += float(np.sum((np.asarray(prediction).reshape(-1) - target) ** 2))
        scores = {"val_loss": sum(losses) / n}
        if self.model.monitor == "val_rmse":
            scores["val_rmse"] = float(np.sqrt(squared / n))
        return scores

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch, then validate: the epoch's history row."""
        started = time.perf_counter()
        dataset, n_examples = self.epoch_dataset(epoch)
        loss = float(self.train_epoch(dataset))
        seconds = time.perf_counter() - started
        return {"loss": loss, **self.validate(), "seconds": seconds, "examples_per_second": n_examples / seconds}


class _Checkpoints:
    """``checkpoint_dir``: the latest checkpoint restored at start, a new one saved after every epoch.

    The chief writes to ``checkpoint_dir`` (with ``state.json`` and the best weights); the other workers
    write to a scratch folder, as TensorFlow requires, and delete it."""

    def __init__(self, loop: _Loop, checkpoint_dir: Path, log=print):
        import tensorflow as tf

        self.dir = checkpoint_dir
        self.chief = loop.share.is_chief
        checkpoint = tf.train.Checkpoint(network=loop.network, optimizer=loop.optimizer, epoch=loop.epoch_done)
        self.write_dir = checkpoint_dir if self.chief else checkpoint_dir / f".{loop.share.role}-{loop.share.index}"
        self.restored_state: dict | None = None
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        if latest:
            checkpoint.restore(latest).expect_partial()
            self.restored_state = json.loads((checkpoint_dir / STATE).read_text())
            log(f"resumed from {Path(latest).name}: epoch {int(loop.epoch_done.numpy())} of {loop.config.epochs} done")
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.write_dir), max_to_keep=2)

    def best_weights(self, state: dict) -> list[np.ndarray] | None:
        """The best weights saved so far, if ``state`` has a best value and they were written."""
        if state["best"] is None or not (self.dir / BEST_WEIGHTS).exists():
            return None
        with np.load(self.dir / BEST_WEIGHTS) as saved:
            return [saved[f"w{i}"] for i in range(len(saved.files))]

    def save(self, epoch: int, state: dict, best_weights, improved: bool) -> None:
        """Checkpoint after ``epoch`` (0-based); the chief also writes ``state`` and, if they improved, the best
        weights."""
        self.manager.save(checkpoint_number=epoch + 1)
        if self.chief:
            if improved:
                _atomic_npz(self.dir / BEST_WEIGHTS, best_weights)
            _atomic_text(self.dir / STATE, json.dumps(state))
        else:
            shutil.rmtree(self.write_dir, ignore_errors=True)


def _check_share(share: WorkerShare, strategy, batch_size: int) -> None:
    """Raise ``ValueError`` unless ``share`` agrees with what TensorFlow made of ``TF_CONFIG``: the same task,
    as many replicas in sync (one per process), and slices that add up to the global batch."""
    problems = []
    if share.replicas != strategy.num_replicas_in_sync:
        problems.append(f"{share.replicas} replica(s), TensorFlow has {strategy.num_replicas_in_sync} in sync")
    if share.replicas * share.per_replica_batch != batch_size:
        problems.append(f"{share.replicas} slices of {share.per_replica_batch} rows, the global batch is {batch_size}")
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        task = (resolver.task_type, int(resolver.task_id or 0))
        if task != (share.role, share.index):
            problems.append(f"task {share.role} {share.index}, TensorFlow says {task[0]} {task[1]}")
    if problems:
        raise ValueError("worker_share disagrees with TensorFlow: " + "; ".join(problems))


def _train_epochs(
    loop: _Loop, state: dict, best_weights, monitor: str | None, patience: int, checkpoints: _Checkpoints | None, log
):
    """Run the remaining epochs (until ``config.epochs`` or early stopping), updating ``state`` in place and
    checkpointing each one; returns the best weights seen (or ``best_weights`` if none improved)."""
    epochs = loop.config.epochs
    while int(loop.epoch_done.numpy()) < epochs and not state["stopped"]:
        epoch = int(loop.epoch_done.numpy())
        row = loop.run_epoch(epoch)
        state["history"].append(row)
        loop.epoch_done.assign_add(1)
        improved = bool(monitor) and _track_best(state, row[monitor], patience)
        if improved:
            best_weights = [np.array(w) for w in loop.network.get_weights()]
        if checkpoints is not None:
            checkpoints.save(epoch, state, best_weights, improved)
        log(_epoch_summary(epoch, epochs, row))
    return best_weights


def _track_best(state: dict, value: float, patience: int) -> bool:
    """Early stopping: record this epoch's monitored ``value`` in ``state``; True if it is the best so far."""
    if state["best"] is None or value < state["best"]:
        state["best"], state["wait"] = value, 0
        return True
    state["wait"] += 1
    state["stopped"] = bool(patience) and state["wait"] >= patience
    return False


def _epoch_summary(epoch: int, epochs: int, row: dict[str, float]) -> str:
    shown = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith(("loss", "val_")))
    return f"epoch {epoch + 1}/{epochs} {shown} {row['seconds']:.1f}s {row['examples_per_second']:,.0f} examples/s"


def _export(model, network, history_rows: list[dict], best_weights) -> pd.DataFrame:
    """Leave ``model`` fitted as Keras ``fit`` would (with ``best_weights`` restored, if given) and return the
    history, one row per epoch (index ``epoch`` from 1)."""
    if best_weights is not None:
        network.set_weights(best_weights)
    model.network_ = network
    model._after_fit(network)
    history = pd.DataFrame(history_rows)
    history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
    model.history_ = history
    return history


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _atomic_npz(path: Path, arrays) -> None:
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **{f"w{i}": w for i, w in enumerate(arrays)})
    os.replace(partial, path)
