"""One search space: rendered to Katib (validated against the CRD), driven locally with Optuna."""

from __future__ import annotations

import json
import re

import optuna
import pytest

from recsys_workshop import kube, tune
from recsys_workshop.train.job import JobConfig, merge_config

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_the_kustomize_experiment_is_generated_from_the_search_space():
    assert tune.MANIFEST.read_text() == tune.manifest_text(), "run: python -m recsys_workshop.tune manifest --write"


@pytest.mark.parametrize("algorithm", sorted(tune.ALGORITHMS))
def test_every_algorithm_renders_a_valid_experiment(algorithm):
    base = tune.manifest_experiment()
    experiment = tune.katib_experiment(
        algorithm=algorithm, max_trials=9, parallel_trials=3, trial_spec=base["spec"]["trialTemplate"]["trialSpec"]
    )
    experiment["metadata"]["namespace"] = "recsys"
    assert [str(f) for f in kube.validate_custom([experiment])] == []
    spec = experiment["spec"]
    assert spec["algorithm"]["algorithmName"] == tune.ALGORITHMS[algorithm]
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "ndcg_at_10"}
    learning_rate = next(p for p in spec["parameters"] if p["name"] == "learning_rate")
    assert ("step" in learning_rate["feasibleSpace"]) == (algorithm == "grid"), "Katib's grid needs a step"


def test_a_rendered_trial_gives_a_valid_job_config():
    """Substitute values the way Katib does and merge them the way the trial's init container does."""
    base = json.loads(tune.MANIFEST.with_name("train.json").read_text())
    values = {"nFactors": "64", "mlpLayers": "128-64-32", "learningRate": "0.003", "l2": "1e-06", "nNegatives": "8"}
    args = [re.sub(r"\$\{trialParameters\.(\w+)\}", lambda m: values[m.group(1)], a) for a in tune.trial_assignments()]
    config = JobConfig.from_dict(merge_config(base, args))
    assert config.model["n_factors"] == 64 and config.model["mlp_layers"] == "128-64-32"
    assert config.train.learning_rate == 0.003 and config.model["l2"] == 1e-6 and config.model["n_negatives"] == 8
    assert config.objective == "validation" and config.model_dir is None, "trials tune on validation, export nothing"
    from recsys_workshop.train.job import build_model

    model = build_model(config.model)
    assert model.mlp_layers == (128, 64, 32) and model.n_negatives == 8


def test_the_grid_covers_every_point_once():
    space = (
        tune.Parameter("model.n_factors", choices=(8, 16)),
        tune.Parameter("train.learning_rate", low=0.001, high=0.003, step=0.001),
    )
    assert space[1].grid() == [0.001, 0.002, 0.003]
    study = optuna.create_study(direction="maximize", sampler=tune.sampler("grid", space))
    study.optimize(lambda t: tune._suggest(t, space[0]) * tune._suggest(t, space[1]), n_trials=6)
    seen = {(t.params["model.n_factors"], t.params["train.learning_rate"]) for t in study.trials}
    assert len(seen) == 6
    assert study.best_params == {"model.n_factors": 16, "train.learning_rate": 0.003}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        tune.sampler("annealing")
    with pytest.raises(ValueError, match="parallel_trials"):
        tune.katib_experiment(max_trials=2, parallel_trials=3, trial_spec={})


def test_local_tuning_runs_the_training_entrypoint(tmp_path):
    """Two real trials, each a `python -m recsys_workshop.train` process; the best one is saved."""
    base = JobConfig.from_dict(
        {
            "model": {"name": "mf", "n_factors": 8},
            "split": {"method": "random", "ratio": 0.8, "seed": 1},
            "train": {"epochs": 1, "batch_size": 1024, "learning_rate": 0.01, "patience": 0, "verbose": 0},
        }
    )
    space = (tune.Parameter("model.n_factors", choices=(4, 16)),)
    lines = []
    study = tune.tune_local(base, workdir=tmp_path, algorithm="grid", n_trials=2, space=space, log=lines.append)
    assert sorted(t.params["model.n_factors"] for t in study.trials) == [4, 16]
    assert all(0 < t.value < 1 for t in study.trials)
    logs = sorted(tmp_path.glob("trial-*/logs/chief-0.log"))
    assert len(logs) == 2 and all("objective=validation" not in log.read_text() for log in logs)
    job = json.loads((tmp_path / "trial-000" / "job.json").read_text())
    assert job["objective"] == "validation" and job["model_dir"] is None
    best = json.loads((tmp_path / "best_params.json").read_text())
    assert best["value"] == study.best_value and best["trials"] == 2
    assert tune.best_overrides(tmp_path / "best_params.json") == [
        f"model.n_factors={study.best_params['model.n_factors']}"
    ]
    fig = tune.plot_study(study)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) >= 1


def test_the_default_config_is_trial_zero_when_it_lies_in_the_space():
    base = json.loads(tune.MANIFEST.with_name("train.json").read_text())
    assert tune._lookup(base, tune.SEARCH_SPACE) == {
        "model.n_factors": 32,
        "model.mlp_layers": "64-32-16",
        "train.learning_rate": 0.001,
        "model.l2": 0.0,
        "model.n_negatives": 4,
    }
    outside = merge_config(base, ["model.n_factors=12"])
    assert tune._lookup(outside, tune.SEARCH_SPACE) is None, "12 is not a choice: no baseline trial"
    assert tune._lookup({"model": {}}, tune.SEARCH_SPACE) is None
