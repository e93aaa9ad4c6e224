"""Hyper-parameter tuning: one search space, declared once, run by Katib on a cluster or Optuna locally.

:data:`SEARCH_SPACE` names each hyper-parameter by its key in the job config (``model.n_factors``,
``train.learning_rate``, ...). From it:

- :func:`katib_experiment` renders a Katib ``v1beta1`` Experiment (random, grid or Bayesian search;
  objective ``ndcg_at_10`` on the validation split, maximised; parallel and maximum trial counts). Each
  trial is a TFJob running ``python -m recsys_workshop.train`` on the shared config with the trial's
  values merged in, and Katib reads the ``ndcg_at_10=...`` line the job prints.
- :func:`tune_local` drives the very same entrypoint with Optuna (random, grid, or TPE for the
  Bayesian search): the objective (:func:`make_objective`, or a lab's own) draws each value and calls
  :func:`run_trial`, which runs a fresh ``python -m recsys_workshop.train`` process (as a trial pod
  would be) with the same overrides and reads its metrics from its output the way Katib reads them.

Trials optimise NDCG@10 on a validation split carved from the training part
(``objective=validation``), never on the test split: the test split is for the final, tuned model only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recsys_workshop.downloads import atomic_write
from recsys_workshop.paths import MANIFESTS_DIR

OBJECTIVE = "ndcg_at_10"
#: local name -> (Katib algorithmName, Optuna sampler)
ALGORITHMS = {"random": "random", "grid": "grid", "bayesian": "bayesianoptimization"}


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One hyper-parameter: ``key`` in the job config, and its values: ``choices`` (categorical), or a
    ``double`` range ``[low, high]`` sampled uniformly, with ``step`` giving the grid points."""

    key: str
    _: dataclasses.KW_ONLY
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None

    @property
    def name(self) -> str:  # what Katib calls it: the last part of the key
        return self.key.rsplit(".", 1)[-1]

    @property
    def trial_name(self) -> str:  # camelCase, as Katib's trialParameters are usually named
        head, *rest = self.name.split("_")
        return head + "".join(part.title() for part in rest)

    def grid(self) -> list:
        if self.choices:
            return list(self.choices)
        count = int(round((self.high - self.low) / self.step)) + 1
        return [round(self.low + i * self.step, 10) for i in range(count)]


SEARCH_SPACE: tuple[Parameter, ...] = (
    Parameter("model.n_factors", choices=(8, 16, 32, 64)),
    Parameter("model.mlp_layers", choices=("32-16-8", "64-32-16", "128-64-32")),
    Parameter("train.learning_rate", low=0.0005, high=0.0105, step=0.0025),
    Parameter("model.l2", choices=(0.0, 1e-6, 1e-5, 1e-4)),
    Parameter("model.n_negatives", choices=(2, 4, 8)),
)


def _katib_value(value) -> str:
    return str(value)


def katib_parameters(space: Sequence[Parameter] = SEARCH_SPACE, algorithm: str = "random") -> list[dict]:
    """The Experiment's ``spec.parameters``: categorical/discrete lists, doubles as ranges (with their
    ``step`` for grid search, which Katib needs to enumerate them)."""
    rendered = []
    for p in space:
        if p.choices:
            numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in p.choices)
            rendered.append(
                {
                    "name": p.name,
                    "parameterType": "discrete" if numeric else "categorical",
                    "feasibleSpace": {"list": [_katib_value(c) for c in p.choices]},
                }
            )
        else:
            space_ = {"min": _katib_value(p.low), "max": _katib_value(p.high)}
            if algorithm == "grid":
                space_["step"] = _katib_value(p.step)
            rendered.append({"name": p.name, "parameterType": "double", "feasibleSpace": space_})
    return rendered


def katib_objective(goal: float | None = None) -> dict:
    """The Experiment's ``spec.objective``: maximise :data:`OBJECTIVE`, the name of the line the trial prints
    (``ndcg_at_10=0.41``) that Katib's StdOut collector reads; with a ``goal``, Katib stops the Experiment
    once a trial reaches it."""
    objective: dict[str, Any] = {"type": "maximize", "objectiveMetricName": OBJECTIVE}
    if goal is not None:
        objective["goal"] = float(goal)
    return objective


def trial_assignments(space: Sequence[Parameter] = SEARCH_SPACE) -> list[str]:
    """The ``key=value`` overrides of a trial, with Katib's placeholders for the values."""
    fixed = ["objective=validation", "model_dir=null", "checkpoint_dir=/work/checkpoints"]
    return [f"{p.key}=${{trialParameters.{p.trial_name}}}" for p in space] + fixed


def katib_experiment(
    space: Sequence[Parameter] = SEARCH_SPACE,
    *,
    algorithm: str = "random",
    max_trials: int = 12,
    parallel_trials: int = 2,
    max_failed: int = 3,
    trial_spec: Mapping[str, Any],
    name: str = "recsys-tune",
    goal: float | None = None,
) -> dict:
    """A Katib v1beta1 Experiment over ``space``. ``trial_spec`` is the TFJob each trial runs (the one in
    ``cluster-setup/manifests/base/tune-experiment.yaml``); its init container receives
    :func:`trial_assignments`. ``goal``: see :func:`katib_objective`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    if not 1 <= parallel_trials <= max_trials:
        raise ValueError("need 1 <= parallel_trials <= max_trials")
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": katib_objective(goal),
            "algorithm": {"algorithmName": ALGORITHMS[algorithm]},
            "parallelTrialCount": parallel_trials,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": max_failed,
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "parameters": katib_parameters(space, algorithm),
            "trialTemplate": {
                "primaryContainerName": "tensorflow",
                "primaryPodLabels": {"training.kubeflow.org/replica-type": "chief"},
                "trialParameters": [
                    {"name": p.trial_name, "description": f"{p.key} of the job config", "reference": p.name}
                    for p in space
                ],
                "trialSpec": dict(trial_spec),
            },
        },
    }


def _suggest(trial, p: Parameter):
    """``trial``'s value for ``p``: ``suggest_categorical`` over its choices, or ``suggest_float`` (uniform,
    as Katib's ``double``) over ``[low, high]``; named by its job-config key."""
    if p.choices:
        return trial.suggest_categorical(p.key, list(p.choices))
    return trial.suggest_float(p.key, p.low, p.high)


def sampler(algorithm: str, space: Sequence[Parameter] = SEARCH_SPACE, seed: int = 42):
    """Optuna's sampler for ``algorithm``: random, grid (every point of :meth:`Parameter.grid`, in a
    seeded random order) or bayesian (TPE)."""
    import optuna

    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid() for p in space}, seed=seed)
    if algorithm == "bayesian":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, len(space)))
    raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")


def run_trial(
    trial, values: Mapping[str, Any], base, *, workdir: str | os.PathLike[str], timeout: float = 1800, log=print
) -> dict[str, float]:
    """Train ``base`` (a :class:`~recsys_workshop.train.job.JobConfig`) with ``values`` (``{config key: value}``)
    merged in, as its own process (like a trial pod), scored on the validation split; returns the metrics it
    printed (``ndcg_at_10``, ``precision_at_10``, ...). Its files go to ``workdir/trial-<number>``. A run
    that fails prunes the trial (``optuna.TrialPruned``) instead of stopping the study."""
    import optuna

    from recsys_workshop.train.job import JobConfig, merge_config
    from recsys_workshop.train.launcher import JobFailed, LocalJob

    assignments = [f"{key}={json.dumps(value)}" for key, value in values.items()]
    trial_dir = Path(workdir) / f"trial-{trial.number:03d}"
    fixed = ["objective=validation", "model_dir=null", "metrics_path=null", f"checkpoint_dir={trial_dir / 'ckpt'}"]
    config = JobConfig.from_dict(merge_config(base.to_dict(), [*assignments, *fixed]))
    try:
        result = LocalJob(config, 1, workdir=trial_dir, max_restarts=0).run(timeout=timeout)
    except JobFailed as error:
        log(f"trial {trial.number} failed: {str(error).splitlines()[0]}")
        raise optuna.TrialPruned() from None
    trial.set_user_attr("seconds", result.seconds)
    shown = " ".join(f"{k}={v}" for k, v in values.items())
    log(f"trial {trial.number}: {OBJECTIVE}={result.metrics.get(OBJECTIVE, float('nan')):.4f} {shown}")
    return dict(result.metrics)


def make_objective(
    base,
    *,
    workdir: str | os.PathLike[str],
    space: Sequence[Parameter] = SEARCH_SPACE,
    timeout: float = 1800,
    log=print,
):
    """The package's Optuna objective: each parameter of ``space`` from :func:`_suggest`, then
    :func:`run_trial`; returns :data:`OBJECTIVE` (maximised)."""

    def objective(trial) -> float:
        values = {p.key: _suggest(trial, p) for p in space}
        return run_trial(trial, values, base, workdir=workdir, timeout=timeout, log=log)[OBJECTIVE]

    return objective


def tune_local(
    base,
    *,
    workdir: str | os.PathLike[str],
    algorithm: str = "bayesian",
    n_trials: int = 8,
    space: Sequence[Parameter] = SEARCH_SPACE,
    seed: int = 42,
    trial_timeout: float = 1800,
    baseline: bool = True,
    objective=None,
    log=print,
):
    """Run ``n_trials`` trials of the training job ``base`` (a :class:`~recsys_workshop.train.job.JobConfig`)
    with Optuna; returns the study. Each trial runs in its own process via
    :class:`~recsys_workshop.train.launcher.LocalJob`; the best parameters go to
    ``workdir/best_params.json`` (see :func:`save_best`). ``baseline``: trial 0 is ``base``'s own values
    (when they lie in the space), so the study reports how much tuning gained over the default.
    ``objective``: an Optuna objective to use instead of :func:`make_objective`'s (a lab's own, which must
    name its parameters by their keys in ``space``)."""
    import optuna

    workdir = Path(workdir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler(algorithm, space, seed), study_name=algorithm)
    if baseline and algorithm != "grid":  # a grid enumerates its own points
        current = _lookup(base.to_dict(), space)
        if current is not None:
            study.enqueue_trial(current)
    if objective is None:
        objective = make_objective(base, workdir=workdir, space=space, timeout=trial_timeout, log=log)
    study.optimize(objective, n_trials=n_trials)
    save_best(study, workdir / "best_params.json", algorithm=algorithm)
    return study


def _lookup(config: Mapping[str, Any], space: Sequence[Parameter]) -> dict | None:
    """The values ``config`` has for the parameters of ``space``, or None if one is missing or outside it."""
    values = {}
    for p in space:
        node: Any = config
        for part in p.key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        inside = node in p.choices if p.choices else isinstance(node, int | float) and p.low <= node <= p.high
        if not inside:
            return None
        values[p.key] = node
    return values


def save_best(study, path: str | os.PathLike[str], *, algorithm: str) -> dict:
    """Write the best trial (its config overrides and objective) as JSON, atomically: the pipeline reads it,
    possibly while another tuning run replaces it."""
    best = study.best_trial
    record = {
        "objective": OBJECTIVE,
        "value": best.value,
        "params": best.params,
        "algorithm": algorithm,
        "trials": len(study.trials),
    }
    atomic_write(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return record


def best_overrides(path: str | os.PathLike[str]) -> list[str]:
    """``key=value`` overrides from a :func:`save_best` file, ready for the job config."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    return [f"{key}={json.dumps(value)}" for key, value in record["params"].items()]


def plot_study(study):
    """Two panels: the objective of every trial with the best so far, and each parameter's importance."""
    import matplotlib.pyplot as plt
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    fig, (history, importance) = plt.subplots(1, 2, figsize=(11, 3.8))
    numbers = [t.number for t in done]
    values = [t.value for t in done]
    history.plot(numbers, values, "o", label="trial")
    best = [max(values[: i + 1]) for i in range(len(values))]
    history.step(numbers, best, where="post", label="best so far")
    history.set(xlabel="trial", ylabel=OBJECTIVE, title=f"{study.study_name} search")
    history.legend()
    if len(done) >= 2:
        scores = optuna.importance.get_param_importances(study)
        importance.barh(list(scores)[::-1], list(scores.values())[::-1])
        importance.set(xlabel="importance (fANOVA)", title="which hyper-parameters mattered")
    else:
        importance.set_axis_off()
    fig.tight_layout()
    return fig


MANIFEST = MANIFESTS_DIR / "base" / "tune-experiment.yaml"
MANIFEST_HEADER = """\
# Tuning: a Katib Experiment whose trials are TFJobs running the same entrypoint as the labs.
# GENERATED from recsys_workshop/tune.py (SEARCH_SPACE) by `python -m recsys_workshop.tune manifest --write`:
# edit the search space there, not here (a test fails when they differ). The trial spec below the
# parameters is kept as it is. Each trial's init container writes the shared config with the trial's
# values merged in (python -m recsys_workshop.kube write-config), so the training code only ever reads
# --config; the entrypoint prints "ndcg_at_10=<value>" (on a validation split of the training data) and
# Katib's StdOut collector reads it.
"""


def manifest_experiment(path: str | os.PathLike[str] = MANIFEST) -> dict:
    """The Experiment of the kustomize base re-rendered from :data:`SEARCH_SPACE`, keeping its trial spec
    (with the init container's overrides regenerated) and its trial counts."""
    import copy

    import yaml

    current = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    spec = current["spec"]
    trial_spec = copy.deepcopy(spec["trialTemplate"]["trialSpec"])
    pod = trial_spec["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]
    init = pod["initContainers"][0]
    init["args"] = [*init["args"][:2], *trial_assignments()]
    experiment = katib_experiment(
        algorithm=next(k for k, v in ALGORITHMS.items() if v == spec["algorithm"]["algorithmName"]),
        max_trials=spec["maxTrialCount"],
        parallel_trials=spec["parallelTrialCount"],
        max_failed=spec["maxFailedTrialCount"],
        trial_spec=trial_spec,
        name=current["metadata"]["name"],
    )
    experiment["metadata"] = current["metadata"]
    return experiment


def manifest_text(path: str | os.PathLike[str] = MANIFEST) -> str:
    import yaml

    return MANIFEST_HEADER + yaml.safe_dump(manifest_experiment(path), sort_keys=False, width=110)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.tune", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    manifest = commands.add_parser("manifest", help="print (or --write) the Katib Experiment of the kustomize base")
    manifest.add_argument("--write", action="store_true")
    local = commands.add_parser("local", help="tune locally with Optuna")
    local.add_argument("--config", required=True)
    local.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="bayesian")
    local.add_argument("--trials", type=int, default=8)
    local.add_argument("--workdir", default="artifacts/tuning")
    local.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.command == "manifest":
        text = manifest_text()
        if args.write:
            MANIFEST.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    from recsys_workshop.train.job import JobConfig

    study = tune_local(
        JobConfig.from_file(args.config, args.overrides),
        workdir=args.workdir,
        algorithm=args.algorithm,
        n_trials=args.trials,
    )
    print(f"best {OBJECTIVE}={study.best_value:.4f} with {study.best_params}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
