"""The checks behind lab 09's self-checks on KFP code: the learner's ``@dsl.component`` (the push gate, Exercise
9.2) and the ``@dsl.pipeline`` that wires it after the workshop's components (Exercise 9.3)::

    from recsys_workshop.labchecks import pipelines as pipeline_checks

    selfcheck.check("9.2", lambda: pipeline_checks.push_gate(push_gate), hint=..., code_hint=...)

Both compile the learner's code with the KFP compiler and read the spec a cluster would get: the component's
inputs, outputs, types and image; the pipeline's tasks, where each input comes from (a task's output, a pipeline
parameter, a constant) and which task waits for which. :func:`push_gate` also looks for names the body takes from
the notebook, tries named cases (nothing deployed yet, a tie, a margin) and runs the component once in KFP's local
runner. Each raises ``AssertionError`` naming what is wrong and the likely mistake, or ``NotImplementedError(
"Exercise 8.N")`` while the exercise is a stub. No ``from __future__ import annotations``: KFP reads the check
components' annotations as real types.
"""

import ast
import builtins
import contextlib
import functools
import inspect
import io
import json
import re
import tempfile
import textwrap
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["GATE_CASES", "gated_pipeline", "push_gate"]

METRIC = "ndcg@10"
# The gate's interface as the compiled spec writes it: input name -> type, and the output.
GATE_INPUTS = {"candidate": "system.Metrics", "deployed": "system.Metrics", "min_improvement": "NUMBER_DOUBLE"}
GATE_OUTPUT = "BOOLEAN"
PYTHON_TYPES = {"NUMBER_DOUBLE": "float", "NUMBER_INTEGER": "int", "STRING": "str", "BOOLEAN": "bool",
                "STRUCT": "dict", "LIST": "list"}  # fmt: skip
GATE_SIGNATURE = "push_gate(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool"


def _scores(ndcg: float, **others: float) -> dict[str, float]:
    """A model's metrics as the evaluate steps log them: NDCG@10 and the others (in proportion unless given)."""
    return {METRIC: ndcg, "precision@10": round(ndcg / 3, 4), "recall@10": round(ndcg / 6, 4), **others}


# (case, candidate metrics, deployed metrics, min_improvement, expected decision, what a wrong one likely means)
GATE_CASES = [
    ("nothing deployed yet (deployed.metadata is {})", _scores(0.30), {}, 0.0, True,
     "with nothing deployed, the first model is pushed"),
    ("a better candidate", _scores(0.30), _scores(0.25), 0.0, True,
     "a higher NDCG@10 than the deployed one's is pushed (comparison the wrong way round?)"),
    ("better NDCG@10, worse precision@10", _scores(0.31, **{"precision@10": 0.1}), _scores(0.30), 0.0, True,
     f"the gate decides on {METRIC!r} only"),
    ("a worse candidate", _scores(0.25), _scores(0.30), 0.0, False,
     "the comparison is the wrong way round: push when the candidate is better"),
    ("equal NDCG@10 (a tie)", _scores(0.30), _scores(0.30), 0.0, False,
     "a tie is not an improvement: push only when candidate > deployed + min_improvement (>, not >=)"),
    ("better by 0.01 with min_improvement=0.02", _scores(0.31), _scores(0.30), 0.02, False,
     "the candidate must beat deployed + min_improvement, not only the deployed score"),
    ("better by 0.05 with min_improvement=0.02", _scores(0.35), _scores(0.30), 0.02, True, ""),
]  # fmt: skip


def _compiled(component: Any) -> dict:
    """The pipeline spec (first YAML document) the KFP compiler writes for ``component``."""
    import yaml
    from kfp import compiler

    with tempfile.TemporaryDirectory(prefix="labcheck-") as folder:
        path = Path(folder) / "spec.yaml"
        compiler.Compiler().compile(component, str(path))
        return next(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def _kind(value: Any) -> str:
    from kfp.dsl.graph_component import GraphComponent
    from kfp.dsl.python_component import PythonComponent

    kinds = [(value is None, "none"), (isinstance(value, PythonComponent), "component"),
             (isinstance(value, GraphComponent), "pipeline"), (callable(value), "function")]  # fmt: skip
    return next((kind for hit, kind in kinds if hit), "other")


# --------------------------------------------------------------------------------------- Exercise 9.2


def push_gate(yours: Any, run: bool = True) -> None:
    """Exercise 9.2: ``yours`` is a ``@dsl.component`` with :data:`GATE_SIGNATURE` in the workshop image, hermetic,
    right on :data:`GATE_CASES`, and (``run``) gives the right answer when KFP's local runner runs it alone."""
    kind = _kind(yours)
    if kind == "none":
        raise NotImplementedError("Exercise 9.2")
    if kind == "pipeline":
        raise AssertionError("push_gate is a pipeline (@dsl.pipeline): a single step is a @dsl.component")
    if kind != "component":
        raise AssertionError(
            f"push_gate is a {type(yours).__name__}, not a KFP component: decorate the function with "
            "@dsl.component(...), so that KFP can compile it into a step of a pipeline"
        )
    spec = _compiled(yours)
    _check_interface(spec["components"][f"comp-{yours.name}"])
    (executor,) = spec["deploymentSpec"]["executors"].values()
    _check_image(executor["container"])
    _check_hermetic(yours.python_func)
    for case in GATE_CASES:
        _check_case(yours.python_func, *case)
    _check_negative_margin(yours.python_func)
    if run:
        _check_local_run(yours)


def _interface(component_spec: dict) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(inputs, outputs, optional inputs) of a compiled component: name -> schema title or parameter type."""

    def kinds(definitions: dict) -> dict[str, str]:
        artifacts = {n: a["artifactType"]["schemaTitle"] for n, a in definitions.get("artifacts", {}).items()}
        return artifacts | {n: p["parameterType"] for n, p in definitions.get("parameters", {}).items()}

    inputs = component_spec.get("inputDefinitions", {})
    optional = {n for group in inputs.values() for n, d in group.items() if d.get("isOptional")}
    return kinds(inputs), kinds(component_spec.get("outputDefinitions", {})), optional


def _annotation(kind: str) -> str:
    return PYTHON_TYPES.get(kind) or f"an artifact {kind} (Input[{kind.removeprefix('system.')}])"


def _check_interface(component_spec: dict) -> None:
    inputs, outputs, optional = _interface(component_spec)
    expected_text = f"expected {GATE_SIGNATURE}"
    for name, kind in GATE_INPUTS.items():
        if name in outputs and name not in inputs:
            raise AssertionError(
                f"'{name}' is an output of your component (Output[...]); it is an input: {expected_text}"
            )
        if name not in inputs:
            found = ", ".join(f"{n}: {_annotation(k)}" for n, k in inputs.items()) or "none"
            raise AssertionError(f"the compiled component has no input '{name}' (its inputs: {found}); {expected_text}")
        if inputs[name] == kind:
            continue
        got = f"the compiled spec has '{name}' as {_annotation(inputs[name])}, {expected_text}"
        if kind == "system.Metrics" and inputs[name] in PYTHON_TYPES:
            raise AssertionError(
                f"{got}: the evaluate steps output Metrics artifacts, not numbers; read the "
                f"number inside the component from {name}.metadata"
            )
        if kind == "NUMBER_DOUBLE" and inputs[name] == "NUMBER_INTEGER":
            raise AssertionError(f"{got}: a margin such as 0.005 is a float")
        raise AssertionError(got)
    extra, returned = sorted(set(inputs) - set(GATE_INPUTS) - optional), outputs.get("Output")
    for wrong, message in [
        (extra, f"unexpected input(s) {extra} without a default: the pipeline gives the gate only these three"),
        (returned is None, "your component declares no return value: annotate it `-> bool`, so that its decision "
         "is a typed output (task.output) the push step can take"),
        (returned not in (None, GATE_OUTPUT), f"the component returns {_annotation(str(returned))}, expected bool: "
         "the push step's `better` input is a bool"),
        (set(outputs) - {"Output"}, f"unexpected output(s) {sorted(set(outputs) - {'Output'})}: the gate returns its "
         "decision and nothing else"),
    ]:  # fmt: skip
        if wrong:
            raise AssertionError(f"{message}; {expected_text}")


def _check_image(container: dict) -> None:
    from recsys_workshop.pipelines.components import PLACEHOLDER_IMAGE

    if container["image"] != PLACEHOLDER_IMAGE:
        raise AssertionError(
            f"your component runs in the image {container['image']!r} (KFP's default when no base_image is given): "
            f"run it in the workshop image like every other step, @dsl.component(base_image=PLACEHOLDER_IMAGE, "
            f"install_kfp_package=False) (PLACEHOLDER_IMAGE = {PLACEHOLDER_IMAGE!r}: compile_pipeline writes the "
            "cluster's reference in its place)"
        )
    if "pip install" in " ".join(container.get("command", [])):
        raise AssertionError(
            "your component starts by running `pip install kfp` (KFP's default): the workshop image has the pinned "
            "kfp already, add install_kfp_package=False to @dsl.component(...)"
        )


def _free_names(func: Callable) -> list[str]:
    """Names the function's body reads but neither defines, imports nor gets from builtins or from what KFP puts
    at the top of a component's file (``import kfp``, ``from kfp.dsl import *``, ``from typing import *``)."""
    import typing

    import kfp.dsl

    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    bound = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    used: list[str] = []
    for statement in function.body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Name):
                (bound.add if isinstance(node.ctx, ast.Store | ast.Del) else used.append)(node.id)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
    provided = {"kfp", "dsl", *kfp.dsl.__all__, *typing.__all__, *dir(builtins)}
    return list(dict.fromkeys(name for name in used if name not in bound and name not in provided))


def _check_hermetic(func: Callable) -> None:
    free = _free_names(func)
    if not free:
        return
    name = free[0]
    value = func.__globals__.get(name)
    if isinstance(value, types.ModuleType):
        what = f"`{name}` is the module {value.__name__}, imported in the notebook, outside the function body"
        alias = f" as {name}" if value.__name__ != name else ""
        fix = f"import it inside the function body (`import {value.__name__}{alias}`)"
    elif value is None:
        what, fix = f"`{name}` is defined nowhere the component can see", "define it inside the function"
    else:
        what = f"`{name}` is a {type(value).__name__} defined in the notebook, outside the function body"
        fix = "define it inside the function, or pass it as an input"
    raise AssertionError(
        f"your component uses {', '.join(f'`{n}`' for n in free)} from outside its body: {what}. KFP "
        f"runs a component's source alone, in a fresh process (a container on a cluster), so it would fail with "
        f"NameError; {fix}"
    )


def _metrics(name: str, values: dict) -> Any:
    from kfp.dsl import Metrics

    return Metrics(name=name, uri=f"memory://{name}", metadata=dict(values))


def _check_case(func: Callable, case: str, candidate: dict, deployed: dict, margin: float, expected: bool,
                advice: str) -> None:  # fmt: skip
    call = f"{case}: candidate {candidate.get(METRIC)}, deployed {deployed.get(METRIC, 'nothing')}"
    try:
        got = func(
            candidate=_metrics("candidate", candidate), deployed=_metrics("deployed", deployed), min_improvement=margin
        )
    except KeyError as error:
        if not deployed and error.args == (METRIC,):
            raise AssertionError(
                f"{call}: your code raised KeyError {error}: with nothing deployed, deployed.metadata "
                "is empty ({}); check for that first, and push the first model"
            ) from error
        raise AssertionError(
            f"{call}: your code raised KeyError {error}: the metrics' keys are "
            f"{sorted(candidate)}; the gate compares {METRIC!r}"
        ) from error
    except TypeError as error:
        if "subscriptable" in str(error) or "not iterable" in str(error):
            raise AssertionError(
                f"{call}: your code raised TypeError ({error}): an artifact is not a dict; its "
                f"numbers are in its .metadata, e.g. candidate.metadata[{METRIC!r}]"
            ) from error
        raise
    if not isinstance(got, bool):
        raise AssertionError(
            f"{call}: returned {_type_name(got)} {got!r}, not a bool: return True or False "
            "(a numpy bool or a number would not be the bool your component declares)"
        )
    if got == expected:
        return
    message = f"{call}, min_improvement {margin}: expected {expected}, got {got}"
    raise AssertionError(f"{message}: {advice}" if advice else message)


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _check_negative_margin(func: Callable) -> None:
    candidate, deployed = _metrics("candidate", {METRIC: 0.25}), _metrics("deployed", {METRIC: 0.30})
    try:
        got = func(candidate=candidate, deployed=deployed, min_improvement=-0.1)
    except ValueError:
        return
    except AssertionError as error:
        raise AssertionError(
            "min_improvement=-0.1: your code raised AssertionError (an assert statement?): raise ValueError instead "
            "(python -O skips asserts, and a ValueError says the input is wrong)"
        ) from error
    raise AssertionError(
        f"min_improvement=-0.1 (candidate 0.25, deployed 0.30): expected ValueError, got {got!r}: a negative margin "
        "would push a worse model; raise ValueError, which fails the step and stops the run"
    )


@functools.cache
def _given_metrics() -> Any:
    """A component that writes the Metrics artifact it is given (JSON), to feed the learner's gate in a run."""
    from kfp import dsl
    from kfp.dsl import Metrics, Output

    from recsys_workshop.pipelines.components import PLACEHOLDER_IMAGE

    @dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
    def given_metrics(values: str, metrics: Output[Metrics]):
        import json

        for name, value in json.loads(values).items():
            metrics.log_metric(name, value)

    return given_metrics


def _check_local_run(gate: Any) -> None:
    """Run ``gate`` in KFP's local runner (each task a process of its own, from its source alone) after two tasks
    that write the candidate's and the deployed model's metrics; it must push the better candidate."""
    from kfp import dsl, local

    given = _given_metrics()
    _, candidate, deployed, margin, expected, _ = GATE_CASES[1]

    @dsl.pipeline(name="push-gate-check")
    def check(candidate: str, deployed: str, min_improvement: float) -> bool:
        made = given(values=candidate), given(values=deployed)
        return gate(
            candidate=made[0].outputs["metrics"], deployed=made[1].outputs["metrics"], min_improvement=min_improvement
        ).output

    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="labcheck-run-") as root, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
        try:
            with contextlib.redirect_stdout(log):
                got = check(candidate=json.dumps(candidate), deployed=json.dumps(deployed), min_improvement=margin)
        except RuntimeError as error:
            errors = re.findall(r"^\s*((?:\w+\.)*\w+(?:Error|Exception)\b.*)$", log.getvalue(), re.M)
            raise AssertionError(
                "KFP's local runner ran your component in a process of its own (as a container on a cluster would) "
                f"and it failed: {errors[-1].strip() if errors else error}"
            ) from None
    if got.output is not expected:
        raise AssertionError(
            f"run by KFP's local runner on {GATE_CASES[1][0]}: expected {expected}, got {got.output!r}"
        )


# --------------------------------------------------------------------------------------- Exercise 9.3

# The wiring of Exercise 9.3: (component, input) -> where it must come from: ("task", component, output key) or
# ("param", pipeline parameter). "gate" stands for the gate component passed to the check.
WIRING = {
    ("validate-data", "ratings"): ("task", "ingest", "ratings"),
    ("split-data", "ratings"): ("task", "ingest", "ratings"),
    ("train-model", "train"): ("task", "split-data", "train"),
    ("train-model", "job_config"): ("param", "job_config"),
    ("evaluate-model", "model"): ("task", "train-model", "model"),
    ("evaluate-model", "train"): ("task", "split-data", "train"),
    ("evaluate-model", "test"): ("task", "split-data", "test"),
    ("evaluate-deployed", "train"): ("task", "split-data", "train"),
    ("evaluate-deployed", "test"): ("task", "split-data", "test"),
    ("evaluate-deployed", "deployed_dir"): ("param", "deployed_dir"),
    ("gate", "candidate"): ("task", "evaluate-model", "metrics"),
    ("gate", "deployed"): ("task", "evaluate-deployed", "metrics"),
    ("gate", "min_improvement"): ("param", "min_improvement"),
    ("push-model", "model"): ("task", "train-model", "model"),
    ("push-model", "metrics"): ("task", "evaluate-model", "metrics"),
    ("push-model", "deployed_dir"): ("param", "deployed_dir"),
    ("push-model", "better"): ("task", "gate", "Output"),
}
# the pipeline's parameters: name -> (type, needs a default: the lab's runs pass only deployed_dir and job_config)
PIPELINE_PARAMETERS = {"deployed_dir": ("STRING", False), "job_config": ("STRING", True),
                       "min_improvement": ("NUMBER_DOUBLE", True)}  # fmt: skip
# known mistakes: ((component, input), where it came from) -> what it means
MISTAKES = {
    (("gate", "candidate"), ("task", "evaluate-deployed", "metrics")): "candidate and deployed are swapped: your "
    "gate would push a model that is worse than the deployed one",
    (("push-model", "metrics"), ("task", "evaluate-deployed", "metrics")): "the pushed version would carry the "
    "deployed model's numbers: pass the candidate's metrics (the evaluate_model task's)",
    (("push-model", "better"), ("task", "compare-with-deployed", "Output")): "the workshop's compare step decides, "
    "not your gate: pass your gate task's .output",
    (("train-model", "train"), ("task", "split-data", "test")): "the model would train on the test split, and be "
    "scored on what it learnt",
    (("evaluate-model", "test"), ("task", "split-data", "train")): "the candidate would be scored on its own "
    "training data",
    (("evaluate-deployed", "test"), ("task", "split-data", "train")): "the deployed model must be scored on the "
    "same test split as the candidate",
}


def gated_pipeline(build: Callable[[Any], Any], gate: Any) -> None:
    """Exercise 9.3: ``build(gate)`` returns a ``@dsl.pipeline`` (parameters :data:`PIPELINE_PARAMETERS`) whose
    compiled spec runs the workshop's steps and ``gate`` wired as :data:`WIRING`, with the split after the
    validation. ``gate``: the learner's component from Exercise 9.2, or the package's ``pipelines.push_gate``."""
    try:
        built = build(gate)
    except NotImplementedError:
        raise
    except Exception as error:
        if not type(error).__module__.startswith("kfp"):
            raise
        raise AssertionError(f"KFP refused your pipeline while building it: {type(error).__name__}: {error}") from error
    kind = _kind(built)
    if kind != "pipeline":
        what = {
            "none": "None: return the pipeline function you decorated",
            "component": "a component: a pipeline is decorated with @dsl.pipeline",
        }
        raise AssertionError(
            f"gated_pipeline(gate) returned {what.get(kind, f'a {type(built).__name__}')}"
            + ("" if kind in what else ": decorate your pipeline function with @dsl.pipeline")
        )
    spec = _compiled(built)
    _check_parameters(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    tasks = spec["root"]["dag"]["tasks"]
    component_of = _components_of(tasks, gate.name)
    _check_tasks(component_of, gate.name)
    _check_gate_is_yours(spec, tasks, component_of, gate)
    _check_wiring(tasks, component_of, spec["root"].get("inputDefinitions", {}).get("parameters", {}))


def _check_parameters(parameters: dict) -> None:
    for name, (kind, needs_default) in PIPELINE_PARAMETERS.items():
        if name not in parameters:
            raise AssertionError(
                f"your pipeline has no parameter '{name}' (its parameters: {sorted(parameters) or 'none'}): expected "
                "(deployed_dir: str, job_config: str = '{}', min_improvement: float = 0.0)"
            )
        if parameters[name]["parameterType"] != kind:
            raise AssertionError(
                f"the pipeline parameter '{name}' is {_annotation(parameters[name]['parameterType'])}"
                f", expected {_annotation(kind)}"
            )
        if needs_default and "defaultValue" not in parameters[name]:
            raise AssertionError(f"give the pipeline parameter '{name}' a default: the lab's runs do not pass it")
    extra = sorted(n for n, p in parameters.items() if n not in PIPELINE_PARAMETERS and "defaultValue" not in p)
    if extra:
        raise AssertionError(
            f"pipeline parameter(s) {extra} without a default: the lab's runs pass only deployed_dir and job_config"
        )


def _components_of(tasks: dict, gate_name: str) -> dict[str, str]:
    """task name -> component name ("gate" for the gate's), without the -2, -3 that KFP adds to repeated names."""
    names = {}
    for task, body in tasks.items():
        component = re.sub(r"-\d+$", "", body["componentRef"]["name"].removeprefix("comp-"))
        names[task] = "gate" if component == gate_name else component
    return names


def _check_tasks(component_of: dict[str, str], gate_name: str) -> None:
    present = set(component_of.values())
    for needed in dict.fromkeys(["ingest", *(c for c, _ in WIRING)]):
        if needed == "gate" and needed not in present:
            raise AssertionError(
                f"your pipeline has no task of the gate passed to gated_pipeline(gate) ({gate_name}): call gate(...), "
                "the argument, so that the workshop can swap your component in"
            )
        if needed not in present:
            what = f"pipelines.{needed.replace('-', '_')}"
            raise AssertionError(
                f"your pipeline has no task of {what} (its tasks: {', '.join(component_of) or 'none'}): it runs "
                "ingest, validate_data, split_data, train_model, evaluate_model, evaluate_deployed, the gate and "
                "push_model"
            )
    if "compare-with-deployed" in present:
        raise AssertionError(
            "your pipeline also runs compare_with_deployed: evaluate_deployed and your gate replace it (it would "
            "evaluate the deployed model a second time, and decide instead of your gate)"
        )
    twice = sorted({c for c in component_of.values() if list(component_of.values()).count(c) > 1})
    if twice:
        raise AssertionError(f"your pipeline runs {twice} more than once: each step runs once")


def _check_gate_is_yours(spec: dict, tasks: dict, component_of: dict[str, str], gate: Any) -> None:
    task = next(t for t, c in component_of.items() if c == "gate")
    executor = spec["components"][tasks[task]["componentRef"]["name"]]["executorLabel"]
    command = spec["deploymentSpec"]["executors"][executor]["container"]["command"]
    if command != list(gate.component_spec.implementation.container.command):
        raise AssertionError(
            "the gate task of your pipeline is not the component passed to gated_pipeline(gate): call gate(...), the "
            "argument, so that the workshop can swap a gate in"
        )


def _source(task: dict, name: str, component_of: dict[str, str]) -> tuple:
    """Where input ``name`` of a compiled task comes from: ("task", component, key), ("param", name),
    ("constant", value) or ("missing",)."""
    inputs = task.get("inputs", {})
    entry = inputs.get("artifacts", {}).get(name) or inputs.get("parameters", {}).get(name)
    if entry is None:
        return ("missing",)
    for field, key in (("taskOutputArtifact", "outputArtifactKey"), ("taskOutputParameter", "outputParameterKey")):
        if field in entry:
            producer = entry[field]["producerTask"]
            return ("task", component_of.get(producer, producer), entry[field][key])
    for field in ("componentInputParameter", "componentInputArtifact"):
        if field in entry:
            return ("param", entry[field])
    return ("constant", entry.get("runtimeValue", {}).get("constant"))


def _describe(source: tuple) -> str:
    if source[0] == "task":
        task = "your gate" if source[1] == "gate" else source[1]
        return f"{task}'s output '{source[2]}'" if source[2] != "Output" else f"{task}'s .output"
    if source[0] == "param":
        return f"the pipeline parameter '{source[1]}'"
    return "nothing (the input is not set)" if source[0] == "missing" else f"the constant {source[1]!r}"


def _check_wiring(tasks: dict, component_of: dict[str, str], parameters: dict) -> None:
    task_of = {component: task for task, component in component_of.items()}
    for (component, name), expected in WIRING.items():
        got = _source(tasks[task_of[component]], name, component_of)
        if got == expected:
            continue
        where = f"{'your gate' if component == 'gate' else component}'s input '{name}'"
        message = f"{where} comes from {_describe(got)}, expected {_describe(expected)}"
        if ((component, name), got) in MISTAKES:
            message += f": {MISTAKES[(component, name), got]}"
        elif got[0] == "constant" and expected[0] == "param":
            message += ": a constant ignores the run's argument"
        elif got[0] == "constant" and (component, name) == ("push-model", "better"):
            message += ": every candidate would get the same answer; pass your gate task's .output"
        raise AssertionError(message)
    split, validate = task_of["split-data"], task_of["validate-data"]
    if validate not in tasks[split].get("dependentTasks", []):
        raise AssertionError(
            f"{split} does not wait for {validate}: no output of the validation is an input of the split, so KFP "
            "may start the split (and the training) before the validation has finished, or after it failed. Add "
            "`.after(<the validate_data task>)` to the split task, as the workshop's pipeline does"
        )
    for component in ("evaluate-model", "evaluate-deployed"):
        k = _source(tasks[task_of[component]], "k", component_of)
        value = parameters.get(k[1], {}).get("defaultValue") if k[0] == "param" else k[-1]
        if value != 10:
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise AssertionError(f"{component}'s input 'k' is {shown!r}, expected 10: the gate compares {METRIC!r}")
