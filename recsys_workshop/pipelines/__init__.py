"""Continuous training as a Kubeflow Pipelines (KFP v2) pipeline, run locally or compiled for a cluster.

    ingest -> validate -> split (+ leakage check) -> train -> evaluate -> compare with the deployed
    model -> push a new version (only if it is better)

Ingest reads the ratings and, with ``feedback_db`` (the API's database URL, or ``"env"`` for
``$RECSYS_DATABASE_URL`` as a cluster sets it from a Secret), adds the API's stored feedback as new
interactions (:func:`.steps.feedback_to_ratings`: like 5, click 4, dislike 1; the latest event of a
(user, item) pair wins): feedback -> retrain -> gate -> push.

The modules, by responsibility:

- :mod:`.steps`: the logic of each step (``step_*``), ordinary tested Python without KFP;
- :mod:`.components`: each step as a lightweight KFP component (in the workshop image: :data:`IMAGE`,
  ``kube.workshop_image()`` unless compiled with another) whose body calls one ``steps.step_*`` function;
  artifacts are typed (``Dataset``, ``Model``, ``Metrics``, ``Markdown``); ``evaluate_deployed`` and
  ``push_gate`` split the compare step in two, for a pipeline of your own (lab 09, Exercises 9.2-9.3);
- :mod:`.pipeline`: :func:`training_pipeline` wiring the components, and :func:`compile_pipeline`, which
  writes the pipeline YAML to upload to Kubeflow Pipelines. On a cluster the components run in the
  workshop image, and ``deployed_dir`` is the model server's URL: the compare and push steps download and
  upload versions over its admin API, with the token from the Secret ``recsys-admin`` as an environment
  variable (``kfp-kubernetes`` ``use_secret_as_env``);
- :mod:`.model_store`: that client side (download the latest version, upload a candidate, activate it);
- :mod:`.cluster`: :func:`cluster_arguments`, the arguments of a cluster run (``deployed_dir``: the model
  server's URL), after checking that the run's namespace holds the admin token's Secret;
- :mod:`.local`: :func:`run_local` runs the whole pipeline on this machine with ``kfp.local.
  SubprocessRunner(use_venv=False)`` (a failing validation stops the run, with the report in the
  :class:`PipelineFailed` error); :func:`job_config_with_best` merges a tuning run's best parameters
  into the job config, so the config a learner tunes in lab 08 is the one trained here;
  :func:`task_outputs` reads what a task of a local run produced (output parameters, artifact metadata);
- :mod:`.cli`: ``python -m recsys_workshop.pipelines run|compile`` (see there).

Importing the package does not import KFP: a component body imports ``recsys_workshop.pipelines.steps``
in a process where ``kfp.dsl`` is reduced to its runtime types, so the names that need KFP are loaded
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recsys_workshop.pipelines import steps
from recsys_workshop.pipelines.steps import ValidationFailed, is_better

if TYPE_CHECKING:
    from recsys_workshop.pipelines.cli import main
    from recsys_workshop.pipelines.cluster import ClusterNotReady, check_admin_secret, cluster_arguments
    from recsys_workshop.pipelines.components import (
        IMAGE,
        compare_with_deployed,
        evaluate_deployed,
        evaluate_model,
        ingest,
        push_gate,
        push_model,
        split_data,
        train_model,
        validate_data,
    )
    from recsys_workshop.pipelines.local import PipelineFailed, job_config_with_best, run_local, task_outputs
    from recsys_workshop.pipelines.pipeline import (
        ADMIN_SECRET,
        CLUSTER_DEPLOYED_DIR,
        compile_pipeline,
        training_pipeline,
    )

# name -> the submodule that defines it, imported on first access (PEP 562)
_LAZY = {
    **dict.fromkeys(
        [
            "IMAGE",
            "ingest",
            "validate_data",
            "split_data",
            "train_model",
            "evaluate_model",
            "compare_with_deployed",
            "push_model",
            "evaluate_deployed",
            "push_gate",
        ],
        "components",
    ),
    "training_pipeline": "pipeline",
    "compile_pipeline": "pipeline",
    "ADMIN_SECRET": "pipeline",
    "CLUSTER_DEPLOYED_DIR": "pipeline",
    "ClusterNotReady": "cluster",
    "check_admin_secret": "cluster",
    "cluster_arguments": "cluster",
    "PipelineFailed": "local",
    "job_config_with_best": "local",
    "run_local": "local",
    "task_outputs": "local",
    "main": "cli",
}

__all__ = [
    "ADMIN_SECRET",
    "CLUSTER_DEPLOYED_DIR",
    "IMAGE",
    "ClusterNotReady",
    "PipelineFailed",
    "ValidationFailed",
    "check_admin_secret",
    "cluster_arguments",
    "compare_with_deployed",
    "compile_pipeline",
    "evaluate_deployed",
    "evaluate_model",
    "ingest",
    "is_better",
    "job_config_with_best",
    "main",
    "push_gate",
    "push_model",
    "run_local",
    "split_data",
    "steps",
    "task_outputs",
    "train_model",
    "training_pipeline",
    "validate_data",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name != "IMAGE":  # IMAGE follows $RECSYS_WORKSHOP_IMAGE: looked up on every access
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
