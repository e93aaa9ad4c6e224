"""Lab 09's checks of the learner's KFP code (recsys_workshop.labchecks.pipelines): the right answers pass, and a
wrong answer of each usual kind gets a message that names what is wrong; plus the package pieces the exercises
use (evaluate_deployed, push_gate, run_local(pipeline=...)) in a real local run."""

import math
import warnings

import pytest
from check_helpers import fails as _fails
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from recsys_workshop import pipelines
from recsys_workshop.labchecks import pipelines as checks
from recsys_workshop.pipelines.components import PLACEHOLDER_IMAGE

pytestmark = pytest.mark.unit

IMAGE = PLACEHOLDER_IMAGE
KEY = "ndcg@10"


# ---------------------------------------------------------------------------------------- the gates


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def right(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if min_improvement < 0:
        raise ValueError("min_improvement must be >= 0")
    if "ndcg@10" not in deployed.metadata:
        return True
    return candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def bare_types(candidate: Metrics, deployed: Metrics, min_improvement: float) -> bool:  # Input[] is the default
    from recsys_workshop.pipelines import steps

    return steps.is_better(candidate.metadata["ndcg@10"], deployed.metadata.get("ndcg@10"), min_improvement)


def plain_function(candidate, deployed, min_improvement):
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def numbers_in(candidate: float, deployed: float, min_improvement: float) -> bool:
    return candidate > deployed + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deployed_as_output(candidate: Input[Metrics], deployed: Output[Metrics], min_improvement: float) -> bool:
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def dataset_in(candidate: Input[Dataset], deployed: Input[Metrics], min_improvement: float) -> bool:
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def int_margin(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: int) -> bool:
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extra_input(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float, k: int) -> bool:
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def no_return_type(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float):
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def returns_str(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> str:
    return "push"


with warnings.catch_warnings():  # KFP's notice that its default image will change
    warnings.simplefilter("ignore", FutureWarning)

    @dsl.component
    def default_image(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
        return True


@dsl.component(base_image=IMAGE)
def installs_kfp(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return True


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def imports_outside(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return math.isfinite(candidate.metadata["ndcg@10"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def uses_a_notebook_variable(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return candidate.metadata[KEY] > deployed.metadata.get(KEY, -1.0) + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def key_error_when_nothing_deployed(
    candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float
) -> bool:
    if min_improvement < 0:
        raise ValueError("negative")
    return candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def wrong_key(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return candidate.metadata["ndcg"] > deployed.metadata.get("ndcg", 0.0) + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def subscripts_the_artifact(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return candidate["ndcg@10"] > deployed["ndcg@10"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def nothing_deployed_refused(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return candidate.metadata["ndcg@10"] > deployed.metadata.get("ndcg@10", 1.0) + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tie_pushes(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if min_improvement < 0:
        raise ValueError("negative")
    return "ndcg@10" not in deployed.metadata or (
        candidate.metadata["ndcg@10"] >= deployed.metadata["ndcg@10"] + min_improvement
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ignores_the_margin(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return "ndcg@10" not in deployed.metadata or candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def the_wrong_way_round(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    return "ndcg@10" not in deployed.metadata or deployed.metadata["ndcg@10"] > candidate.metadata["ndcg@10"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def every_metric(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if min_improvement < 0:
        raise ValueError("negative")
    if not deployed.metadata:
        return True
    return all(candidate.metadata[k] > deployed.metadata[k] + min_improvement for k in candidate.metadata)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def numpy_bool(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    import numpy as np

    return np.bool_("ndcg@10" not in deployed.metadata or candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def accepts_a_negative_margin(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if "ndcg@10" not in deployed.metadata:
        return True
    return candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def asserts_the_margin(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    assert min_improvement >= 0
    if "ndcg@10" not in deployed.metadata:
        return True
    return candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fails_only_in_its_own_process(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    if min_improvement < 0:
        raise ValueError("negative")
    import model_fixtures  # noqa: F401 - on this process's sys.path (tests/), not on a fresh process's

    return (
        "ndcg@10" not in deployed.metadata
        or candidate.metadata["ndcg@10"] > deployed.metadata["ndcg@10"] + min_improvement
    )


def test_the_right_gate_and_the_package_gate_pass():
    checks.push_gate(right)
    checks.push_gate(bare_types, False)  # the same spec as Input[Metrics]
    checks.push_gate(pipelines.push_gate)


def test_a_gate_not_written_yet_is_not_done():
    with pytest.raises(NotImplementedError, match="Exercise 9.2"):
        checks.push_gate(None)


WRONG_GATES = [
    (plain_function, "not a KFP component: decorate the function with @dsl.component"),
    (numbers_in, "'candidate' as float, expected push_gate(candidate: Input[Metrics]"),
    (deployed_as_output, "'deployed' is an output of your component (Output[...]); it is an input"),
    (dataset_in, "'candidate' as an artifact system.Dataset (Input[Dataset])"),
    (int_margin, "'min_improvement' as int, expected push_gate(candidate: Input[Metrics], deployed: Input[Metrics]"),
    (extra_input, "unexpected input(s) ['k'] without a default"),
    (no_return_type, "declares no return value: annotate it `-> bool`"),
    (returns_str, "the component returns str, expected bool"),
    (default_image, "runs in the image 'python:3.11' (KFP's default when no base_image is given)"),
    (installs_kfp, "add install_kfp_package=False"),
    (imports_outside, "uses `math` from outside its body: `math` is the module math, imported in the notebook"),
    (uses_a_notebook_variable, "`KEY` is a str defined in the notebook, outside the function body"),
    (
        key_error_when_nothing_deployed,
        "nothing deployed yet (deployed.metadata is {}): candidate 0.3, deployed "
        "nothing: your code raised KeyError 'ndcg@10': with nothing deployed, deployed.metadata is empty",
    ),
    (wrong_key, "your code raised KeyError 'ndcg': the metrics' keys are ['ndcg@10', 'precision@10', 'recall@10']"),
    (subscripts_the_artifact, "an artifact is not a dict; its numbers are in its .metadata"),
    (nothing_deployed_refused, "expected True, got False: with nothing deployed, the first model is pushed"),
    (
        tie_pushes,
        "equal NDCG@10 (a tie): candidate 0.3, deployed 0.3, min_improvement 0.0: expected False, got "
        "True: a tie is not an improvement",
    ),
    (
        ignores_the_margin,
        "better by 0.01 with min_improvement=0.02: candidate 0.31, deployed 0.3, min_improvement "
        "0.02: expected False, got True: the candidate must beat deployed + min_improvement",
    ),
    (
        the_wrong_way_round,
        "a better candidate: candidate 0.3, deployed 0.25, min_improvement 0.0: expected True, got False: a "
        "higher NDCG@10 than the deployed one's is pushed (comparison the wrong way round?)",
    ),
    (
        every_metric,
        "better NDCG@10, worse precision@10: candidate 0.31, deployed 0.3, min_improvement 0.0: "
        "expected True, got False: the gate decides on 'ndcg@10' only",
    ),
    (numpy_bool, "returned numpy.bool np.True_, not a bool"),
    (
        accepts_a_negative_margin,
        "min_improvement=-0.1 (candidate 0.25, deployed 0.30): expected ValueError, got "
        "True: a negative margin would push a worse model",
    ),
    (asserts_the_margin, "your code raised AssertionError (an assert statement?): raise ValueError instead"),
]


@pytest.mark.parametrize(
    ("gate", "says"), WRONG_GATES, ids=[getattr(g, "name", None) or g.__name__ for g, _ in WRONG_GATES]
)
def test_each_wrong_gate_gets_its_own_message(gate, says):
    _fails(checks.push_gate, gate, match=says)


def test_the_wrong_way_round_is_named_on_the_worse_candidate_once_the_better_one_passes():
    @dsl.component(base_image=IMAGE, install_kfp_package=False)
    def pushes_everything_known(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
        return True

    _fails(checks.push_gate, pushes_everything_known,
           match="a worse candidate: candidate 0.25, deployed 0.3, min_improvement 0.0: expected False, got True: the "
           "comparison is the wrong way round")  # fmt: skip


def test_a_gate_that_fails_only_in_a_process_of_its_own_is_caught_by_the_local_run():
    checks.push_gate(fails_only_in_its_own_process, False)  # in-process: fine
    message = _fails(checks.push_gate, fails_only_in_its_own_process, match="KFP's local runner ran your component")
    assert "ModuleNotFoundError: No module named 'model_fixtures'" in message


def test_the_check_cases_are_the_package_gate_s_decisions():
    for _, candidate, deployed, margin, expected, _ in checks.GATE_CASES:
        assert pipelines.is_better(candidate["ndcg@10"], deployed.get("ndcg@10"), margin) is expected
    assert [case[4] for case in checks.GATE_CASES].count(False) == 3, "a worse candidate, a tie, a margin not met"


# ---------------------------------------------------------------------------------------- the pipelines


def build(gate, mistake: str = ""):
    """Exercise 9.3's answer, or the same with one ``mistake``."""

    @dsl.pipeline(name="gated-training")
    def gated(deployed_dir: str, job_config: str = "{}", min_improvement: float = 0.0):
        ingested = pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")
        checked = pipelines.validate_data(ratings=ingested.outputs["ratings"], rating_min=0.5, rating_max=5.0)
        splits = pipelines.split_data(ratings=ingested.outputs["ratings"], method="stratified", ratio=0.75, seed=42)
        if mistake != "no after":
            splits.after(checked)
        train, test = (splits.outputs[name] for name in ("train", "test"))
        trained = pipelines.train_model(
            train=test if mistake == "train on test" else train,
            job_config="{}" if mistake == "constant job_config" else job_config,
        )
        candidate = pipelines.evaluate_model(model=trained.outputs["model"], train=train, test=test, k=10)
        deployed = pipelines.evaluate_deployed(
            train=train, test=test, deployed_dir=deployed_dir, k=5 if mistake == "k=5" else 10
        )
        scores = [candidate.outputs["metrics"], deployed.outputs["metrics"]][:: -1 if mistake == "swapped" else 1]
        margin = 0.0 if mistake == "constant margin" else min_improvement
        decision = (pipelines.push_gate if mistake == "package gate" else gate)(
            candidate=scores[0], deployed=scores[1], min_improvement=margin
        )
        if mistake == "also compare":
            decision = pipelines.compare_with_deployed(
                model=trained.outputs["model"], train=train, test=test, deployed_dir=deployed_dir, k=10,
                min_improvement=min_improvement,
            )  # fmt: skip
        pipelines.push_model(
            model=trained.outputs["model"],
            metrics=deployed.outputs["metrics"]
            if mistake == "deployed metrics pushed"
            else candidate.outputs["metrics"],
            deployed_dir=deployed_dir,
            better=True if mistake == "always push" else decision.output,
        )

    return gated


def test_the_right_pipeline_passes_with_the_package_gate_and_with_a_gate_of_your_own():
    checks.gated_pipeline(build, pipelines.push_gate)
    checks.gated_pipeline(build, right)


def test_a_pipeline_not_written_yet_is_not_done():
    def stub(gate):
        raise NotImplementedError("Exercise 9.3")

    with pytest.raises(NotImplementedError, match="Exercise 9.3"):
        checks.gated_pipeline(stub, pipelines.push_gate)


WRONG_PIPELINES = [
    ("no after", "split-data does not wait for validate-data: no output of the validation is an input of the split"),
    ("swapped", "your gate's input 'candidate' comes from evaluate-deployed's output 'metrics', expected "
     "evaluate-model's output 'metrics': candidate and deployed are swapped"),
    ("always push", "push-model's input 'better' comes from the constant True, expected your gate's .output: every "
     "candidate would get the same answer"),
    ("deployed metrics pushed", "the pushed version would carry the deployed model's numbers"),
    ("train on test", "train-model's input 'train' comes from split-data's output 'test'"),
    ("constant job_config", "train-model's input 'job_config' comes from the constant '{}', expected the pipeline "
     "parameter 'job_config': a constant ignores the run's argument"),
    ("constant margin", "your gate's input 'min_improvement' comes from the constant 0.0"),
    ("also compare", "your pipeline also runs compare_with_deployed: evaluate_deployed and your gate replace it"),
    ("package gate", "your pipeline has no task of the gate passed to gated_pipeline(gate) (right): call gate(...)"),
    ("k=5", "evaluate-deployed's input 'k' is 5, expected 10: the gate compares 'ndcg@10'"),
]  # fmt: skip


@pytest.mark.parametrize(("mistake", "says"), WRONG_PIPELINES, ids=[m for m, _ in WRONG_PIPELINES])
def test_each_wrong_pipeline_gets_its_own_message(mistake, says):
    _fails(checks.gated_pipeline, lambda gate: build(gate, mistake), right, match=says)


def test_a_gate_of_the_same_name_that_is_not_the_one_passed_is_named():
    @dsl.component(base_image=IMAGE, install_kfp_package=False)
    def push_gate(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
        return True  # the learner's, named like the package's

    _fails(checks.gated_pipeline, lambda gate: build(gate, "package gate"), push_gate,
           match="the gate task of your pipeline is not the component passed to gated_pipeline(gate)")  # fmt: skip
    checks.gated_pipeline(build, push_gate)


def test_a_pipeline_that_is_not_one_is_named():
    _fails(checks.gated_pipeline, lambda gate: None, right, match="returned None: return the pipeline function")
    _fails(checks.gated_pipeline, lambda gate: plain_function, right, match="decorate your pipeline function with")
    _fails(checks.gated_pipeline, lambda gate: right, right, match="a component: a pipeline is decorated with")


def test_missing_tasks_parameters_and_types_are_named():
    @dsl.pipeline(name="front-only")
    def front(deployed_dir: str, job_config: str = "{}", min_improvement: float = 0.0):
        pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")

    @dsl.pipeline(name="no-margin")
    def no_margin(deployed_dir: str, job_config: str = "{}"):
        pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")

    @dsl.pipeline(name="int-margin")
    def int_margin(deployed_dir: str, job_config: str = "{}", min_improvement: int = 0):
        pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")

    _fails(
        checks.gated_pipeline, lambda gate: front, right, match="your pipeline has no task of pipelines.validate_data"
    )
    _fails(
        checks.gated_pipeline, lambda gate: no_margin, right, match="your pipeline has no parameter 'min_improvement'"
    )
    _fails(checks.gated_pipeline, lambda gate: int_margin, right,
           match="the pipeline parameter 'min_improvement' is int, expected float")  # fmt: skip


def test_a_type_kfp_refuses_is_reported_as_kfp_s_verdict():
    def dataset_into_the_gate(gate):
        @dsl.pipeline(name="wrong-type")
        def wrong(deployed_dir: str, job_config: str = "{}", min_improvement: float = 0.0):
            ingested = pipelines.ingest(dataset="ml-100k", ratings_csv="", feedback_db="")
            gate(candidate=ingested.outputs["ratings"], deployed=ingested.outputs["ratings"], min_improvement=0.0)

        return wrong

    message = _fails(checks.gated_pipeline, dataset_into_the_gate, right, match="KFP refused your pipeline")
    assert "system.Dataset" in message and "system.Metrics" in message


# ------------------------------------------------------------------- the package pieces, in a real run

WEAK_JOB = {
    "model": {"name": "mf", "n_factors": 2},
    "train": {"epochs": 1, "batch_size": 4096, "learning_rate": 0.0001, "patience": 0, "verbose": 0},
}


def test_nothing_deployed_means_no_metrics(tmp_path):
    assert pipelines.steps.step_evaluate_deployed("unused", "unused", str(tmp_path / "none"), 10) == (None, {})
    (tmp_path / "empty").mkdir()
    assert pipelines.steps.step_evaluate_deployed("unused", "unused", str(tmp_path / "empty"), 10) == (None, {})


@pytest.mark.tf
@pytest.mark.slow
def test_the_answer_runs_locally_and_its_gate_refuses_a_weak_candidate(tmp_path):
    """Exercise 9.3's answer with the package's gate, run as lab 09 runs it (run_local(pipeline=...)), against a
    deployed model: the candidate (2 factors, 1 epoch, a tiny learning rate) is refused, nothing is pushed."""
    from model_fixtures import exported_versions

    from recsys_workshop.export import list_versions

    deployed = exported_versions(tmp_path / "deployed", n_versions=1)
    log = tmp_path / "run.log"
    run = pipelines.run_local(tmp_path / "runs", deployed, pipeline=build(pipelines.push_gate), job_config=WEAK_JOB,
                              log_path=log)  # fmt: skip
    assert list_versions(deployed) == [1]
    champion = pipelines.task_outputs(run, "evaluate-deployed")["metrics"]
    challenger = pipelines.task_outputs(run, "evaluate-model")["metrics"]
    assert set(champion) == set(challenger) and champion["ndcg@10"] > challenger["ndcg@10"] + 0.05
    assert pipelines.task_outputs(run, "push-gate") == {"Output": False}
    assert pipelines.task_outputs(run, "push-model") == {"Output": ""}
    text = log.read_text()
    assert "deployed v1: ndcg@10 " in text and "push gate: keep the deployed version" in text
    assert not (run / "compare-with-deployed").exists(), "the workshop's compare step is not part of this pipeline"
