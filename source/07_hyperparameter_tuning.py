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
# # Lab 07: Hyper-parameter tuning, grid, random and Bayesian search, locally and with Katib
#
# **Time:** about 45 minutes.
#
# **You will**
# - compare the three classic ways to search hyper-parameters: grid, random and Bayesian (TPE);
# - read the workshop's one search space (embedding size, MLP layers, learning rate, L2, negatives)
#   and see it rendered as a Katib `Experiment` whose trials are TFJobs running the training job;
# - run the same search locally with Optuna: every trial is a fresh `python -m recsys_workshop.train`
#   process, scored on a validation split carved from the training data (never the test split);
# - plot the trials and the parameters' importance, and compare the tuned model with the default one
#   on the test split;
# - (with a cluster) submit the Experiment to Katib, in your own namespace.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci" (the test suite's quick run)
N_TRIALS = 12 if WORKSHOP_SCALE == "full" else 3  # the tuning budget: trials of the training job
EPOCHS = 10 if WORKSHOP_SCALE == "full" else 2
ALGORITHM = "bayesian"  # "random", "grid" or "bayesian" (TPE)
RUN_DIR = "artifacts/lab07"  # trials' logs; best_params.json, which lab 08's pipeline reads

# %%
import json
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import yaml
from IPython.display import display

from recsys_workshop import kube, selfcheck, tune
from recsys_workshop.train.job import JobConfig, merge_config
from recsys_workshop.train.launcher import LocalJob

shutil.rmtree(RUN_DIR, ignore_errors=True)
BASE = json.loads((kube.MANIFESTS_DIR / "base" / "train.json").read_text())  # the TFJob's own config
BASE = merge_config(BASE, [f"train.epochs={EPOCHS}", "train.verbose=0", "model_dir=null", "checkpoint_dir=null"])
DEFAULT = JobConfig.from_dict(BASE)
print("model:", DEFAULT.model, "| train:", {k: v for k, v in vars(DEFAULT.train).items() if k != "verbose"})

# %% [markdown]
# ## 1. Three ways to search
#
# **Grid search** tries every combination of a few values per parameter. Simple, and hopeless beyond
# three or four parameters: the number of points multiplies, and most of them vary only parameters
# that hardly matter.
#
# **Random search** draws each trial's values at random. With the same budget it tries *more distinct
# values of each parameter* than a grid, which is what matters when only a few parameters are
# important (Bergstra and Bengio, *Random Search for Hyper-Parameter Optimization*, JMLR 2012).
#
# **Bayesian optimisation** learns from the trials so far where good values lie and samples there
# next. Optuna's TPE (Tree-structured Parzen Estimator) models the density of good and bad trials per
# parameter; Katib offers `bayesianoptimization` (a Gaussian process) and `tpe`. It needs a few random
# trials to start, and pays off when a trial is expensive.
#
# ## 2. One search space
#
# `recsys_workshop.tune.SEARCH_SPACE` names each hyper-parameter by its key in the job config, so a
# trial is just the training job with a few `key=value` overrides:

# %%
space = pd.DataFrame(
    [
        {
            "key": p.key,
            "values": ", ".join(map(str, p.choices)) if p.choices else f"uniform [{p.low}, {p.high}]",
            "grid points": len(p.grid()),
        }
        for p in tune.SEARCH_SPACE
    ]
)
display(space)

# %% [markdown]
# ### Exercise 7.1: how big is the grid?
#
# `grid_size(space)`: the number of combinations a grid search over `space` would try (each parameter
# contributes `len(p.grid())` values).

# %%
def grid_size(space) -> int:
    ### BEGIN SOLUTION
    return math.prod(len(p.grid()) for p in space)
    ### END SOLUTION


# %%
# Self-check
def _check_grid():
    two = (tune.Parameter("a", choices=(1, 2, 3)), tune.Parameter("b", low=0.0, high=1.0, step=0.25))
    selfcheck.equal(grid_size(two), 15, "grid_size of 3 choices x 5 grid points")
    selfcheck.equal(grid_size(two[:1]), 3, "grid_size of one parameter")


selfcheck.check("7.1", _check_grid, hint="math.prod of the number of grid points of each parameter.")
print(f"the full grid: {grid_size(tune.SEARCH_SPACE):,} trials")

# %% [markdown]
# ### Exercise 7.2: how many random trials are enough?
#
# Random search draws each trial independently. If a fraction `p` of the space is "good" (say the
# best 5 %), how many trials give at least one good trial with probability `confidence`? The chance
# that all `n` trials miss is `(1 - p) ** n`. `trials_needed(p, confidence)` returns the smallest such
# `n`; it raises `ValueError` unless `0 < p < 1` and `0 < confidence < 1`.

# %%
def trials_needed(p: float, confidence: float) -> int:
    ### BEGIN SOLUTION
    if not (0 < p < 1 and 0 < confidence < 1):
        raise ValueError("p and confidence must be in (0, 1)")
    return math.ceil(math.log(1 - confidence) / math.log(1 - p))
    ### END SOLUTION


# %%
# Self-check
def _check_trials():
    selfcheck.equal(trials_needed(0.05, 0.95), 59, "trials for a 95% chance of a top-5% trial")
    selfcheck.equal(trials_needed(0.10, 0.90), 22, "trials for a 90% chance of a top-10% trial")
    try:
        trials_needed(0, 0.9)
    except ValueError:
        return
    raise AssertionError("trials_needed(0, 0.9) should raise ValueError")


selfcheck.check("7.2", _check_trials, hint="1 - (1 - p) ** n >= confidence  <=>  n >= log(1 - confidence) / log(1 - p)")
print(f"random search: {trials_needed(0.05, 0.95)} trials for a 95% chance of landing in the top 5%")

# %% [markdown]
# About 60 random trials for a near-sure top-5 % result, whatever the number of parameters, against
# hundreds for the grid: that is the whole argument for random search. Bayesian search aims to get
# there with fewer still.
#
# ## 3. The Katib Experiment
#
# `tune.katib_experiment` renders the space as a Katib `v1beta1` Experiment: the objective
# (`ndcg_at_10`, maximised), the algorithm, how many trials in parallel and in total, and a trial
# template: a TFJob whose init container writes the trial's config
# (`python -m recsys_workshop.kube write-config` with the overrides below) and whose container runs
# the training job. Katib's StdOut collector reads the `ndcg_at_10=...` line the job prints.
# The kustomize base (`cluster-setup/manifests/base/tune-experiment.yaml`) is generated from the same
# space, and a test fails if they drift apart.

# %%
base_experiment = tune.manifest_experiment()
experiment = tune.katib_experiment(
    algorithm=ALGORITHM, max_trials=12, parallel_trials=2,
    trial_spec=base_experiment["spec"]["trialTemplate"]["trialSpec"],
)
NAMESPACE = kube.workshop_namespace()  # your own on the class JupyterHub, "recsys" on your kind cluster (lab 05)
experiment["metadata"]["namespace"] = NAMESPACE
spec = experiment["spec"]
print(yaml.safe_dump({k: spec[k] for k in ("objective", "algorithm", "parallelTrialCount", "maxTrialCount")}))
print("parameters:", [p["name"] for p in spec["parameters"]])
print("trial overrides:", tune.trial_assignments())
print("valid against Katib's CRD:", kube.validate_custom([experiment]) == [])

# %% [markdown]
# Note `objective=validation` among the overrides: a trial carves a validation split out of the
# training data and reports NDCG@10 there. Tuning on the test split would make the test score an
# optimistic, tuned number instead of an estimate of future performance.
#
# ## 4. The same search, locally, with Optuna
#
# `tune.tune_local` asks Optuna's sampler for each trial's values, runs the training job with those
# overrides as its own process (like a trial pod), reads `ndcg_at_10` from its output, and saves the
# best trial's parameters.

# %%
study = tune.tune_local(DEFAULT, workdir=RUN_DIR, algorithm=ALGORITHM, n_trials=N_TRIALS)
trials = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs"))
display(trials.round(4))
tune.plot_study(study)
plt.show()

# %% [markdown]
# With a handful of trials the importance ranking is noisy: the first trials are random, and one
# trial more can reorder it. Look at which parameters separate the best trials from the worst, and
# at the learning rate in particular.
#
# ### Exercise 7.3: read the best trial
#
# `best_overrides(trials)`: from the trials table above (columns `value` and `params_<key>`), return
# the `key=value` overrides of the trial with the highest `value` (JSON values: `model.n_factors=32`,
# `model.mlp_layers="64-32-16"`), in the table's column order. This is what `tune.best_overrides`
# reads from `best_params.json`.

# %%
def best_overrides(trials: pd.DataFrame) -> list[str]:
    ### BEGIN SOLUTION
    best = trials.loc[trials["value"].idxmax()]
    params = [c for c in trials.columns if c.startswith("params_")]
    return [f"{c.removeprefix('params_')}={json.dumps(best[c].item() if hasattr(best[c], 'item') else best[c])}"
            for c in params]
    ### END SOLUTION


# %%
# Self-check
def _check_best():
    table = pd.DataFrame({"value": [0.2, 0.3], "params_model.n_factors": [8, 64], "params_model.mlp_layers": ["a", "b"]})
    selfcheck.equal(best_overrides(table), ["model.n_factors=64", 'model.mlp_layers="b"'], "a two-trial table")
    mine = sorted(best_overrides(trials))
    selfcheck.equal(mine, sorted(tune.best_overrides(Path(RUN_DIR) / "best_params.json")), "this study's best")


selfcheck.check("7.3", _check_best, hint="trials['value'].idxmax() gives the best row; json.dumps formats a value.")

# %% [markdown]
# ## 5. Did tuning help? Default against tuned, on the test split
#
# Now, once, the test split: train the default config and the tuned one on the whole training part
# and evaluate both on the test split they have never seen.

# %%
tuned = JobConfig.from_dict(merge_config(BASE, tune.best_overrides(Path(RUN_DIR) / "best_params.json")))
final = {}
for name, config in (("default", DEFAULT), ("tuned", tuned)):
    final[name] = LocalJob(config, 1, workdir=f"{RUN_DIR}/final-{name}").run(timeout=3600).metrics
comparison = pd.DataFrame(final).loc[["ndcg_at_10", "precision_at_10", "recall_at_10", "train_seconds"]]
display(comparison.round(4))
print("best trial (validation):", json.loads((Path(RUN_DIR) / "best_params.json").read_text())["params"])

# %% [markdown]
# A validation score picked as the best of many trials is optimistic (the winner's curse); the test
# score of the tuned model is the honest number. With a tiny budget the tuned model can even lose:
# tuning is a search under noise, and the budget is part of the result.
#
# **With a cluster**, the next cell submits the search to Katib in your namespace: the Experiment above
# with the trial TFJob of the overlay that fits the cluster (its image, its sizes, how many trials at a
# time) and the training config its trials read (the ConfigMap `recsys-train-config`), under a name of its
# own (`recsys-tune-<algorithm>`: an Experiment's search space cannot be changed once it exists). First it
# asks the API server whether it may (`kube.why_local`, lab 05): when it may not, or there is no cluster,
# it says why in one sentence and submits nothing. Watch it with
# `kubectl -n <namespace> get experiments,trials` and the Katib UI.

# %%
to_submit = [{"apiVersion": "v1", "kind": "ConfigMap"}, experiment]
reason = kube.why_local(kube.apply_needs(to_submit) + ["list trials.kubeflow.org"], namespace=NAMESPACE)
if reason:
    print("Not submitted (the search ran locally above):", reason)
else:
    context = kube.cluster_context(timeout=5)
    try:
        flavour = kube.cluster_flavour(context)  # "kind" or "gke": which overlay fits this cluster
        built = kube.kustomize_build(kube.overlay_dir(flavour), image=kube.workshop_image(flavour))
    except kube.KubeError as error:
        print("Not submitted:", error)
    else:
        overlay_experiment = next(d for d in built if d["kind"] == "Experiment")["spec"]
        cluster_experiment = tune.katib_experiment(
            algorithm=ALGORITHM, max_trials=overlay_experiment["maxTrialCount"],
            parallel_trials=overlay_experiment["parallelTrialCount"],
            trial_spec=overlay_experiment["trialTemplate"]["trialSpec"], name=f"recsys-tune-{ALGORITHM}",
        )
        train_config = next(d for d in built if d["metadata"]["name"] == "recsys-train-config")
        applied = kube.apply_in_namespace([train_config, cluster_experiment], NAMESPACE, context=context.context)
        print(applied.stdout or applied.stderr)
        print(f"Watch it: kubectl -n {NAMESPACE} get experiments,trials")

# %% [markdown]
# ## What you saw
# - Grid search multiplies; random search covers each parameter better for the same budget; Bayesian
#   search (TPE) spends later trials where earlier ones did well.
# - One search space, declared once, drives Katib on a cluster and Optuna here, over the same training
#   job, the same objective on a validation split, and the same overrides.
# - The best trial's parameters are saved (`best_params.json`), and lab 08's pipeline trains with them.
# - The test split is used once, at the end, to compare the default and the tuned model.
#
# **Next:** lab 08, pipelines: validation, training, evaluation and a guarded push, as one pipeline.
