"""The cluster: which kubeconfig context is in use, whether its API server answers, and what it should run.

:func:`cluster_context` never guesses (``reachable`` only after an answer) and returns None when there is no
cluster to talk to; :func:`cluster_flavour` tells a kind cluster from a GKE one, so a lab applies the
matching overlay; :data:`PROFILE_DEPLOYMENTS` and :data:`PROFILE_CRDS` are what lab 06 checks a live
cluster against. The Kubernetes client is imported only when a cluster is asked something.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recsys_workshop.kube.manifests import OVERLAYS, KubeError

# The workshop profile as `cluster-setup/lib/common.sh` (install_profile) installs it and waits for it:
# the controllers that must be Available in each namespace, and the CRDs that must be established.
# A test keeps these in step with the script; lab 06 checks a live cluster against them.
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
    chosen = kubeconfig_context(context, kubeconfig)
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


def kubeconfig_context(context: str | None = None, kubeconfig: str | None = None) -> dict | None:
    """The kubeconfig's entry for ``context`` (default: the current context), or None when there is no
    kubeconfig, no such context or no Kubernetes client."""
    try:
        from kubernetes import config
    except ImportError:
        return None
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, ValueError):
        return None
    return next((c for c in contexts if c.get("name") == context), None) if context else active


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


# ------------------------------------------------------------------------------------------------------------
# kind or GKE: which overlay fits the cluster

# Set it ("kind" or "gke") where nothing else tells, e.g. a hub pod that may not list the nodes.
CLUSTER_ENV = "RECSYS_WORKSHOP_CLUSTER"
# Context names as the tools write them: `kind create cluster --name N` -> kind-N; `gcloud container
# clusters get-credentials` -> gke_<project>_<zone or region>_<cluster>.
_CONTEXT_PREFIXES = (("kind-", "kind"), ("gke_", "gke"))
# GKE's Kubernetes builds carry "-gke." in their version (v1.35.1-gke.1234000).
_GKE_VERSION = re.compile(r"^v?\d+\.\d+\.\d+-gke\.")
# Node spec.providerID: kind://docker/<cluster>/<node> on kind, gce://<project>/<zone>/<instance> on GKE.
_PROVIDER_PREFIXES = (("kind://", "kind"), ("gce://", "gke"))


def cluster_flavour(info: ClusterInfo, provider_ids: Sequence[str] | None = None) -> str:
    """Which overlay fits the cluster behind ``info``: ``"kind"`` or ``"gke"``.

    The evidence, first that tells wins: ``$RECSYS_WORKSHOP_CLUSTER``; the context's name (``kind-<name>``
    as kind writes it, ``gke_<project>_<zone>_<name>`` as gcloud writes it); a GKE server version
    (``v1.35.1-gke.1234000``); the nodes' ``spec.providerID`` (``kind://...``, ``gce://...``), listed from the
    cluster only when the rest does not tell and ``provider_ids`` is not given (it needs the right to list
    nodes, which an attendee's service account lacks). Raises :class:`KubeError` when nothing tells.
    """
    chosen = os.environ.get(CLUSTER_ENV, "").strip().lower()
    if chosen:
        if chosen not in OVERLAYS:
            raise KubeError(f"${CLUSTER_ENV}={chosen!r}: expected one of {', '.join(OVERLAYS)}")
        return chosen
    for prefix, flavour in _CONTEXT_PREFIXES:
        if info.context.startswith(prefix):
            return flavour
    if info.kubernetes_version and _GKE_VERSION.match(info.kubernetes_version):
        return "gke"
    if provider_ids is None:
        provider_ids = node_provider_ids(info.context)
    found = {flavour for pid in provider_ids for prefix, flavour in _PROVIDER_PREFIXES if pid.startswith(prefix)}
    if len(found) == 1:
        return found.pop()
    raise KubeError(
        f"cannot tell whether {info.context} ({info.server or 'no server'}, Kubernetes "
        f"{info.kubernetes_version or 'unknown'}) is a kind or a GKE cluster: its context name is neither "
        f"kind-... nor gke_..., and its nodes' providerIDs ({', '.join(provider_ids) or 'not readable'}) do not "
        f"say. Set ${CLUSTER_ENV}=kind or ${CLUSTER_ENV}=gke."
    )


def node_provider_ids(context: str, kubeconfig: str | None = None, timeout: float = 3.0) -> tuple[str, ...]:
    """``spec.providerID`` of every node of the cluster behind ``context`` ("in-cluster" inside a pod).

    Empty when they cannot be read: no Kubernetes client, no answer, or no right to list nodes.
    """
    try:
        from kubernetes import client, config
    except ImportError:
        return ()
    try:
        if context == "in-cluster":
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError, TypeError, ValueError):
        return ()
    try:
        nodes = client.CoreV1Api(api).list_node(_request_timeout=timeout)
        return tuple(node.spec.provider_id or "" for node in nodes.items)
    except Exception:  # forbidden, unreachable, timed out: the nodes do not tell
        return ()
    finally:
        api.close()
