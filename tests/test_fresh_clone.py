"""The main job on a fresh clone, as a learner meets it: nothing beside the checkout.

A copy of the repository's tracked files goes into an empty folder (no ``../shared``, no cache, no
artefacts); the only help it gets is the two variables that point at offline copies of MovieLens and of
the Kubeflow CRDs, themselves copied elsewhere (on a machine with internet, neither is set and the loaders
download). Then ``python -m recsys_workshop run --scale ci`` must run all 13 labs, and its terminal
output must be what the README promises: a line per lab and per long step, no TensorFlow or kernel
chatter, a summary that ends with where things are and what to do next.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
N_LABS = len(list((REPO / "solutions").glob("[0-9][0-9]_*.ipynb")))


def _copy_checkout(target: Path) -> None:
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


def _fresh_environment(tmp_path: Path, clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"RECSYS_WORKSHOP_CACHE", "WORKSHOP_SCALE"}}
    env["PYTHONPATH"] = str(clone)  # the clone's package, not the one this venv was installed from
    for variable in ("MOVIELENS_DIR", "KUBEFLOW_CRDS_DIR"):
        if os.environ.get(variable):
            copy = tmp_path / "offline-copies" / variable.lower()
            shutil.copytree(os.environ[variable], copy)
            env[variable] = str(copy)
    return env


def test_the_main_job_runs_every_lab_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    _copy_checkout(clone)
    assert not (clone.parent / "shared").exists() and not (clone / "datasets" / "cache").exists()
    env = _fresh_environment(tmp_path, clone)
    where = subprocess.run([sys.executable, "-c", "import recsys_workshop; print(recsys_workshop.__file__)"],
                           cwd=clone / "solutions", env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(clone), "the kernels would import the original checkout"

    result = subprocess.run(
        [sys.executable, "-m", "recsys_workshop", "run", "--scale", "ci"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=3000,
    )
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    assert f"{N_LABS}/{N_LABS} labs ran" in out and N_LABS == 13
    for path in sorted((clone / "solutions").glob("[0-9][0-9]_*.ipynb")):
        assert re.search(rf"\[\d+/{N_LABS}\] {path.name} \.\.\.", out), f"no start line for {path.name}"
        assert re.search(rf"{re.escape(path.name)}\s+ok\s+\d+ s", out), f"no summary line for {path.name}"
        assert (clone / "artifacts" / "notebooks" / path.name).is_file()
    assert "running the pipeline" in out and "training mf+bias ..." in out
    assert out.rstrip().endswith("next: `make lab` opens JupyterLab on labs/ (exercises) and solutions/ (completed)")
    terminal = out + result.stderr
    for chatter in ("absl::InitializeLog", "oneDNN custom operations", "running over TCP", "\x1b["):
        assert chatter not in terminal, f"{chatter!r} reached the terminal"
    assert (clone / "artifacts" / "models" / "recsys" / "1").is_dir()
    # CRDs came from the variable, data from the variable: nothing was downloaded into the clone
    assert not (clone / "datasets" / "cache").exists() or not any((clone / "datasets" / "cache").iterdir())
