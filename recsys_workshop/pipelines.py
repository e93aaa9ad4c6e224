"""Continuous training as a Kubeflow Pipelines (KFP v2) pipeline, run locally or compiled for a cluster.

    ingest -> validate -> split (+ leakage check) -> train -> evaluate -> compare with the deployed
    model -> push a new version (only if it is better)

Each step is a lightweight KFP component whose body calls one function of
:mod:`recsys_workshop.pipeline_steps` (``step_*``), so the logic is ordinary tested Python and the
components stay thin. Artifacts are typed: the ratings and
the splits are ``Dataset`` (CSV), the trained model a ``Model`` (an exported version folder, see
:mod:`recsys_workshop.export`), the scores ``Metrics``, the validation reports ``Markdown``.

- :func:`run_local` runs the whole pipeline on this machine with ``kfp.local.SubprocessRunner
  (use_venv=False)``: each task is a subprocess of this Python (KFP first runs ``pip install kfp
  --no-deps`` in it, a no-op when kfp is installed). A failing validation fails its task and stops the
  run, with the report in the error.
- :func:`compile_pipeline` writes the pipeline YAML to upload to Kubeflow Pipelines. On a cluster the
  components run in the workshop image; ``deployed_dir`` must then be on the models volume (mount it
  with the ``kfp-kubernetes`` extension's ``mount_pvc``).

The train step runs the same job as ``python -m recsys_workshop.train`` (:func:`recsys_workshop.train.
job.run`) with the pipeline's job config, so the config a learner tunes in lab 07 is the one trained
here (:func:`job_config_with_best` merges the tuner's best parameters into it).
"""

# no "from __future__ import annotations": KFP reads the components' annotations as real types

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

IMAGE = "ghcr.io/recsys-workshop/recsys-workshop:0.1.0"


# ---------------------------------------------------------------------------------------------- components


@dsl.component(base_image=IMAGE)
def ingest(dataset: str, ratings_csv: str, ratings: Output[Dataset]):
    """Load the ratings (MovieLens through the verified loader, or your own CSV)."""
    from recsys_workshop import pipeline_steps as steps

    ratings.metadata.update(steps.step_ingest(dataset, ratings_csv, ratings.path))


@dsl.component(base_image=IMAGE)
def validate_data(ratings: Input[Dataset], rating_min: float, rating_max: float, report: Output[Markdown]):
    """Stop the run with a readable report if the data is unfit (schema, ranges, duplicates)."""
    from recsys_workshop import pipeline_steps as steps

    steps.step_validate(ratings.path, report.path, rating_min, rating_max)


@dsl.component(base_image=IMAGE)
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
    from recsys_workshop import pipeline_steps as steps

    sizes = steps.step_split(ratings.path, method, ratio, seed, train.path, test.path, report.path)
    train.metadata["rows"], test.metadata["rows"] = sizes["train"], sizes["test"]


@dsl.component(base_image=IMAGE)
def train_model(train: Input[Dataset], job_config: str, model: Output[Model]):
    """Train with the workshop's training job and export the model (a version folder)."""
    from recsys_workshop import pipeline_steps as steps

    figures = steps.step_train(train.path, job_config, model.path)
    model.metadata.update({key: value for key, value in figures.items() if isinstance(value, int | float)})


@dsl.component(base_image=IMAGE)
def evaluate_model(model: Input[Model], train: Input[Dataset], test: Input[Dataset], k: int, metrics: Output[Metrics]):
    """Top-k metrics of the exported model on the test split, through the serving code path."""
    import os

    from recsys_workshop import pipeline_steps as steps

    version = os.path.join(model.path, "1")
    scores = steps.step_evaluate(version, train.path, test.path, k)
    for name, value in scores.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=IMAGE)
def compare_with_deployed(
    model: Input[Model], train: Input[Dataset], test: Input[Dataset], deployed_dir: str, k: int, min_improvement: float
) -> bool:
    """Is the candidate better than the deployed model on the same test split?"""
    import os

    from recsys_workshop import pipeline_steps as steps

    verdict = steps.step_compare(os.path.join(model.path, "1"), train.path, test.path, deployed_dir, k, min_improvement)
    print(verdict["reason"])
    return bool(verdict["better"])


@dsl.component(base_image=IMAGE)
def push_model(model: Input[Model], metrics: Input[Metrics], deployed_dir: str, better: bool) -> str:
    """Publish the candidate as the next version of the deployed model, only when it is ``better``."""
    import os

    from recsys_workshop import pipeline_steps as steps

    if not better:
        print("the candidate is not better than the deployed model: nothing pushed")
        return ""
    path = steps.step_push(os.path.join(model.path, "1"), deployed_dir, dict(metrics.metadata))
    print(f"pushed {path}")
    return path


@dsl.pipeline(name="recsys-continuous-training", description="Validate, train, evaluate; push only a better model.")
def training_pipeline(
    deployed_dir: str,
    dataset: str = "ml-100k",
    ratings_csv: str = "",
    rating_min: float = 0.5,
    rating_max: float = 5.0,
    split_method: str = "stratified",
    split_ratio: float = 0.75,
    split_seed: int = 42,
    job_config: str = "{}",
    k: int = 10,
    min_improvement: float = 0.0,
):
    ingested = ingest(dataset=dataset, ratings_csv=ratings_csv)
    checked = validate_data(ratings=ingested.outputs["ratings"], rating_min=rating_min, rating_max=rating_max)
    splits = split_data(ratings=ingested.outputs["ratings"], method=split_method, ratio=split_ratio, seed=split_seed)
    splits.after(checked)
    trained = train_model(train=splits.outputs["train"], job_config=job_config)
    evaluated = evaluate_model(
        model=trained.outputs["model"], train=splits.outputs["train"], test=splits.outputs["test"], k=k
    )
    compared = compare_with_deployed(
        model=trained.outputs["model"],
        train=splits.outputs["train"],
        test=splits.outputs["test"],
        deployed_dir=deployed_dir,
        k=k,
        min_improvement=min_improvement,
    )
    # The gate is inside the push step, not a dsl.If: kfp 2.16's local runner evaluates dsl.If conditions
    # wrongly (always false: "name 'inputs' is not defined"), and the pipeline must behave the same here
    # and on a cluster.
    push_model(
        model=trained.outputs["model"],
        metrics=evaluated.outputs["metrics"],
        deployed_dir=deployed_dir,
        better=compared.output,
    )


# ---------------------------------------------------------------------------------------------- running


def compile_pipeline(path: str | os.PathLike[str]) -> Path:
    """Write the pipeline as KFP v2 YAML (upload it in the Kubeflow Pipelines UI or with the kfp client)."""
    from kfp import compiler

    compiler.Compiler().compile(training_pipeline, str(path))
    return Path(path)


def job_config_with_best(base: Mapping[str, Any], best_params_path: str | os.PathLike[str] | None) -> dict:
    """The job config with the best trial's parameters of a tuning run merged in (when the file exists)."""
    from recsys_workshop.train.job import merge_config
    from recsys_workshop.tune import best_overrides

    if best_params_path and Path(best_params_path).exists():
        return merge_config(base, best_overrides(best_params_path))
    return dict(base)


def run_local(pipeline_root: str | os.PathLike[str], deployed_dir: str | os.PathLike[str], **arguments):
    """Run :func:`training_pipeline` with the KFP local runner; returns the pipeline task (its
    ``outputs`` are empty for this pipeline: read the artifacts under ``pipeline_root``). A dict
    ``job_config`` is serialised for you. Raises ``RuntimeError`` when a task fails."""
    import warnings

    from kfp import local

    # the components name the workshop image; run locally, they use this Python instead, on purpose
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    if isinstance(arguments.get("job_config"), Mapping):
        arguments["job_config"] = json.dumps(arguments["job_config"])
    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(pipeline_root).resolve()))
    return training_pipeline(deployed_dir=str(Path(deployed_dir).resolve()), **arguments)
