"""The continuous-training pipeline: the components of :mod:`.components` wired by their artifacts.

    ingest -> validate -> split (+ leakage check) -> train -> evaluate -> compare with the deployed
    model -> push a new version (only if it is better, or when ``force_push`` overrides the gate)

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

``force_push`` (default false) pushes the candidate even when the gate refuses it, and the push step's log
says so: an operator's override, used by ``cluster-setup/smoke``, which must see a push reach the model
server on every run, not only when the candidate happens to beat the model the training job deployed.

The model store on a cluster. The compare step reads the deployed version from ``deployed_dir`` and the push
step adds the next one there. Locally ``deployed_dir`` is a folder of this machine. On a cluster it is the
model server's URL (:data:`CLUSTER_DEPLOYED_DIR`): the steps download the latest version and upload the
candidate over the model server's authenticated admin API (:mod:`.model_store`), which checks an upload and
publishes it as its next version, and the push step activates it. They cannot mount the server's volume:
Kubeflow Pipelines standalone runs every pipeline pod in its namespace ``kubeflow``, and a pod can mount only
a claim of its own namespace. The admin token reaches both tasks as ``$RECSYS_ADMIN_TOKEN`` from the Secret
:data:`ADMIN_SECRET` (``kubernetes.use_secret_as_env``; ``cluster-setup`` creates a copy in ``kubeflow``),
never as a pipeline parameter; the local runner ignores that setting and the steps read this process's
environment (or the local token file).
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
# The admin token of the model server (cluster-setup/lib/common.sh create_workshop_secrets: in the workshop
# namespace and, for the pipeline's pods, in the namespace where Kubeflow Pipelines runs them).
ADMIN_SECRET = "recsys-admin"
ADMIN_SECRET_KEY = "token"
# The model server's Service (KServe raw deployment: <InferenceService>-predictor, port 80 -> 8080) seen from
# another namespace: what deployed_dir is on a cluster.
WORKSHOP_NAMESPACE = "recsys"
CLUSTER_DEPLOYED_DIR = f"http://recsys-model-predictor.{WORKSHOP_NAMESPACE}.svc.cluster.local"


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
    force_push: bool = False,
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
    pushed = push_model(
        model=trained.outputs["model"],
        metrics=evaluated.outputs["metrics"],
        deployed_dir=deployed_dir,
        better=compared.output,
        force=force_push,  # push even a candidate the gate refused (the cluster smoke test does)
    )
    for task in (compared, pushed):  # on a cluster: the model server's admin token, for its archive routes
        kubernetes.use_secret_as_env(
            task, secret_name=ADMIN_SECRET, secret_key_to_env={ADMIN_SECRET_KEY: "RECSYS_ADMIN_TOKEN"}
        )


def compile_pipeline(path: str | os.PathLike[str], image: str | None = None) -> Path:
    """Write the pipeline as KFP v2 YAML (upload it in the Kubeflow Pipelines UI or with the kfp client).

    Every step runs ``image``: by default :func:`~recsys_workshop.pipelines.components.component_image`
    (``kube.workshop_image()``); for a GKE cluster pass ``kube.workshop_image("gke")``, the reference the
    GKE overlay's workloads run.
    """
    import re

    from kfp import compiler

    from recsys_workshop.pipelines.components import PLACEHOLDER_IMAGE, component_image

    image = image or component_image()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(target))
    # the executors' `image: recsys-workshop` lines, as kustomize's images: does for the workloads
    text, count = re.subn(rf"^(\s+image: ){re.escape(PLACEHOLDER_IMAGE)}$", lambda m: m.group(1) + image,
                          target.read_text(encoding="utf-8"), flags=re.M)
    if count == 0:
        raise RuntimeError(f"{target}: no step names the image {PLACEHOLDER_IMAGE!r} to replace")
    target.write_text(text, encoding="utf-8")
    return target
