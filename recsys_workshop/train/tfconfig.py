"""``TF_CONFIG``, read: this process's place in a distributed job, and its share of every global batch.

A TFJob (and the local launcher, :mod:`recsys_workshop.train.launcher`) gives every replica one JSON string::

    {"cluster": {"chief": ["job-chief-0:2222"], "worker": ["job-worker-0:2222", "job-worker-1:2222"]},
     "task": {"type": "worker", "index": 1}}

``cluster`` is the same for every process; ``task`` says which one this is. What a worker makes of it
(:func:`worker_share`):

- the **replicas** that train in sync are the chief and the workers (an ``evaluator`` or a parameter
  server, ``ps``, may be in the cluster; neither trains in sync);
- they are numbered chief first, then the workers in order: that number is the replica's **shard**
  (``worker 1`` above is shard 2). Without a chief, worker 0 is shard 0;
- the global batch (``TrainConfig.batch_size``) is cut into ``replicas`` contiguous slices of
  ``per_replica_batch`` rows, and shard *s* takes rows ``s * per_replica_batch`` to
  ``(s + 1) * per_replica_batch - 1`` of every global batch;
- shard 0 is the chief: it writes the checkpoints, evaluates and exports.

That is the numbering ``tf.distribute.MultiWorkerMirroredStrategy`` uses for its input pipelines, and the
training loop (:mod:`recsys_workshop.train.distributed`) checks that TensorFlow agrees. The training job
calls ``tfconfig.worker_share`` through this module (``from recsys_workshop.train import tfconfig``), so
lab 07's self-check can run the job with a learner's version of it swapped in. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import json

ROLES = ("chief", "worker")  # the task types that train in sync, in the order of their shards


@dataclasses.dataclass(frozen=True)
class WorkerShare:
    """One process's place in the job and its slice of every global batch (see the module docstring)."""

    role: str  # the task type: "chief" or "worker"
    index: int  # the task index within its role, from 0
    replicas: int  # processes training in sync: the chief and the workers
    per_replica_batch: int  # rows of every global batch this process trains on
    shard: int  # 0 .. replicas - 1: chief first, then the workers

    @property
    def is_chief(self) -> bool:
        """Shard 0: the chief, or worker 0 in a cluster without one."""
        return self.shard == 0

    @property
    def rows(self) -> range:
        """The rows of every global batch this process trains on."""
        return range(self.shard * self.per_replica_batch, (self.shard + 1) * self.per_replica_batch)

    def describe(self) -> str:
        """One log line, e.g. ``worker 0: shard 1 of 2, rows 1024-2047 of every global batch of 2048``."""
        return (
            f"{self.role} {self.index}: shard {self.shard} of {self.replicas}, rows {self.rows.start}-"
            f"{self.rows.stop - 1} of every global batch of {self.replicas * self.per_replica_batch}"
        )


def worker_share(tf_config: str | None, global_batch_size: int) -> WorkerShare:
    """This process's :class:`WorkerShare` under ``tf_config`` (the ``TF_CONFIG`` string; ``None`` or ``""``:
    a single process, the chief of a job of one).

    Raises ``ValueError`` when the task is not a chief or worker of the cluster, or when the global batch
    does not split evenly among the replicas (the all-reduce needs every replica to take the same number of
    rows at every step).
    """
    if global_batch_size < 1:
        raise ValueError(f"the global batch size must be >= 1, got {global_batch_size}")
    if not tf_config:
        return WorkerShare("chief", 0, 1, global_batch_size, 0)
    config = json.loads(tf_config)
    cluster, task = config.get("cluster", {}), config.get("task", {})
    role, index = task.get("type"), int(task.get("index", 0))
    if role not in ROLES or not 0 <= index < len(cluster.get(role, [])):
        raise ValueError(f"task {role} {index} is not a chief or worker of the cluster {cluster}")
    chiefs = len(cluster.get("chief", []))
    replicas = chiefs + len(cluster.get("worker", []))
    if global_batch_size % replicas:
        raise ValueError(f"a global batch of {global_batch_size} does not split evenly among {replicas} replicas")
    shard = index if role == "chief" else chiefs + index
    return WorkerShare(role, index, replicas, global_batch_size // replicas, shard)
