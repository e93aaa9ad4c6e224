"""A fresh clone, as a learner has it: the checkout's files copied into an empty folder, nothing beside it.

The only help it gets is the two variables that point at offline copies of MovieLens and of the Kubeflow
CRDs, themselves copied elsewhere (on a machine with internet neither is set and the loaders download).
Used by the main-job test (``test_fresh_clone.py``) and the unsolved-labs test (``test_labs_unsolved.py``),
so every lab notebook is run once from a plain clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_checkout(target: Path) -> None:
    """The files a clone would have: tracked (and new, not ignored) files of this checkout, as they are now."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def fresh_environment(workdir: Path, clone: Path) -> dict[str, str]:
    """This process's environment for ``clone``: its package first on the path, no cache override, and the
    offline copies (if this machine has them) copied under ``workdir``, never next to the clone."""
    env = {k: v for k, v in os.environ.items() if k not in {"RECSYS_WORKSHOP_CACHE", "WORKSHOP_SCALE"}}
    env["PYTHONPATH"] = str(clone)  # the clone's package, not the one this venv was installed from
    for variable in ("MOVIELENS_DIR", "KUBEFLOW_CRDS_DIR"):
        if os.environ.get(variable):
            copy = workdir / "offline-copies" / variable.lower()
            shutil.copytree(os.environ[variable], copy)
            env[variable] = str(copy)
    return env


def make_fresh_clone(workdir: Path) -> tuple[Path, dict[str, str]]:
    """``(clone, env)``: a fresh clone under ``workdir`` and the environment to run it with; checks that the
    clone has nothing beside it and that its kernels import the clone's package."""
    clone = workdir / "clone"
    copy_checkout(clone)
    assert not (clone.parent / "shared").exists() and not (clone / "datasets" / "cache").exists()
    env = fresh_environment(workdir, clone)
    where = subprocess.run([sys.executable, "-c", "import recsys_workshop; print(recsys_workshop.__file__)"],
                           cwd=clone / "labs", env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(clone), "the kernels would import the original checkout"
    return clone, env
