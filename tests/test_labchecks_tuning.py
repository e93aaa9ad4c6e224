"""Lab 08's self-checks (recsys_workshop.labchecks.tuning): the solutions pass, and a wrong answer of each usual
kind (a wrong direction, an integer or log-scale draw for a range, bounds swapped, a parameter missing or
misspelt, a metric name the trial does not print, no goal) gets a message that names it."""

from __future__ import annotations

import copy
import math
from unittest import mock

import optuna
import pytest
from check_helpers import fails as _fails

from recsys_workshop import kube, selfcheck, tune
from recsys_workshop.labchecks import tuning
from recsys_workshop.train.job import JobConfig

pytestmark = [pytest.mark.unit, pytest.mark.cluster]

BASE = JobConfig.from_dict({"model": {"name": "ncf", "kind": "neumf", "n_factors": 32}, "train": {"epochs": 2}})
GOAL = 0.16


# ------------------------------------------------------------------------------------------------ 7.1


def _trials(p, confidence, *, rounding=math.ceil, miss=lambda p: 1 - p, target=lambda c: 1 - c, flip=False,
            validate=True):  # fmt: skip
    if validate and not (0 < p < 1 and 0 < confidence < 1):
        raise ValueError("p and confidence must be in (0, 1)")
    a, b = math.log(target(confidence)), math.log(miss(p))
    return rounding(b / a if flip else a / b)


def test_trials_needed_passes_the_solution_and_names_each_mistake():
    tuning.trials_needed(_trials)
    _fails(
        tuning.trials_needed,
        lambda p, c: _trials(p, c, rounding=math.floor),
        match="expected 59, got 58: round up (math.ceil)",
    )
    _fails(tuning.trials_needed, lambda p, c: _trials(p, c, miss=lambda p: p), match="one trial misses is 1 - p")
    _fails(tuning.trials_needed, lambda p, c: _trials(p, c, flip=True), match="the ratio is upside down")
    _fails(tuning.trials_needed, lambda p, c: _trials(p, c, target=lambda c: c), match="not log(confidence)")
    _fails(tuning.trials_needed, lambda p, c: float(_trials(p, c)), match="got 59.0: a number of trials is an int")
    message = _fails(tuning.trials_needed, lambda p, c: _trials(p, c, validate=False), match="ZeroDivisionError")
    assert message.startswith("trials_needed(0, 0.9) raised") and "raise ValueError" in message
    _fails(
        tuning.trials_needed,
        lambda p, c: _trials(p, c, validate=c >= 0),
        match="trials_needed(0.1, -0.5): expected ValueError (p and confidence",
    )
    _fails(tuning.trials_needed, lambda p, c: _trials(p, c) + 1, match="trials_needed(0.05, 0.95): expected 59, got 60")


# ------------------------------------------------------------------------------------------------ 7.2

RIGHT = {
    "model.n_factors": lambda t, k: t.suggest_categorical(k, [8, 16, 32, 64]),
    "model.mlp_layers": lambda t, k: t.suggest_categorical(k, ["32-16-8", "64-32-16", "128-64-32"]),
    "train.learning_rate": lambda t, k: t.suggest_float(k, 0.0005, 0.0105),
    "model.l2": lambda t, k: t.suggest_categorical(k, [0.0, 1e-6, 1e-5, 1e-4]),
    "model.n_negatives": lambda t, k: t.suggest_categorical(k, [2, 4, 8]),
}


def _objective(*, suggest=None, names=None, values=None, base=BASE, result=lambda m: m["ndcg_at_10"], calls=1):
    """The lab's solution, with one piece replaced: ``suggest`` ({key: how}), ``names`` ({key: name used}),
    ``values`` (what is passed to run_trial), ``base``, ``result`` (what is returned), ``calls`` (run_trial calls)."""
    how = {**RIGHT, **(suggest or {})}

    def objective(trial):
        drawn = {key: draw(trial, (names or {}).get(key, key)) for key, draw in how.items() if draw is not None}
        passed = values(drawn) if values else drawn
        metrics = None
        for _ in range(calls):
            metrics = tune.run_trial(trial, passed, base, workdir="artifacts/lab08")
        return result(metrics) if metrics is not None else 0.3

    return objective


def test_the_solution_and_the_package_objective_pass():
    tuning.optuna_objective(_objective(), BASE)
    tuning.optuna_objective(tune.make_objective(BASE, workdir="artifacts/lab08"), BASE)
    shuffled = _objective(suggest={"model.n_negatives": lambda t, k: t.suggest_categorical(k, [8, 2, 4])})
    tuning.optuna_objective(shuffled, BASE)  # the same choices in another order: the same search


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        ({"suggest": {"model.n_factors": lambda t, k: t.suggest_int(k, 8, 64)}},
         "'model.n_factors': suggest_int(8, 64) draws any number in that range; the space allows only"),
        ({"suggest": {"train.learning_rate": lambda t, k: t.suggest_float(k, 0.0005, 0.0105, log=True)}},
         "log=True samples on a log scale"),
        ({"suggest": {"train.learning_rate": lambda t, k: t.suggest_int(k, 0, 1)}}, "suggest_int draws whole numbers"),
        ({"suggest": {"train.learning_rate": lambda t, k: t.suggest_float(k, 0.0105, 0.0005)}},
         "takes the smaller bound first"),
        ({"suggest": {"train.learning_rate": lambda t, k: t.suggest_float(k, 0.001, 0.01)}},
         "expected the range [0.0005, 0.0105], got [0.001, 0.01]"),
        ({"suggest": {"train.learning_rate": lambda t, k: t.suggest_categorical(k, [0.0005, 0.003, 0.0055])}},
         "not a list of points"),
        ({"suggest": {"model.n_factors": lambda t, k: t.suggest_categorical(k, ["8", "16", "32", "64"])}},
         "not their text"),
        ({"suggest": {"model.l2": None}}, "never suggests 'model.l2'"),
        ({"names": {"model.n_factors": "model.n_factor"}}, "'model.n_factor', which is not in the search space: did "
         "you mean 'model.n_factors'?"),
        ({"names": {"model.n_factors": "n_factors"}}, "name the parameter 'model.n_factors' (its key in the job"),
        ({"result": lambda m: m}, "returned the metrics dict: return its 'ndcg_at_10'"),
        ({"result": lambda m: m["precision_at_10"]}, "which is precision_at_10: the search maximises ndcg_at_10"),
        ({"result": lambda m: -m["ndcg_at_10"]}, "negating turns the search into a hunt for the worst model"),
        ({"result": lambda m: 1 - m["ndcg_at_10"]}, "not 1 - NDCG@10"),
        ({"calls": 0}, "did not call tune.run_trial"),
        ({"calls": 2}, "called tune.run_trial 2 times"),
        ({"values": lambda v: {**v, "model.n_factors": 32 if v["model.n_factors"] != 32 else 64}},
         "but the trial suggested model.n_factors="),
        ({"values": lambda v: {key.split(".")[-1]: value for key, value in v.items()}}, "values have no"),
        ({"base": JobConfig()}, "tune.run_trial's base: pass the lab's job config (DEFAULT)"),
    ],
)  # fmt: skip
def test_a_wrong_objective_gets_a_specific_message(variant, says):
    message = _fails(tuning.optuna_objective, _objective(**variant), BASE, match=says)
    assert message.startswith("trial ") or "raised ValueError" in message


def test_a_call_that_does_not_fit_run_trial_says_so():
    def objective(trial):
        return tune.run_trial(trial, {k: draw(trial, k) for k, draw in RIGHT.items()})["ndcg_at_10"]

    _fails(tuning.optuna_objective, objective, BASE, match="your call does not fit it (missing a required argument")


def test_the_objective_check_follows_the_space_it_is_given():
    space = (tune.Parameter("model.n_factors", choices=(4, 16)), tune.Parameter("train.l", low=0.1, high=0.2))

    def objective(trial):
        values = {"model.n_factors": trial.suggest_categorical("model.n_factors", [4, 16])}
        values["train.l"] = trial.suggest_float("train.l", 0.1, 0.2)
        return tune.run_trial(trial, values, BASE, workdir="x")["ndcg_at_10"]

    tuning.optuna_objective(objective, BASE, space)
    _fails(tuning.optuna_objective, objective, BASE, tune.SEARCH_SPACE, match="never suggests 'model.mlp_layers'")


def test_the_fake_metrics_depend_only_on_the_values():
    one = tuning.fake_metrics({"model.n_factors": 8, "train.learning_rate": 0.001})
    assert one == tuning.fake_metrics({"train.learning_rate": 0.001, "model.n_factors": 8})
    other = tuning.fake_metrics({"model.n_factors": 16, "train.learning_rate": 0.001})
    assert one["ndcg_at_10"] != other["ndcg_at_10"]
    assert 0.1 <= one["ndcg_at_10"] < 0.35 < 0.4 <= one["precision_at_10"] < 0.55


def test_a_stub_reads_not_done_and_the_verdict_carries_both_hints():
    def stub(trial):
        raise NotImplementedError("Exercise 8.2")

    with pytest.raises(selfcheck.ExerciseNotDone):
        selfcheck.check("8.2", lambda: tuning.optuna_objective(stub, BASE), hint="idea", code_hint="code")
    wrong = _objective(result=lambda m: -m["ndcg_at_10"])
    with pytest.raises(selfcheck.ExerciseIncorrect) as info:
        selfcheck.check("8.2", lambda: tuning.optuna_objective(wrong, BASE), hint="idea", code_hint="code")
    assert str(info.value).splitlines()[1:] == ["Hint: idea", "Code hint: code"]


def test_tune_local_runs_the_objective_it_is_given(tmp_path):
    """The lab swaps its own objective into the package's study: the baseline trial, the sampler, the saved best."""
    seen = []

    def run_trial(trial, values, base, *, workdir, timeout=0, log=print):
        seen.append((trial.number, dict(values), workdir))
        return tuning.fake_metrics(values)

    model = {**BASE.model, "mlp_layers": "64-32-16", "l2": 0.0, "n_negatives": 4}
    default = JobConfig.from_dict({**BASE.to_dict(), "model": model})
    default.train.learning_rate = 0.001
    with mock.patch.object(tune, "run_trial", run_trial):
        study = tune.tune_local(default, workdir=tmp_path, algorithm="random", n_trials=4, objective=_objective())
    assert len(seen) == 4 and [number for number, _, _ in seen] == [0, 1, 2, 3]
    assert seen[0][1] == {"model.n_factors": 32, "model.mlp_layers": "64-32-16", "train.learning_rate": 0.001,
                          "model.l2": 0.0, "model.n_negatives": 4}, "trial 0 is the default config"  # fmt: skip
    assert study.best_value == max(tuning.fake_metrics(values)["ndcg_at_10"] for _, values, _ in seen)
    assert tune.best_overrides(tmp_path / "best_params.json")[0].startswith("model.n_factors=")


# ------------------------------------------------------------------------------------------------ 7.3


def _block(algorithm="bayesian"):
    block = {
        "objective": {"type": "maximize", "objectiveMetricName": "ndcg_at_10", "goal": GOAL},
        "parameters": [
            {"name": "n_factors", "parameterType": "discrete", "feasibleSpace": {"list": ["8", "16", "32", "64"]}},
            {"name": "mlp_layers", "parameterType": "categorical",
             "feasibleSpace": {"list": ["32-16-8", "64-32-16", "128-64-32"]}},
            {"name": "learning_rate", "parameterType": "double", "feasibleSpace": {"min": "0.0005", "max": "0.0105"}},
            {"name": "l2", "parameterType": "discrete", "feasibleSpace": {"list": ["0", "1e-6", "1e-5", "1e-4"]}},
            {"name": "n_negatives", "parameterType": "discrete", "feasibleSpace": {"list": ["2", "4", "8"]}},
        ],
    }  # fmt: skip
    if algorithm == "grid":
        block["parameters"][2]["feasibleSpace"]["step"] = "0.0025"
    return block


def _changed(path: str, value, algorithm="bayesian"):
    """The right block with the field at ``path`` (``objective.type``, ``parameters.2.feasibleSpace.min``)
    set to ``value``, or deleted when ``value`` is ``...``; a path ending in ``->new`` renames the field."""
    block = copy.deepcopy(_block(algorithm))
    *parents, leaf = path.split(".")
    node = block
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if "->" in leaf:
        old, new = leaf.split("->")
        node[new] = node.pop(old)
    elif value is ...:
        del node[int(leaf) if leaf.isdigit() else leaf]
    else:
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return lambda algorithm: block


@pytest.mark.parametrize("algorithm", sorted(tune.ALGORITHMS))
def test_the_right_block_passes_for_every_algorithm(algorithm):
    tuning.katib_block(_block, algorithm=algorithm, goal=GOAL)
    package = {"objective": tune.katib_objective(GOAL), "parameters": tune.katib_parameters(algorithm=algorithm)}
    tuning.katib_block(lambda a: package, algorithm=algorithm, goal=GOAL)  # the package's own rendering


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("objective.type", "minimize", "expected 'maximize', got 'minimize': NDCG@10 is better when higher"),
        ("objective.objectiveMetricName", "ndcg@10", "got 'ndcg@10': a trial prints the line 'ndcg_at_10=0.41'"),
        ("objective.objectiveMetricName", ..., "objective.objectiveMetricName: missing"),
        ("objective.objectiveMetricName->objectiveMetric", None, "did you mean 'objectiveMetricName'?"),
        ("objective.goal", ..., "objective.goal: missing; expected 0.16: Katib stops the Experiment"),
        ("objective.goal", "0.16", "not the string '0.16': write it without quotes"),
        ("objective.goal", 0.5, "objective.goal: expected 0.16, got 0.5"),
        ("parameters.2.feasibleSpace", {"min": "0.0105", "max": "0.0005"}, "min and max are swapped"),
        ("parameters.2.feasibleSpace.min", 0.0005, "write \"0.0005\", quoted"),
        ("parameters.2.feasibleSpace.distribution", "logUniform", "'logUniform' samples on another scale"),
        ("parameters.2.feasibleSpace.step", "0.0025", "only the grid search has a step"),
        ("parameters.2.parameterType", "int", "expected 'double', got 'int': the learning rate is a real number"),
        ("parameters.2.feasibleSpace", {"list": ["0.001", "0.01"]}, "a double is a range"),
        ("parameters.0.parameterType", "categorical", "expected 'discrete', got 'categorical': its values are numbers"),
        ("parameters.0.parameterType", "int", "int would draw any whole number"),
        ("parameters.1.parameterType", "discrete", "'32-16-8' is a label, not a number: categorical"),
        ("parameters.0.feasibleSpace.list", [8, 16, 32, 64], "write \"8\", quoted, not 8"),
        ("parameters.0.feasibleSpace.list", ["8.0", "16", "32", "64"], "takes whole numbers: write '8', not '8.0'"),
        ("parameters.0.feasibleSpace.list", ["16", "32", "64"], "(missing [8])"),
        ("parameters.0.name", "n_factor", "'n_factor' is not in the search space: did you mean 'n_factors'?"),
        ("parameters.0.name", "model.n_factors", "name it 'n_factors', not 'model.n_factors'"),
        ("parameters.3", ..., "'l2' is missing"),
        ("parameters.0.feasibleSpace->feasible_space", None, "did you mean 'feasibleSpace'?"),
        ("parameters.1.name", "n_factors", "'n_factors' appears twice"),
    ],
)  # fmt: skip
def test_a_wrong_block_gets_a_specific_message(path, value, says):
    message = _fails(tuning.katib_block, _changed(path, value), algorithm="bayesian", goal=GOAL, match=says)
    assert message.startswith("katib_search('bayesian'): ")


def test_grid_search_needs_the_step():
    _fails(tuning.katib_block, lambda a: _block(), algorithm="grid", goal=GOAL, match="grid search needs a step")
    wrong = _changed("parameters.2.feasibleSpace.step", "0.005", algorithm="grid")
    _fails(tuning.katib_block, wrong, algorithm="grid", goal=GOAL, match="step: expected '0.0025', got '0.005'")


def test_the_shape_of_the_block_is_named():
    spec = _block()
    _fails(tuning.katib_block, lambda a: {"spec": spec}, algorithm="random", goal=GOAL, match="not spec itself")
    _fails(tuning.katib_block, lambda a: spec["parameters"], algorithm="random", goal=GOAL, match="returned list")
    more = {**spec, "algorithm": {"algorithmName": "random"}}
    _fails(tuning.katib_block, lambda a: more, algorithm="random", goal=GOAL, match="not ['algorithm']")
    _fails(tuning.katib_block, lambda a: {"objective": spec["objective"]}, algorithm="random", goal=GOAL,
           match="no 'parameters'")  # fmt: skip


def test_the_block_is_validated_inside_the_experiment(monkeypatch):
    """The Katib validator sees the package's Experiment with the learner's block in it, and its verdict counts."""
    seen = []

    def validate(docs):
        seen.extend(docs)
        return [kube.Finding("Experiment/lab08/recsys-tune", "katib", "spec.parameters[0]: made-up problem")]

    monkeypatch.setattr(kube, "validate_custom", validate)
    _fails(tuning.katib_block, _block, algorithm="random", goal=GOAL, match="not valid: spec.parameters[0]: made-up")
    spec = seen[0]["spec"]
    assert spec["parameters"] == _block()["parameters"] and spec["objective"]["goal"] == GOAL
    assert spec["algorithm"] == {"algorithmName": "random"} and "trialSpec" in spec["trialTemplate"]


def test_a_valid_block_with_more_than_the_search_is_caught():
    extra = _changed("objective.additionalMetricNames", ["precision_at_10"])
    _fails(tuning.katib_block, extra, algorithm="random", goal=GOAL, match="objective.additionalMetricNames: not part")


def test_optuna_and_katib_get_the_same_space():
    """The two exercises describe one space: a value Optuna may draw is a value Katib may draw."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        for p, rendered in zip(tune.SEARCH_SPACE, _block()["parameters"], strict=True):
            value, space = RIGHT[p.key](trial, p.key), rendered["feasibleSpace"]
            if "list" in space:
                assert value in [type(value)(float(v)) if not isinstance(value, str) else v for v in space["list"]]
            else:
                assert float(space["min"]) <= value <= float(space["max"])
        study.tell(trial, 0.0)
