"""Submitting the pipeline to a cluster: the run arguments that make its compare and push steps talk to the
model server the workshop deployed.

On a cluster ``deployed_dir`` is the model server's URL (:data:`~.pipeline.CLUSTER_DEPLOYED_DIR`): the compare
step downloads the deployed version and the push step uploads the candidate over the server's admin API
(:mod:`.model_store`), with the admin token that the compiled pipeline gives both tasks from the Secret
``recsys-admin``. A Secret, like a claim, can only be used by pods of its own namespace, and Kubeflow Pipelines
*standalone* (what ``cluster-setup`` installs) runs every pipeline's pods in its own namespace, ``kubeflow``;
with multi-user Kubeflow Pipelines they run in the user's profile namespace. :func:`cluster_arguments` checks
that the Secret is there and raises :class:`ClusterNotReady` with the fix otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from recsys_workshop.pipelines.pipeline import ADMIN_SECRET, ADMIN_SECRET_KEY, CLUSTER_DEPLOYED_DIR

__all__ = ["KFP_STANDALONE_NAMESPACE", "ClusterNotReady", "check_admin_secret", "cluster_arguments"]

KFP_STANDALONE_NAMESPACE = "kubeflow"  # where cluster-setup installs Kubeflow Pipelines (and where it runs pods)


class ClusterNotReady(RuntimeError):
    """The cluster cannot run the pipeline against the model server; the message says why and what to do."""


def _core_api(core_api: Any = None) -> Any:
    if core_api is not None:
        return core_api
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()
    return client.CoreV1Api()


def check_admin_secret(namespace: str, core_api: Any = None) -> None:
    """Raise :class:`ClusterNotReady` unless ``namespace`` (where the run's pods execute) holds the Secret
    ``recsys-admin`` with the key ``token``: the compare and push tasks read the model server's admin token
    from it. Only the Secret's metadata and key names are looked at, never its value."""
    api = _core_api(core_api)
    fix = (
        f"Re-run cluster-setup/kind/up (or gke/up): it creates the Secret in {KFP_STANDALONE_NAMESPACE!r} too, with "
        "the token of the workshop namespace (see cluster-setup/README.md, 'Storage')"
    )
    try:
        secret = api.read_namespaced_secret(ADMIN_SECRET, namespace)
    except Exception as error:  # kubernetes.client.ApiException: 404, or no right to read it
        status = getattr(error, "status", None)
        if status not in (403, 404):
            raise
        raise ClusterNotReady(
            f"namespace {namespace!r}, where the run's pods execute, has no Secret {ADMIN_SECRET!r}"
            f"{' readable by you' if status == 403 else ''}: the compare and push steps need the model server's "
            f"admin token to download and upload versions. {fix}"
        ) from None
    if ADMIN_SECRET_KEY not in (secret.data or {}):
        raise ClusterNotReady(f"the Secret {ADMIN_SECRET!r} in {namespace!r} has no key {ADMIN_SECRET_KEY!r}. {fix}")


def cluster_arguments(
    job_config: Mapping[str, Any] | str, namespace: str | None = None, core_api: Any = None, **extra: Any
) -> dict[str, Any]:
    """The arguments of a cluster run: ``deployed_dir``, the model server's URL, ``job_config`` as JSON, and
    any ``extra`` pipeline parameter, after checking (:func:`check_admin_secret`) that the run's pods can read
    the admin token. ``namespace``: where the run's pods execute (default: Kubeflow Pipelines standalone's,
    ``kubeflow``; with multi-user Pipelines, your profile namespace, ``kfp.Client().get_user_namespace()``).
    ``core_api``: a ``kubernetes.client.CoreV1Api`` (default: one for the current kubeconfig context)."""
    check_admin_secret(namespace or KFP_STANDALONE_NAMESPACE, core_api)
    config = job_config if isinstance(job_config, str) else json.dumps(job_config)
    return {"deployed_dir": CLUSTER_DEPLOYED_DIR, "job_config": config, **extra}
