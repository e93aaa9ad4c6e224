"""The continuous-training pipeline: the components of :mod:`.components` wired by their artifacts.

    ingest -> validate -> split (+ leakage check) -> train -> evaluate -> compare with the deployed
    model -> push a new version (only if it is better)

:func:`compile_pipeline` writes it as KFP v2 YAML for Kubeflow Pipelines; :func:`recsys_workshop.
pipelines.local.run_local` runs it on this machine.

``feedback_db`` closes the loop: the ingest step adds the API's stored feedback (likes, clicks, dislikes)
to the ratings as new interactions (:func:`recsys_workshop.pipelines.steps.feedback_to_ratings`), so the
next candidate learns from what users did with the deployed model's recommendations, and the gate decides
whether it is better. Locally it is the API's SQLite URL; on a cluster pass ``"env"``: the ingest task then
reads ``$RECSYS_DATABASE_URL``, which comes from the ``recsys-postgres`` Secret (key ``database-url``),
never from a pipeline parameter (parameters are stored and shown in the Kubeflow Pipelines UI). The
compiled YAML asks for it with the ``kfp-kubernetes`` extension (``kubernetes.use_secret_as_env``, marked
optional: a cluster without the Secret still runs the pipeline without feedback); the local runner
ignores that platform setting.
"""

# no "from __future__ import annotations": KFP reads the pipeline's annotations as real types

import os
from pathlib import Path

from kfp import dsl, kubernetes

from recsys_workshop.pipelines.components import (
    compare_with_deployed,
    evaluate_model,
    ingest,
    push_model,
    split_data,
    train_model,
    validate_data,
)

FEEDBACK_SECRET = "recsys-postgres"  # created by cluster-setup/{kind,gke}/up, with the PostgreSQL StatefulSet


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
    feedback_db: str = "",
):
    ingested = ingest(dataset=dataset, ratings_csv=ratings_csv, feedback_db=feedback_db)
    kubernetes.use_secret_as_env(  # on a cluster, feedback_db="env" reads the database URL from the Secret
        ingested, secret_name=FEEDBACK_SECRET, secret_key_to_env={"database-url": "RECSYS_DATABASE_URL"}, optional=True
    )
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


def compile_pipeline(path: str | os.PathLike[str]) -> Path:
    """Write the pipeline as KFP v2 YAML (upload it in the Kubeflow Pipelines UI or with the kfp client)."""
    from kfp import compiler

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(path))
    return Path(path)
