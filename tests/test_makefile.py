"""The Makefile a newcomer types at: `make` explains itself, `make lab` starts in a container as root."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def make(*args: str) -> str:
    # A venv stamp newer than everything, so `make -n` prints the target's own commands only.
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def test_help_lists_every_target_and_variable():
    text = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()
    shown = subprocess.run(["make", "--no-print-directory"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout
    for target in phony:
        assert re.search(rf"^\s*make {re.escape(target)}\b", shown, re.M), f"`make` does not list {target}"
    for variable in ("WORKSHOP_SCALE", "MOVIELENS_DIR", "KUBEFLOW_CRDS_DIR", "VENV", "PYTHON", "LAB_ARGS",
                     "PYTEST_ARGS"):
        assert re.search(rf"^\s*{variable}\s", shown, re.M), f"`make` does not explain {variable}"


def test_lab_opens_at_the_root_on_labs_passes_arguments_and_allows_root():
    commands = make("lab", "LAB_ARGS=--port 8899 --no-browser", "STAMP=Makefile")
    line = next(line for line in commands.splitlines() if "jupyter lab" in line)
    assert f"--ServerApp.root_dir={REPO}" in line, "solutions/ must be reachable from the browser"
    assert "--LabApp.default_url=/lab/tree/labs" in line
    assert line.rstrip().endswith("--port 8899 --no-browser")
    assert ("--allow-root" in line) == (os.geteuid() == 0)


def test_the_fast_lane_leaves_out_tensorflow_browser_and_notebook_tests():
    commands = make("test-fast", "STAMP=Makefile")
    assert '-m "not tf and not browser and not notebooks"' in commands
