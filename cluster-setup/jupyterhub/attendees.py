"""JupyterHub extra config: each attendee's server in a namespace of their own, ready for the cluster labs.

Loaded by the Zero to JupyterHub chart as ``hub.extraConfig.recsysAttendees``::

    helm upgrade --install ... --set-file hub.extraConfig.recsysAttendees=cluster-setup/jupyterhub/attendees.py

The chart's ``jupyterhub_config.py`` exec()s it, with ``c`` (the config) defined and the chart's ``z2jh``
module importable; the settings come from the values (``custom.recsysAttendees``, see values.yaml).
KubeSpawner (``hub.config.KubeSpawner.enable_user_namespaces``) puts the server in ``recsys-<login>``; before
each spawn :func:`pre_spawn_hook` makes sure that namespace has, idempotently:

- the labels of the workshop's namespace (Katib's metrics-collector injection, Pod Security ``baseline``
  enforced) and ``recsys-workshop/attendee: "true"``; a namespace without that label is never used;
- the service account ``recsys-attendee`` (its token is mounted into the server) and a RoleBinding to the
  ClusterRole ``recsys-attendee`` (attendees-rbac.yaml): the labs' rights, in this namespace only;
- two ResourceQuotas for pods and one for objects: the notebook's own (pods with ``activeDeadlineSeconds``,
  which only the notebook sets: exactly its guarantee and limit, so the attendee's jobs can never use up the
  room their next server start needs), the lab workloads' (every other pod), and counts (no LoadBalancer or
  NodePort Service, volumes and storage bounded); a LimitRange gives defaults to containers that declare
  no resources (Katib's injected sidecar, its suggestion pod) and caps any single container;
- a NetworkPolicy for the notebook: reached only by the hub and the proxy; it may reach the hub, DNS, the
  Kubernetes API server (the addresses of EndpointSlice ``default/kubernetes``, read at each spawn), the pods
  of its own namespace, and public addresses (not private ranges, not the cloud metadata server);
- the workshop's Secrets (``recsys-admin``, ``recsys-api``, ``recsys-postgres``; random values, created once
  and kept), as ``cluster-setup/lib/common.sh`` creates them in namespace ``recsys``.

With HTTPS (``proxy.https``), the hub's public URL is ``https://<first host>/``, so every cookie of the hub
and of the single-user servers is ``secure``; HTTPS switched on without a host stops the hub instead of
serving the GitHub login over plain HTTP (so does one without a contact e-mail, which Let's Encrypt needs).
``tests/test_hub_values.py`` runs all of this with stub objects.
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from typing import Any

LOG = logging.getLogger("recsys-attendees")

ATTENDEE_LABEL = "recsys-workshop/attendee"
NOTEBOOK_POLICY = "recsys-notebook"
NOTEBOOK_QUOTA = "recsys-notebook"
WORKLOADS_QUOTA = "recsys-workloads"
OBJECTS_QUOTA = "recsys-objects"
LIMIT_RANGE = "recsys-defaults"
# Private ranges (RFC 1918) and link-local (the cloud metadata server, 169.254.169.254, lives there): the
# notebook's internet rule excludes them, as the chart's own singleuser policy does.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
LINK_LOCAL = "169.254.0.0/16"
METADATA_SERVER = "169.254.169.254/32"
# What the hub does with an object that already exists: keep it (its content may not change: a Secret's
# values are in use, a service account has tokens) or replace it with the wanted one (so a changed values
# file takes effect at the next spawn). Per kind: (client class, create method, replace method or None).
API_METHODS: dict[str, tuple[str, str, str | None]] = {
    "Namespace": ("CoreV1Api", "create_namespace", None),
    "ServiceAccount": ("CoreV1Api", "create_namespaced_service_account", None),
    "Secret": ("CoreV1Api", "create_namespaced_secret", None),
    "ResourceQuota": ("CoreV1Api", "create_namespaced_resource_quota", "replace_namespaced_resource_quota"),
    "LimitRange": ("CoreV1Api", "create_namespaced_limit_range", "replace_namespaced_limit_range"),
    "NetworkPolicy": ("NetworkingV1Api", "create_namespaced_network_policy", "replace_namespaced_network_policy"),
    "RoleBinding": ("RbacAuthorizationV1Api", "create_namespaced_role_binding", "replace_namespaced_role_binding"),
}


class AttendeeNamespaceError(RuntimeError):
    """The attendee's namespace cannot be prepared; the spawn fails with this message."""


# ------------------------------------------------------------------------------------------------------------
# The objects (plain dicts, no client needed: the tests validate them against the Kubernetes schema)


def cpu_quantity(cores: float) -> str:
    """0.1 -> "100m": KubeSpawner keeps CPU as a float of cores."""
    return f"{round(cores * 1000)}m"


def notebook_quota(cpu_guarantee: float, cpu_limit: float, mem_guarantee: int, mem_limit: int) -> dict[str, str]:
    """The notebook pod's quota: exactly what KubeSpawner asks for (memory in bytes, as KubeSpawner keeps it)."""
    return {
        "pods": "1",
        "requests.cpu": cpu_quantity(cpu_guarantee),
        "limits.cpu": cpu_quantity(cpu_limit),
        "requests.memory": str(int(mem_guarantee)),
        "limits.memory": str(int(mem_limit)),
    }


def api_server_peers(endpoint_slice: Any, service_host: str | None, service_port: str | None) -> list[dict]:
    """NetworkPolicy peers and ports that reach the API server: each address of the EndpointSlice
    ``default/kubernetes`` on its port (what a policy sees after the Service's address is translated), and
    the Service's own address (for implementations that look before the translation)."""
    rules = []
    if endpoint_slice is not None:
        ports = sorted({int(p.port) for p in (endpoint_slice.ports or []) if p.port})
        addresses = sorted({a for e in (endpoint_slice.endpoints or []) for a in (e.addresses or [])})
        if ports and addresses:
            rules.append({
                "to": [{"ipBlock": {"cidr": _host_cidr(a)}} for a in addresses],
                "ports": [{"protocol": "TCP", "port": p} for p in ports],
            })
    if service_host and service_port:
        rules.append({
            "to": [{"ipBlock": {"cidr": _host_cidr(service_host)}}],
            "ports": [{"protocol": "TCP", "port": int(service_port)}],
        })
    return rules


def _host_cidr(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def notebook_network_policy(namespace: str, hub_namespace: str, api_server_rules: list[dict]) -> dict:
    hub_pods = {"kubernetes.io/metadata.name": hub_namespace}
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": NOTEBOOK_POLICY, "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": {"component": "singleuser-server"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                # the hub and the proxy (the chart labels both network-access-singleuser)
                "from": [{
                    "namespaceSelector": {"matchLabels": hub_pods},
                    "podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}},
                }],
                "ports": [{"protocol": "TCP", "port": 8888}],
            }],
            "egress": [
                {  # the hub's API (activity reports, OAuth)
                    "to": [{"namespaceSelector": {"matchLabels": hub_pods},
                            "podSelector": {"matchLabels": {"component": "hub"}}}],
                    "ports": [{"protocol": "TCP", "port": 8081}],
                },
                {  # DNS: kube-dns, a node-local cache on a private address, or the metadata server's resolver
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
                           *({"ipBlock": {"cidr": cidr}} for cidr in PRIVATE_RANGES),
                           {"ipBlock": {"cidr": METADATA_SERVER}}],
                    "ports": dns_ports,
                },
                *api_server_rules,
                {"to": [{"podSelector": {}}]},  # the attendee's own workloads (API, model server, Locust)
                {  # the internet (MovieLens, package indexes), but no private range and no metadata server
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [*PRIVATE_RANGES, LINK_LOCAL]}}],
                },
            ],
        },
    }


def workshop_secrets(namespace: str, token: Callable[[], str] = lambda: secrets.token_hex(32)) -> list[dict]:
    """The Secrets the workshop's manifests read, with fresh random values (lib/common.sh, create_workshop_secrets)."""
    password = token()

    def secret(name: str, data: dict[str, str]) -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace}, "stringData": data}

    return [
        secret("recsys-admin", {"token": token()}),
        secret("recsys-api", {"signing-key": token()}),
        secret("recsys-postgres", {
            "password": password,
            "database-url": f"postgresql+psycopg://recsys:{password}@recsys-postgres:5432/recsys",
        }),
    ]


def attendee_objects(
    namespace: str,
    settings: Mapping[str, Any],
    *,
    hub_namespace: str,
    service_account: str,
    notebook: Mapping[str, str],
    api_server_rules: list[dict],
    with_secrets: bool = True,
) -> list[dict]:
    """Everything an attendee's namespace holds before their server starts, in the order it is created
    (the namespace first, its limits before any pod). ``settings`` is ``custom.recsysAttendees``."""
    labels = {**settings.get("namespaceLabels", {}), ATTENDEE_LABEL: "true"}
    quota = settings["quota"]

    def meta(name: str) -> dict:
        return {"name": name, "namespace": namespace, "labels": {ATTENDEE_LABEL: "true"}}

    objects: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": meta(LIMIT_RANGE),
         "spec": {"limits": [{"type": "Container", **copy.deepcopy(dict(settings["limitRange"]))}]}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(NOTEBOOK_QUOTA),
         "spec": {"hard": dict(notebook), "scopes": ["Terminating"]}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(WORKLOADS_QUOTA),
         "spec": {"hard": {k: str(v) for k, v in quota["workloads"].items()}, "scopes": ["NotTerminating"]}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(OBJECTS_QUOTA),
         "spec": {"hard": {k: str(v) for k, v in quota["objects"].items()}}},
        notebook_network_policy(namespace, hub_namespace, api_server_rules),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(service_account)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(settings["clusterRole"]),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings["clusterRole"]},
         "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]},
    ]
    if with_secrets:
        objects += workshop_secrets(namespace)
    return objects


# ------------------------------------------------------------------------------------------------------------
# Creating them (kubernetes_asyncio, the client KubeSpawner uses)


def _status(error: BaseException) -> int | None:
    return getattr(error, "status", None)


async def ensure(client_for: Callable[[str], Any], obj: Mapping[str, Any]) -> str:
    """Create ``obj``; if it exists, keep it or replace it (:data:`API_METHODS`). Returns what happened."""
    kind, meta = obj["kind"], obj["metadata"]
    class_name, create, replace = API_METHODS[kind]
    api = client_for(class_name)
    namespaced = kind != "Namespace"
    try:
        if namespaced:
            await getattr(api, create)(namespace=meta["namespace"], body=obj)
        else:
            await getattr(api, create)(body=obj)
        return "created"
    except Exception as error:
        if _status(error) != 409:
            raise
    if kind == "Namespace":
        existing = await api.read_namespace(name=meta["name"])
        labels = (getattr(existing.metadata, "labels", None) or {}) if hasattr(existing, "metadata") else {}
        if labels.get(ATTENDEE_LABEL) != "true":
            raise AttendeeNamespaceError(
                f"namespace {meta['name']} exists but was not made by the hub for an attendee "
                f"(no label {ATTENDEE_LABEL}=true): refusing to start a server in it"
            )
        return "kept"
    if replace is None:
        return "kept"
    await getattr(api, replace)(name=meta["name"], namespace=meta["namespace"], body=obj)
    return "replaced"


async def read_api_server_slice(client_for: Callable[[str], Any]) -> Any:
    """EndpointSlice default/kubernetes, or None (then the policy names the Service address only)."""
    try:
        return await client_for("DiscoveryV1Api").read_namespaced_endpoint_slice(name="kubernetes", namespace="default")
    except Exception as error:
        LOG.error("Could not read EndpointSlice default/kubernetes (%s): the notebooks' NetworkPolicy names only "
                  "the API server's Service address. Is attendees-rbac.yaml applied?", error)
        return None


def make_pre_spawn_hook(settings: Mapping[str, Any], client_for: Callable[[str], Any] | None = None) -> Callable:
    """The ``Spawner.pre_spawn_hook``: prepares ``spawner.namespace`` (see the module's docstring)."""

    async def pre_spawn_hook(spawner: Any) -> None:
        if not getattr(spawner, "enable_user_namespaces", False):
            raise AttendeeNamespaceError("KubeSpawner.enable_user_namespaces is off: attendees would share the hub's "
                                         "namespace. Set it in hub.config.KubeSpawner (values.yaml).")
        resources = (spawner.cpu_guarantee, spawner.cpu_limit, spawner.mem_guarantee, spawner.mem_limit)
        if any(value is None for value in resources):
            raise AttendeeNamespaceError("singleuser.cpu and singleuser.memory need a guarantee and a limit: the "
                                         "notebook's quota is made from them")
        clients = client_for or _shared_client
        namespace = spawner.namespace
        endpoint_slice = await read_api_server_slice(clients)
        objects = attendee_objects(
            namespace,
            settings,
            hub_namespace=os.environ.get("POD_NAMESPACE", "jhub"),
            service_account=spawner.service_account,
            notebook=notebook_quota(*resources),
            api_server_rules=api_server_peers(endpoint_slice, os.environ.get("KUBERNETES_SERVICE_HOST"),
                                              os.environ.get("KUBERNETES_SERVICE_PORT")),
            with_secrets=bool(settings.get("workshopSecrets", True)),
        )
        done = {}
        for obj in objects:
            done[f"{obj['kind']}/{obj['metadata']['name']}"] = await ensure(clients, obj)
        spawner.log.info("Attendee namespace %s ready: %s", namespace, ", ".join(f"{k} {v}" for k, v in done.items()))

    return pre_spawn_hook


def _shared_client(class_name: str) -> Any:
    from kubespawner.clients import shared_client

    return shared_client(class_name)


# ------------------------------------------------------------------------------------------------------------
# The configuration


def configure(c: Any, chart_value: Callable[..., Any]) -> None:
    """Set the hook and the HTTPS settings on ``c`` from the chart's values (``chart_value`` is z2jh.get_config)."""
    settings = chart_value("custom.recsysAttendees")
    if not settings:
        raise AttendeeNamespaceError("custom.recsysAttendees is missing (cluster-setup/jupyterhub/values.yaml)")
    if not c.KubeSpawner.get("enable_user_namespaces"):
        raise AttendeeNamespaceError("hub.config.KubeSpawner.enable_user_namespaces must be true with attendees.py")
    c.KubeSpawner.pre_spawn_hook = make_pre_spawn_hook(settings)

    https = chart_value("proxy.https") or {}
    if https.get("enabled"):
        hosts = https.get("hosts") or []
        email = (https.get("letsencrypt") or {}).get("contactEmail")
        if https.get("type", "letsencrypt") == "letsencrypt" and not (hosts and email):
            # Without hosts the chart quietly serves plain HTTP on the load balancer; without an e-mail
            # Let's Encrypt's account is not registered. Stop instead.
            sys.exit("FATAL: proxy.https.enabled with type letsencrypt needs proxy.https.hosts and "
                     "proxy.https.letsencrypt.contactEmail (cluster-setup/gke/up passes both); refusing to serve "
                     "the login over plain HTTP.")
        if hosts:
            c.JupyterHub.public_url = f"https://{hosts[0]}/"
        tornado = dict(c.JupyterHub.tornado_settings) if isinstance(c.JupyterHub.get("tornado_settings"), dict) else {}
        tornado["cookie_options"] = {**tornado.get("cookie_options", {}), "secure": True}
        c.JupyterHub.tornado_settings = tornado


if "c" in globals():  # exec()d by the chart's jupyterhub_config.py
    from z2jh import get_config as _chart_value

    configure(globals()["c"], _chart_value)
