"""The cluster: which kubeconfig context is in use, whether its API server answers, and what it should run.

:func:`cluster_context` never guesses (``reachable`` only after an answer) and returns None when there is no
cluster to talk to; :data:`PROFILE_DEPLOYMENTS` and :data:`PROFILE_CRDS` are what lab 05 checks a live
cluster against. The Kubernetes client is imported only when a context is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# The workshop profile as `cluster-setup/lib/common.sh` (install_profile) installs it and waits for it:
# the controllers that must be Available in each namespace, and the CRDs that must be established.
# A test keeps these in step with the script; lab 05 checks a live cluster against them.
PROFILE_DEPLOYMENTS: dict[str, tuple[str, ...]] = {
    "cert-manager": ("cert-manager", "cert-manager-cainjector", "cert-manager-webhook"),
    "kubeflow": (
        "training-operator",
        "katib-controller",
        "katib-db-manager",
        "katib-mysql",
        "katib-ui",
        "ml-pipeline",
        "ml-pipeline-ui",
        "workflow-controller",
    ),
    "kserve": ("kserve-controller-manager",),
}
PROFILE_CRDS: tuple[str, ...] = (
    "certificates.cert-manager.io",
    "issuers.cert-manager.io",
    "tfjobs.kubeflow.org",
    "experiments.kubeflow.org",
    "trials.kubeflow.org",
    "suggestions.kubeflow.org",
    "inferenceservices.serving.kserve.io",
    "applications.app.k8s.io",
    "workflows.argoproj.io",
)


@dataclass(frozen=True)
class ClusterInfo:
    """What is known about a kubeconfig context: whether it answered, and which Kubernetes it runs."""

    context: str
    server: str | None
    reachable: bool
    kubernetes_version: str | None = None
    error: str | None = None


def cluster_context(
    context: str | None = None, kubeconfig: str | None = None, timeout: float = 3.0
) -> ClusterInfo | None:
    """The kubeconfig context in use (or ``context``) and whether its API server answers right now.

    Returns None when there is no kubeconfig context at all (and not running inside a pod). Never guesses:
    ``reachable`` is True only if the server answered a version request within ``timeout`` seconds.
    """
    try:
        from kubernetes import client, config
    except ImportError:
        return None
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, ValueError):
        contexts, active = [], None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if chosen is None:
        if context is None and kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _probe_in_cluster(client, config, timeout)
        return None
    name = chosen["name"]
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=name)
    except (config.ConfigException, OSError, TypeError, ValueError) as error:
        return ClusterInfo(name, None, False, error=f"{type(error).__name__}: {error}")
    return _probe(client, api, name, timeout)


def _probe(client: Any, api: Any, name: str, timeout: float) -> ClusterInfo:
    server = api.configuration.host
    try:
        version = client.VersionApi(api).get_code(_request_timeout=timeout)
        return ClusterInfo(name, server, True, kubernetes_version=version.git_version)
    except Exception as error:  # any failure means: not reachable now; say why
        return ClusterInfo(name, server, False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    finally:
        api.close()


def _probe_in_cluster(client: Any, config: Any, timeout: float) -> ClusterInfo | None:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        return None
    return _probe(client, client.ApiClient(), "in-cluster", timeout)
