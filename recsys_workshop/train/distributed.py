"""The custom training loop: any ``tf.distribute`` strategy, a checkpoint every epoch, resume.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, "Attempt to
convert a value (PerReplica...)"), so this loop does what ``fit`` would: it calls ``strategy.run`` on
each batch, lets the strategy all-reduce the gradients, and keeps every worker's weights identical.

Data parallelism, concretely. The global batch (``TrainConfig.batch_size``) is cut into one contiguous
slice per worker: with 2 workers and a batch of 256, worker 0 takes rows 0-127 and worker 1 rows
128-255 of the same shuffled epoch. Each worker computes the gradient of its half; the all-reduce sums
them; every worker applies the same update. Because the two halves make up exactly the batch a single
process would see, two workers follow the same trajectory as one (up to float rounding), which the
tests check.

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

STATE = "state.json"
BEST_WEIGHTS = "best.weights.npz"


def strategy_from_env():
    """``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster (a TFJob, or the local
    launcher), else TensorFlow's default strategy (one process, no distribution)."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def task_of(strategy) -> tuple[str | None, int]:
    """``(task_type, task_id)`` of this process in the cluster (``(None, 0)`` without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    """The chief is the ``chief`` task, or worker 0 when the cluster has no chief (as in a TFJob)."""
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    resolver = strategy.cluster_resolver
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def fit_custom(
    model,
    fit_part: pd.DataFrame,
    validation: pd.DataFrame | None,
    config,
    *,
    strategy=None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    log=print,
) -> pd.DataFrame:
    """Train ``model`` (already indexed, see :func:`recsys_workshop.train.prepare`) on ``fit_part``.

    Returns the history (one row per epoch: ``loss``, ``val_loss``, ``val_rmse`` when the model monitors
    it, ``seconds``, ``examples_per_second``) and leaves the model fitted as Keras ``fit`` would.
    """
    import keras
    import tensorflow as tf

    from recsys_workshop.train import OPTIMIZERS

    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} must be a multiple of the {replicas} replicas")
    per_replica = config.batch_size // replicas
    in_batch = getattr(model, "in_batch_targets", False)
    resample = getattr(model, "resample_each_epoch", False)
    loss_fn = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss

    with strategy.scope():
        network = model.build()
        optimizer = getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=config.learning_rate)
        optimizer.build(network.trainable_variables)
    epoch_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    def replica_step(batch):
        x, y = (batch, None) if in_batch else batch
        with tf.GradientTape() as tape:
            prediction = network(x, training=True)
            target = tf.eye(tf.shape(prediction)[0]) if in_batch else y
            loss = loss_fn(target, prediction)
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

    fixed = None if resample else model.examples(fit_part, epoch=0)
    val_examples = None
    if validation is not None and len(validation) and not in_batch:
        val_examples = model.examples(validation, epoch=-1)

    def epoch_dataset(epoch: int):
        x, y = fixed if fixed is not None else model.examples(fit_part, epoch=epoch)
        n = len(next(iter(x.values())))
        steps = n // config.batch_size
        if steps == 0:
            raise ValueError(f"{n} training examples are fewer than one batch of {config.batch_size}")
        order = np.random.default_rng([config.seed, epoch]).permutation(n)[: steps * config.batch_size]
        batches = order.reshape(steps, config.batch_size)

        def for_pipeline(context):
            # this worker's contiguous slice of every global batch
            first = context.input_pipeline_id * per_replica
            rows = batches[:, first : first + per_replica].reshape(-1)
            features = {name: values[rows] for name, values in x.items()}
            data = features if in_batch else (features, np.asarray(y)[rows])
            return tf.data.Dataset.from_tensor_slices(data).batch(per_replica, drop_remainder=True)

        return strategy.distribute_datasets_from_function(for_pipeline), steps * config.batch_size

    def validate() -> dict[str, float]:
        if val_examples is None:
            return {}
        x, y = val_examples
        n = len(y)
        losses, squared = [], 0.0
        for start in range(0, n, 4096):
            part = {name: values[start : start + 4096] for name, values in x.items()}
            prediction = predict(part)
            target = np.asarray(y[start : start + 4096])
            losses.append(float(loss_fn(target, prediction)) * len(target))
            squared += float(np.sum((np.asarray(prediction).reshape(-1) - target) ** 2))
        scores = {"val_loss": sum(losses) / n}
        if model.monitor == "val_rmse":
            scores["val_rmse"] = float(np.sqrt(squared / n))
        return scores

    chief = is_chief(strategy)
    manager = None
    state: dict = {"history": [], "best": None, "wait": 0, "stopped": False}
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer, epoch=epoch_done)
        _, task_id = task_of(strategy)
        write_dir = checkpoint_dir if chief else checkpoint_dir / f".worker-{task_id}"
        latest = tf.train.latest_checkpoint(str(checkpoint_dir))
        if latest:
            checkpoint.restore(latest).expect_partial()
            state = json.loads((checkpoint_dir / STATE).read_text())
            log(f"resumed from {Path(latest).name}: epoch {int(epoch_done.numpy())} of {config.epochs} done")
        manager = tf.train.CheckpointManager(checkpoint, str(write_dir), max_to_keep=2)

    best_weights = None
    if state["best"] is not None and checkpoint_dir is not None and (checkpoint_dir / BEST_WEIGHTS).exists():
        with np.load(checkpoint_dir / BEST_WEIGHTS) as saved:
            best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]

    monitor = model.monitor if val_examples is not None else None
    patience = config.patience if monitor else 0
    while int(epoch_done.numpy()) < config.epochs and not state["stopped"]:
        epoch = int(epoch_done.numpy())
        started = time.perf_counter()
        dataset, n_examples = epoch_dataset(epoch)
        loss = float(train_epoch(dataset))
        seconds = time.perf_counter() - started
        row = {"loss": loss, **validate(), "seconds": seconds, "examples_per_second": n_examples / seconds}
        state["history"].append(row)
        epoch_done.assign_add(1)
        improved = False
        if monitor:
            value = row[monitor]
            if state["best"] is None or value < state["best"]:
                state["best"], state["wait"], improved = value, 0, True
                best_weights = [np.array(w) for w in network.get_weights()]
            else:
                state["wait"] += 1
                state["stopped"] = bool(patience) and state["wait"] >= patience
        if manager is not None:
            manager.save(checkpoint_number=epoch + 1)
            if chief:
                if improved:
                    _atomic_npz(checkpoint_dir / BEST_WEIGHTS, best_weights)
                _atomic_text(checkpoint_dir / STATE, json.dumps(state))
            else:
                shutil.rmtree(write_dir, ignore_errors=True)
        shown = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith(("loss", "val_")))
        log(f"epoch {epoch + 1}/{config.epochs} {shown} {seconds:.1f}s {row['examples_per_second']:,.0f} examples/s")

    if patience and best_weights is not None:
        network.set_weights(best_weights)
    model.network_ = network
    model._after_fit(network)
    history = pd.DataFrame(state["history"])
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
