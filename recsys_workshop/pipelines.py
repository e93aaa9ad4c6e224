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
import re
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

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(path))
    return Path(path)


def job_config_with_best(base: Mapping[str, Any], best_params_path: str | os.PathLike[str] | None) -> dict:
    """The job config with the best trial's parameters of a tuning run merged in (when the file exists)."""
    from recsys_workshop.train.job import merge_config
    from recsys_workshop.tune import best_overrides

    if best_params_path and Path(best_params_path).exists():
        return merge_config(base, best_overrides(best_params_path))
    return dict(base)


class PipelineFailed(RuntimeError):
    """A local run failed; the message carries the failing validation report when there is one."""


def run_local(
    pipeline_root: str | os.PathLike[str],
    deployed_dir: str | os.PathLike[str],
    *,
    log_path: str | os.PathLike[str] | None = None,
    **arguments,
) -> Path:
    """Run :func:`training_pipeline` with the KFP local runner and return the run's folder under
    ``pipeline_root`` (one sub-folder per task, holding its artifacts). A dict ``job_config`` is
    serialised for you. ``log_path``: send the tasks' (long) output there instead of stdout.
    Raises :class:`PipelineFailed` when a task fails, with the validation report if that was the cause."""
    import contextlib
    import warnings

    from kfp import local

    # the components name the workshop image; run locally, they use this Python instead, on purpose
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    if isinstance(arguments.get("job_config"), Mapping):
        arguments["job_config"] = json.dumps(arguments["job_config"])
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    with contextlib.ExitStack() as stack:
        if log_path is not None:
            log = stack.enter_context(open(log_path, "a", encoding="utf-8"))  # noqa: SIM115 - closed by the stack
            stack.enter_context(contextlib.redirect_stdout(log))
        try:
            training_pipeline(deployed_dir=str(Path(deployed_dir).resolve()), **arguments)
            failure = None
        except RuntimeError as error:
            failure = error
    runs = sorted(set(root.iterdir()) - before, key=lambda path: path.stat().st_mtime)
    run_dir = runs[-1] if runs else root
    if failure is not None:
        reports = [run_dir / step / "report" for step in ("validate-data", "split-data")]
        failed = [r.read_text(encoding="utf-8") for r in reports if r.is_file() and "FAILED" in r.read_text()]
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(failure))  # KFP colours its messages for a terminal
        raise PipelineFailed("\n".join([plain, *failed])) from None
    return run_dir


def main(argv=None) -> int:
    import argparse
    import sys

    from recsys_workshop.train.job import merge_config

    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.pipelines", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compile_ = commands.add_parser("compile", help="write the pipeline YAML for Kubeflow Pipelines")
    compile_.add_argument("output", nargs="?", default="artifacts/pipeline.yaml")
    run = commands.add_parser("run", help="run the pipeline locally (KFP local runner)")
    run.add_argument(
        "--config", default=str(Path(__file__).resolve().parents[1] / "cluster-setup/manifests/base/train.json")
    )
    run.add_argument("--deployed-dir", default="artifacts/models/recsys")
    run.add_argument("--pipeline-root", default="artifacts/pipeline-root")
    run.add_argument("--best-params", default=None, help="a tuning run's best_params.json to train with")
    run.add_argument("--ratings-csv", default="", help="your own ratings instead of MovieLens")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="job config overrides, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    if args.command == "compile":
        print(compile_pipeline(args.output))
        return 0
    try:
        config = merge_config(json.loads(Path(args.config).read_text(encoding="utf-8")), args.overrides)
        config = job_config_with_best(config, args.best_params)
        folder = run_local(args.pipeline_root, args.deployed_dir, job_config=config, ratings_csv=args.ratings_csv)
    except (OSError, ValueError) as error:  # unreadable config, bad override
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PipelineFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"run folder: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
