"""The checks behind the self-check cells of lab 08 (hyper-parameter tuning): each runs the learner's code
on named cases and, when an answer is wrong, says which case, what was expected and what came back, and
for the usual mistakes what the mistake probably is::

    from recsys_workshop.labchecks import tuning

    selfcheck.check("8.2", lambda: tuning.optuna_objective(objective, DEFAULT), hint=..., code_hint=...)

- :func:`trials_needed`: the number of random trials that find a top-``p`` trial with a given confidence;
- :func:`optuna_objective`: the learner's Optuna objective, run trial by trial with the training run
  (:func:`recsys_workshop.tune.run_trial`) replaced by a fast, deterministic stand-in, against the
  search space and the package's own objective (:func:`recsys_workshop.tune.make_objective`);
- :func:`katib_block`: the learner's Katib ``objective`` and ``parameters``, compared field by field with
  the package's rendering of the same space (:func:`recsys_workshop.tune.katib_parameters`), then put
  into the package's Experiment and validated like every manifest (:func:`recsys_workshop.kube.validate_custom`).

Every function raises ``AssertionError`` with that message and returns None when every case passes.
Optuna and the Kubernetes validators are imported inside the functions.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from recsys_workshop import tune
from recsys_workshop.labchecks.basics import _diagnose, _number

__all__ = ["fake_metrics", "katib_block", "optuna_objective", "trials_needed"]

#: the Katib fields of the parts the learner writes (the Katib SDK's V1beta1ObjectiveSpec, ParameterSpec,
#: FeasibleSpace), to name the one a misspelt field was probably meant to be
KATIB_FIELDS = {
    "objective": ("type", "goal", "objectiveMetricName", "additionalMetricNames", "metricStrategies"),
    "parameter": ("name", "parameterType", "feasibleSpace"),
    "feasibleSpace": ("min", "max", "list", "step", "distribution"),
}


def _same_choices(got: Sequence[Any], choices: Sequence[Any]) -> bool:
    """The same values in any order (``0`` for ``0.0`` is fine; ``8.0`` for the integer ``8`` is not)."""

    def match(value: Any, choice: Any) -> bool:
        return value == choice and (not isinstance(choice, int) or isinstance(value, int))

    return (
        len(got) == len(choices)
        and all(any(match(g, c) for c in choices) for g in got)
        and all(any(match(g, c) for g in got) for c in choices)
    )


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


# ------------------------------------------------------------------------------------------------ 7.1


TRIALS_CASES = ((0.05, 0.95), (0.02, 0.9), (0.7, 0.99), (0.5, 0.1), (0.01, 0.99))
#: the usual slips in trials_needed, each as the formula it computes instead
TRIALS_MISTAKES = {
    "round up (math.ceil): rounding down gives less than the confidence asked for": lambda p, c: math.floor(
        math.log(1 - c) / math.log(1 - p)
    ),
    "the chance that one trial misses is 1 - p (that all n miss, (1 - p) ** n): n >= log(1 - confidence) / "
    "log(1 - p)": lambda p, c: math.ceil(math.log(1 - c) / math.log(p)),
    "the ratio is upside down: n >= log(1 - confidence) / log(1 - p)": lambda p, c: math.ceil(
        math.log(1 - p) / math.log(1 - c)
    ),
    "all n trials may miss with a chance of at most 1 - confidence: log(1 - confidence), not log(confidence)": (
        lambda p, c: math.ceil(math.log(c) / math.log(1 - p))
    ),
}


def trials_needed(yours: Callable[[float, float], int]) -> None:
    """Exercise 8.1: the smallest ``n`` with ``1 - (1 - p) ** n >= confidence`` on five cases (a slip is named
    when it explains every case), and a ``ValueError`` outside ``0 < p < 1``, ``0 < confidence < 1``."""
    answers = {}
    for p, confidence in TRIALS_CASES:
        value = yours(p, confidence)
        answers[p, confidence] = _number(value, f"trials_needed({p}, {confidence})")
        if answers[p, confidence] == math.ceil(math.log(1 - confidence) / math.log(1 - p)) and not isinstance(
            value, int
        ):
            raise AssertionError(f"trials_needed({p}, {confidence}): got {value!r}: a number of trials is an int "
                                 "(math.ceil returns one)")  # fmt: skip
    for (p, confidence), got in answers.items():
        expected = math.ceil(math.log(1 - confidence) / math.log(1 - p))
        if got == expected:
            continue
        message = f"trials_needed({p}, {confidence}): expected {expected}, got {got:g}"
        for advice, slip in TRIALS_MISTAKES.items():
            if all(slip(*case) == answer for case, answer in answers.items()):
                raise AssertionError(f"{message}: {advice}")
        raise AssertionError(message)
    for p, confidence in ((0, 0.9), (1, 0.9), (0.1, 1), (0.1, -0.5)):
        call = f"trials_needed({p}, {confidence})"
        try:
            got = yours(p, confidence)
        except ValueError:
            continue
        except ArithmeticError as error:
            raise AssertionError(f"{call} raised {type(error).__name__} ({error}): check p and confidence first "
                                 "and raise ValueError unless both are strictly between 0 and 1") from None  # fmt: skip
        raise AssertionError(f"{call}: expected ValueError (p and confidence must be in (0, 1)), got {got!r}")


# ------------------------------------------------------------------------------------------------ 7.2


def fake_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """What the stand-in for :func:`recsys_workshop.tune.run_trial` returns: metrics that depend only on the
    trial's values (equal values, equal metrics), each in its own range so that one is never taken for
    another."""
    digest = hashlib.sha256(json.dumps(dict(values), sort_keys=True, default=str).encode()).digest()
    u = [byte / 256 for byte in digest[:4]]
    return {
        "ndcg_at_10": 0.10 + 0.25 * u[0],
        "precision_at_10": 0.40 + 0.15 * u[1],
        "recall_at_10": 0.02 + 0.05 * u[2],
        "map_at_10": 0.80 + 0.15 * u[3],
        "epochs": 2,
        "train_seconds": 1.25,
        "examples_per_second": 5000.0,
    }


class _StandIn:
    """Stands in for ``tune.run_trial``: checks the call against its signature, records it, and returns
    :func:`fake_metrics` (no training)."""

    def __init__(self):
        import inspect

        self.signature = inspect.signature(tune.run_trial)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *args, **kwargs):
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise AssertionError(f"tune.run_trial{self.signature}: your call does not fit it ({error})") from None
        self.calls.append(dict(bound.arguments))
        values = bound.arguments["values"]
        return fake_metrics(values if isinstance(values, Mapping) else {})


def _expected_distribution(p: tune.Parameter):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return CategoricalDistribution(list(p.choices)) if p.choices else FloatDistribution(p.low, p.high)


def _distribution_problem(p: tune.Parameter, got) -> str | None:
    """What is wrong with the distribution ``got`` that the objective suggested for ``p`` (None: right)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    expected = _expected_distribution(p)
    if got == expected:
        return None
    where = f"parameter {p.key!r}"
    if p.choices:
        choices = list(p.choices)
        if isinstance(got, IntDistribution | FloatDistribution):
            kind = "suggest_int" if isinstance(got, IntDistribution) else "suggest_float"
            return (f"{where}: {kind}({got.low}, {got.high}) draws any number in that range; the space allows only "
                    f"the choices {choices}: suggest_categorical({p.key!r}, {choices})")  # fmt: skip
        got_choices = list(got.choices)
        if _same_choices(got_choices, choices):
            return None  # the same choices, maybe in another order: the same search
        if [str(c) for c in got_choices] == [str(c) for c in choices]:
            return (f"{where}: expected the choices {choices}, got {got_choices}: the values the job config takes "
                    f"({type(choices[0]).__name__}), not their text")  # fmt: skip
        return f"{where}: expected the choices {choices}, got {got_choices}"
    bounds = f"[{p.low}, {p.high}]"
    if isinstance(got, CategoricalDistribution):
        return (f"{where}: the space is the range {bounds}, not a list of points (a grid's points are the grid "
                f"sampler's business): suggest_float({p.key!r}, {p.low}, {p.high})")  # fmt: skip
    if isinstance(got, IntDistribution):
        return (f"{where}: suggest_int draws whole numbers (here {got.low} to {got.high}); the learning rate is a "
                f"real number in {bounds}: suggest_float")  # fmt: skip
    if got.log:
        return (f"{where}: log=True samples on a log scale; the space (like Katib's double, with no distribution) "
                f"is uniform on {bounds}: drop log=True")  # fmt: skip
    if got.step is not None:
        return f"{where}: step={got.step} samples only a grid's points; the space is the whole range {bounds}"
    return f"{where}: expected the range {bounds}, got [{got.low}, {got.high}]"


def _names_problem(space: Sequence[tune.Parameter], suggested: Mapping[str, Any]) -> str | None:
    keys = [p.key for p in space]
    extra = [name for name in suggested if name not in keys]
    for p in space:
        if p.key in suggested:
            continue
        if p.name in extra:
            return (f"name the parameter {p.key!r} (its key in the job config), not {p.name!r}: the study's "
                    "parameters become the trial's overrides, the baseline trial and best_params.json")  # fmt: skip
        near = _closest(p.key, extra)
        if near:
            return f"your objective suggests {near!r}, which is not in the search space: did you mean {p.key!r}?"
        return (f"your objective never suggests {p.key!r}: every parameter of tune.SEARCH_SPACE needs its "
                "trial.suggest_* call")  # fmt: skip
    if extra:
        return f"your objective suggests {extra[0]!r}, which is not in the search space (its keys: {keys})"
    return None


def _call_problem(standin: _StandIn, trial, base) -> str | None:
    calls = standin.calls
    if not calls:
        return ("your objective did not call tune.run_trial: train through it, "
                "tune.run_trial(trial, values, DEFAULT, workdir=RUN_DIR)")  # fmt: skip
    if len(calls) > 1:
        return f"your objective called tune.run_trial {len(calls)} times: one training run per trial"
    call = calls[0]
    if call["trial"] is not trial:
        return "pass tune.run_trial the trial your objective was given (it names the trial's folder)"
    values = call["values"]
    if not isinstance(values, Mapping):
        return f"tune.run_trial's values: expected a dict {{config key: value}}, got {type(values).__name__}"
    for key, suggested in trial.params.items():
        if key not in values:
            return f"tune.run_trial's values have no {key!r}: pass every value the trial suggested"
        if values[key] != suggested or type(values[key]) is not type(suggested):
            return (f"tune.run_trial got {key}={values[key]!r}, but the trial suggested {key}={suggested!r}: pass "
                    "the suggested values")  # fmt: skip
    if set(values) - set(trial.params):
        return f"tune.run_trial's values: {sorted(set(values) - set(trial.params))} were never suggested"
    if not hasattr(call["base"], "to_dict") or call["base"].to_dict() != base.to_dict():
        return "tune.run_trial's base: pass the lab's job config (DEFAULT), the one every trial starts from"
    return None


def _value_problem(value: Any, metrics: Mapping[str, float]) -> str | None:
    if isinstance(value, Mapping):
        return f"your objective returned the metrics dict: return its {tune.OBJECTIVE!r}, the number to maximise"
    got = _number(value, "objective(trial)")
    expected = metrics[tune.OBJECTIVE]
    if math.isclose(got, expected, rel_tol=1e-12):
        return None
    for name, metric in metrics.items():
        if name != tune.OBJECTIVE and math.isclose(got, metric, rel_tol=1e-12):
            return (f"objective(trial): expected {tune.OBJECTIVE}={expected:.6g}, got {got:.6g}, which is {name}: "
                    f"the search maximises {tune.OBJECTIVE}")  # fmt: skip
    mistakes = {
        "the study maximises NDCG@10: return it as it is (negating turns the search into a hunt for the "
        "worst model)": -expected,
        "the study maximises NDCG@10: return it as it is, not 1 - NDCG@10": 1 - expected,
    }
    return _diagnose("objective(trial)", got, expected, mistakes)


def optuna_objective(yours: Callable[[Any], Any], base, space: Sequence[tune.Parameter] = tune.SEARCH_SPACE,
                     *, n_trials: int = 6) -> None:  # fmt: skip
    """Exercise 8.2: ``n_trials`` trials of a random-search study with ``yours`` as the objective and
    ``tune.run_trial`` replaced by :class:`_StandIn`: each parameter of ``space`` suggested under its key with
    the space's distribution; one ``run_trial`` call with the trial, its values and ``base``; the trial's
    NDCG@10 returned; and, for the same values, the same value as the package's objective."""
    from unittest import mock

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=7))
    standin = _StandIn()
    with mock.patch.object(tune, "run_trial", standin):
        package = tune.make_objective(base, workdir="unused", space=space)
        for _ in range(n_trials):
            trial = study.ask()
            standin.calls.clear()
            try:
                value = yours(trial)
            except ValueError as error:
                if "low <= high" in str(error) or "low` value" in str(error):
                    raise AssertionError(f"your objective raised ValueError ({error}): suggest_float(name, low, high) "
                                         "takes the smaller bound first") from None  # fmt: skip
                raise
            problem = _names_problem(space, trial.distributions)
            problem = problem or next(
                (m for p in space if (m := _distribution_problem(p, trial.distributions[p.key]))), None
            )
            problem = problem or _call_problem(standin, trial, base)
            problem = problem or _value_problem(value, fake_metrics(trial.params))
            if problem:
                raise AssertionError(f"trial {trial.number}: {problem}")
            standin.calls.clear()
            reference = package(optuna.trial.FixedTrial(trial.params, number=trial.number))
            if not math.isclose(float(value), reference, rel_tol=1e-12):
                raise AssertionError(f"trial {trial.number} with {trial.params}: the package's objective gives "
                                     f"{reference:.6g}, yours {float(value):.6g}")  # fmt: skip
            study.tell(trial, float(value))


# ------------------------------------------------------------------------------------------------ 7.3


def _field_problems(part: Any, kind: str, where: str) -> str | None:
    """A misspelt or unknown field of a Katib ``kind`` (``objective``, ``parameter``, ``feasibleSpace``)."""
    if not isinstance(part, Mapping):
        return f"{where}: expected a mapping (YAML key: value lines), got {type(part).__name__} {part!r}"
    known = KATIB_FIELDS[kind]
    for field in part:
        if field not in known:
            near = _closest(str(field), known)
            advice = f": did you mean {near!r}?" if near else f" (its fields: {', '.join(known)})"
            return f"{where}.{field}: Katib has no such field, it would drop it{advice}"
    return None


def _objective_problem(objective: Mapping[str, Any], goal: float) -> str | None:
    if problem := _field_problems(objective, "objective", "objective"):
        return problem
    kind = objective.get("type")
    if kind != "maximize":
        why = ": NDCG@10 is better when higher; Katib would hunt for the worst model" if kind == "minimize" else ""
        return f"objective.type: expected 'maximize', got {kind!r}{why}"
    name = objective.get("objectiveMetricName")
    if name != tune.OBJECTIVE:
        if name is None:
            return f"objective.objectiveMetricName: missing; expected {tune.OBJECTIVE!r}"
        return (f"objective.objectiveMetricName: expected {tune.OBJECTIVE!r}, got {name!r}: a trial prints the "
                f"line '{tune.OBJECTIVE}=0.41', and Katib's StdOut collector looks for exactly the name given "
                "here")  # fmt: skip
    if "goal" not in objective:
        return (f"objective.goal: missing; expected {goal}: Katib stops the Experiment once a trial reaches "
                "the goal (without one, it always runs every trial)")  # fmt: skip
    got = objective["goal"]
    if isinstance(got, str):
        return f"objective.goal: a number in Katib (float64), not the string {got!r}: write it without quotes"
    if not isinstance(got, numbers.Real) or isinstance(got, bool) or not math.isclose(got, goal):
        return f"objective.goal: expected {goal}, got {got!r}"
    if more := sorted(set(objective) - {"type", "objectiveMetricName", "goal"}):
        return f"objective.{more[0]}: not part of this search (the package's objective has type, metric name, goal)"
    return None


def _value_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        return (f"{where}: Katib's feasibleSpace values are strings (Go's []string and string): write "
                f"{json.dumps(str(value))}, quoted, not {value!r}")  # fmt: skip
    return ""


def _list_problem(p: tune.Parameter, space: Mapping[str, Any], where: str) -> str | None:
    got = space.get("list")
    if not isinstance(got, list) or not got:
        return f"{where}.feasibleSpace.list: missing; expected {[str(c) for c in p.choices]}"
    for index, value in enumerate(got):
        if problem := _value_text(value, f"{where}.feasibleSpace.list[{index}]"):
            return problem
    parsed = []
    for value in got:
        try:
            parsed.append(json.loads(value))
        except json.JSONDecodeError:
            parsed.append(value)
    wrong = [v for v in parsed if isinstance(v, float)] if all(isinstance(c, int) for c in p.choices) else []
    if wrong:
        return f"{where}.feasibleSpace.list: {p.name} takes whole numbers: write '{int(wrong[0])}', not '{wrong[0]}'"
    if not _same_choices(parsed, p.choices):
        missing = [c for c in p.choices if c not in parsed]
        more = f" (missing {missing})" if missing else ""
        return f"{where}.feasibleSpace.list: expected {[str(c) for c in p.choices]}, got {got}{more}"
    return None


def _range_problem(p: tune.Parameter, space: Mapping[str, Any], where: str, algorithm: str) -> str | None:
    if "list" in space:
        return f"{where}: a double is a range: feasibleSpace min and max, not a list"
    where = f"{where}.feasibleSpace"
    low, high, step = str(p.low), str(p.high), str(p.step)
    for bound, want in (("min", low), ("max", high)):
        if bound not in space:
            return f"{where}.{bound}: missing; expected {want!r}"
        if problem := _value_text(space[bound], f"{where}.{bound}"):
            return problem
    try:
        got_low, got_high = float(space["min"]), float(space["max"])
    except ValueError:
        return f"{where}: min and max must be numbers, got {space['min']!r} and {space['max']!r}"
    if math.isclose(got_low, p.high) and math.isclose(got_high, p.low):
        return f"{where}: min and max are swapped: min {low!r}, max {high!r}"
    if not (math.isclose(got_low, p.low) and math.isclose(got_high, p.high)):
        return f"{where}: expected min {low!r} and max {high!r}, got {space['min']!r} and {space['max']!r}"
    if space.get("distribution", "uniform") != "uniform":
        return (f"{where}.distribution: {space['distribution']!r} samples on another scale; the space (and "
                "Optuna's suggest_float in this lab) is uniform: leave distribution out")  # fmt: skip
    if algorithm == "grid" and "step" not in space:
        return f"{where}.step: Katib's grid search needs a step to enumerate a double; expected {step!r}"
    if algorithm != "grid" and "step" in space:
        return f"{where}.step: only the grid search has a step; {algorithm} search samples the whole range"
    if "step" in space and not math.isclose(float(space["step"]), p.step):
        return f"{where}.step: expected {step!r}, got {space['step']!r}"
    return None


def _parameter_problem(p: tune.Parameter, got: Mapping[str, Any], expected: Mapping[str, Any], where: str,
                       algorithm: str) -> str | None:  # fmt: skip
    """One parameter of the learner's list against the package's rendering ``expected``."""
    if problem := _field_problems(got, "parameter", where):
        return problem
    kind, want = got.get("parameterType"), expected["parameterType"]
    if kind != want:
        first = p.choices[0] if p.choices else None
        why = {
            ("discrete", "categorical"): f"its values are numbers ({first}, ...): discrete keeps them ordered "
            "numbers; categorical is for labels such as mlp_layers",
            ("discrete", "int"): "int would draw any whole number between min and max; the space lists its values",
            ("categorical", "discrete"): f"'{first}' is a label, not a number: categorical",
            ("double", "int"): "the learning rate is a real number; int draws whole numbers only",
            ("double", "discrete"): "the space is a continuous range: double, with min and max",
            ("double", "categorical"): "the space is a continuous range: double, with min and max",
        }.get((want, kind), "")
        return f"{where}.parameterType: expected {want!r}, got {kind!r}" + (f": {why}" if why else "")
    space = got.get("feasibleSpace")
    if space is None:
        return f"{where}.feasibleSpace: missing"
    if problem := _field_problems(space, "feasibleSpace", f"{where}.feasibleSpace"):
        return problem
    if p.choices:
        return _list_problem(p, space, where)
    return _range_problem(p, space, where, algorithm)


def _parameters_problem(parameters: Any, space: Sequence[tune.Parameter], algorithm: str) -> str | None:
    if not isinstance(parameters, list) or not all(isinstance(q, Mapping) for q in parameters):
        return "parameters: expected a list of mappings (YAML: '- name: ...' items), one per parameter"
    expected = {p.name: rendered for p, rendered in zip(space, tune.katib_parameters(space, algorithm), strict=True)}
    names = [q.get("name") for q in parameters]
    duplicates = sorted({n for n in names if names.count(n) > 1}, key=str)
    if duplicates:
        return f"parameters: {duplicates[0]!r} appears twice; each parameter once"
    extra = [n for n in names if n not in expected]
    for p in space:
        if p.name in names:
            continue
        if p.key in extra:
            return (f"parameters: name it {p.name!r}, not {p.key!r}: Katib names are the last part of the key; the "
                    f"trial template refers to them (trialParameters: reference: {p.name})")  # fmt: skip
        near = _closest(str(p.name), [str(n) for n in extra])
        if near:
            return f"parameters: {near!r} is not in the search space: did you mean {p.name!r}?"
        return f"parameters: {p.name!r} is missing (the search space: {list(expected)})"
    if extra:
        return f"parameters: {extra[0]!r} is not in the search space ({list(expected)})"
    for index, q in enumerate(parameters):
        p = next(p for p in space if p.name == q["name"])
        if problem := _parameter_problem(p, q, expected[p.name], f"parameters[{index}] ({p.name})", algorithm):
            return problem
    return None


def katib_block(yours: Callable[[str], Any], *, algorithm: str, goal: float,
                space: Sequence[tune.Parameter] = tune.SEARCH_SPACE) -> None:  # fmt: skip
    """Exercise 8.3: ``yours(algorithm)`` gives ``{"objective": ..., "parameters": [...]}``; put into the
    package's Experiment (its trial template, :func:`recsys_workshop.tune.manifest_experiment`), it must be
    valid (:func:`recsys_workshop.kube.validate_custom`) and say what the package's rendering says: maximise
    ``ndcg_at_10`` with ``goal``, and each parameter of ``space`` with its Katib type and feasible space."""
    from recsys_workshop import kube

    block = yours(algorithm)
    call = f"katib_search({algorithm!r})"
    if not isinstance(block, Mapping):
        raise AssertionError(f"{call} returned {type(block).__name__}: expected a dict with 'objective' and "
                             "'parameters'")  # fmt: skip
    if set(block) == {"spec"}:
        raise AssertionError(f"{call}: only the two fields of spec, not spec itself: {{'objective': ..., "
                             "'parameters': [...]}")  # fmt: skip
    for key in ("objective", "parameters"):
        if key not in block:
            raise AssertionError(f"{call}: no {key!r} in {sorted(block)}: expected 'objective' and 'parameters'")
    if more := sorted(set(block) - {"objective", "parameters"}):
        raise AssertionError(f"{call}: only 'objective' and 'parameters', not {more} (the rest of the Experiment "
                             "is the package's)")  # fmt: skip
    problem = _objective_problem(block["objective"], goal) or _parameters_problem(block["parameters"], space, algorithm)
    if problem:
        raise AssertionError(f"{call}: {problem}")
    trial_spec = tune.manifest_experiment()["spec"]["trialTemplate"]["trialSpec"]
    experiment = tune.katib_experiment(space, algorithm=algorithm, trial_spec=trial_spec, goal=goal)
    experiment["spec"].update(json.loads(json.dumps(dict(block))))
    experiment["metadata"]["namespace"] = "lab08"
    findings = kube.validate_custom([experiment])
    if findings:
        raise AssertionError(f"{call}: the Experiment with your block is not valid: {findings[0].message}")
