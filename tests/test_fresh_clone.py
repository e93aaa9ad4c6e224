"""The main job on a fresh clone, as a learner meets it: nothing beside the checkout (see ``fresh_clone``).

``python -m recsys_workshop run --scale ci`` runs on a copy of the repository's files with no ``../shared``,
no cache and no artefacts, and its terminal output must be what the README promises: a line per lab and per
long step, no TensorFlow or kernel chatter, a summary that ends with where things are and what to do next.

The job's own steps (data, reference models, pipeline, serving stack) run in full; of the labs it runs 00
(the data) and 06 (the Kubeflow CRDs), the two things a fresh clone has to fetch for itself. Every one of
the 14 lab notebooks is run from a fresh clone by ``test_labs_unsolved.py``, and every solution by nbval
(``make test``), so running all 14 here again would only cost CI ten minutes.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from fresh_clone import make_fresh_clone

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

LABS_RUN = ("00", "06")


def test_the_main_job_runs_on_a_fresh_clone(tmp_path):
    clone, env = make_fresh_clone(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "recsys_workshop", "run", "--scale", "ci", "--only", *LABS_RUN],
        cwd=clone, env=env, capture_output=True, text=True, timeout=3000,
    )
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    notebooks = sorted(p for p in (clone / "solutions").glob("[0-9][0-9]_*.ipynb") if p.name[:2] in LABS_RUN)
    assert len(notebooks) == len(LABS_RUN) and f"{len(notebooks)}/{len(notebooks)} labs ran" in out
    for path in notebooks:
        assert re.search(rf"\[\d+/{len(notebooks)}\] {path.name} \.\.\.", out), f"no start line for {path.name}"
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
