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
# # Lab 09: Pipelines, continuous training with Kubeflow Pipelines
#
# **Time:** about 55 minutes.
#
# > **Before you start**
# > - **You need:** labs 07 and 08 (the training job, and the tuned parameters: it uses lab 08's when they
# >   exist).
# > - **A cluster:** optional. The pipeline runs with KFP's local runner either way; with one, the lab also
# >   submits it to Kubeflow Pipelines.
# > - **Run All** (2 CPU cores): about 1 min at CI size, about 2 min at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** nothing of its own: what it starts runs on the cluster's nodes (the class cluster costs
# >   about $0.28 per hour while it exists, see `cluster-setup/README.md`).
#
# **You will**
# - see why a model in production is retrained by a *pipeline*, not by hand: the same checked steps,
#   every time, with every artifact kept;
# - validate data before training on it (schema, ranges, duplicates) and check a split for leakage;
# - read the workshop's KFP v2 pipeline: ingest -> validate -> split -> train -> evaluate -> compare
#   with the deployed model -> push only if better; compile it to the YAML a cluster runs;
# - write a KFP component of your own (the push gate) and a pipeline that wires it after the workshop's
#   steps; the workshop compiles both, checks the spec, and runs your pipeline;
# - run it locally with KFP's local runner, inspect its typed artifacts, and watch it push a first
#   model, refuse a weaker one, and stop on bad data with a readable report;
# - close the loop: the API's stored feedback becomes new interactions, the pipeline retrains on it,
#   the gate decides, and a pushed version is activated on the running model server;
# - (with a cluster) submit it to Kubeflow Pipelines.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci" (the test suite's quick run)
EPOCHS = 10 if WORKSHOP_SCALE == "full" else 2
BEST_PARAMS = "artifacts/lab08/best_params.json"  # lab 08's tuning result, used when it exists
RUN_DIR = "artifacts/lab09"  # the pipeline root (one folder per run) and the "deployed" model folder
N_VISITS = 200 if WORKSHOP_SCALE == "full" else 40  # simulated visits to the API in section 8
SEED = 42

# %%
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import requests
import yaml
from IPython.display import Markdown, display
from kfp import dsl
from kfp.dsl import Input, Metrics

from recsys_workshop import data, kube, pipelines, selfcheck
from recsys_workshop.export import list_versions, load_metadata
from recsys_workshop.labchecks import pipelines as pipeline_checks
from recsys_workshop.pipelines.components import PLACEHOLDER_IMAGE
from recsys_workshop.train.job import merge_config

shutil.rmtree(RUN_DIR, ignore_errors=True)
ROOT, DEPLOYED = Path(RUN_DIR) / "runs", Path(RUN_DIR) / "deployed"
base = json.loads(Path("../cluster-setup/manifests/base/train.json").read_text())
base = merge_config(base, [f"train.epochs={EPOCHS}", "train.verbose=0"])
JOB = pipelines.job_config_with_best(base, BEST_PARAMS)
print("tuned parameters from lab 08:", Path(BEST_PARAMS).exists())
print("model:", JOB["model"])

# %% [markdown]
# ## 1. Continuous training
#
# New ratings arrive every day; a model trained once goes stale. Retraining by hand is where mistakes
# live: a corrupted export trained on, a test split that leaks into training, a worse model pushed on
# a Friday. A pipeline makes retraining a fixed sequence of checked steps:
#
# ```
# ingest ─> validate ─> split (+ leakage check) ─> train ─> evaluate ─┐
#                                                         compare with deployed ─> push if better
# ```
#
# Each step is a *component* that runs in its own container (locally: its own process) and passes
# typed *artifacts* to the next: `Dataset`s, a `Model`, `Metrics`, `Markdown` reports. The pipeline
# stops at the first failing step. It is run on a schedule or when new data lands.
#
# ## 2. Validate before you train
#
# `data.check_ratings` lists every problem that makes a table unfit for training. MovieLens passes:

# %%
ratings = data.load_ratings("ml-100k", progress=False)
print("ml-100k:", data.check_ratings(ratings) or "no problems")
broken = pd.concat([ratings.head(1000), ratings.head(3)], ignore_index=True)  # three rows delivered twice
broken.loc[broken.index[:2], "rating"] = 50.0  # a scale changed upstream
for problem in data.check_ratings(broken):
    print(" -", problem)

# %% [markdown]
# ### Exercise 9.1: leakage between splits
#
# A `(user_id, item_id)` pair that is in both the training and the test split is *leakage*: the
# model is tested on what it was trained on, and the score is too good. Write `leaked_pairs(train,
# test)`: the number of distinct `(user_id, item_id)` pairs present in both.

# %%
def leaked_pairs(train: pd.DataFrame, test: pd.DataFrame) -> int:
    ### BEGIN SOLUTION
    keys = ["user_id", "item_id"]
    return len(train[keys].drop_duplicates().merge(test[keys].drop_duplicates(), on=keys))
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop.labchecks import operations

selfcheck.check(
    "9.1", lambda: operations.leaked_pairs(leaked_pairs, ratings),
    hint="Leakage is a (user, film) pair in both splits. A user or a film in both is normal (collaborative "
         "filtering needs it), so compare the two columns together, and count each pair once however many rows "
         "carry it.",
    code_hint="keys = ['user_id', 'item_id']\n"
              "return len(train[keys].drop_duplicates().merge(test[keys].drop_duplicates(), on=keys))",
)

# %% [markdown]
# ## 3. The pipeline in code
#
# Each component is a small Python function decorated with `@dsl.component`; its body calls one
# tested function of `recsys_workshop.pipelines.steps`. The train step, for instance:

# %%
print(inspect.getsource(pipelines.train_model.python_func))

# %% [markdown]
# Three things in these few lines matter on a cluster:
#
# - **the image**: `base_image=PLACEHOLDER_IMAGE` (`"recsys-workshop"`) runs the step in the workshop's image,
#   which has this package and the pinned kfp (`install_kfp_package=False`: no `pip install kfp` at start);
#   `compile_pipeline` writes the cluster's image reference in place of the placeholder;
# - **typed inputs and outputs**: parameters (`str`, `int`, `float`, `bool`) and artifacts (`Input[Dataset]`,
#   `Output[Model]`, `Metrics`...), which KFP checks when it wires the steps; a return value is an output too;
# - **a hermetic body**: KFP ships the function's *source* and runs it alone, in a fresh process (a container);
#   the notebook's imports and variables are not there, so the body imports what it uses.
#
# The pipeline is a function decorated with `@dsl.pipeline` that calls the components: a component's
# output (`task.outputs["name"]`, or `task.output` for a return value) passed as another's input is a data
# dependency, and KFP runs the consumer after the producer. Where nothing flows between two steps,
# `.after()` says the order. Here is the workshop's:

# %%
print(inspect.getsource(pipelines.training_pipeline.pipeline_func))

# %% [markdown]
# Compiled, it is a YAML file (the *pipeline spec*) that Kubeflow Pipelines runs on a cluster, each task in
# the workshop image. A second YAML document holds what is Kubernetes-specific (the `kfp-kubernetes`
# extension): the ingest task gets the API's database URL from the Secret `recsys-postgres` as an environment
# variable, so the password is never a pipeline parameter (section 8 uses it); the compare and push steps get
# the model server's admin token from the Secret `recsys-admin` the same way, because on a cluster they talk to
# the model server's admin API (section 7 explains why). No task mounts a volume.

# %%
spec, platform = yaml.safe_load_all(pipelines.compile_pipeline(Path(RUN_DIR) / "pipeline.yaml").read_text())
tasks = spec["root"]["dag"]["tasks"]
display(pd.DataFrame([{"task": name, "after": ", ".join(task.get("dependentTasks", [])) or "-"} for name, task in tasks.items()]))
print("parameters:", list(spec["root"]["inputDefinitions"]["parameters"]))
executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
print("from Secrets:", {name: [(s["secretName"], k["envVar"]) for s in e["secretAsEnv"] for k in s["keyToEnv"]]
                        for name, e in executors.items() if "secretAsEnv" in e})
print("volumes:", [name for name, e in executors.items() if "pvcMount" in e] or "none")

# %% [markdown]
# The push step receives the comparison's verdict and does nothing when the candidate is not better.
# (A `dsl.If` around the push would read better, but KFP 2.16's local runner evaluates such conditions
# wrongly, and one pipeline must behave the same here and on a cluster.)
#
# ## 4. Your own gate, in your own pipeline
#
# `compare_with_deployed` does two things in one step: it scores the deployed model on this run's test split,
# and it decides. The package also has the first half alone, `pipelines.evaluate_deployed`: a `Metrics`
# artifact with the deployed model's scores (the same keys as `evaluate_model`'s: `ndcg@10`, `precision@10`,
# ...), and *no key at all* when nothing is deployed yet. The decision is yours to write.
#
# ### Exercise 9.2: the push gate, as a component
#
# Write the component `push_gate`:
#
# - decorated like the workshop's components (the same image, no `pip install kfp`);
# - inputs `candidate` and `deployed`, both `Input[Metrics]`, and `min_improvement: float`; it returns a `bool`;
# - the numbers of a `Metrics` artifact are in its dict `.metadata`, e.g. `candidate.metadata["ndcg@10"]`;
# - it returns `True` when nothing is deployed yet, or when the candidate's NDCG@10 beats the deployed one by
#   *more than* `min_improvement` (a tie does not earn a rollout), and raises `ValueError` for a negative
#   `min_improvement` (the step fails, and the run stops);
# - it is hermetic: nothing from outside the function body.
#
# The check compiles your component and compares its inputs, outputs and types with the ones above, looks for
# names the body takes from the notebook, tries it on named cases (nothing deployed, a tie, a margin), then
# runs it in KFP's local runner, in a process of its own, as a cluster would.

# %%
push_gate = None  # your component, written below, replaces this
### BEGIN SOLUTION
@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def push_gate(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if min_improvement < 0:
        raise ValueError("min_improvement must be >= 0")
    if "ndcg@10" not in deployed.metadata:
        return True  # nothing deployed yet: the first model is pushed
    return candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement
### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "9.2", lambda: pipeline_checks.push_gate(push_gate),
    hint="A component is typed: the evaluate steps hand over Metrics artifacts, whose numbers sit in their "
         ".metadata dict (empty when nothing is deployed). KFP ships only the function's source: import inside it "
         "whatever it uses.",
    code_hint="@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)\n"
              "def push_gate(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:\n"
              "    if min_improvement < 0: raise ValueError(...)\n"
              "    if 'ndcg@10' not in deployed.metadata: return True\n"
              "    return candidate.metadata['ndcg@10'] > deployed.metadata['ndcg@10'] + min_improvement",
)

# %% [markdown]
# ### Exercise 9.3: your pipeline
#
# Write `gated_pipeline(gate)`: it defines and returns a `@dsl.pipeline` with the parameters
# `(deployed_dir: str, job_config: str = "{}", min_improvement: float = 0.0)` that runs, as the workshop's
# pipeline above does: `ingest` (MovieLens `ml-100k`, no CSV, no feedback), `validate_data`, `split_data`
# (*after* the validation), `train_model` (with the `job_config` parameter) and `evaluate_model` (k = 10); then
# `evaluate_deployed` on the same split, the `gate` on the two `Metrics`, and `push_model` with the gate's
# decision. Call `gate(...)`, the argument, not `push_gate` directly: KFP builds a pipeline's graph when the
# function is decorated, so a function that returns the pipeline lets the workshop choose the gate (yours, or
# the package's while Exercise 9.2 is not done). The steps' inputs and outputs:

# %%
def _types(specs) -> str:  # "system.Dataset@0.0.1" -> "Dataset"
    return ", ".join(f"{name}: {spec.type.removeprefix('system.').split('@')[0]}" for name, spec in (specs or {}).items())


steps_table = [pipelines.ingest, pipelines.validate_data, pipelines.split_data, pipelines.train_model,
               pipelines.evaluate_model, pipelines.evaluate_deployed, pipelines.push_model]
display(pd.DataFrame([{"component": f"pipelines.{c.name.replace('-', '_')}", "inputs": _types(c.component_spec.inputs),
                       "outputs": _types(c.component_spec.outputs)} for c in steps_table]))

# %% [markdown]
# Leave out the Secrets (`kubernetes.use_secret_as_env`): this pipeline runs on the local runner only. On a
# cluster, `evaluate_deployed` and `push_model` would need the admin token as the workshop's pipeline gives it.
# The check compiles your pipeline and reads the spec: which tasks it runs, where each input comes from (a
# task's output, a parameter, a constant) and which task waits for which.

# %%
def gated_pipeline(gate):
    ### BEGIN SOLUTION
    @dsl.pipeline(name="recsys-gated-training", description="The workshop's steps, with a push gate of my own.")
    def pipeline(deployed_dir: str, job_config: str = "{}", min_improvement: float = 0.0):
        ingested = pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")
        checked = pipelines.validate_data(ratings=ingested.outputs["ratings"], rating_min=0.5, rating_max=5.0)
        splits = pipelines.split_data(ratings=ingested.outputs["ratings"], method="stratified", ratio=0.75, seed=SEED)
        splits.after(checked)  # nothing flows from the validation to the split: say that it waits
        train, test = splits.outputs["train"], splits.outputs["test"]
        trained = pipelines.train_model(train=train, job_config=job_config)
        candidate = pipelines.evaluate_model(model=trained.outputs["model"], train=train, test=test, k=10)
        deployed = pipelines.evaluate_deployed(train=train, test=test, deployed_dir=deployed_dir, k=10)
        decision = gate(candidate=candidate.outputs["metrics"], deployed=deployed.outputs["metrics"],
                        min_improvement=min_improvement)
        pipelines.push_model(model=trained.outputs["model"], metrics=candidate.outputs["metrics"],
                             deployed_dir=deployed_dir, better=decision.output)

    return pipeline
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "9.3", lambda: pipeline_checks.gated_pipeline(gated_pipeline, selfcheck.yours_if_passed("9.2", push_gate,
                                                                                         pipelines.push_gate)),
    hint="Wire it like training_pipeline above: each input is another task's output (task.outputs['name'], or "
         ".output for a return value) or a pipeline parameter. The split needs .after() on the validation, because "
         "no data flows between them.",
    code_hint="@dsl.pipeline(name='my-gated-training')\n"
              "def pipeline(deployed_dir: str, job_config: str = '{}', min_improvement: float = 0.0):\n"
              "    ... ingest, validate_data, split_data(...).after(checked), train_model, evaluate_model ...\n"
              "    deployed = pipelines.evaluate_deployed(train=..., test=..., deployed_dir=deployed_dir, k=10)\n"
              "    decision = gate(candidate=candidate.outputs['metrics'], deployed=deployed.outputs['metrics'], "
              "min_improvement=min_improvement)\n"
              "    pipelines.push_model(..., better=decision.output)\n"
              "return pipeline",
)

# %% [markdown]
# ## 5. Run it locally
#
# `pipelines.run_local` runs the pipeline with `kfp.local.SubprocessRunner(use_venv=False)`: each task
# is a process of this Python, its artifacts are files under the pipeline root. The tasks' full output
# goes to a log file; the status lines appear here. Nothing is deployed yet, so the first run pushes.

# %%
first = pipelines.run_local(ROOT, DEPLOYED, job_config=JOB, log_path=Path(RUN_DIR) / "run-1.log")
print("run folder:", first.name)
print("deployed versions:", list_versions(DEPLOYED))
for path in sorted(p for p in first.rglob("*") if p.is_file() and "executor" not in p.name):
    print(f"  {path.relative_to(first)}  ({path.stat().st_size:,} bytes)")

# %%
display(Markdown((first / "validate-data" / "report").read_text()))
metadata = load_metadata(DEPLOYED / "1")
print({k: round(v, 4) for k, v in metadata["metrics"].items() if "@" in k})

# %% [markdown]
# The evaluate step measured the model *as it will be served*: it loaded the exported version with the
# model server's own code (lab 10) and asked it for each test user's top 10, excluding what the user
# has already rated.
#
# ## 6. A weaker candidate is refused, by your gate
#
# Run again with a deliberately poor configuration (tiny embeddings, one epoch, a learning rate too small),
# this time through *your* pipeline with *your* gate swapped in: `run_local(..., pipeline=...)` runs it with the
# same local runner. `evaluate_deployed` scores version 1 on this run's test split, `evaluate_model` the
# candidate, your gate decides, and `push_model` keeps the deployed version. (Until Exercises 9.2 and 9.3
# pass, the package's gate and the workshop's pipeline stand in for yours.)

# %%
gate = selfcheck.yours_if_passed("9.2", push_gate, pipelines.push_gate)  # the gate decides what is deployed
build = selfcheck.yours_or("9.3", gated_pipeline, lambda gate: pipelines.training_pipeline)
weaker = merge_config(JOB, ["model.n_factors=2", "train.epochs=1", "train.learning_rate=0.00001"])
second = pipelines.run_local(ROOT, DEPLOYED, pipeline=build(gate), job_config=weaker,
                             log_path=Path(RUN_DIR) / "run-2.log")
print("tasks:", ", ".join(sorted(p.name for p in second.iterdir() if p.is_dir())))
print("candidate ndcg@10:", round(pipelines.task_outputs(second, "evaluate-model")["metrics"]["ndcg@10"], 4))
said = [line.strip() for line in (Path(RUN_DIR) / "run-2.log").read_text().splitlines()
        if "deployed v" in line or "push gate" in line or "nothing pushed" in line]
print("\n".join(said))
print("pushed:", pipelines.task_outputs(second, "push-model")["Output"] or "nothing")
print("deployed versions:", list_versions(DEPLOYED))

# %% [markdown]
# ## 7. Bad data stops the run
#
# Feed the pipeline a ratings file of your own (`ratings_csv`) with the problems of section 2. The
# validation step fails, the run stops before training, and the error carries the report.

# %%
broken_csv = Path(RUN_DIR) / "broken.csv"
broken.to_csv(broken_csv, index=False)
try:
    pipelines.run_local(ROOT, DEPLOYED, job_config=JOB, ratings_csv=str(broken_csv), log_path=Path(RUN_DIR) / "run-3.log")
except pipelines.PipelineFailed as failure:
    print(str(failure).split("\n", 1)[1])
print("deployed versions:", list_versions(DEPLOYED))

# %% [markdown]
# **On a cluster, where does the pushed model go?** Each step runs in its own pod, whose files vanish with
# it: a version pushed to the pod's own disk would be lost, and the next run's gate would again find
# "nothing deployed". The model server keeps its versions on a volume (the claim `recsys-models`) in the
# workshop's namespace `recsys`, but Kubeflow Pipelines *standalone*, as `cluster-setup` installs it, runs
# every pipeline's pods in its own namespace `kubeflow`, and a pod can only mount a claim of its own
# namespace. So the pipeline does what production systems do with a model registry: it pushes over an
# authenticated API. On a cluster `deployed_dir` is the model server's URL
# (`http://recsys-model-predictor.recsys.svc.cluster.local`), and
#
# - the compare step downloads the latest deployed version (`GET /v1/models/recsys/versions/latest/archive`,
#   a `.tar.gz`; 404 means nothing deployed yet) and evaluates it exactly like a local one;
# - the push step uploads the candidate (`POST /v1/models/recsys/versions`, with its metrics in
#   `metadata.json`); the server checks the archive (safe file names, bounded size, a complete version that
#   loads), publishes it as its next version with an atomic rename, and the step activates it (`:activate`:
#   the server never switches by itself, lab 10).
#
# Both routes need the admin token: the two tasks read it from the Secret `recsys-admin` (which
# `cluster-setup` copies into `kubeflow`) as `$RECSYS_ADMIN_TOKEN`, never from a pipeline parameter (the
# Kubeflow Pipelines UI shows parameters to anyone who can see the run). A NetworkPolicy lets the pods of
# pipeline runs in `kubeflow` reach the model server's REST port, and nothing else. Locally `deployed_dir`
# stays a folder, as above; `pipelines.run_local` also accepts a running local server's URL.
#
# **With a cluster** running Kubeflow Pipelines, port-forward its API
# (`kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`), set `KFP_HOST=http://127.0.0.1:8080`
# and run the next cell. `pipelines.cluster_arguments` checks that the namespace where the run's pods execute
# holds the Secret `recsys-admin` and returns the run's arguments (`deployed_dir`: the model server's URL);
# then the cell uploads `pipeline.yaml` and starts a run. If the Secret is missing it says why and how to fix
# it, and submits nothing, rather than a run whose push is refused.

# %%
if os.environ.get("KFP_HOST") and (context := kube.cluster_context(timeout=5)) is not None and context.reachable:
    import kfp

    client = kfp.Client(host=os.environ["KFP_HOST"])
    try:  # where the run's pods execute: your profile namespace with multi-user Pipelines, else kubeflow
        arguments = pipelines.cluster_arguments(JOB, namespace=client.get_user_namespace() or None)
    except pipelines.ClusterNotReady as reason:
        print("Not submitted:", reason)
    else:
        run = client.create_run_from_pipeline_package(str(Path(RUN_DIR) / "pipeline.yaml"), arguments=arguments)
        print("submitted run", run.run_id, "| deployed_dir:", arguments["deployed_dir"])
else:
    print("No KFP_HOST or no reachable cluster: the pipeline ran locally above; nothing was submitted.")

# %% [markdown]
# ## 8. Closing the loop: feedback -> retrain -> gate -> push
#
# The API of lab 11 stores every click, like and dislike in its database. The pipeline's ingest step
# can read them (`feedback_db`, a database URL) and add them to the ratings as new interactions, so the
# next candidate learns from what users did with the deployed model's recommendations:
#
# ```
# API (feedback) ─> database ─> ingest (+ feedback) ─> ... ─> train ─> compare with deployed ─> push ─> activate
# ```
#
# Start the local stack (model server and API, lab 11) on the versions this lab deployed, with a fresh
# SQLite database under this lab's folder, and simulate some visits: MovieLens users ask for their
# recommendations, and click, like or dislike a few of the films shown, sending back the answer's
# `recommendation_id` (the API refuses feedback on films it did not show).

# %%
import contextlib

from recsys_workshop.api import local_stack
from recsys_workshop.store import Store

DATABASE_URL = f"sqlite:///{(Path(RUN_DIR) / 'api.db').resolve()}"
API_ENV = {"RECSYS_DATABASE_URL": DATABASE_URL, "RECSYS_FEEDBACK_RATE": "off", "RECSYS_USERS_RATE": "off"}
resources = contextlib.ExitStack()
stack = resources.enter_context(local_stack(DEPLOYED, env=API_ENV))
print("model server:", stack.model_url, "| API:", stack.api_url, "| database:", DATABASE_URL)

rng = np.random.default_rng(SEED)
visitors = rng.choice(np.sort(ratings["user_id"].unique()), size=N_VISITS)
for user in visitors:
    answer = requests.get(f"{stack.api_url}/recommendations/{user}", params={"k": 10}, timeout=10).json()
    for item in answer["items"]:  # each film shown: mostly ignored, sometimes clicked, liked or disliked
        action = rng.choice(["none", "click", "like", "dislike"], p=[0.85, 0.08, 0.05, 0.02])
        if action != "none":
            event = {"user_id": int(user), "item_id": item["item_id"], "action": str(action),
                     "recommendation_id": answer["recommendation_id"]}
            requests.post(f"{stack.api_url}/feedback", json=event, timeout=10).raise_for_status()

# %% [markdown]
# What the database now holds, as the pipeline will read it (`Store.feedback_frame()`: one row per event,
# oldest first; `arm` is the version that served the list, `time` seconds since the epoch):

# %%
with Store.open(DATABASE_URL, namespace="ml-100k") as store:
    feedback = store.feedback_frame()
display(feedback.head().assign(time=pd.to_datetime(feedback["time"].head(), unit="s").dt.floor("s")))
print(f"{len(feedback)} events from {feedback['user_id'].nunique()} users:", feedback["action"].value_counts().to_dict())

# %% [markdown]
# ### Exercise 9.4: feedback as ratings
#
# The training data are ratings (user_id, item_id, rating, timestamp), so each event becomes one: a
# like counts as 5 (an explicit "yes"), a click as 4 (the user chose to open it: interest, not yet a
# verdict), a dislike as 1. Four is the workshop's threshold for "liked", so clicks and likes count as
# liked and a dislike never does. A user may click a film and like it later: keep only the *latest* event
# of each `(user_id, item_id)` pair (largest `time`; of two at the same time, the later row), or the
# validation step would stop the run on the duplicate. Write `feedback_to_ratings(feedback)`: columns
# user_id, item_id, rating (float), timestamp (`int(time)`), one row per pair.

# %%
def feedback_to_ratings(feedback: pd.DataFrame) -> pd.DataFrame:
    ### BEGIN SOLUTION
    latest = feedback.sort_values("time", kind="stable").drop_duplicates(["user_id", "item_id"], keep="last")
    return pd.DataFrame({
        "user_id": latest["user_id"].to_numpy(),
        "item_id": latest["item_id"].to_numpy(),
        "rating": latest["action"].map({"like": 5.0, "click": 4.0, "dislike": 1.0}).to_numpy(),
        "timestamp": latest["time"].astype("int64").to_numpy(),
    })
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "9.4", lambda: operations.feedback_to_ratings(feedback_to_ratings, feedback),
    hint="One row per (user, film) pair, and the latest event decides it: order the events by time before "
         "dropping duplicates, with a sort that keeps two events of the same time in their stored order. Each "
         "action maps to a fixed rating; the timestamp is whole seconds.",
    code_hint="latest = feedback.sort_values('time', kind='stable').drop_duplicates(['user_id', 'item_id'], "
              "keep='last')\n"
              "rating = latest['action'].map({'like': 5.0, 'click': 4.0, 'dislike': 1.0}); "
              "timestamp = latest['time'].astype('int64')",
)

# %% [markdown]
# The pipeline's ingest step uses the package's version (`pipelines.steps.feedback_to_ratings`), then adds
# the rows to the ratings: a pair the ratings lack is *added*; a pair they have keeps its latest row (a
# newer event *changes* the rating). Your preview of what it will add (the package's version until 8.4
# passes):

# %%
your_feedback_to_ratings = selfcheck.yours_or("9.4", feedback_to_ratings, pipelines.steps.feedback_to_ratings)
preview = your_feedback_to_ratings(feedback)
print(f"{len(feedback)} events -> {len(preview)} rows;", preview["rating"].value_counts().sort_index().to_dict())

# %% [markdown]
# Now the same pipeline as before, with `feedback_db` set. It retrains with the tuned job config and
# compares the candidate with the deployed version 1 on the same test split.

# %%
loop = pipelines.run_local(ROOT, DEPLOYED, job_config=JOB, feedback_db=DATABASE_URL, log_path=Path(RUN_DIR) / "run-4.log")
print("ingest:", pipelines.task_outputs(loop, "ingest")["ratings"])
print([line.strip() for line in (Path(RUN_DIR) / "run-4.log").read_text().splitlines() if "deployed v" in line][-1])
pushed = pipelines.task_outputs(loop, "push-model")["Output"]
print("pushed:", pushed or "nothing (the gate kept the deployed version)", "| deployed versions:", list_versions(DEPLOYED))

# %% [markdown]
# The model server does not switch by itself (lab 10): a pushed version is served once someone with the
# admin token activates it. Activate it, and ask the API again: the answer says which version served it.
# Then stop the stack.

# %%
if pushed:
    version = int(Path(pushed).name)
    response = requests.post(f"{stack.model_url}/v1/models/recsys/versions/{version}:activate",
                             headers=stack.admin_headers(), timeout=60)
    print("activate:", response.status_code, response.json())
else:
    print("nothing pushed: version 1 keeps serving")
listed = requests.get(f"{stack.model_url}/v1/models/recsys/versions", timeout=10).json()
print("versions:", [(v["version"], v["status"], round(v["metrics"]["ndcg@10"], 4)) for v in listed["versions"]])
answer = requests.get(f"{stack.api_url}/recommendations/{int(visitors[0])}", params={"k": 5}, timeout=10).json()
print(f"user {int(visitors[0])}: served by version {answer['model_version']} ({answer['source']}):",
      [item["item_id"] for item in answer["items"]])
resources.close()

# %% [markdown]
# **Feedback is weaker evidence than a rating.** A click is interest, not a verdict; feedback exists only
# for the films the model chose to show (the model partly grades its own homework, and a loop that trains
# on it reinforces what it already shows); a handful of visits weigh little against 100,000 ratings; and
# clicks can be accidental, or a bot's. That is why the mapping is conservative and why the gate matters:
# candidate and deployed model are measured on the *same* held-out split (which now holds some of the
# feedback too), and a retrain that came out worse (noisy feedback, a bug, a poisoned batch) is refused
# while the deployed version keeps serving. Here the visitors clicked at random: their feedback carries no
# taste at all, and whether the candidate wins comes down to small differences measured on the test split.
# The gate is what makes retraining on such data safe.
#
# What the training does with the numbers depends on the model: the lab's NeuMF is an implicit model
# that takes *every* row as a positive (a dislike too, as it does a 1-star MovieLens rating) unless its
# config sets `model.positive_threshold=4`, which keeps likes and clicks as positives and makes a dislike
# only mark the film as seen; an explicit model (`mf`) fits the value itself.
#
# **On a cluster** the API's database is PostgreSQL and its URL, with the password, lives in the Secret
# `recsys-postgres` (key `database-url`). A URL never goes into a pipeline parameter (parameters are
# stored and shown in the Kubeflow Pipelines UI): run with `feedback_db="env"`, and the ingest step reads
# `RECSYS_DATABASE_URL` from its environment, set from the Secret (the `kfp-kubernetes` extension's
# `use_secret_as_env`, compiled into `pipeline.yaml` above). Like `recsys-admin`, the Secret must be in the
# namespace where the run's pods execute; without it the step stops with "RECSYS_DATABASE_URL is not set".

# %% [markdown]
# ## What you saw
# - Data validation (schema, ranges, duplicates) and a leakage check between splits, as steps that
#   stop the run with a readable report.
# - A KFP v2 pipeline whose components are thin wrappers around tested functions, with typed artifacts,
#   compiled to one YAML file for a cluster.
# - Your own component and pipeline: a hermetic `@dsl.component` with typed inputs and output (the push gate),
#   wired by data dependencies and an `.after()`, compiled, checked and run by the same local runner.
# - Continuous training: the candidate is evaluated as it will be served, compared with the deployed
#   model on the same test split, and pushed as a new version only if it is better.
# - The loop closed: the API's stored feedback became new interactions (like 5, click 4, dislike 1, the
#   latest event of a pair wins), the pipeline retrained on it, the gate decided, and a pushed version
#   is served once activated with the admin token.
#
# **Next:** lab 10, serving: the model server that loads these versions, switches between them and
# rolls back.
