"""The workshop's Kubernetes side, as plain functions: build, check and compare the manifests.

Lab 06, the tests and ``cluster-setup/`` share these helpers. The manifests themselves are kustomize
bases under ``cluster-setup/manifests`` (``base`` + ``overlays/kind`` + ``overlays/gke``); this module
only reads them::

    from recsys_workshop import kube

    kube.cluster_context()                      # is there a cluster to talk to? (None if no kubeconfig)
    kube.workshop_namespace()                   # the attendee's own on the class JupyterHub, else "recsys"
    kube.why_local(needs)                       # why a cluster cell runs locally, in one sentence (or None)
    docs = kube.kustomize_build(kube.overlay_dir("kind"))
    flavour = kube.cluster_flavour(kube.cluster_context())  # "kind" or "gke": which overlay fits the cluster
    kube.workshop_image(flavour)                # the one image reference that overlay runs (or $RECSYS_WORKSHOP_IMAGE)
    kube.kustomize_build(kube.overlay_dir(flavour), image=kube.workshop_image(flavour))
    kube.validate_core(docs)                    # Kubernetes resources, offline schema of a pinned version
    kube.validate_custom(docs)                  # TFJob / InferenceService (CRD schemas), Katib Experiment
    kube.policy_violations(docs)                # limits, probes, non-root, pinned images
    print(kube.diff_overlays("kind", "gke"))    # what changes between the laptop and the cloud
    app = kube.render_application("https://github.com/<you>/<fork>.git")   # Argo CD, lab 13
    kube.validate_application(app)              # its explicit checks (no Argo CD CRD offline)
    kube.set_image_tag(kustomization, "0.2.0")  # the commit that releases a version

Every check returns a list of :class:`Finding` (empty means clean) instead of raising, so a notebook can
show them. Nothing heavy is imported with the module: PyYAML, jsonschema, kubernetes-validate, the
Kubernetes client and the Katib SDK are imported inside the functions that need them.

``python -m recsys_workshop.kube --help`` gives the same as a command line (``build``, ``validate``,
``diff``, ``context``) plus ``write-config``, which Katib trials use to merge their hyperparameters into
the shared training config.

The modules, by responsibility (every name above is re-exported here; call them as ``kube.X``):

- :mod:`.manifests`: the pinned versions, the overlays, ``kubectl kustomize``, naming resources, the one
  workshop image of each overlay (:func:`overlay_image`, :func:`workshop_image`); the errors and
  :class:`Finding` every check returns;
- :mod:`.validation`: schema checks of built-in resources (:func:`validate_core`) and custom resources
  (:func:`validate_custom`: CRD schemas, TFJob admission rules, Katib Experiments), and
  :func:`validate_all`;
- :mod:`.policy`: what the workshop asks of every container (:func:`policy_violations`);
- :mod:`.diff`: two builds compared (:func:`diff_overlays`, :func:`overlay_differences`);
- :mod:`.gitops`: the Argo CD Application (load, render, validate) and :func:`set_image_tag`;
- :mod:`.cluster`: :func:`cluster_context`, :func:`cluster_flavour` (kind or GKE) and the profile a live
  cluster should run;
- :mod:`.namespace`: which namespace the labs use (:func:`workshop_namespace`), moving documents into it
  (:func:`in_namespace`, :func:`apply_in_namespace`), and :func:`why_local`;
- :mod:`.cli`: ``python -m recsys_workshop.kube`` (see there).
"""

from __future__ import annotations

import sys as sys  # re-exported: tests patch kube.sys.executable, as they did when this was one module
from typing import TYPE_CHECKING, Any

from recsys_workshop.kube.cli import main
from recsys_workshop.kube.cluster import (
    CLUSTER_ENV,
    PROFILE_CRDS,
    PROFILE_DEPLOYMENTS,
    ClusterInfo,
    cluster_context,
    cluster_flavour,
    node_provider_ids,
)
from recsys_workshop.kube.diff import Difference, diff_overlays, overlay_differences
from recsys_workshop.kube.gitops import _REPO_URL as _REPO_URL  # private, for the tests
from recsys_workshop.kube.gitops import (
    APPLICATION_FILE,
    ARGOCD_DIR,
    REPO_URL_PLACEHOLDER,
    WORKSHOP_IMAGE_NAME,
    load_application,
    render_application,
    repo_url_problem,
    set_image_tag,
    validate_application,
)
from recsys_workshop.kube.manifests import (
    IMAGE_PLACEHOLDER,
    OVERLAYS,
    PROJECT_PLACEHOLDER,
    WORKSHOP_IMAGE_ENV,
    Finding,
    KubectlNotFoundError,
    KubeError,
    KustomizeError,
    Manifest,
    api_group,
    find_kubectl,
    is_core,
    kustomize_build,
    overlay_dir,
    overlay_image,
    resource_id,
    split_image,
    versions,
    workshop_image,
)
from recsys_workshop.kube.manifests import _containers as _containers  # private, for the tests
from recsys_workshop.kube.namespace import (
    NAMESPACE_ENV,
    NamespaceChoice,
    Need,
    apply_in_namespace,
    apply_needs,
    in_namespace,
    namespace_choice,
    permissions,
    resource_of,
    why_local,
    workshop_namespace,
)
from recsys_workshop.kube.policy import LONG_RUNNING_KINDS, SERVING_KINDS, parse_quantity, policy_violations
from recsys_workshop.kube.policy import _image_problem as _image_problem  # private, for the tests
from recsys_workshop.kube.validation import (
    CRDS_DIR_ENV,
    KATIB_ALGORITHMS,
    KATIB_COLLECTORS,
    KATIB_PARAMETER_TYPES,
    TFJOB_REPLICA_TYPES,
    crds_dir,
    validate_all,
    validate_core,
    validate_custom,
)
from recsys_workshop.kube.validation import _katib_unknown_fields as _katib_unknown_fields  # private, for the tests
from recsys_workshop.paths import CLUSTER_SETUP_DIR, MANIFESTS_DIR, REPO_ROOT, VERSIONS_FILE

if TYPE_CHECKING:
    from recsys_workshop.train.job import merge_config

__all__ = [
    "APPLICATION_FILE",
    "ARGOCD_DIR",
    "CLUSTER_ENV",
    "CLUSTER_SETUP_DIR",
    "CRDS_DIR_ENV",
    "IMAGE_PLACEHOLDER",
    "KATIB_ALGORITHMS",
    "KATIB_COLLECTORS",
    "KATIB_PARAMETER_TYPES",
    "LONG_RUNNING_KINDS",
    "MANIFESTS_DIR",
    "NAMESPACE_ENV",
    "OVERLAYS",
    "PROFILE_CRDS",
    "PROJECT_PLACEHOLDER",
    "PROFILE_DEPLOYMENTS",
    "REPO_ROOT",
    "REPO_URL_PLACEHOLDER",
    "SERVING_KINDS",
    "TFJOB_REPLICA_TYPES",
    "VERSIONS_FILE",
    "WORKSHOP_IMAGE_ENV",
    "WORKSHOP_IMAGE_NAME",
    "ClusterInfo",
    "Difference",
    "Finding",
    "KubeError",
    "KubectlNotFoundError",
    "KustomizeError",
    "Manifest",
    "NamespaceChoice",
    "Need",
    "api_group",
    "apply_in_namespace",
    "apply_needs",
    "cluster_context",
    "cluster_flavour",
    "crds_dir",
    "diff_overlays",
    "find_kubectl",
    "in_namespace",
    "is_core",
    "kustomize_build",
    "load_application",
    "main",
    "node_provider_ids",
    "merge_config",
    "namespace_choice",
    "overlay_differences",
    "overlay_dir",
    "overlay_image",
    "parse_quantity",
    "permissions",
    "policy_violations",
    "render_application",
    "repo_url_problem",
    "resource_id",
    "resource_of",
    "set_image_tag",
    "split_image",
    "validate_all",
    "validate_application",
    "validate_core",
    "validate_custom",
    "versions",
    "workshop_image",
    "why_local",
    "workshop_namespace",
]


def __getattr__(name: str) -> Any:
    # merge_config is the training job's (Katib trials run it through `write-config`); importing
    # recsys_workshop.train pulls in pandas, so it is loaded on first use, not with this package (PEP 562).
    if name == "merge_config":
        from recsys_workshop.train.job import merge_config

        return merge_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
