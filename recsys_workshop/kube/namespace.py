"""Whose namespace, and may we use it: where the labs' cluster cells put things, or why they run locally.

On the class JupyterHub every attendee's server runs in a namespace of its own (``recsys-<login>``, made by
the hub: ``cluster-setup/jupyterhub/attendees.py``), with a service account that may do what the labs do
there and nothing else. On a laptop with kind the workshop uses the namespace of ``versions.env``. So::

    from recsys_workshop import kube

    namespace = kube.workshop_namespace()                    # "recsys-alice" on the hub, "recsys" on kind
    docs = kube.in_namespace(kube.kustomize_build(kube.overlay_dir("kind")), namespace)
    reason = kube.why_local(kube.apply_needs(docs), namespace=namespace)
    if reason:
        print("Runs locally:", reason)                       # one sentence: no cluster, no answer, or RBAC
    else:
        kube.apply_in_namespace(docs, namespace)             # kubectl apply -f -

:func:`workshop_namespace` never talks to a cluster; :func:`why_local` asks the API server (a version
request, the API groups it serves and a ``SelfSubjectAccessReview`` per need, which every authenticated
identity may create). Needs are written as ``kubectl auth can-i`` writes them: ``"create tfjobs.kubeflow.org"``,
``"get pods/log"``. The Kubernetes client is imported only inside the functions that talk to a cluster.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_workshop.kube.cluster import ClusterInfo, cluster_context
from recsys_workshop.kube.manifests import KubeError, Manifest, api_group, find_kubectl, versions

# Set this to use another namespace than the one found below (e.g. a second copy of the stack on kind).
NAMESPACE_ENV = "RECSYS_WORKSHOP_NAMESPACE"
# Where Kubernetes writes a pod's namespace when it mounts the pod's service-account token.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# versions.env's WORKSHOP_NAMESPACE, for an installed package without cluster-setup/ (a test keeps them equal).
DEFAULT_NAMESPACE = "recsys"
# Kinds that live outside any namespace; in_namespace() leaves them as they are (and drops Namespaces).
CLUSTER_SCOPED_KINDS = frozenset({
    "APIService",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
})
# What `kubectl apply` (client-side) asks of the API server for each object: read it, then create or patch it.
APPLY_VERBS = ("get", "create", "patch")


@dataclass(frozen=True)
class NamespaceChoice:
    """The namespace the labs use, and where that answer came from (for a notebook to print)."""

    name: str
    source: str

    def __str__(self) -> str:
        return f"{self.name} ({self.source})"


def namespace_choice(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    service_account_file: str | os.PathLike[str] = SERVICE_ACCOUNT_NAMESPACE_FILE,
) -> NamespaceChoice:
    """The namespace the labs' cluster cells use, first match wins:

    1. ``$RECSYS_WORKSHOP_NAMESPACE``, if set;
    2. inside a pod, its service account's namespace (on the class JupyterHub: the attendee's own);
    3. the namespace of the kubeconfig context in use (``kubectl config set-context --current --namespace``);
    4. ``WORKSHOP_NAMESPACE`` of ``cluster-setup/versions.env`` (``recsys``).

    Reads files only; never talks to a cluster.
    """
    override = os.environ.get(NAMESPACE_ENV, "").strip()
    if override:
        return NamespaceChoice(override, f"${NAMESPACE_ENV}")
    try:
        from_pod = Path(service_account_file).read_text(encoding="utf-8").strip()
    except OSError:
        from_pod = ""
    if from_pod:
        return NamespaceChoice(from_pod, "this pod's service account")
    from_context = _context_namespace(kubeconfig, context)
    if from_context is not None:
        return NamespaceChoice(from_context[1], f"kubeconfig context {from_context[0]!r}")
    try:
        configured = versions().get("WORKSHOP_NAMESPACE") or DEFAULT_NAMESPACE
    except (OSError, KubeError):
        configured = DEFAULT_NAMESPACE
    return NamespaceChoice(configured, "WORKSHOP_NAMESPACE in cluster-setup/versions.env")


def workshop_namespace(**kwargs: Any) -> str:
    """The namespace's name only; see :func:`namespace_choice` for the order of precedence."""
    return namespace_choice(**kwargs).name


def _context_namespace(kubeconfig: str | None, context: str | None) -> tuple[str, str] | None:
    """(context name, namespace) of the kubeconfig context in use, if it names a namespace."""
    from recsys_workshop.kube.cluster import kubeconfig_context

    chosen = kubeconfig_context(context, kubeconfig)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return (chosen["name"], namespace) if namespace else None


# ------------------------------------------------------------------------------------------------------------
# Manifests for one namespace


def resource_name(kind: str) -> str:
    """The REST resource of a kind, as the API server names it: ``TFJob`` -> ``tfjobs``,
    ``NetworkPolicy`` -> ``networkpolicies``. The rule of Kubernetes' own ``UnsafeGuessKindToResource``
    (lower case; ``-s`` -> ``-ses``, ``-y`` -> ``-ies``, else ``+s``), which holds for every kind the workshop
    uses (a test checks it against the CRDs' own plurals)."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def resource_of(doc: Mapping[str, Any]) -> str:
    """``resource.group`` of a document, the way RBAC and ``kubectl auth can-i`` name it (``tfjobs.kubeflow.org``,
    ``deployments.apps``, ``configmaps`` for the core group)."""
    group, _ = api_group(doc)
    plural = resource_name(str(doc.get("kind", "")))
    return f"{plural}.{group}" if group else plural


def in_namespace(docs: Iterable[Mapping[str, Any]], namespace: str) -> list[Manifest]:
    """Copies of ``docs`` moved into ``namespace``: Namespace documents dropped (the namespace exists, and an
    attendee may not create one), ``metadata.namespace`` set on every namespaced document, and references to
    the old namespace by name (RoleBinding subjects, ``namespaceSelector`` on ``kubernetes.io/metadata.name``)
    pointed at the new one. The input is left as it is."""
    moved: list[Manifest] = []
    for doc in docs:
        if doc.get("kind") == "Namespace":
            continue
        copied = copy.deepcopy(dict(doc))
        meta = copied.setdefault("metadata", {})
        if copied.get("kind") not in CLUSTER_SCOPED_KINDS:
            old = meta.get("namespace")
            meta["namespace"] = namespace
            if old and old != namespace:
                _rename_references(copied, old, namespace)
        moved.append(copied)
    return moved


def _rename_references(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        selector = node.get("namespaceSelector")
        if isinstance(selector, dict):
            labels = selector.get("matchLabels") or {}
            if labels.get("kubernetes.io/metadata.name") == old:
                labels["kubernetes.io/metadata.name"] = new
        subjects = node.get("subjects")
        if isinstance(subjects, list):
            for subject in subjects:
                if isinstance(subject, dict) and subject.get("namespace") == old:
                    subject["namespace"] = new
        for value in node.values():
            _rename_references(value, old, new)
    elif isinstance(node, list):
        for item in node:
            _rename_references(item, old, new)


def apply_needs(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    """What ``kubectl apply`` of ``docs`` needs, as ``"verb resource.group"`` (get, create and patch of each
    kind, in the documents' order, without repeats). Namespaces are left out, as :func:`in_namespace` drops them."""
    resources = dict.fromkeys(resource_of(d) for d in docs if d.get("kind") != "Namespace")
    return [f"{verb} {resource}" for resource in resources for verb in APPLY_VERBS]


def apply_in_namespace(
    docs: Iterable[Mapping[str, Any]],
    namespace: str,
    *,
    context: str | None = None,
    kubectl: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """``kubectl apply -f -`` of ``docs`` moved into ``namespace`` (:func:`in_namespace`). Returns the finished
    process (check ``returncode``; its stdout lists what changed). ``context`` is a kubeconfig context; leave it
    None to use the current one, or the pod's service account when there is no kubeconfig."""
    import yaml

    moved = in_namespace(docs, namespace)
    command = [kubectl or find_kubectl()]
    if context and context != "in-cluster":
        command += ["--context", context]
    command += ["apply", "-f", "-"]
    return subprocess.run(command, input=yaml.safe_dump_all(moved, sort_keys=False), capture_output=True,
                          text=True, check=False, timeout=timeout)


# ------------------------------------------------------------------------------------------------------------
# May we? One sentence when not


@dataclass(frozen=True)
class Need:
    """One ``kubectl auth can-i`` question: a verb on a resource (of a group, maybe a subresource)."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""

    @classmethod
    def parse(cls, text: str) -> Need:
        """``"create tfjobs.kubeflow.org"``, ``"get pods/log"``, ``"list deployments.apps"``."""
        verb, _, target = text.strip().partition(" ")
        target = target.strip()
        if not verb or not target or " " in target:
            raise ValueError(f"a need is 'verb resource[.group][/subresource]', got {text!r}")
        resource_and_group, _, subresource = target.partition("/")
        resource, _, group = resource_and_group.partition(".")
        return cls(verb, resource, group, subresource)

    def __str__(self) -> str:
        target = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {target}" + (f"/{self.subresource}" if self.subresource else "")


def permissions(
    needs: Iterable[str | Need], *, namespace: str, api: Any, timeout: float = 5.0
) -> dict[str, bool]:
    """For each need, whether the identity ``api`` (a ``kubernetes.client.ApiClient``) holds it in ``namespace``,
    asked with one ``SelfSubjectAccessReview`` each. Keys are the needs as strings, in order."""
    from kubernetes import client

    authorization = client.AuthorizationV1Api(api)
    answers: dict[str, bool] = {}
    for need in (n if isinstance(n, Need) else Need.parse(n) for n in needs):
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb=need.verb, group=need.group, resource=need.resource,
                    subresource=need.subresource or None,
                )
            )
        )
        result = authorization.create_self_subject_access_review(review, _request_timeout=timeout)
        answers[str(need)] = bool(result.status and result.status.allowed)
    return answers


def connect(info: ClusterInfo) -> Any:
    """A ``kubernetes.client.ApiClient`` for what :func:`cluster_context` found (a pod's service account for
    ``in-cluster``, else the kubeconfig context). Close it when done."""
    from kubernetes import client, config

    if info.context == "in-cluster":
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(context=info.context)


def why_local(
    needs: Sequence[str | Need] = (),
    *,
    namespace: str | None = None,
    context: str | None = None,
    timeout: float = 5.0,
) -> str | None:
    """Why a cluster cell cannot do its work on a cluster, in one sentence; None when it can.

    In order: no cluster configured (no kubeconfig context, not in a pod); the API server did not answer
    within ``timeout`` seconds; it does not serve the API group of a need (the workshop profile is not
    installed); RBAC refuses one of ``needs`` in ``namespace`` (default: :func:`workshop_namespace`).
    """
    info = cluster_context(context=context, timeout=timeout)
    if info is None:
        return "there is no Kubernetes cluster to use here: no kubeconfig context, and not running in a pod."
    if not info.reachable:
        return (f"the API server of context {info.context!r} ({info.server}) did not answer within {timeout:g} s: "
                f"{info.error}.")
    parsed = [n if isinstance(n, Need) else Need.parse(n) for n in needs]
    if not parsed:
        return None
    namespace = namespace or workshop_namespace(context=None if info.context == "in-cluster" else info.context)
    who = "this pod's service account" if info.context == "in-cluster" else f"context {info.context!r}"
    try:
        api = connect(info)
    except Exception as error:  # a context that resolved a moment ago and no longer does: say so, run locally
        return f"could not connect with context {info.context!r}: {type(error).__name__}: {error}."
    try:
        from kubernetes import client

        served = {g.name for g in client.ApisApi(api).get_api_versions(_request_timeout=timeout).groups}
        missing = sorted({n.group for n in parsed if n.group and n.group not in served})
        if missing:
            return (f"the cluster at {info.server} does not serve {', '.join(missing)}: the workshop profile is not "
                    "installed there (cluster-setup/kind/up or gke/up installs it).")
        answers = permissions(parsed, namespace=namespace, api=api, timeout=timeout)
    except Exception as error:  # an answer we cannot use is a reason to stay local, not to crash the lab
        first_line = str(error).splitlines()[0][:200] if str(error) else ""
        return f"could not ask {info.server} what {who} may do: {type(error).__name__}: {first_line}."
    finally:
        api.close()
    refused = [need for need, allowed in answers.items() if not allowed]
    if refused:
        return f"{who} may not {', '.join(refused)} in namespace {namespace!r} (RBAC)."
    return None
