"""The GKE cost arithmetic the tests hold the scripts, INSTRUCTOR.md and the labs' boxes to, computed here once
from the prices pinned in ``cluster-setup/versions.env`` (``kube.versions()``)."""

from __future__ import annotations

HOURS_PER_MONTH = 730  # Google's convention for a per-month price


def nodes_and_disks(v: dict) -> tuple[float, float]:
    """Dollars per hour of the nodes, and of their boot disks."""
    nodes = int(v["GKE_NUM_NODES"])
    disks = nodes * int(v["GKE_DISK_SIZE_GB"]) * float(v["GKE_PRICE_DISK_PER_GB_MONTH"]) / HOURS_PER_MONTH
    return nodes * float(v["GKE_PRICE_NODE_PER_HOUR"]), disks


def cluster_hourly(v: dict) -> float:
    """The cluster alone: nodes and their disks (the management fee is credited on the free tier)."""
    return sum(nodes_and_disks(v))


def everything_hourly(v: dict, *, hub: bool) -> float:
    """What ``gke/up`` prints: the cluster, the node IPs, the volumes, the registry's storage, the fee unless
    credited, and with JupyterHub its load balancer (an IP and a forwarding rule) and the attendees' volumes."""
    n, disk = int(v["GKE_NUM_NODES"]), float(v["GKE_PRICE_DISK_PER_GB_MONTH"])
    ip, rule = float(v["GKE_PRICE_EXTERNAL_IP_PER_HOUR"]), float(v["GKE_PRICE_FORWARDING_RULE_PER_HOUR"])
    volumes = int(v["GKE_PROFILE_VOLUMES_GB"])
    if hub:
        volumes += int(v["GKE_HUB_VOLUME_GB"]) + int(v["GKE_CLASS_SIZE"]) * int(v["GKE_USER_VOLUME_GB"])
    total = cluster_hourly(v) + n * ip + volumes * disk / HOURS_PER_MONTH + (ip + rule if hub else 0)
    total += int(v["GKE_IMAGE_SIZE_GB"]) * float(v["GKE_PRICE_ARTIFACT_STORAGE_PER_GB_MONTH"]) / HOURS_PER_MONTH
    if v["GKE_PRICE_CLUSTER_FEE_CREDITED"] != "yes":
        total += float(v["GKE_PRICE_CLUSTER_FEE_PER_HOUR"])
    return total
