"""Where things are: the repository, its cluster setup, the training config and the run artefacts.

The one module that knows the layout of a checkout; every other module asks it instead of computing
``Path(__file__).parents[1]``. Nothing here reaches outside the checkout: folders that only some machines
have (an offline copy of the data or of the Kubeflow CRDs) are given by environment variables, read by the
modules that use them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ARTIFACTS_DIR",
    "CLUSTER_SETUP_DIR",
    "MANIFESTS_DIR",
    "REPO_ROOT",
    "TRAIN_CONFIG",
    "VERSIONS_FILE",
    "cache_dir",
    "is_checkout",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SETUP_DIR = REPO_ROOT / "cluster-setup"
MANIFESTS_DIR = CLUSTER_SETUP_DIR / "manifests"
VERSIONS_FILE = CLUSTER_SETUP_DIR / "versions.env"
# The job config every training run starts from: the TFJob's, the pipeline's and the labs'.
TRAIN_CONFIG = MANIFESTS_DIR / "base" / "train.json"
# Models, pipeline runs, executed notebooks, load-test output: git-ignored.
ARTIFACTS_DIR = REPO_ROOT / "artifacts"
ENV_CACHE_DIR = "RECSYS_WORKSHOP_CACHE"


def is_checkout() -> bool:
    """True when the package runs from a checkout of the workshop (not from an installed wheel)."""
    return (REPO_ROOT / "datasets").is_dir() and (REPO_ROOT / "pyproject.toml").is_file()


def cache_dir() -> Path:
    """The folder where downloads (MovieLens archives, Kubeflow CRDs) are kept.

    ``$RECSYS_WORKSHOP_CACHE`` if set; else ``datasets/cache`` in a checkout of the workshop (that folder is
    git-ignored); else ``~/.cache/recsys-workshop``.
    """
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if is_checkout():
        return REPO_ROOT / "datasets" / "cache"
    return Path.home() / ".cache" / "recsys-workshop"
