"""The class JupyterHub: attendees' own namespaces, their rights, quotas and network, and HTTPS.

Checked offline against what the cluster would see: our values (with the per-cluster extras)
checked key by key (the chart's schema and defaults are not copied into the repository: `helm template` with the
pinned chart is what validates them against it, on a machine with internet); the objects the
hub's pre-spawn hook creates, built by cluster-setup/jupyterhub/attendees.py itself and validated against the
Kubernetes schema; the hook run with stub clients; and the attendees' ClusterRole evaluated, rule by rule,
against every kind the labs apply (the rendered kind overlay, moved into an attendee's namespace the way the
labs move it).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import ipaddress
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

# The dry-run harness of the cluster-setup scripts (stub kubectl, helm, ... on an isolated PATH).
from test_cluster_setup import dry_run_commands, run_script, stub_bin, system_bin  # noqa: F401

from recsys_workshop import kube

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "cluster-setup" / "jupyterhub"
V = kube.versions()
CHART = V["JUPYTERHUB_CHART_VERSION"]
ATTENDEE = "recsys-alice"  # a namespace as KubeSpawner names it for the login "alice"
# What the labs read or do besides applying manifests (pods, logs, port-forward; Katib's results; the quota
# that explains a refused pod). Everything else the attendees' role grants must come from the manifests.
LAB_READS = [
    "list pods", "watch pods", "get pods/log", "create pods/portforward", "list events",
    "list trials.kubeflow.org", "get suggestions.kubeflow.org", "get resourcequotas", "get limitranges",
]


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merge(base: dict, override: dict) -> dict:
    """helm's merge of values files: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both else value
    return merged


# What gke/up adds at install time (its private values file), with placeholders for the secrets.
GKE_PRIVATE = {
    "proxy": {"service": {"loadBalancerIP": "34.1.2.3"},
              "https": {"hosts": ["34-1-2-3.sslip.io"], "letsencrypt": {"contactEmail": "teacher@example.org"}}},
    "hub": {"config": {"GitHubOAuthenticator": {
        "client_id": "id", "client_secret": "secret", "oauth_callback_url": "https://34-1-2-3.sslip.io/hub/oauth_callback",
        "allowed_organizations": ["class"], "admin_users": ["teacher"]}}},
}


@pytest.fixture(scope="module")
def values() -> dict[str, dict]:
    """The values helm would hand the chart: the chart's defaults, ours, and the per-cluster extras."""
    defaults: dict = {}  # the chart's own defaults are not in the repository (upstream files are never copied in)
    gke = merge(merge(defaults, load_yaml(HUB / "values.yaml")), GKE_PRIVATE)
    kind = merge(merge(defaults, load_yaml(HUB / "values.yaml")), load_yaml(HUB / "values-kind.yaml"))
    return {"gke": gke, "kind": kind}


@pytest.fixture(scope="module")
def attendees():
    """cluster-setup/jupyterhub/attendees.py as a module (no `c` in its globals: it only defines things)."""
    spec = importlib.util.spec_from_file_location("recsys_attendees", HUB / "attendees.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rbac() -> dict[tuple[str, str], dict]:
    docs = list(yaml.safe_load_all((HUB / "attendees-rbac.yaml").read_text(encoding="utf-8")))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def kind_docs() -> list[dict]:
    return kube.kustomize_build(kube.overlay_dir("kind"))


def value(values: dict, dotted: str, default=None):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def hub_objects(attendees, values: dict, *, slice_=None, with_secrets=True) -> list[dict]:
    """What the hook would create for ATTENDEE, from these values (KubeSpawner's parsing of cpu/memory)."""
    user = values["singleuser"]
    return attendees.attendee_objects(
        ATTENDEE,
        values["custom"]["recsysAttendees"],
        hub_namespace=V["JUPYTERHUB_NAMESPACE"],
        service_account=user["serviceAccountName"],
        notebook=attendees.notebook_quota(user["cpu"]["guarantee"], user["cpu"]["limit"],
                                          byte_spec(user["memory"]["guarantee"]), byte_spec(user["memory"]["limit"])),
        api_server_rules=attendees.api_server_peers(slice_, "10.96.0.1", "443"),
        with_secrets=with_secrets,
    )


def byte_spec(text: str) -> int:
    """KubeSpawner's ByteSpecification: K, M, G, T are powers of 1024 (as JupyterHub documents)."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


KIND_API_SLICE = SimpleNamespace(ports=[SimpleNamespace(port=6443)],
                                 endpoints=[SimpleNamespace(addresses=["172.18.0.2"])])


# --- the values are what the chart accepts ---------------------------------------------------------------------


# --- every attendee gets a namespace, a token, a quota ------------------------------------------------------------


@pytest.mark.parametrize("cluster", ["gke", "kind"])
def test_attendees_get_a_namespace_of_their_own(values, cluster):
    spawner = values[cluster]["hub"]["config"]["KubeSpawner"]
    assert spawner["enable_user_namespaces"] is True
    template = spawner["user_namespace_template"]
    assert "{username}" in template and template != "{username}", "a prefix keeps attendees out of system namespaces"
    assert template.startswith("recsys-"), "gke/down finds attendees' namespaces by this prefix and label"
    # KubeSpawner's safe slug of a login is at most 48 characters: the name stays a DNS label (<= 63).
    assert len(template.format(username="x" * 48)) <= 63
    assert values[cluster]["hub"]["networkPolicy"]["interNamespaceAccessLabels"] == "accept", (
        "user pods in other namespaces must still reach the hub")


@pytest.mark.parametrize("cluster", ["gke", "kind"])
def test_attendees_get_a_mounted_service_account_token(values, attendees, cluster):
    vals = values[cluster]
    assert vals["hub"]["config"]["KubeSpawner"]["automount_service_account_token"] is True
    account = vals["singleuser"]["serviceAccountName"]
    objects = hub_objects(attendees, vals)
    assert one(objects, "ServiceAccount")["metadata"]["name"] == account, "the hook creates the account the pod uses"
    binding = one(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": ATTENDEE}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": vals["custom"]["recsysAttendees"]["clusterRole"]}
    assert binding["metadata"]["namespace"] == ATTENDEE, "a RoleBinding: the role's rights in this namespace only"


@pytest.mark.parametrize("cluster", ["gke", "kind"])
def test_the_hooks_objects_are_valid_kubernetes(values, attendees, cluster):
    objects = hub_objects(attendees, values[cluster], slice_=KIND_API_SLICE)
    assert not kube.validate_core(objects)
    assert {o["kind"] for o in objects} == {"Namespace", "ServiceAccount", "RoleBinding", "ResourceQuota",
                                            "LimitRange", "NetworkPolicy", "Secret"}
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace" and kinds.index("LimitRange") < kinds.index("ServiceAccount"), (
        "the namespace first, its limits before anything that could start a pod")


def test_attendee_namespace_carries_the_workshop_namespace_labels(values, attendees):
    """Katib's injection label and Pod Security, as ../manifests/base/namespace.yaml has them."""
    workshop = load_yaml(REPO / "cluster-setup" / "manifests" / "base" / "namespace.yaml")["metadata"]["labels"]
    for cluster in ("gke", "kind"):
        labels = one(hub_objects(attendees, values[cluster]), "Namespace")["metadata"]["labels"]
        assert workshop.items() <= labels.items()
        assert labels[attendees.ATTENDEE_LABEL] == "true"
        assert labels["pod-security.kubernetes.io/enforce"] in {"baseline", "restricted"}


def test_privileged_metadata_blocker_is_off_where_pod_security_forbids_it(values):
    for cluster in ("gke", "kind"):
        assert values[cluster]["singleuser"]["cloudMetadata"]["blockWithIptables"] is False, (
            "its init container is privileged: Pod Security baseline would refuse every notebook pod")


@pytest.mark.parametrize("cluster", ["gke", "kind"])
def test_notebook_quota_is_exactly_the_notebook(values, attendees, cluster):
    vals = values[cluster]
    objects = hub_objects(attendees, vals)
    notebook = one(objects, "ResourceQuota", attendees.NOTEBOOK_QUOTA)["spec"]
    workloads = one(objects, "ResourceQuota", attendees.WORKLOADS_QUOTA)["spec"]
    assert notebook["scopes"] == ["Terminating"] and workloads["scopes"] == ["NotTerminating"]
    user = vals["singleuser"]
    # only the notebook pod sets activeDeadlineSeconds (Terminating scope), after the culler's maximum age
    assert user["extraPodConfig"]["activeDeadlineSeconds"] > vals["cull"]["maxAge"]
    hard = {k: kube.parse_quantity(v) for k, v in notebook["hard"].items()}
    assert hard["pods"] == 1
    assert hard["requests.cpu"] == pytest.approx(user["cpu"]["guarantee"])
    assert hard["limits.cpu"] == pytest.approx(user["cpu"]["limit"])
    assert hard["requests.memory"] == byte_spec(user["memory"]["guarantee"])
    assert hard["limits.memory"] == byte_spec(user["memory"]["limit"])


def pod_requests(pods: list[dict], field: str = "requests") -> tuple[float, float]:
    """(CPU cores, memory bytes) of pods' containers (init containers: the larger of them and the rest)."""
    cpu = memory = 0.0
    for pod in pods:
        def total(containers, key):
            return sum(kube.parse_quantity(str((c.get("resources") or {}).get(field, {}).get(key, "0")))
                       for c in containers)
        init = pod.get("initContainers") or []
        cpu += max(total(pod["containers"], "cpu"), max((total([c], "cpu") for c in init), default=0))
        memory += max(total(pod["containers"], "memory"), max((total([c], "memory") for c in init), default=0))
    return cpu, memory


def lab_workloads(docs: list[dict]) -> dict[str, list[dict]]:
    """The pods each lab starts on a cluster, from the rendered overlay: the training job (lab 07), one round of
    the tuning experiment's parallel trials (lab 08), the serving stack with its load generator (labs 10-12)."""
    def pods_of(doc):
        if doc["kind"] == "TFJob":
            return [s["template"]["spec"] for s in doc["spec"]["tfReplicaSpecs"].values()
                    for _ in range(s.get("replicas", 1))]
        if doc["kind"] == "Experiment":
            trial = doc["spec"]["trialTemplate"]["trialSpec"]
            return pods_of(trial) * doc["spec"].get("parallelTrialCount", 1)
        if doc["kind"] in ("Deployment", "StatefulSet"):
            return [doc["spec"]["template"]["spec"]] * doc["spec"].get("replicas", 1)
        if doc["kind"] == "InferenceService":
            return [doc["spec"]["predictor"]]
        return []

    serving = [p for d in docs if d["kind"] in ("Deployment", "StatefulSet", "InferenceService") for p in pods_of(d)]
    return {
        "training (TFJob)": [p for d in docs if d["kind"] == "TFJob" for p in pods_of(d)],
        "tuning (Experiment)": [p for d in docs if d["kind"] == "Experiment" for p in pods_of(d)],
        "serving stack": serving,
    }


def test_attendees_apply_the_overlay_their_quota_is_sized_for(values):
    for cluster in ("gke", "kind"):
        assert values[cluster]["singleuser"]["extraEnv"][kube.CLUSTER_ENV] == "kind", (
            "kube.cluster_flavour picks the overlay the labs apply; the quota is sized for the kind overlay")


def test_workloads_quota_fits_each_labs_workload_at_kind_sizes(values, attendees):
    """One lab's pods at a time fit the attendee's workloads quota, with room for what Katib adds (its
    suggestion pod and metrics sidecar get the LimitRange's default request)."""
    vals = values["gke"]
    docs = kube.kustomize_build(kube.overlay_dir(vals["singleuser"]["extraEnv"][kube.CLUSTER_ENV]))
    hard = {k: kube.parse_quantity(v) for k, v in
            one(hub_objects(attendees, vals), "ResourceQuota", attendees.WORKLOADS_QUOTA)["spec"]["hard"].items()}
    limit_range = vals["custom"]["recsysAttendees"]["limitRange"]
    default = {k: kube.parse_quantity(str(v)) for k, v in limit_range["defaultRequest"].items()}
    for lab, pods in lab_workloads(docs).items():
        assert pods, f"{lab}: nothing found in the kind overlay"
        cpu, memory = pod_requests(pods)
        if lab.startswith("tuning"):  # the suggestion pod and one metrics collector per trial pod
            cpu += default["cpu"] * (1 + len(pods))
            memory += default["memory"] * (1 + len(pods))
        assert cpu <= hard["requests.cpu"] + 1e-9, f"{lab} requests {cpu} CPU > quota {hard['requests.cpu']}"
        assert memory <= hard["requests.memory"], f"{lab} requests {memory / 2**30:.2f} GiB > quota"
        limit_cpu, limit_memory = pod_requests(pods, "limits")
        assert limit_cpu <= hard["limits.cpu"] and limit_memory <= hard["limits.memory"], lab
        assert len(pods) <= hard["pods"], lab


def test_limit_range_admits_every_container_of_the_labs_and_the_notebook(values, attendees, kind_docs, built_gke):
    for cluster in ("gke", "kind"):
        limits = one(hub_objects(attendees, values[cluster]), "LimitRange")["spec"]["limits"][0]
        assert limits["type"] == "Container"
        maximum = {k: kube.parse_quantity(str(v)) for k, v in limits["max"].items()}
        for key in ("default", "defaultRequest"):
            assert all(kube.parse_quantity(str(limits[key][r])) <= maximum[r] for r in maximum), key
        user = values[cluster]["singleuser"]
        assert user["cpu"]["limit"] <= maximum["cpu"] and byte_spec(user["memory"]["limit"]) <= maximum["memory"]
        for docs in (kind_docs, built_gke):
            for container, _, _ in kube._containers(docs):
                for resource, amount in ((container.get("resources") or {}).get("limits") or {}).items():
                    assert kube.parse_quantity(str(amount)) <= maximum[resource], (
                        f"{container['name']}: limit {resource}={amount} above the LimitRange's max")


@pytest.fixture(scope="module")
def built_gke() -> list[dict]:
    return kube.kustomize_build(kube.overlay_dir("gke"))


def test_objects_quota_keeps_attendees_off_the_internet_and_bounds_storage(values, attendees):
    hard = one(hub_objects(attendees, values["gke"]), "ResourceQuota", attendees.OBJECTS_QUOTA)["spec"]["hard"]
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"
    home = kube.parse_quantity(values["gke"]["singleuser"]["storage"]["capacity"])
    assert kube.parse_quantity(hard["requests.storage"]) >= home + 3 * 2**30  # home + model volume + PostgreSQL
    assert int(hard["persistentvolumeclaims"]) >= 3


def test_class_arithmetic_in_the_readme_matches_the_quota(values, attendees):
    """README, "Attendees' namespaces": the per-attendee figures are the quotas' own."""
    objects = hub_objects(attendees, values["gke"])
    cpu = sum(kube.parse_quantity(one(objects, "ResourceQuota", n)["spec"]["hard"]["requests.cpu"])
              for n in (attendees.NOTEBOOK_QUOTA, attendees.WORKLOADS_QUOTA))
    memory = sum(kube.parse_quantity(one(objects, "ResourceQuota", n)["spec"]["hard"]["requests.memory"])
                 for n in (attendees.NOTEBOOK_QUOTA, attendees.WORKLOADS_QUOTA))
    readme = (REPO / "cluster-setup" / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Attendees' namespaces", 1)[1].split("\n## ", 1)[0]
    assert f"{cpu:.2f} vCPU" in section and f"{memory / 2**30:.2f} GiB" in section, (cpu, memory / 2**30)


def test_workshop_secrets_cover_every_secret_the_manifests_read(attendees, kind_docs, built_gke):
    made = {(s["metadata"]["name"], key) for s in attendees.workshop_secrets(ATTENDEE) for key in s["stringData"]}
    read = set()

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                read.add((ref["name"], ref["key"]))
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(kind_docs + built_gke)
    assert read and read <= made, f"the manifests read Secrets the hook never creates: {sorted(read - made)}"
    setup = (REPO / "cluster-setup" / "lib" / "common.sh").read_text(encoding="utf-8")
    for name, key in made:
        assert name in setup and f"{key}=" in setup, f"{name}/{key}: the hook and lib/common.sh make the same Secrets"
    first, second = attendees.workshop_secrets(ATTENDEE), attendees.workshop_secrets(ATTENDEE)
    assert first != second, "fresh random values for every namespace"
    postgres = next(s for s in first if s["metadata"]["name"] == "recsys-postgres")["stringData"]
    assert f":{postgres['password']}@" in postgres["database-url"]


# --- network: the API server, DNS, the hub; not the private ranges or the metadata server ------------------------


def egress_allows(policy: dict, address: str, port: int, protocol: str = "TCP") -> bool:
    """Does one of the policy's ipBlock egress rules let the pod reach address:port?"""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block and ip in ipaddress.ip_network(block["cidr"]) and not any(
                    ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                return True
    return False


def test_notebook_may_reach_the_api_server(values, attendees):
    policy = one(hub_objects(attendees, values["kind"], slice_=KIND_API_SLICE), "NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"component": "singleuser-server"}}
    assert egress_allows(policy, "172.18.0.2", 6443), "the API server's endpoint (after the Service's translation)"
    assert egress_allows(policy, "10.96.0.1", 443), "the kubernetes Service's own address"
    assert not egress_allows(policy, "172.18.0.3", 6443), "only the API server's address, not the private range"


def test_notebook_may_not_reach_private_ranges_or_the_metadata_server(values, attendees):
    policy = one(hub_objects(attendees, values["gke"], slice_=KIND_API_SLICE), "NetworkPolicy")
    assert egress_allows(policy, "151.101.1.1", 443), "public addresses (MovieLens, package indexes)"
    for address in ("169.254.169.254", "10.8.0.12", "192.168.1.1", "172.20.0.5"):
        assert not egress_allows(policy, address, 80), address
    assert egress_allows(policy, "10.8.0.10", 53, "UDP"), "DNS on a private address (kube-dns, node-local cache)"
    egress = policy["spec"]["egress"]
    assert {"to": [{"podSelector": {}}]} in egress, "the attendee's own services, in the same namespace"
    hub_rule = next(r for r in egress if r.get("ports") == [{"protocol": "TCP", "port": 8081}])
    assert hub_rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": V["JUPYTERHUB_NAMESPACE"]}
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8888}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": V["JUPYTERHUB_NAMESPACE"]}


def test_without_the_endpoint_slice_the_policy_still_names_the_service(attendees):
    rules = attendees.api_server_peers(None, "10.96.0.1", "443")
    assert rules == [{"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    ipv6 = SimpleNamespace(ports=[SimpleNamespace(port=443)], endpoints=[SimpleNamespace(addresses=["fd00::1"])])
    assert attendees.api_server_peers(ipv6, None, None)[0]["to"] == [{"ipBlock": {"cidr": "fd00::1/128"}}]


def test_chart_network_policies_keep_their_defaults():
    """Only the hub's inter-namespace label changes: no policy is switched off and no egress allowance, egress
    or ingress rule of the chart is overridden, so every other rule stays the chart's own (on by default)."""
    for name in ("values.yaml", "values-kind.yaml"):
        ours = load_yaml(HUB / name)
        for path in ("hub.networkPolicy", "proxy.chp.networkPolicy", "proxy.traefik.networkPolicy",
                     "singleuser.networkPolicy"):  # fmt: skip
            policy = value(ours, path) if _has(ours, path) else {}
            assert policy.get("enabled", True) is True, f"{name}: {path} switched off"
            touched = set(policy) - {"interNamespaceAccessLabels"}
            assert not touched, f"{name}: {path} overrides the chart's {sorted(touched)}"


def _has(tree: dict, path: str) -> bool:
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


# --- RBAC: the hub may make namespaces and bind one role; attendees may do what the labs do -----------------------


def rules_allow(rules: list[dict], need: kube.Need, name: str | None = None) -> bool:
    """The RBAC authorizer's rule match for one request (no wildcards: a test forbids them here)."""
    resource = f"{need.resource}/{need.subresource}" if need.subresource else need.resource
    return any(
        need.group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
        and need.verb in rule.get("verbs", []) and (not rule.get("resourceNames") or name in rule["resourceNames"])
        for rule in rules
    )


def test_rbac_manifest_is_valid_and_has_no_wildcards(rbac):
    docs = list(rbac.values())
    assert not kube.validate_core(docs)
    for doc in docs:
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{doc['metadata']['name']}: wildcard in {field}"
            assert not {"escalate", "impersonate"} & set(rule["verbs"]), doc["metadata"]["name"]
        ref = doc.get("roleRef", {})
        assert ref.get("name") not in {"cluster-admin", "admin", "edit"}, doc["metadata"]["name"]


def test_hub_may_bind_the_attendee_role_and_nothing_wider(rbac, values):
    hub_role = rbac[("ClusterRole", "recsys-hub-attendees")]["rules"]
    binds = [r for r in hub_role if "bind" in r["verbs"]]
    assert binds == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                      "resourceNames": [values["gke"]["custom"]["recsysAttendees"]["clusterRole"]], "verbs": ["bind"]}]
    for need in ("get secrets", "list secrets", "create clusterrolebindings", "create roles", "delete namespaces",
                 "create pods/exec", "update clusterroles", "patch namespaces"):
        assert not rules_allow(hub_role, kube.Need.parse(need)), f"the hub should not {need}"
    # what KubeSpawner with user namespaces and the hook do
    for need in ("create namespaces", "get namespaces", "list pods", "watch pods", "create pods", "delete pods",
                 "list events", "create persistentvolumeclaims", "get persistentvolumeclaims", "create serviceaccounts",
                 "create secrets", "create resourcequotas", "update resourcequotas", "create limitranges",
                 "update limitranges", "create networkpolicies.networking.k8s.io",
                 "update networkpolicies.networking.k8s.io", "create rolebindings.rbac.authorization.k8s.io",
                 "update rolebindings.rbac.authorization.k8s.io"):
        assert rules_allow(hub_role, kube.Need.parse(need)), f"the hub needs to {need}"
    apiserver = rbac[("Role", "recsys-hub-apiserver")]
    assert apiserver["metadata"]["namespace"] == "default"
    assert rules_allow(apiserver["rules"], kube.Need.parse("get endpointslices.discovery.k8s.io"), "kubernetes")
    assert not rules_allow(apiserver["rules"], kube.Need.parse("get endpointslices.discovery.k8s.io"), "other")


def test_hub_bindings_name_the_charts_hub_service_account(rbac, values):
    account = values["gke"]["hub"]["serviceAccount"]["name"]
    for key in (("ClusterRoleBinding", "recsys-hub-attendees"), ("RoleBinding", "recsys-hub-apiserver")):
        assert rbac[key]["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                          "namespace": V["JUPYTERHUB_NAMESPACE"]}], key
        assert (rbac[key]["roleRef"]["kind"], rbac[key]["roleRef"]["name"]) in rbac


def test_every_method_the_hook_calls_exists_in_the_kubernetes_client(attendees):
    """kubernetes_asyncio (the hub's) and kubernetes (ours) are generated from the same API description."""
    from kubernetes import client

    calls = [(cls, method) for cls, create, replace in attendees.API_METHODS.values()
             for method in (create, replace) if method]
    calls += [("CoreV1Api", "read_namespace"), ("DiscoveryV1Api", "read_namespaced_endpoint_slice")]
    for cls, method in calls:
        assert callable(getattr(getattr(client, cls), method, None)), f"{cls}.{method}"


def test_attendee_role_covers_everything_the_labs_do_in_their_namespace(rbac, kind_docs):
    """Derived, not copied: every kind of the rendered kind overlay, moved into an attendee's namespace as the
    labs move it (kube.in_namespace), applied with kubectl (kube.apply_needs), plus what the labs read."""
    role = rbac[("ClusterRole", "recsys-attendee")]["rules"]
    moved = kube.in_namespace(kind_docs, ATTENDEE)
    assert all(d["metadata"]["namespace"] == ATTENDEE for d in moved)
    needs = kube.apply_needs(moved) + [f"delete {d}" for d in dict.fromkeys(kube.resource_of(d) for d in moved)]
    missing = [n for n in needs + LAB_READS if not rules_allow(role, kube.Need.parse(n))]
    assert not missing, f"recsys-attendee lacks: {missing}"


def test_attendee_role_grants_nothing_else(rbac, kind_docs):
    role = rbac[("ClusterRole", "recsys-attendee")]["rules"]
    allowed = {kube.Need.parse(f"get {kube.resource_of(d)}") for d in kube.in_namespace(kind_docs, ATTENDEE)}
    allowed |= {kube.Need.parse(n) for n in LAB_READS}
    wanted = {((n.group, f"{n.resource}/{n.subresource}" if n.subresource else n.resource)) for n in allowed}
    for rule in role:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) in wanted, f"recsys-attendee grants {resource} ({group or 'core'}): not needed"
        read_only = {"pods", "pods/log", "events", "trials", "suggestions", "resourcequotas", "limitranges"}
        if read_only & set(rule["resources"]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, f"read only: {rule}"
        if "pods/portforward" in rule["resources"]:
            assert rule["resources"] == ["pods/portforward"] and rule["verbs"] == ["create"], rule
    for need in ("get secrets", "create pods", "create pods/exec", "create rolebindings.rbac.authorization.k8s.io",
                 "list nodes", "create namespaces", "create serviceaccounts", "update resourcequotas"):
        assert not rules_allow(role, kube.Need.parse(need)), need


def test_resource_names_match_the_crds_plurals():
    directory = kube.crds_dir(download=False)
    for path in Path(directory).glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                names = crd["spec"]["names"]
                assert kube.namespace.resource_name(names["kind"]) == names["plural"], names["kind"]


# --- HTTPS on GKE, localhost on kind -------------------------------------------------------------------------------


def test_gke_values_serve_https_with_lets_encrypt(values):
    https = values["gke"]["proxy"]["https"]
    assert https["enabled"] is True and https["type"] == "letsencrypt"
    assert https["hosts"] and https["letsencrypt"]["contactEmail"], "gke/up passes both"
    service = values["gke"]["proxy"].get("service", {})
    assert service.get("disableHttpPort", False) is False, "Let's Encrypt's HTTP-01 challenge: port 80 stays open"
    own = load_yaml(HUB / "values.yaml")["proxy"]["https"]
    assert own == {"enabled": True, "type": "letsencrypt"}, "host and e-mail are per install, never committed"


def test_kind_stays_on_localhost_http(values):
    kind = values["kind"]
    assert kind["proxy"]["https"]["enabled"] is False
    assert kind["proxy"]["service"]["type"] == "ClusterIP", "no public load balancer on a laptop"


class Config(dict):
    """Enough of traitlets' Config for attendees.py: sections are created on first access."""

    def __getattr__(self, name):
        if name[:1].isupper():
            return self.setdefault(name, Config())
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


def exec_as_the_chart_does(vals: dict, monkeypatch) -> Config:
    """Run attendees.py the way the chart's jupyterhub_config.py runs hub.extraConfig: exec() with `c` set
    (hub.config already loaded into it) and the chart's z2jh module importable."""
    c = Config()
    for section, settings in vals["hub"]["config"].items():
        getattr(c, section).update(copy.deepcopy(settings))
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}  # what the chart sets before
    z2jh = types.ModuleType("z2jh")
    z2jh.get_config = lambda key, default=None: copy.deepcopy(value(vals, key, default))
    monkeypatch.setitem(sys.modules, "z2jh", z2jh)
    exec(compile((HUB / "attendees.py").read_text(encoding="utf-8"), "attendees.py", "exec"), {"c": c})
    return c


def test_chart_exec_sets_the_hook_and_secure_cookies_on_gke(values, monkeypatch):
    c = exec_as_the_chart_does(values["gke"], monkeypatch)
    assert callable(c.KubeSpawner.pre_spawn_hook)
    assert c.JupyterHub.public_url == "https://34-1-2-3.sslip.io/"
    assert c.JupyterHub.tornado_settings == {"slow_spawn_timeout": 0, "cookie_options": {"secure": True}}
    callback = values["gke"]["hub"]["config"]["GitHubOAuthenticator"]["oauth_callback_url"]
    assert callback.startswith(c.JupyterHub.public_url)


def test_chart_exec_on_kind_leaves_cookies_alone(values, monkeypatch):
    c = exec_as_the_chart_does(values["kind"], monkeypatch)
    assert callable(c.KubeSpawner.pre_spawn_hook)
    assert "public_url" not in c.JupyterHub and "cookie_options" not in c.JupyterHub.tornado_settings


@pytest.mark.parametrize("missing", [{"hosts": []}, {"letsencrypt": {"contactEmail": None}}])
def test_https_without_a_host_or_email_stops_the_hub(values, monkeypatch, missing):
    broken = merge(values["gke"], {"proxy": {"https": missing}})
    with pytest.raises(SystemExit, match="proxy.https.hosts and proxy.https.letsencrypt.contactEmail"):
        exec_as_the_chart_does(broken, monkeypatch)


def test_hook_refuses_a_hub_without_user_namespaces(values, monkeypatch):
    shared = merge(values["gke"], {"hub": {"config": {"KubeSpawner": {"enable_user_namespaces": False}}}})
    with pytest.raises(RuntimeError, match="enable_user_namespaces") as raised:  # the exec()d file's own class
        exec_as_the_chart_does(shared, monkeypatch)
    assert type(raised.value).__name__ == "AttendeeNamespaceError"


# --- the hook, run against stub clients ------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int):
        super().__init__(f"({status})")
        self.status = status


class FakeCluster:
    """Stub kubernetes_asyncio clients over a dict of objects; records every call."""

    def __init__(self, api_slice=KIND_API_SLICE, forbid: set[str] = frozenset()):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[str] = []
        self.api_slice = api_slice
        self.forbid = forbid

    def client(self, class_name: str):
        cluster = self

        class Client:
            def __getattr__(self, method):
                async def call(**kwargs):
                    cluster.calls.append(f"{class_name}.{method}")
                    if method in cluster.forbid:
                        raise ApiError(403)
                    return cluster.handle(method, **kwargs)
                return call

        return Client()

    def handle(self, method, name=None, namespace=None, body=None):
        if method == "read_namespaced_endpoint_slice":
            if self.api_slice is None:
                raise ApiError(403)
            return self.api_slice
        if method == "read_namespace":
            obj = self.objects[("Namespace", "", name)]
            return SimpleNamespace(metadata=SimpleNamespace(labels=obj["metadata"].get("labels")))
        key = (body["kind"], body["metadata"].get("namespace", ""), body["metadata"]["name"])
        if method.startswith("create_"):
            if key in self.objects:
                raise ApiError(409)
            self.objects[key] = copy.deepcopy(body)
        elif method.startswith("replace_"):
            assert key in self.objects
            self.objects[key] = copy.deepcopy(body)
        return body


def spawner_for(values: dict, namespace: str = ATTENDEE) -> SimpleNamespace:
    user = values["singleuser"]
    return SimpleNamespace(
        enable_user_namespaces=True, namespace=namespace, service_account=user["serviceAccountName"],
        cpu_guarantee=user["cpu"]["guarantee"], cpu_limit=user["cpu"]["limit"],
        mem_guarantee=byte_spec(user["memory"]["guarantee"]), mem_limit=byte_spec(user["memory"]["limit"]),
        log=SimpleNamespace(info=lambda *args: None),
    )


def test_hook_prepares_the_namespace_and_is_idempotent(values, attendees, monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", V["JUPYTERHUB_NAMESPACE"])
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster = FakeCluster()
    hook = attendees.make_pre_spawn_hook(values["gke"]["custom"]["recsysAttendees"], cluster.client)
    asyncio.run(hook(spawner_for(values["gke"])))
    kinds = sorted(k for k, _, _ in cluster.objects)
    assert kinds.count("ResourceQuota") == 3 and kinds.count("Secret") == 3 and "RoleBinding" in kinds
    policy = cluster.objects[("NetworkPolicy", ATTENDEE, attendees.NOTEBOOK_POLICY)]
    assert egress_allows(policy, "172.18.0.2", 6443) and egress_allows(policy, "10.96.0.1", 443)
    secrets_before = {k: v for k, v in cluster.objects.items() if k[0] == "Secret"}

    cluster.calls.clear()
    asyncio.run(hook(spawner_for(values["gke"])))  # the next start of the same attendee's server
    assert {k: v for k, v in cluster.objects.items() if k[0] == "Secret"} == secrets_before, "Secrets are kept"
    replaced = {c.split(".")[1] for c in cluster.calls if ".replace_" in c}
    assert replaced == {"replace_namespaced_resource_quota", "replace_namespaced_limit_range",
                        "replace_namespaced_network_policy", "replace_namespaced_role_binding"}
    assert "CoreV1Api.read_namespace" in cluster.calls


def test_hook_never_uses_a_namespace_it_did_not_make(values, attendees):
    cluster = FakeCluster()
    cluster.objects[("Namespace", "", "recsys-kube")] = {"kind": "Namespace", "metadata": {"name": "recsys-kube"}}
    hook = attendees.make_pre_spawn_hook(values["gke"]["custom"]["recsysAttendees"], cluster.client)
    with pytest.raises(attendees.AttendeeNamespaceError, match="not made by the hub"):
        asyncio.run(hook(spawner_for(values["gke"], "recsys-kube")))
    assert not any(k[0] != "Namespace" for k in cluster.objects), "nothing created in a foreign namespace"


def test_hook_fails_the_spawn_when_refused(values, attendees):
    cluster = FakeCluster(forbid={"create_namespaced_role_binding"})
    hook = attendees.make_pre_spawn_hook(values["gke"]["custom"]["recsysAttendees"], cluster.client)
    with pytest.raises(ApiError):
        asyncio.run(hook(spawner_for(values["gke"])))


def test_hook_without_the_endpoint_slice_still_starts(values, attendees, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster = FakeCluster(api_slice=None)
    hook = attendees.make_pre_spawn_hook(values["gke"]["custom"]["recsysAttendees"], cluster.client)
    asyncio.run(hook(spawner_for(values["gke"])))
    policy = cluster.objects[("NetworkPolicy", ATTENDEE, attendees.NOTEBOOK_POLICY)]
    assert egress_allows(policy, "10.96.0.1", 443) and not egress_allows(policy, "172.18.0.2", 6443)


# --- the setup scripts install the pieces ------------------------------------------------------------------------


def test_kind_up_applies_the_rbac_before_the_chart_and_loads_the_hook(run_script):  # noqa: F811
    result, _ = run_script("kind/up", "--dry-run", "--jupyterhub")
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    rbac_at = next(i for i, c in enumerate(commands) if re.search(r"kubectl .*apply -f \S*attendees-rbac\.yaml", c))
    helm_at = next(i for i, c in enumerate(commands) if c.startswith("helm upgrade --install jupyterhub"))
    assert rbac_at < helm_at
    assert re.search(r"--set-file hub\.extraConfig\.recsysAttendees=\S*cluster-setup/jupyterhub/attendees\.py",
                     commands[helm_at])
