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
# # Lab 08: Pipelines, continuous training with Kubeflow Pipelines
#
# **Time:** about 45 minutes.
#
# **You will**
# - see why a model in production is retrained by a *pipeline*, not by hand: the same checked steps,
#   every time, with every artifact kept;
# - validate data before training on it (schema, ranges, duplicates) and check a split for leakage;
# - read the workshop's KFP v2 pipeline: ingest -> validate -> split -> train -> evaluate -> compare
#   with the deployed model -> push only if better; compile it to the YAML a cluster runs;
# - run it locally with KFP's local runner, inspect its typed artifacts, and watch it push a first
#   model, refuse a weaker one, and stop on bad data with a readable report;
# - (with a cluster) submit it to Kubeflow Pipelines.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci" (the test suite's quick run)
EPOCHS = 10 if WORKSHOP_SCALE == "full" else 2
BEST_PARAMS = "artifacts/lab07/best_params.json"  # lab 07's tuning result, used when it exists
RUN_DIR = "artifacts/lab08"  # the pipeline root (one folder per run) and the "deployed" model folder

# %%
import inspect
import json
import shutil
from pathlib import Path

import pandas as pd
import yaml
from IPython.display import Markdown, display

from recsys_workshop import data, kube, pipelines, selfcheck
from recsys_workshop.export import list_versions, load_metadata
from recsys_workshop.train.job import merge_config

shutil.rmtree(RUN_DIR, ignore_errors=True)
ROOT, DEPLOYED = Path(RUN_DIR) / "runs", Path(RUN_DIR) / "deployed"
base = json.loads(Path("../cluster-setup/manifests/base/train.json").read_text())
base = merge_config(base, [f"train.epochs={EPOCHS}", "train.verbose=0"])
JOB = pipelines.job_config_with_best(base, BEST_PARAMS)
print("tuned parameters from lab 07:", Path(BEST_PARAMS).exists())
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
# ### Exercise 8.1: leakage between splits
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
def _check_leakage():
    train, test = data.stratified_split(ratings, 0.75, seed=42)
    selfcheck.equal(leaked_pairs(train, test), 0, "a proper split")
    leaky = pd.concat([test, train.head(7)])
    selfcheck.equal(leaked_pairs(train, leaky), 7, "a test split with 7 training rows added")
    reported = data.check_split(train, leaky)[0]  # the library's check, which the pipeline runs
    selfcheck.equal(reported.startswith(f"leakage: {leaked_pairs(train, leaky)} "), True, "agreement with data.check_split")


selfcheck.check("8.1", _check_leakage, hint="merge the distinct (user_id, item_id) pairs of both splits on both columns.")

# %% [markdown]
# ## 3. The pipeline in code
#
# Each component is a small Python function decorated with `@dsl.component`; its body calls one
# tested function of `recsys_workshop.pipelines.steps`. The train step, for instance:

# %%
print(inspect.getsource(pipelines.train_model.python_func))

# %% [markdown]
# The pipeline wires the components by their artifacts. Compiled, it is a YAML file (the *pipeline
# spec*) that Kubeflow Pipelines runs on a cluster, each task in the workshop image:

# %%
spec = yaml.safe_load(pipelines.compile_pipeline(Path(RUN_DIR) / "pipeline.yaml").read_text())
tasks = spec["root"]["dag"]["tasks"]
display(pd.DataFrame([{"task": name, "after": ", ".join(task.get("dependentTasks", [])) or "-"} for name, task in tasks.items()]))
print("parameters:", list(spec["root"]["inputDefinitions"]["parameters"]))

# %% [markdown]
# The push step receives the comparison's verdict and does nothing when the candidate is not better.
# (A `dsl.If` around the push would read better, but KFP 2.16's local runner evaluates such conditions
# wrongly, and one pipeline must behave the same here and on a cluster.)
#
# ### Exercise 8.2: the push gate
#
# `should_push(candidate, deployed, min_improvement)`: push when nothing is deployed yet
# (`deployed is None`), or when the candidate's NDCG@10 beats the deployed model's by *more than*
# `min_improvement` (a tie does not earn a rollout). Raise `ValueError` for a negative
# `min_improvement`.

# %%
def should_push(candidate: float, deployed: float | None, min_improvement: float = 0.0) -> bool:
    ### BEGIN SOLUTION
    if min_improvement < 0:
        raise ValueError("min_improvement must be >= 0")
    return deployed is None or candidate > deployed + min_improvement
    ### END SOLUTION


# %%
# Self-check
def _check_gate():
    cases = [(0.30, None, 0.0), (0.30, 0.29, 0.0), (0.30, 0.30, 0.0), (0.30, 0.29, 0.02), (0.35, 0.30, 0.02)]
    for case in cases:
        selfcheck.equal(should_push(*case), pipelines.is_better(*case), f"should_push{case}")
    try:
        should_push(0.3, 0.2, -0.1)
    except ValueError:
        return
    raise AssertionError("a negative min_improvement should raise ValueError")


selfcheck.check("8.2", _check_gate, hint="deployed is None or candidate > deployed + min_improvement")

# %% [markdown]
# ## 4. Run it locally
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
# model server's own code (lab 09) and asked it for each test user's top 10, excluding what the user
# has already rated.
#
# ## 5. A weaker candidate is refused
#
# Run again with a deliberately poor configuration (tiny embeddings, one epoch, a learning rate too
# small). The compare step evaluates both models on this run's test split; the push step keeps the
# deployed version.

# %%
weaker = merge_config(JOB, ["model.n_factors=2", "train.epochs=1", "train.learning_rate=0.00001"])
second = pipelines.run_local(ROOT, DEPLOYED, job_config=weaker, log_path=Path(RUN_DIR) / "run-2.log")
print("deployed versions:", list_versions(DEPLOYED))
print([line.strip() for line in (Path(RUN_DIR) / "run-2.log").read_text().splitlines() if "deployed v" in line][-1])

# %% [markdown]
# ## 6. Bad data stops the run
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
# **With a cluster** running Kubeflow Pipelines, port-forward its API
# (`kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`), set `KFP_HOST=http://127.0.0.1:8080`
# and run the next cell: it uploads `pipeline.yaml` and starts a run. On a cluster, `deployed_dir` must
# be on the models volume: mount the `recsys-models` claim into the compare and push steps with
# `kfp-kubernetes`' `mount_pvc`.

# %%
if os.environ.get("KFP_HOST") and (context := kube.cluster_context(timeout=5)) is not None and context.reachable:
    import kfp

    client = kfp.Client(host=os.environ["KFP_HOST"])
    run = client.create_run_from_pipeline_package(
        str(Path(RUN_DIR) / "pipeline.yaml"),
        arguments={"deployed_dir": "/models/recsys", "job_config": json.dumps(JOB)},
    )
    print("submitted run", run.run_id)
else:
    print("No KFP_HOST or no reachable cluster: the pipeline ran locally above; nothing was submitted.")

# %% [markdown]
# ## What you saw
# - Data validation (schema, ranges, duplicates) and a leakage check between splits, as steps that
#   stop the run with a readable report.
# - A KFP v2 pipeline whose components are thin wrappers around tested functions, with typed artifacts,
#   compiled to one YAML file for a cluster.
# - Continuous training: the candidate is evaluated as it will be served, compared with the deployed
#   model on the same test split, and pushed as a new version only if it is better.
#
# **Next:** lab 09, serving: the model server that loads these versions, switches between them and
# rolls back.
