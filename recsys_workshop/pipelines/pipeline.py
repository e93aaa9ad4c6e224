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

The model store on a cluster. The compare step reads the deployed version from ``deployed_dir`` and the push
step writes the next one there; on a cluster that folder must be the one the model server serves. Both steps
mount the model server's claim (:data:`MODEL_CLAIM`, ReadWriteOnce) at :data:`MODEL_MOUNT` (``kfp-kubernetes``
``mount_pvc``), so ``deployed_dir=/models/recsys`` (:data:`CLUSTER_DEPLOYED_DIR`, the model server's
``--model-dir``) is the same folder. A ReadWriteOnce volume is mounted by pods of one node only; KFP 2.16
cannot give a task pod affinity, so both steps take a node selector, ``model_node_selector``, which
:func:`recsys_workshop.pipelines.cluster.cluster_arguments` sets to the model server's node when a run is
submitted (see ``cluster-setup/manifests/base/model-volume.yaml``). Locally these settings are ignored and
``deployed_dir`` is a folder of this machine.
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
# The model store (cluster-setup/manifests/base/model-volume.yaml), mounted where the model server and the
# training job mount it; the model server's --model-dir is CLUSTER_DEPLOYED_DIR.
MODEL_CLAIM = "recsys-models"
MODEL_MOUNT = "/models"
CLUSTER_DEPLOYED_DIR = f"{MODEL_MOUNT}/recsys"


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
    model_node_selector: dict = {},  # noqa: B006 - KFP reads the default as a literal; never mutated
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
    )
    for task in (compared, pushed):  # on a cluster: the model server's volume, on the model server's node
        kubernetes.mount_pvc(task, pvc_name=MODEL_CLAIM, mount_path=MODEL_MOUNT)
        kubernetes.add_node_selector_json(task, model_node_selector)


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
