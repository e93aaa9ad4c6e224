"""Schema checks: built-in resources against a pinned Kubernetes version, custom resources against the CRDs.

- :func:`validate_core`: Deployments, Services, ... with kubernetes-validate, offline and strict;
- :func:`validate_custom`: TFJob, InferenceService, ServingRuntime against the CRDs' openAPIV3Schema (the
  folder :func:`crds_dir` names), plus the Training Operator's admission rules; Katib Experiments, whose
  CRDs carry no schema, by the Katib SDK's models and explicit rules, their trial template validated like
  any other resource;
- :func:`validate_all`: these two and :func:`~recsys_workshop.kube.policy.policy_violations` at once.

Every check returns a list of :class:`~recsys_workshop.kube.manifests.Finding` (empty means clean).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from recsys_workshop.kube.crds import CRDS_DIR_ENV, crds_dir
from recsys_workshop.kube.manifests import (
    Finding,
    KubeError,
    Manifest,
    _containers,
    api_group,
    is_core,
    resource_id,
    versions,
)
from recsys_workshop.kube.policy import policy_violations


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
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for doc in yaml.load_all(file.read_text(encoding="utf-8"), Loader=loader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
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


# ------------------------------------------------------------------------------------------------------------
# TFJob: the Training Operator's admission rules

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


# ------------------------------------------------------------------------------------------------------------
# Katib Experiments: the SDK's models, explicit rules, and the trial template validated like any resource

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
