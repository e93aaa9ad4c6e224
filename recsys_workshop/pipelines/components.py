"""The pipeline's steps as lightweight KFP components, each in the workshop image.

Each component's body calls one function of :mod:`recsys_workshop.pipelines.steps` (``step_*``), so the
logic is ordinary tested Python and the components stay thin. KFP runs a body in a fresh process from
its source alone: a body imports what it needs itself, and only from ``steps`` (never this module).
Artifacts are typed: the ratings and the splits are ``Dataset`` (CSV), the trained model a ``Model`` (an
exported version folder, see :mod:`recsys_workshop.export`), the scores ``Metrics``, the validation
reports ``Markdown``.
"""

# no "from __future__ import annotations": KFP reads the components' annotations as real types

from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

# Every component names the workshop image by the placeholder the kustomize base uses; compile_pipeline()
# sets the one reference of the cluster (component_image(), or the image you pass), as an overlay's
# `images:` does for the workloads. The image has the pinned kfp (requirements/lock.txt), so a task starts
# without KFP's default "pip install kfp" (about a second per task, here and on a cluster).
PLACEHOLDER_IMAGE = "recsys-workshop"


def component_image() -> str:
    """The image the compiled components run by default: ``kube.workshop_image()`` ($RECSYS_WORKSHOP_IMAGE,
    else the image of this JupyterHub server, else the kind overlay's reference)."""
    from recsys_workshop.kube.manifests import workshop_image

    return workshop_image()


def __getattr__(name: str) -> Any:
    # IMAGE: what compile_pipeline() writes when given no image, looked up when asked (PEP 562)
    if name == "IMAGE":
        return component_image()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def ingest(dataset: str, ratings_csv: str, feedback_db: str, ratings: Output[Dataset]):
    """Load the ratings (MovieLens through the verified loader, or your own CSV), plus the API's stored
    feedback as new interactions when ``feedback_db`` is a database URL or ``"env"`` ($RECSYS_DATABASE_URL)."""
    from recsys_workshop.pipelines import steps

    ratings.metadata.update(steps.step_ingest(dataset, ratings_csv, ratings.path, feedback_db))


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def validate_data(ratings: Input[Dataset], rating_min: float, rating_max: float, report: Output[Markdown]):
    """Stop the run with a readable report if the data is unfit (schema, ranges, duplicates)."""
    from recsys_workshop.pipelines import steps

    steps.step_validate(ratings.path, report.path, rating_min, rating_max)


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def split_data(
    ratings: Input[Dataset],
    method: str,
    ratio: float,
    seed: int,
    train: Output[Dataset],
    test: Output[Dataset],
    report: Output[Markdown],
):
    """Split into train and test, and stop the run on leakage between them."""
    from recsys_workshop.pipelines import steps

    sizes = steps.step_split(ratings.path, method, ratio, seed, train.path, test.path, report.path)
    train.metadata["rows"], test.metadata["rows"] = sizes["train"], sizes["test"]


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def train_model(train: Input[Dataset], job_config: str, model: Output[Model]):
    """Train with the workshop's training job and export the model (a version folder)."""
    from recsys_workshop.pipelines import steps

    figures = steps.step_train(train.path, job_config, model.path)
    model.metadata.update({key: value for key, value in figures.items() if isinstance(value, int | float)})


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def evaluate_model(model: Input[Model], train: Input[Dataset], test: Input[Dataset], k: int, metrics: Output[Metrics]):
    """Top-k metrics of the exported model on the test split, through the serving code path."""
    import os

    from recsys_workshop.pipelines import steps

    version = os.path.join(model.path, "1")
    scores = steps.step_evaluate(version, train.path, test.path, k)
    for name, value in scores.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def compare_with_deployed(
    model: Input[Model], train: Input[Dataset], test: Input[Dataset], deployed_dir: str, k: int, min_improvement: float
) -> bool:
    """Is the candidate better than the deployed model on the same test split?"""
    import os

    from recsys_workshop.pipelines import steps

    verdict = steps.step_compare(os.path.join(model.path, "1"), train.path, test.path, deployed_dir, k, min_improvement)
    print(verdict["reason"])
    return bool(verdict["better"])


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def push_model(
    model: Input[Model], metrics: Input[Metrics], deployed_dir: str, better: bool, force: bool = False
) -> str:
    """Publish the candidate as the next version of the deployed model, only when it is ``better``, or when
    ``force`` (the pipeline's ``force_push``: an operator's override, e.g. the cluster smoke test, which must
    see a push reach the model server whatever the gate says; the run's log says the gate was overridden)."""
    import os

    from recsys_workshop.pipelines import steps

    if not better and not force:
        print("the candidate is not better than the deployed model: nothing pushed")
        return ""
    if not better:
        print("the candidate is not better than the deployed model, but force_push is set: pushing it anyway")
    path = steps.step_push(os.path.join(model.path, "1"), deployed_dir, dict(metrics.metadata))
    print(f"pushed {path}")
    return path


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def evaluate_deployed(train: Input[Dataset], test: Input[Dataset], deployed_dir: str, k: int, metrics: Output[Metrics]):
    """Top-k metrics of the latest deployed version on this run's test split; no metric at all (empty
    metadata) when nothing is deployed yet. With :func:`push_gate`, the two halves of ``compare_with_deployed``."""
    from recsys_workshop.pipelines import steps

    version, scores = steps.step_evaluate_deployed(train.path, test.path, deployed_dir, k)
    print(f"deployed v{version}: ndcg@{k} {scores[f'ndcg@{k}']:.4f}" if version else "nothing deployed yet")
    for name, value in scores.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=PLACEHOLDER_IMAGE, install_kfp_package=False)
def push_gate(candidate: Input[Metrics], deployed: Input[Metrics], min_improvement: float) -> bool:
    """Push when nothing is deployed (``deployed`` has no NDCG@10) or the candidate's NDCG@10 beats the
    deployed one by more than ``min_improvement`` (:func:`~recsys_workshop.pipelines.steps.is_better`).
    Lab 09's Exercise 9.2 writes this component; its check compares the learner's with it."""
    from recsys_workshop.pipelines import steps

    better = steps.is_better(candidate.metadata[steps.METRIC], deployed.metadata.get(steps.METRIC), min_improvement)
    print(f"push gate: {'push' if better else 'keep the deployed version'}")
    return better
