"""Continuous training as a Kubeflow Pipelines (KFP v2) pipeline, run locally or compiled for a cluster.

The command line of :mod:`recsys_workshop.pipelines`::

    python -m recsys_workshop.pipelines run [--config train.json] [--best-params best_params.json] \\
        [--deployed-dir DIR] [--pipeline-root DIR] [--ratings-csv CSV] [key=value ...]
    python -m recsys_workshop.pipelines compile [--image REF] [artifacts/pipeline.yaml]

``run`` exits with 0 when the run finished (pushed or refused the candidate), 1 when a task failed
(e.g. a validation report), 2 on bad input (an unreadable config, a malformed override).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from recsys_workshop.paths import TRAIN_CONFIG
from recsys_workshop.pipelines.local import PipelineFailed, job_config_with_best, run_local


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.pipelines", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compile_ = commands.add_parser("compile", help="write the pipeline YAML for Kubeflow Pipelines")
    compile_.add_argument("output", nargs="?", default="artifacts/pipeline.yaml")
    compile_.add_argument("--image", default=None,
                          help="the image every step runs (default: $RECSYS_WORKSHOP_IMAGE, else the kind overlay's)")
    run = commands.add_parser("run", help="run the pipeline locally (KFP local runner)")
    run.add_argument("--config", default=str(TRAIN_CONFIG))
    run.add_argument("--deployed-dir", default="artifacts/models/recsys")
    run.add_argument("--pipeline-root", default="artifacts/pipeline-root")
    run.add_argument("--best-params", default=None, help="a tuning run's best_params.json to train with")
    run.add_argument("--ratings-csv", default="", help="your own ratings instead of MovieLens")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="job config overrides, e.g. train.epochs=2")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "compile":
        from recsys_workshop.pipelines.pipeline import compile_pipeline

        print(compile_pipeline(args.output, image=args.image))
        return 0
    from recsys_workshop.train.job import merge_config

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
