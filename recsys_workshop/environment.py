"""What machine is this, and in which mode will the workshop run?

*local mode*: no Kubernetes cluster is reachable; every lab runs its steps as local processes.
*cluster mode*: a kubeconfig context (or an in-cluster service account) reaches a cluster; the labs
also submit their steps as Kubernetes resources.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

import pandas as pd

PACKAGES = (
    "numpy", "pandas", "matplotlib", "tensorflow-cpu", "keras", "keras-rs", "kfp", "kserve",
    "kubeflow-training", "kubeflow-katib", "kubernetes", "locust", "optuna", "jupyterlab",
)  # fmt: skip


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution (``"missing"`` when not installed); imports nothing."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def machine() -> dict[str, object]:
    """CPU count, memory and Python of this machine."""
    import psutil

    memory = psutil.virtual_memory()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "memory_gb": round(memory.total / 2**30, 1),
        "available_memory_gb": round(memory.available / 2**30, 1),
    }


def report() -> pd.DataFrame:
    """One table of everything above, for the first cell of lab 00."""
    rows = [("machine", key, str(value)) for key, value in machine().items()]
    rows += [("package", key, value) for key, value in package_versions().items()]
    return pd.DataFrame(rows, columns=["kind", "name", "value"])
