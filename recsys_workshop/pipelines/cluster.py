"""Submitting the pipeline to a cluster: the run arguments that make its compare and push steps work on the
model store the model server reads.

:func:`cluster_arguments` checks what the compiled pipeline assumes (see :mod:`.pipeline`): the run's pods
execute in a namespace that holds the model claim (a claim can only be mounted in its own namespace), and a
pod that mounts it is running there (the model server), whose node the steps must share (the claim is
ReadWriteOnce). It returns ``deployed_dir`` (the model server's ``--model-dir``), the node selector for that
node, and the job config as JSON; it raises :class:`ClusterNotReady` with the reason and the fix otherwise.

Kubeflow Pipelines *standalone* (what ``cluster-setup`` installs) runs every pipeline's pods in its own
namespace, ``kubeflow``; with multi-user Kubeflow Pipelines they run in the user's profile namespace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from recsys_workshop.pipelines.pipeline import CLUSTER_DEPLOYED_DIR, MODEL_CLAIM

__all__ = ["CLAIM_LABEL", "KFP_STANDALONE_NAMESPACE", "ClusterNotReady", "cluster_arguments", "model_store_node"]

# Every pod that mounts the model claim carries this label (cluster-setup/manifests/base/model-volume.yaml).
CLAIM_LABEL = "recsys-workshop/model-claim"
KFP_STANDALONE_NAMESPACE = "kubeflow"  # where cluster-setup installs Kubeflow Pipelines (and where it runs pods)
HOSTNAME_LABEL = "kubernetes.io/hostname"


class ClusterNotReady(RuntimeError):
    """The cluster cannot run the pipeline against the model store; the message says why and what to do."""


def _core_api(core_api: Any = None) -> Any:
    if core_api is not None:
        return core_api
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    return client.CoreV1Api()


def model_store_node(namespace: str, core_api: Any = None) -> str:
    """The node of the pods in ``namespace`` that mount the model claim (the model server's): the node the
    pipeline's compare and push steps must run on. Raises :class:`ClusterNotReady` when the claim or such
    a pod is missing, or when they are spread over nodes (which the manifests' affinity prevents)."""
    api = _core_api(core_api)
    claims = {c.metadata.name for c in api.list_namespaced_persistent_volume_claim(namespace).items}
    if MODEL_CLAIM not in claims:
        raise ClusterNotReady(
            f"namespace {namespace!r}, where the run's pods execute, has no claim {MODEL_CLAIM!r}: the compare and "
            "push steps could not mount the model store the model server reads. A claim can only be mounted in its "
            f"own namespace, and Kubeflow Pipelines standalone runs every pipeline in {KFP_STANDALONE_NAMESPACE!r}: "
            "run the pipeline where the workshop's manifests are applied (a multi-user Kubeflow Pipelines profile "
            "namespace), see cluster-setup/README.md, 'Storage'"
        )
    pods = api.list_namespaced_pod(namespace, label_selector=f"{CLAIM_LABEL}={MODEL_CLAIM}").items
    nodes = sorted({p.spec.node_name for p in pods if p.spec.node_name and p.status.phase in ("Pending", "Running")})
    if not nodes:
        raise ClusterNotReady(
            f"no running pod in {namespace!r} mounts {MODEL_CLAIM!r} yet: deploy the model server first "
            "(kubectl apply -k cluster-setup/manifests/overlays/<kind|gke>), so the steps can join its node"
        )
    if len(nodes) > 1:
        raise ClusterNotReady(f"the pods that mount {MODEL_CLAIM!r} run on several nodes {nodes}: it is ReadWriteOnce")
    return nodes[0]


def cluster_arguments(
    job_config: Mapping[str, Any] | str, namespace: str | None = None, core_api: Any = None, **extra: Any
) -> dict[str, Any]:
    """The arguments of a cluster run: ``deployed_dir`` on the mounted model store, the node selector of the
    model server's node (:func:`model_store_node`), ``job_config`` as JSON, and any ``extra`` pipeline
    parameter. ``namespace``: where the run's pods execute (default: Kubeflow Pipelines standalone's,
    ``kubeflow``; with multi-user Pipelines, your profile namespace, ``kfp.Client().get_user_namespace()``).
    ``core_api``: a ``kubernetes.client.CoreV1Api`` (default: one for the current kubeconfig context). On GKE
    and kind a node's ``kubernetes.io/hostname`` label is its name."""
    node = model_store_node(namespace or KFP_STANDALONE_NAMESPACE, core_api)
    config = job_config if isinstance(job_config, str) else json.dumps(job_config)
    return {
        "deployed_dir": CLUSTER_DEPLOYED_DIR,
        "model_node_selector": {HOSTNAME_LABEL: node},
        "job_config": config,
        **extra,
    }
