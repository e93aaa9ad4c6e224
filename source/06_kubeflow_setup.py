# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 06: Kubernetes and Kubeflow, the workshop's cluster
#
# **Time:** about 45 minutes (plus about 10 minutes for `cluster-setup/kind/up` if you start a cluster).
#
# > **Before you start**
# > - **You need:** nothing from labs 00-05; the terms container, pod and YAML help.
# > - **A cluster:** optional. Without one the lab works on the manifests offline and says so; with one
# >   (`cluster-setup/kind/up`, about 10 minutes, or the class hub) it also lists the nodes, checks the Kubeflow
# >   controllers and asks the API server what you may do.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** nothing of its own: what it starts runs on the cluster's nodes (the class cluster costs
# >   about $0.28 per hour while it exists, see `cluster-setup/README.md`).
#
# **You will**
# - learn the Kubernetes objects the rest of the workshop runs on: container images, pods, Deployments,
#   Services, probes, resource requests and limits, and the `securityContext`;
# - see what Kubeflow adds on top: custom resources (TFJob, Katib Experiment, InferenceService) and the
#   operators that act on them, and which of them the workshop installs (its *profile*);
# - talk to a cluster with the `kubernetes` Python client: list the nodes, check that the Kubeflow
#   controllers are up and their CRDs installed; or, with no cluster, say so and carry on offline;
# - find the namespace your work goes to, and ask the API server what you may do there (RBAC);
# - render the workshop's manifests with kustomize, validate them the way the API server would, and
#   compare the laptop (kind) and cloud (GKE) variants;
# - write a Deployment for the model server that passes the same checks, and repair a broken one.
#
# Labs 00-05 ran everything as processes on this machine. From lab 07 on, the same code can run as
# Kubernetes resources. This lab is the bridge: it needs no cluster, and uses one when there is one.
# It never pretends: without a cluster it says so plainly and works on the manifests, which are exactly
# what `kubectl apply` would send.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"; this lab does the same work at both
OVERLAYS = ["kind", "gke"]  # the cluster flavours under cluster-setup/manifests/overlays
REQUEST_TIMEOUT_SECONDS = 5  # how long to wait for each answer from a cluster

# %%
import copy
import json

import pandas as pd
import yaml
from IPython.display import display

from recsys_workshop import kube, selfcheck

pd.set_option("display.max_colwidth", 80)
VERSIONS = kube.versions()  # cluster-setup/versions.env: every version, image and price, in one file
print(f"Kubernetes {VERSIONS['KUBERNETES_VERSION']}, Kubeflow manifests {VERSIONS['KUBEFLOW_MANIFESTS_RELEASE']}, "
      f"workshop image tag {VERSIONS['WORKSHOP_IMAGE_TAG']}")

# %% [markdown]
# ## 1. Kubernetes in eight ideas
#
# **Container image.** A read-only file system plus the command to start, built once and run anywhere
# the same way. The workshop has one image (`../Dockerfile`): Python 3.11, the pinned stack of
# `requirements/lock.txt` and the `recsys_workshop` package, running as the unprivileged user 1000.
# Every pod runs it with its own command (train, serve, API, Locust). An image is named
# `registry/repository:tag`; a tag can be moved, so we pin an exact version (`0.1.0`, never `latest`)
# and, when publishing, a digest (`@sha256:...`), which cannot.
#
# **Pod.** The unit Kubernetes schedules: one or more containers that share a network address
# (they talk over `localhost`) and volumes, placed together on one node. Pods are disposable: when one
# dies or its node goes away it is replaced by a new one, with a new IP. Never create pods by hand.
#
# **Deployment.** A *desired state*: "keep N replicas of this pod template running". Its controller
# creates a ReplicaSet which creates the pods; change the template (a new image tag) and it rolls the
# pods over one by one. `kubectl apply` sends the desired state; controllers make it so, forever
# (the *reconcile loop*).
#
# **Service.** A stable name and virtual IP in front of whichever pods carry matching labels, so a
# client finds the model server at `http://recsys-model-predictor` however often its pods are
# replaced. `ClusterIP` is reachable inside the cluster only; `LoadBalancer` asks the cloud for a
# public address (and a bill); in the workshop you reach a service with `kubectl port-forward`.
#
# ```
# Service recsys-api ──label selector──> Pods app.kubernetes.io/name=recsys-api
#                                          ^ created by a ReplicaSet ^ created by Deployment recsys-api
# ```
#
# **Probes.** The kubelet asks each container whether it is well. A *readiness* probe failing takes the
# pod out of its Service (no traffic until the model is loaded); a *liveness* probe failing restarts
# the container (a hung server). Our model server answers `GET /v1/models/recsys` on port 8080 once
# its model is loaded: the natural readiness probe.
#
# **Requests and limits.** A *request* (`cpu: 250m`, a quarter of a core; `memory: 512Mi`) is what the
# scheduler reserves on a node: a pod whose requests fit nowhere stays `Pending`. A *limit* is the
# ceiling: CPU above it is throttled, memory above it gets the container killed (`OOMKilled`). Requests
# decide how many pods fit on a cluster, hence what it costs.
#
# **securityContext.** How the container's process runs. Ours: not as root (`runAsNonRoot`,
# `runAsUser: 1000`), no privilege escalation (`allowPrivilegeEscalation: false`), no Linux
# capabilities (`drop: [ALL]`), a read-only root file system (an `emptyDir` volume at `/tmp` for what
# must be written) and the runtime's default system-call filter (`seccompProfile: RuntimeDefault`).
# Together that is the *restricted* Pod Security Standard: a compromised server can do very little.
#
# **Manifests.** All of the above is written as YAML documents (`apiVersion`, `kind`, `metadata`,
# `spec`) and applied declaratively. The workshop keeps one `base/` and two *overlays* that patch it
# (kind for a laptop, GKE for the cloud); **kustomize** (built into `kubectl`) renders base + overlay
# into the final documents.
#
# ## 2. What Kubeflow adds: custom resources and operators
#
# Kubernetes knows Deployments and Services, not "a distributed TensorFlow training job". A
# **CustomResourceDefinition (CRD)** teaches the API server a new kind, with a schema; an **operator**
# is a controller that watches objects of that kind and creates ordinary pods and Services to make them
# real, in its own reconcile loop. Kubeflow is a set of such operators:
#
# | kind (API group) | operator | what it creates | lab |
# |---|---|---|---|
# | `TFJob` (kubeflow.org/v1) | Training Operator | one pod per replica (Chief, Workers), each with a `TF_CONFIG` describing the others | 07 |
# | `Experiment` (kubeflow.org/v1beta1) | Katib | `Trial`s, each running a TFJob with suggested hyperparameters; reads the metric from the logs | 08 |
# | pipelines (no CRD of their own) | Kubeflow Pipelines | runs compiled to Argo `Workflow`s, whose steps are pods | 09 |
# | `InferenceService` (serving.kserve.io/v1beta1) | KServe | in *RawDeployment* mode, a plain Deployment + Service for the model server | 10 |
#
# **The workshop profile** installs only these, not the whole Kubeflow platform: the Training
# Operator, Katib, KServe in raw deployment mode (no Istio, no Knative; cert-manager for its webhook
# certificates) and Kubeflow Pipelines standalone. About 1.6 CPU and 5.3 GiB of requests, instead of
# the 16 GB the full platform asks for. Bring it up with:
#
# ```sh
# cluster-setup/kind/up --dry-run     # what it would do; checks Docker, kind, kubectl, CPU, memory, disk
# cluster-setup/kind/up               # a laptop: 4 CPUs and 12 GB for Docker at least, ~10 minutes the first time
# cluster-setup/gke/up --dry-run      # Google Cloud: prints the plan and the cost, creates nothing
# cluster-setup/gke/up                # asks before creating anything; cluster-setup/gke/down when done
# ```
#
# Every `up` has a `down`. `cluster-setup/README.md` has the details: versions, sizing, the class
# JupyterHub, and what each step does. The versions and prices come from `cluster-setup/versions.env`:

# %%
profile = pd.DataFrame(
    [
        ("Kubernetes", VERSIONS["KUBERNETES_VERSION"], "kind node image / GKE regular channel"),
        ("cert-manager", VERSIONS["CERT_MANAGER_VERSION"], "webhook certificates for KServe"),
        ("Training Operator", VERSIONS["TRAINING_OPERATOR_VERSION"], "TFJob (v1: the v2 Trainer has no TensorFlow runtime)"),
        ("Katib", VERSIONS["KATIB_VERSION"], "Experiment, Trial, Suggestion"),
        ("KServe", VERSIONS["KSERVE_VERSION"], f"InferenceService, default mode {VERSIONS['KSERVE_DEFAULT_DEPLOYMENT_MODE']}"),
        ("Kubeflow Pipelines", VERSIONS["KFP_VERSION"], "standalone, runs on Argo Workflows"),
    ],
    columns=["component", "version", "provides"],
)
profile

# %% [markdown]
# What does the GKE cluster cost? Two `e2-standard-4` nodes (8 vCPUs, 32 GB: what the Google Cloud free
# trial allows at once) with their boot disks, billed by the hour while the cluster exists; the GKE free
# tier credits the cluster fee of one zonal cluster.

# %%
nodes = int(VERSIONS["GKE_NUM_NODES"])
node_cost = nodes * float(VERSIONS["GKE_PRICE_NODE_PER_HOUR"])
disk_cost = nodes * int(VERSIONS["GKE_DISK_SIZE_GB"]) * float(VERSIONS["GKE_PRICE_DISK_PER_GB_MONTH"]) / 730
hourly = node_cost + disk_cost
print(f"{nodes} x {VERSIONS['GKE_MACHINE_TYPE']} ({nodes * int(VERSIONS['GKE_MACHINE_VCPUS'])} vCPUs, "
      f"{nodes * int(VERSIONS['GKE_MACHINE_MEMORY_GB'])} GB) in {VERSIONS['GKE_ZONE']}")
print(f"about ${hourly:.2f} per hour, ${24 * hourly:.2f} per day, ${730 * hourly:.0f} per month if forgotten")
print("kind on a laptop costs nothing but needs", VERSIONS["KIND_MIN_CPUS"], "CPUs and",
      VERSIONS["KIND_MIN_MEMORY_GB"], "GB of free memory at least.")

# %% [markdown]
# ## 3. Is there a cluster?
#
# `kube.cluster_context()` looks for the kubeconfig context `kubectl` would use (or the service account
# of a pod, on the class JupyterHub) and asks that API server for its version. It returns `None` when
# nothing is configured, and says `reachable=False` when something is configured but does not answer.
# A CI runner or a laptop without Kubernetes has no cluster, and the lab says so.
#
# Everything the workshop puts on a cluster goes into one **namespace**. `kube.namespace_choice()` says
# which, and why: on the class JupyterHub your own (`recsys-<login>`, the namespace of your server's
# service account); on a laptop the namespace of your kubeconfig context if it names one, else `recsys`
# (`WORKSHOP_NAMESPACE` in `versions.env`); `RECSYS_WORKSHOP_NAMESPACE` overrides all of them.

# %%
context = kube.cluster_context(timeout=REQUEST_TIMEOUT_SECONDS)
NAMESPACE = kube.namespace_choice()
if context is None:
    print("No Kubernetes context is configured (no kubeconfig, not inside a pod): there is no cluster here.")
    print("Section 4 is skipped; the rest of the lab works on the rendered manifests.")
elif not context.reachable:
    print(f"Context {context.context!r} points at {context.server}, which did not answer: {context.error}")
    print("Section 4 is skipped; the rest of the lab works on the rendered manifests.")
else:
    print(f"Connected to context {context.context!r}: Kubernetes {context.kubernetes_version} at {context.server}")
print(f"The labs' namespace: {NAMESPACE}")

# %% [markdown]
# ## 4. With a cluster: nodes, controllers, CRDs
#
# The `kubernetes` client mirrors the REST API: `CoreV1Api` for nodes, namespaces, pods and Services,
# `AppsV1Api` for Deployments, `ApiextensionsV1Api` for CRDs. Each `list_...` call returns typed objects
# (`V1Node`, `V1Deployment`, ...) whose fields are the YAML fields in snake_case.
#
# A healthy profile has every controller the setup scripts wait for (`kube.PROFILE_DEPLOYMENTS`, kept in
# step with `cluster-setup/lib/common.sh` by a test) with all replicas ready, and every CRD
# (`kube.PROFILE_CRDS`) *Established*, that is served by the API server.
#
# Reading nodes, namespaces and CRDs needs rights over the whole cluster: yours on your own kind cluster, not
# on the class JupyterHub. `kube.why_local(needs)` asks first (section 4b shows how) and, when the answer is
# no, says why in one sentence instead of failing half-way.

# %%
def connect(info: kube.ClusterInfo):
    """An ApiClient for the context that kube.cluster_context() found."""
    from kubernetes import client, config

    if info.context == "in-cluster":  # a pod, e.g. a JupyterHub user server: its service account
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(context=info.context)


def node_table(api) -> pd.DataFrame:
    from kubernetes import client

    rows = []
    for node in client.CoreV1Api(api).list_node(_request_timeout=REQUEST_TIMEOUT_SECONDS).items:
        ready = next((c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown")
        rows.append({
            "node": node.metadata.name,
            "ready": ready == "True",
            "kubelet": node.status.node_info.kubelet_version,
            "cpu": node.status.allocatable.get("cpu"),
            "memory": node.status.allocatable.get("memory"),
        })
    return pd.DataFrame(rows)


def controller_table(api) -> pd.DataFrame:
    """Every controller of the workshop profile: is it there, are its replicas ready."""
    from kubernetes import client

    namespaces = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace(
        _request_timeout=REQUEST_TIMEOUT_SECONDS).items}
    apps = client.AppsV1Api(api)
    rows = []
    for namespace, names in kube.PROFILE_DEPLOYMENTS.items():
        found = {}
        if namespace in namespaces:
            found = {d.metadata.name: d for d in apps.list_namespaced_deployment(
                namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS).items}
        for name in names:
            deployment = found.get(name)
            if deployment is None:
                status = "namespace missing" if namespace not in namespaces else "missing"
                rows.append({"namespace": namespace, "deployment": name, "ready": status, "healthy": False})
                continue
            desired = 1 if deployment.spec.replicas is None else deployment.spec.replicas
            ready = deployment.status.ready_replicas or 0
            rows.append({"namespace": namespace, "deployment": name, "ready": f"{ready}/{desired}",
                         "healthy": ready >= desired})
    return pd.DataFrame(rows)


def crd_table(api) -> pd.DataFrame:
    from kubernetes import client

    crds = {crd.metadata.name: crd for crd in client.ApiextensionsV1Api(api).list_custom_resource_definition(
        _request_timeout=REQUEST_TIMEOUT_SECONDS).items}
    rows = []
    for name in kube.PROFILE_CRDS:
        crd = crds.get(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])} if crd is not None else {}
        rows.append({"crd": name, "installed": crd is not None, "established": conditions.get("Established") == "True"})
    return pd.DataFrame(rows)


# %%
PROFILE_NEEDS = ["list nodes", "list namespaces", "list customresourcedefinitions.apiextensions.k8s.io",
                 "list deployments.apps"]  # what the three tables read (deployments: in namespace kubeflow)
reason = kube.why_local(PROFILE_NEEDS, namespace="kubeflow", timeout=REQUEST_TIMEOUT_SECONDS)
if reason is None:
    from kubernetes.client.rest import ApiException

    api = connect(context)
    try:
        nodes_now, controllers, crds = node_table(api), controller_table(api), crd_table(api)
    except ApiException as error:  # e.g. a JupyterHub service account that may not list nodes
        print(f"The cluster answered but refused a request: {error.status} {error.reason}. "
              "Ask your instructor, or use your own cluster (cluster-setup/kind/up).")
    else:
        display(nodes_now, controllers, crds)
        problems = (list(nodes_now.loc[~nodes_now.ready, "node"])
                    + list(controllers.loc[~controllers.healthy, "deployment"])
                    + list(crds.loc[~crds.established, "crd"]))
        if problems:
            print("Not healthy yet:", ", ".join(problems))
            print("Re-run cluster-setup/kind/up (or gke/up): it is idempotent and waits for each component.")
        else:
            print(f"{len(nodes_now)} node(s) ready, the workshop profile is healthy: "
                  f"{len(controllers)} controllers ready, {len(crds)} CRDs established.")
    finally:
        api.close()
else:
    print("Nothing listed here, and nothing is pretended:", reason)
    if context is None or not context.reachable:
        print("To see this section live: cluster-setup/kind/up (about 10 minutes), then run this notebook again.")
    else:
        print(f"Your rights are in your own namespace, {NAMESPACE.name}: section 4b asks what they are.")

# %% [markdown]
# ## 4b. Your namespace, and what you may do there
#
# Kubernetes decides every request with **RBAC**: a *Role* lists verbs on resources (`create` on
# `tfjobs.kubeflow.org`, `get` on `pods/log`), a *RoleBinding* grants a Role to an identity in one namespace
# (a ClusterRoleBinding: everywhere). On your kind cluster you are its administrator. On the class JupyterHub
# your server runs as the service account `recsys-attendee` of your own namespace, bound to a role that
# allows what the labs do there, and nothing elsewhere (`cluster-setup/README.md`, "Attendees' namespaces"),
# under a quota that keeps one attendee from starving the class.
#
# You can ask what you may do: `kubectl auth can-i create tfjobs.kubeflow.org -n <namespace>` sends a
# `SelfSubjectAccessReview`, and `kube.permissions` sends one per question. The labs ask before they touch
# the cluster (`kube.why_local`) and print the one-sentence reason when they run locally instead.

# %%
CAN_I = ["create tfjobs.kubeflow.org", "create experiments.kubeflow.org",
         "create inferenceservices.serving.kserve.io", "create deployments.apps", "get pods/log",
         "create pods/portforward", "get secrets", "create namespaces", "list nodes"]
if context is not None and context.reachable:
    api = connect(context)
    try:
        allowed = kube.permissions(CAN_I, namespace=NAMESPACE.name, api=api, timeout=REQUEST_TIMEOUT_SECONDS)
        display(pd.Series(allowed, name=f"allowed in {NAMESPACE.name}").to_frame())
    finally:
        api.close()
else:
    print(f"No reachable cluster, nobody to ask. On one, these questions would be about namespace {NAMESPACE}:")
    print("\n".join(f"  kubectl auth can-i {need} -n {NAMESPACE.name}" for need in CAN_I))

# %% [markdown]
# ## 5. The manifests, rendered
#
# Whatever the cluster, the workshop applies the same documents: `kubectl apply -k
# cluster-setup/manifests/overlays/kind` (or `gke`). `kube.kustomize_build` runs the same renderer
# (`kubectl kustomize`, pinned in the venv) and returns the documents as Python dicts.

# %%
built = {name: kube.kustomize_build(kube.overlay_dir(name)) for name in OVERLAYS}
for name, docs in built.items():
    print(f"{name}: {len(docs)} resources from {kube.overlay_dir(name).relative_to(kube.REPO_ROOT)}")

# %% [markdown]
# A checkpoint: the kind overlay renders exactly these resources (sorted by kind and name). Core kinds
# (`v1`, `apps/v1`) sit next to the Kubeflow ones (`kubeflow.org`, `serving.kserve.io`).

# %%
# NBVAL_CHECK_OUTPUT
for doc in sorted(built["kind"], key=lambda d: (d["kind"], d["metadata"]["name"])):
    print(f"{doc['apiVersion']:<28} {doc['kind']:<22} {doc['metadata']['name']}")
# Expected output:
# v1                           ConfigMap              recsys-train-config
# apps/v1                      Deployment             recsys-api
# apps/v1                      Deployment             recsys-locust-master
# apps/v1                      Deployment             recsys-locust-worker
# kubeflow.org/v1beta1         Experiment             recsys-tune
# serving.kserve.io/v1beta1    InferenceService       recsys-model
# v1                           Namespace              recsys
# networking.k8s.io/v1         NetworkPolicy          default-deny-ingress
# networking.k8s.io/v1         NetworkPolicy          katib-suggestion
# networking.k8s.io/v1         NetworkPolicy          recsys-api
# networking.k8s.io/v1         NetworkPolicy          recsys-locust-master
# networking.k8s.io/v1         NetworkPolicy          recsys-model-server
# networking.k8s.io/v1         NetworkPolicy          recsys-postgres
# networking.k8s.io/v1         NetworkPolicy          recsys-training
# v1                           PersistentVolumeClaim  recsys-models
# v1                           Service                recsys-api
# v1                           Service                recsys-locust-master
# v1                           Service                recsys-postgres
# apps/v1                      StatefulSet            recsys-postgres
# kubeflow.org/v1              TFJob                  recsys-train

# %% [markdown]
# Where are the containers? A Deployment keeps its pod template at `spec.template.spec`; each kind
# from Kubeflow keeps it somewhere else (a TFJob per replica type, an InferenceService in its predictor,
# a Katib Experiment inside the TFJob of its trial template). The table finds every pod spec, wherever
# it is, and shows what each container runs and what it asks for.

# %%
def pod_specs(node, path: str = ""):
    """(path, pod spec) for every pod spec in a document: any object with a list of containers."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}.{key}" if path else key)


def cpu_and_memory(amounts: dict) -> str:
    return f"{amounts.get('cpu', '-')} / {amounts.get('memory', '-')}"


def resource_table(docs: list[dict]) -> pd.DataFrame:
    rows = []
    for doc in docs:
        base = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
        specs = list(pod_specs(doc))
        if not specs:
            rows.append(base)
        for path, pod in specs:
            for container in pod.get("initContainers", []) + pod["containers"]:
                resources = container.get("resources", {})
                rows.append(base | {
                    "pod spec at": path,
                    "container": container["name"],
                    "image": container["image"],
                    "requests": cpu_and_memory(resources.get("requests", {})),
                    "limits": cpu_and_memory(resources.get("limits", {})),
                    "probes": ", ".join(p[: -len("Probe")] for p in ("readinessProbe", "livenessProbe") if p in container),
                })
    return pd.DataFrame(rows).fillna("")


resource_table(built["kind"])

# %% [markdown]
# Here is one resource in full: the API's Deployment, with every idea of section 1 in it (labels and
# selector, image, port, probes, requests and limits, `securityContext`, an `emptyDir` at `/tmp`).

# %%
api_deployment = next(d for d in built["kind"] if d["kind"] == "Deployment" and d["metadata"]["name"] == "recsys-api")
print(yaml.safe_dump(api_deployment, sort_keys=False))

# %% [markdown]
# ## 6. Validating, before anything reaches a cluster
#
# Three checks, all offline (`kube.validate_all` runs them together), each returning a list of findings
# (empty is good):
#
# - `kube.validate_core`: built-in kinds against the OpenAPI schema of the pinned Kubernetes version
#   (`KUBERNETES_VERSION` in `versions.env`), strictly: an unknown field is an error, as `kubectl apply`
#   treats it. Like the API server, it rejects a document at its first error.
# - `kube.validate_custom`: TFJob and InferenceService against the CRDs of the Kubeflow release (the
#   schemas the API server would use), Katib Experiments with the Katib SDK's models and extra rules.
# - `kube.policy_violations`: the workshop's own rules, which the schema does not enforce: requests and
#   limits, pinned images, the restricted `securityContext`, probes on every server.

# %%
# NBVAL_CHECK_OUTPUT
for name, docs in built.items():
    results = kube.validate_all(docs)
    print(f"{name}: " + ", ".join(f"{check} {len(found)} finding(s)" for check, found in results.items()))
    for finding in (f for found in results.values() for f in found):
        print("   ", finding)
# Expected output:
# kind: core 0 finding(s), custom 0 finding(s), policy 0 finding(s)
# gke: core 0 finding(s), custom 0 finding(s), policy 0 finding(s)

# %% [markdown]
# Both overlays pass. To see that a check is not a rubber stamp, break a copy: a typo in a field name
# of the TFJob (`tfReplicaSpec` instead of `tfReplicaSpecs`), a memory limit below its request in the
# API, a root user in the model server.

# %%
broken = copy.deepcopy(built["kind"])
by_kind = {d["kind"]: d for d in broken}
by_kind["TFJob"]["spec"]["tfReplicaSpec"] = by_kind["TFJob"]["spec"].pop("tfReplicaSpecs")
api_container = next(
    d for d in broken if d["metadata"]["name"] == "recsys-api" and d["kind"] == "Deployment"
)["spec"]["template"]["spec"]["containers"][0]
api_container["resources"]["limits"]["memory"] = "128Mi"
by_kind["InferenceService"]["spec"]["predictor"]["securityContext"]["runAsUser"] = 0
for finding in kube.validate_custom(broken) + kube.policy_violations(broken):
    print(finding)

# %% [markdown]
# ## 7. kind or GKE: what changes
#
# One base, two overlays. `kube.overlay_differences` compares the two builds field by field; with
# `collapse=True` a part that exists on one side only (the GKE training job's extra Worker) is one row.

# %%
def short(value, width: int = 50) -> str:
    """A value for a table cell: absent, a string as it is, anything else as one line of JSON."""
    text = "(absent)" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


differences = kube.overlay_differences(*OVERLAYS, collapse=True)
table = pd.DataFrame(
    [(d.resource.split("/")[0] + "/" + d.resource.split("/")[-1], d.path, short(d.left), short(d.right))
     for d in differences],
    columns=["resource", "field", OVERLAYS[0], OVERLAYS[1]],
)
with pd.option_context("display.max_colwidth", 120, "display.max_rows", 100):
    display(table)

# %% [markdown]
# The same as a diff, for the resource where a laptop and the cloud differ most: the model volume
# (kind's local-path storage against a Persistent Disk). The API's Service is the same on both, and on
# both it is a `ClusterIP`: the API is not on the internet unless you put it there on purpose (you reach
# it with `kubectl port-forward`; cluster-setup/README.md, "Secure by default", says how to expose it
# behind an authenticating proxy). The full diff: `python -m recsys_workshop.kube diff kind gke`.

# %%
def pick(docs: list[dict], kinds: set[str]) -> list[dict]:
    return [d for d in docs if d["kind"] in kinds and d["metadata"]["name"] in ("recsys-models", "recsys-api")]


print(kube.diff_overlays(*(pick(built[name], {"PersistentVolumeClaim", "Service"}) for name in OVERLAYS),
                         context=2, labels=tuple(OVERLAYS)))
api_services = {name: next(d for d in built[name] if d["kind"] == "Service" and d["metadata"]["name"] == "recsys-api")
                for name in OVERLAYS}
print({name: service["spec"].get("type", "ClusterIP") for name, service in api_services.items()})

# %% [markdown]
# What the table says: the **image** comes from a registry on GKE and is loaded into kind by hand (no
# registry); **storage** is local-path on kind, `standard-rwo` Persistent Disk on GKE; the API runs
# **two replicas** spread over the nodes on GKE; training adds a **Worker**
# for multi-worker training, and tuning runs **two trials at a time**. Everything else is identical,
# so what works on a laptop works on the cloud.
#
# ## 8. The client's typed models, offline
#
# The `kubernetes` client can also *build* resources: `V1Service`, `V1Deployment`, ... are classes with
# the API's fields, checked names and documentation in your editor. `ApiClient().sanitize_for_serialization`
# turns them into the same dict as the YAML. Here is a Service for the model server you will deploy in
# the exercise: it forwards port 80 to the pods' port named `http`, and finds the pods by their label
# `app.kubernetes.io/name: recsys-model-server`.

# %%
from kubernetes import client

MODEL_SERVER_LABELS = {"app.kubernetes.io/name": "recsys-model-server"}
service = client.ApiClient().sanitize_for_serialization(
    client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(name="recsys-model-server", namespace="recsys", labels=MODEL_SERVER_LABELS),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            selector=MODEL_SERVER_LABELS,
            ports=[client.V1ServicePort(name="http", port=80, target_port="http", protocol="TCP")],
        ),
    )
)
print(yaml.safe_dump(service, sort_keys=False))
print("findings:", kube.validate_core([service]) + kube.policy_violations([service]))

# %% [markdown]
# ### Exercise 6.1: a Deployment for the model server
#
# In raw deployment mode KServe turns the InferenceService `recsys-model` into a Deployment and a
# Service. Write that Deployment yourself, to know what is in it. `model_server_deployment(image,
# replicas)` returns the manifest as a dict:
#
# - `apps/v1` `Deployment` named `recsys-model-server` in namespace `recsys`, with `replicas` replicas;
#   its selector and its pod template's labels include `app.kubernetes.io/name: recsys-model-server`
#   (the Service above selects the pods by that label);
# - one container running `image`, unchanged, with the command
#   `["python", "-m", "recsys_workshop.serving"]` and the args `["--model-dir", "/models/recsys"]`;
#   it listens on port **8080** (name the port `http`);
# - a readiness probe **and** a liveness probe: HTTP GET `/v1/models/recsys` on port 8080;
# - CPU and memory requests and limits (a request may not exceed its limit), e.g. 250m / 512Mi
#   requested, 1 CPU / 1Gi at most;
# - the restricted `securityContext`: `runAsNonRoot: true`, `runAsUser: 1000`,
#   `allowPrivilegeEscalation: false`, `capabilities: {drop: [ALL]}`, `readOnlyRootFilesystem: true`
#   (mount an `emptyDir` at `/tmp`) and `seccompProfile: {type: RuntimeDefault}`;
# - the trained models: the PersistentVolumeClaim `recsys-models`, mounted read-only at `/models`.
#
# The self-check runs `kube.validate_core` and `kube.policy_violations` on your manifest (both must
# find nothing) and checks the port, the probe path, the replicas and the image. The API's Deployment
# printed in section 5 is a good model.

# %%
def model_server_deployment(image: str, replicas: int) -> dict:
    ### BEGIN SOLUTION
    def probe(**timing) -> dict:  # a new dict each time: shared objects would print as YAML anchors
        return {"httpGet": {"path": "/v1/models/recsys", "port": "http"}, "failureThreshold": 3, **timing}

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "recsys-model-server", "namespace": "recsys", "labels": dict(MODEL_SERVER_LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(MODEL_SERVER_LABELS)},
            "template": {
                "metadata": {"labels": dict(MODEL_SERVER_LABELS)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "model-server",
                            "image": image,
                            "command": ["python", "-m", "recsys_workshop.serving"],
                            "args": ["--model-dir", "/models/recsys"],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "readinessProbe": probe(periodSeconds=10),
                            "livenessProbe": probe(initialDelaySeconds=30, periodSeconds=20),
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "models", "mountPath": "/models", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": "recsys-models", "readOnly": True}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    ### END SOLUTION


# %%
# Self-check
from recsys_workshop.labchecks import manifests

IMAGES = [(f"{VERSIONS['WORKSHOP_IMAGE']}:{VERSIONS['WORKSHOP_IMAGE_TAG']}", 1),
          (f"{VERSIONS['WORKSHOP_IMAGE_LOCAL']}:{VERSIONS['WORKSHOP_IMAGE_TAG']}", 3)]
selfcheck.check(
    "6.1",
    lambda: manifests.model_server_deployment(model_server_deployment, service, IMAGES),
    hint="A Deployment is a selector, a pod template whose labels match it, and the containers; the "
    "workshop's policy adds probes, requests and limits, a non-root securityContext and a read-only root "
    "filesystem. The recsys-api Deployment printed in section 5 has all of it: start from it and change the "
    "names, labels, command, port and probe path. Each finding names the field to fix: run "
    "kube.policy_violations([model_server_deployment(image, 1)]) to see them all at once.",
    code_hint="spec: {'replicas': replicas, 'selector': {'matchLabels': dict(MODEL_SERVER_LABELS)}, "
    "'template': {'metadata': {'labels': dict(MODEL_SERVER_LABELS)}, 'spec': {...}}}\n"
    "container: {'name': 'model-server', 'image': image, 'command': ['python', '-m', 'recsys_workshop.serving'], "
    "'args': ['--model-dir', '/models/recsys'], 'ports': [{'name': 'http', 'containerPort': 8080}], "
    "'readinessProbe': {'httpGet': {'path': '/v1/models/recsys', 'port': 'http'}}, 'livenessProbe': (the same), "
    "'resources': {'requests': {'cpu': '250m', 'memory': '512Mi'}, 'limits': {'cpu': '1', 'memory': '1Gi'}}, "
    "'securityContext': {'allowPrivilegeEscalation': False, 'readOnlyRootFilesystem': True, "
    "'capabilities': {'drop': ['ALL']}}, 'volumeMounts': [{'name': 'models', 'mountPath': '/models', "
    "'readOnly': True}, {'name': 'tmp', 'mountPath': '/tmp'}]}\n"
    "pod spec: 'securityContext': {'runAsNonRoot': True, 'runAsUser': 1000, 'seccompProfile': "
    "{'type': 'RuntimeDefault'}}, 'volumes': [{'name': 'models', 'persistentVolumeClaim': {'claimName': "
    "'recsys-models', 'readOnly': True}}, {'name': 'tmp', 'emptyDir': {}}]",
)
print(yaml.safe_dump(model_server_deployment("localhost/recsys-workshop:0.1.0", 1), sort_keys=False))

# %% [markdown]
# With a cluster you would apply both (`kubectl apply -f`), or let KServe create the same from the
# InferenceService, which is what lab 10 does.
#
# ### Exercise 6.2: repair a broken manifest
#
# A colleague wrote a Deployment for a canary of the API. It does not pass: here are the findings.

# %%
BROKEN_CANARY = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: recsys-api-canary
  namespace: recsys
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: recsys-api-canary
  template:
    metadata:
      labels:
        app: recsys-api-canary
    spec:
      securityContext:
        runAsUser: 0
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: api
          image: ghcr.io/recsys-workshop/recsys-workshop:latest
          command: ["uvicorn", "recsys_workshop.api:app"]
          args: ["--host", "0.0.0.0", "--port", "8000"]
          ports:
            - name: http
              containerPort: "8000"
          readinessprobe:
            httpGet:
              path: /healthz
              port: http
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
          resources:
            requests:
              cpu: 100m
              memory: 256Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir: {}
""")
for finding in kube.validate_core([BROKEN_CANARY]) + kube.policy_violations([BROKEN_CANARY]):
    print(finding)

# %% [markdown]
# Write `fix_canary(manifest)`: return a repaired **copy** (`copy.deepcopy`; leave the argument as it
# is) that passes `kube.validate_core` and `kube.policy_violations`, and still runs the same command on
# port 8000 from the same image repository, pinned to the workshop's tag
# (`VERSIONS["WORKSHOP_IMAGE_TAG"]`). Three things to know:
#
# - the schema check stops at the first error, as the API server does: fix it and look again, there
#   may be another one behind it;
# - field names are case-sensitive, and an unknown field is an error, not a no-op;
# - one mistake no offline check here catches, and the API server would reject: the Deployment's
#   selector must match its pod template's labels.

# %%
def fix_canary(manifest: dict) -> dict:
    ### BEGIN SOLUTION
    fixed = copy.deepcopy(manifest)
    template = fixed["spec"]["template"]
    template["metadata"]["labels"] = dict(fixed["spec"]["selector"]["matchLabels"])
    pod = template["spec"]
    pod["securityContext"].update({"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 100})
    container = pod["containers"][0]
    container["ports"][0]["containerPort"] = int(container["ports"][0]["containerPort"])
    container["readinessProbe"] = container.pop("readinessprobe")
    repository = container["image"].rsplit(":", 1)[0]
    container["image"] = f"{repository}:{VERSIONS['WORKSHOP_IMAGE_TAG']}"
    container["resources"]["limits"] = {"cpu": "500m", "memory": "512Mi"}
    return fixed
    ### END SOLUTION


# %%
# Self-check
selfcheck.check(
    "6.2",
    lambda: manifests.fix_canary(fix_canary, BROKEN_CANARY, IMAGES[0][0]),
    hint="Read the findings one by one: the schema says which field has the wrong type or the wrong name "
    "(names are case-sensitive), the policy says what a pod must declare (a pinned tag, limits as well as "
    "requests, a non-root user). Fix one, run the checks again: the schema stops at its first error. Then "
    "the one thing no offline check here sees: which labels does the selector look for, and which labels do "
    "the pods carry?",
    code_hint="fixed = copy.deepcopy(manifest); template = fixed['spec']['template']\n"
    "template['metadata']['labels'] = dict(fixed['spec']['selector']['matchLabels'])\n"
    "template['spec']['securityContext'].update({'runAsNonRoot': True, 'runAsUser': 1000})\n"
    "container = template['spec']['containers'][0]\n"
    "container['ports'][0]['containerPort'] = 8000  # an integer, not '8000'\n"
    "container['readinessProbe'] = container.pop('readinessprobe')\n"
    "container['image'] = container['image'].rsplit(':', 1)[0] + ':' + VERSIONS['WORKSHOP_IMAGE_TAG']\n"
    "container['resources']['limits'] = {'cpu': '500m', 'memory': '512Mi'}\n"
    "return fixed",
)

# %% [markdown]
# ## What you saw
# - The objects everything else runs on: an image pinned by tag, pods placed by their requests and
#   bounded by their limits, Deployments that keep them running, Services that find them by label,
#   probes that decide when they get traffic or a restart, and a `securityContext` that leaves an
#   intruder nothing to use.
# - What Kubeflow adds: CRDs and their operators (TFJob, Katib Experiment, InferenceService, pipelines on
#   Argo), installed as a small workshop profile by `cluster-setup/kind/up` or `gke/up`, at about $0.28 an
#   hour on GKE and nothing on a laptop.
# - The `kubernetes` client: connecting only when a cluster answers, checking nodes, controllers and
#   CRDs; and building typed resources offline.
# - Namespaces and RBAC: where your work goes (`kube.workshop_namespace()`), what you may do there
#   (SelfSubjectAccessReview), and a one-sentence reason whenever a cell stays local.
# - The manifests rendered by kustomize, validated against the Kubernetes and Kubeflow schemas and the
#   workshop's policy, and the few deliberate differences between kind and GKE.
# - A model-server Deployment of your own, and a broken one repaired: an offline check finds most
#   mistakes in seconds, not after a failed rollout.
#
# **Next:** lab 07, training at scale: the same training function as a TFJob on the cluster.
