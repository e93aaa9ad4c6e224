"""The workshop's main command (``make workshop`` runs ``python -m recsys_workshop run``)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from recsys_workshop import cli

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys_workshop", *args], capture_output=True, text=True, timeout=600, **kwargs
    )


def test_data_command_verifies_the_datasets():
    result = run("data", "ml-100k")
    assert result.returncode == 0, result.stderr
    assert "ml-100k: 100,000 ratings, verified" in result.stdout


def test_main_job_fails_loudly_on_an_unknown_dataset(tmp_path):
    result = run("run", "--scale", "ci", "--only", "00", "--datasets", "ml-20m", "--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: Unknown MovieLens data set 'ml-20m'")
    assert "Traceback" not in result.stderr


def test_the_console_script_is_the_same_main():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert declared["recsys-workshop"] == "recsys_workshop.cli:main"
    installed = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "recsys-workshop"]
    assert [ep.value for ep in installed] == [declared["recsys-workshop"]], (
        "the installed entry point differs from pyproject.toml: pip install --no-deps -e ."
    )
    assert installed[0].load() is cli.main
    script = Path(sys.executable).with_name("recsys-workshop")  # the console script pip wrote beside python
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage:") and "run" in result.stdout, result.stderr


def test_data_command_names_the_crd_variable_when_its_folder_is_missing(tmp_path):
    import os

    env = {**os.environ, "KUBEFLOW_CRDS_DIR": str(tmp_path / "nowhere")}
    result = run("data", "ml-100k", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: KUBEFLOW_CRDS_DIR={tmp_path / 'nowhere'} is not a folder")
    assert "Traceback" not in result.stderr
