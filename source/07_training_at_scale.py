# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 07: Training at scale, data parallelism and the TFJob
#
# **Time:** about 55 minutes (the training runs themselves take about a minute).
#
# > **Before you start**
# > - **You need:** lab 06 (Kubernetes objects and the TFJob); lab 03's NeuMF, the model the job trains.
# > - **A cluster:** optional. The two workers run as local processes either way; with one, the lab also submits
# >   the TFJob in your namespace.
# > - **Run All** (2 CPU cores): under a minute at CI size, about 1 min at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** nothing of its own: what it starts runs on the cluster's nodes (the class cluster costs
# >   about $0.28 per hour while it exists, see `cluster-setup/README.md`).
#
# **You will**
# - see how data-parallel training works: every worker holds the whole model, takes a slice of each
#   batch, and an *all-reduce* sums the gradients so that every worker applies the same update;
# - read the `TF_CONFIG` that the Kubeflow Training Operator gives each pod of a TFJob, and write the
#   function that tells a process its share of every batch; the workshop's training job then runs with it;
# - run the workshop's training job as 2 local worker processes under
#   `tf.distribute.MultiWorkerMirroredStrategy`, check that both end with identical weights and the
#   same NDCG@10 as one worker, and measure the throughput of 1 and 2 workers;
# - kill a worker in the middle of training and watch the job resume from its last checkpoint;
# - read the TFJob manifest that runs the same command on a cluster and, with a cluster, submit it.
#
# The training job is `python -m recsys_workshop.train --config job.json`: the same command in this
# lab, in a Katib trial (lab 08), in the pipeline (lab 09) and in the TFJob's pods.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci" (the test suite's quick run)
EPOCHS = 8 if WORKSHOP_SCALE == "full" else 3
BATCH_SIZE = 1024 if WORKSHOP_SCALE == "full" else 2048  # the *global* batch, shared by the workers
WORKERS = 2
RUN_DIR = "artifacts/lab07"  # job configs, logs and checkpoints of this lab's runs

# %%
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from recsys_workshop import kube, selfcheck
from recsys_workshop.labchecks import training
from recsys_workshop.train.job import JobConfig
from recsys_workshop.train.launcher import LocalJob, cluster_tf_config
from recsys_workshop.train.tfconfig import WorkerShare

shutil.rmtree(RUN_DIR, ignore_errors=True)  # every run of the lab starts afresh
JOB = JobConfig.from_dict(
    {
        "dataset": "ml-100k",
        "model": {"name": "mf", "n_factors": 32},  # explicit MF: quick to train, easy to compare
        "split": {"method": "stratified", "ratio": 0.75, "seed": 42},
        "train": {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "learning_rate": 0.01, "patience": 0, "verbose": 0},
    }
)
print(json.dumps(JOB.to_dict(), indent=1)[:600], "...")

# %% [markdown]
# ## 1. Data parallelism in one picture
#
# ```
#           global batch of 1024 ratings (BATCH_SIZE at full size; one shuffled epoch, cut in batches)
#        ┌───────────────────────────────┬───────────────────────────────┐
#        │ rows 0-511                    │ rows 512-1023                 │
#        v                               v
#   chief 0 (shard 0)               worker 0 (shard 1)      each holds the whole model
#   forward + backward              forward + backward
#   gradient g0                     gradient g1
#        └───────────── all-reduce: g = g0 + g1 ─────────┘   (over the network, gRPC)
#   apply g  ─────────── same update on both ───────────  apply g
# ```
#
# (At CI size the global batch is 2048: rows 0-1023 and 1024-2047.) The two processes are the `chief`
# and `worker 0`, the names `TF_CONFIG` gives them (section 2). Each step, every process computes the
# gradient of its half of the batch, the all-reduce sums the halves, and both apply the same update:
# their weights stay identical, step after step. With the loss of each half divided by the number of
# workers, the sum is exactly the gradient of the whole batch, so 2 workers follow the same path as 1
# (up to floating-point rounding).
#
# `tf.distribute.MultiWorkerMirroredStrategy` does the all-reduce. Keras 3's `model.fit` fails under
# it (keras-team/keras#20585), so `recsys_workshop.train` runs its own loop: `strategy.run(step)` on
# each worker's slice, `strategy.reduce` for the loss, a checkpoint after every epoch
# (`recsys_workshop/train/distributed.py`: `_Loop` holds the steps, `_Checkpoints` the checkpoints; read it).
#
# **When does it pay?** Data parallelism cuts the compute per worker, but adds an all-reduce per step.
# It pays when a step's compute is large compared with moving the gradients: big models, big batches,
# one worker per machine or GPU. You will measure the opposite case too.
#
# ## 2. `TF_CONFIG`: how a worker knows its cluster
#
# A TFJob with a `Chief` and `Worker` replicas starts one pod per replica. The Training Operator
# gives each pod an environment variable `TF_CONFIG`: the address of every replica, and which one
# this pod is. Here is what the chief of a TFJob with one extra worker receives:

# %%
print(json.dumps(cluster_tf_config("recsys-train", "recsys", workers=1), indent=2))

# %% [markdown]
# The addresses are the pods' stable DNS names (a headless Service per replica, port 2222). The
# local launcher does the same with ports on 127.0.0.1.
#
# Every process gets the same `cluster` and its own `task`. From them it works out its share of the work:
# - **the replicas**: the processes that train in sync are the chief and the workers. A TFJob may also
#   have an `evaluator` (it evaluates checkpoints on the side) or parameter servers (`ps`): they are in
#   the cluster, but they are not replicas.
# - **its shard**: the replicas are numbered chief first, then the workers in order, whatever order the
#   JSON lists them in. With a chief, `worker 0` is shard 1 and `worker i` is shard `1 + i`; in a
#   cluster without a chief, worker 0 is shard 0. Shard 0 is the chief: it writes the checkpoints,
#   evaluates and exports.
# - **its rows**: the global batch (the config's `batch_size`) is cut into one contiguous slice of
#   `per_replica_batch` rows per replica, and shard `s` trains on rows `s * per_replica_batch` to
#   `(s + 1) * per_replica_batch - 1` of every global batch. The all-reduce needs every replica to take
#   the same number of rows at every step, so the global batch must split evenly.
#
# ### Exercise 7.1: a worker's share of the global batch
#
# Write `worker_share(tf_config, global_batch_size)`. `tf_config` is one process's `TF_CONFIG` string
# (JSON), or `None` or `""` when there is none: a single process, the chief of a job of one. Return a
# `WorkerShare(role, index, replicas, per_replica_batch, shard)`: the task's type and index, the number
# of replicas in sync, each replica's rows of the global batch, and this process's shard. Raise
# `ValueError` when the task is not a chief or a worker of the cluster, or when the global batch does
# not split evenly among the replicas.
#
# The self-check first tries named cases (a cluster without a chief, one with an evaluator, the workers
# listed before the chief, ...). Then it runs the workshop's training job for one epoch as a chief and a
# worker, with **your** function in place of the package's `recsys_workshop.train.tfconfig.worker_share`:
# yours decides which rows each process trains on and which one reports the metrics, and the training
# loop checks that TensorFlow agrees. It takes 10 to 25 seconds at CI or full size: one epoch, most of it
# spent starting TensorFlow in two processes.

# %%
def worker_share(tf_config: str | None, global_batch_size: int) -> WorkerShare:
    ### BEGIN SOLUTION
    if not tf_config:
        return WorkerShare("chief", 0, 1, global_batch_size, 0)
    config = json.loads(tf_config)
    cluster, task = config["cluster"], config["task"]
    role, index = task["type"], task["index"]
    if role not in ("chief", "worker") or not 0 <= index < len(cluster.get(role, [])):
        raise ValueError(f"task {role} {index} is not a chief or a worker of {cluster}")
    chiefs = len(cluster.get("chief", []))
    replicas = chiefs + len(cluster.get("worker", []))
    if global_batch_size % replicas:
        raise ValueError(f"{global_batch_size} rows do not split evenly among {replicas} replicas")
    shard = index if role == "chief" else chiefs + index
    return WorkerShare(role, index, replicas, global_batch_size // replicas, shard)
    ### END SOLUTION


# %%
# Self-check
def _check_worker_share():
    training.worker_share(worker_share)  # named TF_CONFIG cases: each usual mistake has its own message
    training.worker_share_in_job(worker_share, JOB, f"{RUN_DIR}/your-worker-share")  # the real job, yours in it


selfcheck.check(
    "7.1",
    _check_worker_share,
    hint="The string is JSON: its task says who this process is, its cluster lists every process. Only the "
    "chief and the workers train in sync (an evaluator does not). Number them chief first, then the workers: "
    "where does worker i land when there is a chief, and when there is none? The replicas share the global "
    "batch equally. No TF_CONFIG means one process doing everything.",
    code_hint="""if not tf_config:
    return WorkerShare("chief", 0, 1, global_batch_size, 0)
config = json.loads(tf_config)
cluster, task = config["cluster"], config["task"]
role, index = task["type"], task["index"]
# raise ValueError if role is not "chief" or "worker", or index >= len(cluster.get(role, []))
chiefs = len(cluster.get("chief", []))
replicas = chiefs + len(cluster.get("worker", []))
# raise ValueError if global_batch_size % replicas
shard = index if role == "chief" else chiefs + index
return WorkerShare(role, index, replicas, global_batch_size // replicas, shard)""",
)

# %% [markdown]
# ## 3. One worker, then two
#
# `LocalJob(config, workers=n)` writes the config to `job.json`, starts `n` processes of
# `python -m recsys_workshop.train --config job.json`, each with its `TF_CONFIG`, and waits. Each process
# prints its share (from the package's `worker_share`, the function you just wrote); the chief evaluates
# and prints its metrics as `name=value` lines; every process prints a SHA-256 of its weights.

# %%
runs = {}
for workers in (1, WORKERS):
    runs[workers] = LocalJob(JOB, workers, workdir=f"{RUN_DIR}/workers-{workers}").run(timeout=1800)
    print(f"{workers} worker(s): {runs[workers].seconds:.0f} s, restarts {runs[workers].restarts}")


def weights_digest(log: Path) -> str:
    return next(line.split("=", 1)[1] for line in log.read_text().splitlines() if line.startswith("weights_sha256="))


two = runs[WORKERS]
digests = {name: weights_digest(log) for name, log in two.logs.items()}
print({name: digest[:16] + "..." for name, digest in digests.items()})
print("identical weights on every worker:", len(set(digests.values())) == 1)
print(Path(two.logs["chief-0"]).read_text().split("replica(s)")[0].splitlines()[-1] + "replica(s)")
for name, log in two.logs.items():
    print(f"{name}:", next(line for line in log.read_text().splitlines() if line.startswith("this process:")))

# %%
summary = pd.DataFrame(
    {
        f"{n} worker(s)": {
            "ndcg@10": run.metrics["ndcg_at_10"],
            "precision@10": run.metrics["precision_at_10"],
            "examples/s": run.metrics["examples_per_second"],
            "train seconds": run.metrics["train_seconds"],
        }
        for n, run in runs.items()
    }
)
display(summary.round(4))

# %% [markdown]
# The metrics agree (the two runs saw the same batches; only the order of floating-point additions
# differs). The throughput does not improve: on this machine both workers share the same CPU cores,
# and every step now waits for an all-reduce through gRPC. That is the honest result of data
# parallelism on one small machine. On a cluster each worker has its own node, and a larger model
# makes each step's compute dominate the all-reduce.
#
# ### Exercise 7.2: scaling efficiency
#
# *Scaling efficiency* is the speed-up divided by the number of workers: 1.0 is perfect scaling (twice
# the workers, twice the examples per second), 0.5 means that two workers go as fast as one. Write
# `scaling_efficiency(throughput_1, throughput_n, n)`; raise `ValueError` if a throughput is not
# positive or `n < 1`.

# %%
def scaling_efficiency(throughput_1: float, throughput_n: float, n: int) -> float:
    ### BEGIN SOLUTION
    if throughput_1 <= 0 or throughput_n <= 0 or n < 1:
        raise ValueError("throughputs must be positive and n >= 1")
    return throughput_n / throughput_1 / n
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "7.2",
    lambda: training.scaling_efficiency(scaling_efficiency),
    hint="The speed-up is how many times faster n workers go than one (a ratio of the two throughputs); "
    "perfect scaling makes it n, so divide it by n.",
    code_hint="if throughput_1 <= 0 or throughput_n <= 0 or n < 1:\n    raise ValueError(...)\n"
    "return throughput_n / throughput_1 / n",
)
efficiency = scaling_efficiency(runs[1].metrics["examples_per_second"], two.metrics["examples_per_second"], WORKERS)
print(f"scaling efficiency of {WORKERS} workers on this machine: {efficiency:.2f}")

# %% [markdown]
# ## 4. A worker dies: resume from the checkpoint
#
# After every epoch the chief writes a checkpoint (weights, optimizer state, epoch number) to the job's
# `checkpoint_dir`; on a cluster it is on a persistent volume. When a pod dies, the TFJob's restart
# policy brings it back; with `MultiWorkerMirroredStrategy` the others cannot continue alone, so the
# whole group restarts, and resumes from the latest checkpoint: at most one epoch is lost.
#
# The launcher behaves the same way. We start the chief and one worker, wait for the first checkpoint
# and kill the worker, `worker-0` (task `worker 0`, shard 1), with `SIGKILL` (no chance to clean up, like
# a node that disappears).

# %%
job = LocalJob(JOB, WORKERS, workdir=f"{RUN_DIR}/killed").start()
state = Path(RUN_DIR) / "killed" / "checkpoints" / "state.json"
deadline = time.monotonic() + 900
while not (state.exists() and json.loads(state.read_text())["history"]):
    if time.monotonic() > deadline:
        job.stop()
        raise TimeoutError("no checkpoint after 15 minutes")
    time.sleep(0.2)
os.kill(job.pids["worker-0"], signal.SIGKILL)
print(f"killed worker-0 (pid {job.pids['worker-0']}) after epoch {len(json.loads(state.read_text())['history'])}")
killed = job.wait(timeout=1800)
job.stop()
print(f"restarts: {killed.restarts}")
for line in Path(killed.logs["chief-0"]).read_text().splitlines():
    if line.startswith(("--- attempt", "resumed", "epoch ")):
        print(line[:110])

# %%
history = pd.DataFrame(json.loads(state.read_text())["history"], index=pd.RangeIndex(1, EPOCHS + 1, name="epoch"))
ax = history[["loss", "val_loss"]].plot(marker="o", figsize=(6, 3.5), title="Training across a killed worker")
ax.set_ylabel("MSE")
plt.show()
print(f"ndcg@10 after the kill: {killed.metrics['ndcg_at_10']:.4f}, without it: {two.metrics['ndcg_at_10']:.4f}")

# %% [markdown]
# The epochs before the kill were not redone: the restarted job read the checkpoint and went on. The
# data order of each epoch depends only on the seed and the epoch number, so the resumed run trains
# on the same batches as an uninterrupted one and reaches the same model.
#
# ## 5. The same job as a TFJob
#
# On a cluster, the TFJob below runs `python -m recsys_workshop.train --config /etc/recsys/train.json`
# in a `Chief` pod (and, in the GKE overlay, a `Worker` pod too). The config is the ConfigMap made from
# `cluster-setup/manifests/base/train.json`: the same fields as `JOB` above.
#
# Why a TFJob, from the Training Operator v1 (v1.9.4, pinned in `cluster-setup/versions.env`)? Its
# successor, Kubeflow Trainer v2 (`TrainJob` and training runtimes), has runtimes for PyTorch, DeepSpeed,
# MLX, JAX, XGBoost and MPI but no TensorFlow runtime: nothing there writes a `TF_CONFIG`. So the course
# keeps the v1 operator and its TFJob, which still do.

# %%
docs = kube.kustomize_build(kube.overlay_dir("gke"))
tfjob = next(d for d in docs if d["kind"] == "TFJob")
for replica, spec in tfjob["spec"]["tfReplicaSpecs"].items():
    container = spec["template"]["spec"]["containers"][0]
    print(f"{replica}: {spec['replicas']} replica(s), restartPolicy {spec['restartPolicy']}, "
          f"{' '.join(container['command'] + container['args'])}")
train_json = json.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["train.json"])
print("model:", train_json["model"], "| checkpoints:", train_json["checkpoint_dir"])
findings = kube.validate_custom([tfjob])
print("TFJob valid against the Training Operator's CRD:", not findings, findings)

# %% [markdown]
# **With a cluster** (`cluster-setup/kind/up` or `gke/up`, lab 06), the next cell applies the overlay that
# matches it (`kube.cluster_flavour` tells kind from GKE), in the one image that overlay runs, into the
# labs' namespace (`kube.workshop_namespace()`: `recsys` on your own cluster, your own `recsys-<you>` on the
# class JupyterHub), and lists the TFJob's pods; follow them with
# `kubectl -n <namespace> get pods -l training.kubeflow.org/job-name=recsys-train -w` and read the chief's
# log with `kubectl -n <namespace> logs recsys-train-chief-0`. In an attendee's namespace, whose quota is
# sized for one lab at a time, it applies only what the training job needs. Without a cluster, or without
# the rights, it says why and does nothing.

# %%
namespace = kube.workshop_namespace()
own_cluster = namespace == kube.versions()["WORKSHOP_NAMESPACE"]
context = kube.cluster_context(timeout=5)
if context is not None and context.reachable:
    flavour = kube.cluster_flavour(context)  # "kind" or "gke": from the context's name, the server or the nodes
    image = kube.workshop_image(flavour)  # the image cluster-setup/image built for that cluster
    docs = kube.kustomize_build(kube.overlay_dir(flavour), image=image)
    if not own_cluster:  # the training job and what it mounts and reads, nothing else
        docs = [d for d in docs if d["kind"] in {"TFJob", "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy"}]
    docs = kube.in_namespace(docs, namespace)
    reason = kube.why_local(kube.apply_needs(docs), namespace=namespace)
else:
    reason = "no reachable cluster"
if reason is None:
    print(f"{context.context}: the {flavour} overlay, image {image}, into namespace {namespace}")
    applied = kube.apply_in_namespace(docs, namespace, context=context.context)
    print(applied.stdout or applied.stderr)
    pods = subprocess.run(
        [kube.find_kubectl(), "-n", namespace, "get", "pods", "-l", "training.kubeflow.org/job-name=recsys-train"],
        capture_output=True, text=True, check=False,
    )
    print(pods.stdout or pods.stderr)
else:
    print(f"Not submitted ({reason}): the TFJob was validated offline above.")

# %% [markdown]
# ## What you saw
# - Data parallelism: each worker takes a slice of every batch; the all-reduce makes the update the
#   same everywhere, so the workers stay identical and match single-worker training.
# - `TF_CONFIG`: the whole cluster and this replica's place in it, as the Training Operator writes it;
#   from it each process works out its shard and its rows of every global batch (your `worker_share`,
#   which the real job ran with).
# - On one machine, 2 workers are *slower* than 1: the all-reduce costs more than the compute it
#   shares. Scale out when the compute per step is large, and measure.
# - Checkpoints every epoch to a shared volume turn a lost worker into a restart that costs at most
#   one epoch.
# - The TFJob runs the very same command with the very same config.
#
# **Next:** lab 08, hyper-parameter tuning: many runs of this job with different settings.
