"""The workshop's main command (``make workshop`` runs ``python -m recsys_workshop run``)."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys_workshop", *args], capture_output=True, text=True, timeout=600, **kwargs
    )


def test_data_command_verifies_the_datasets():
    result = run("data", "ml-100k")
    assert result.returncode == 0, result.stderr
    assert "ml-100k: 100,000 ratings, verified" in result.stdout


def test_main_job_runs_lab_00_and_prints_a_summary(tmp_path):
    result = run("run", "--scale", "ci", "--only", "00", "--output", str(tmp_path), "--artifacts", str(tmp_path / "a"))
    assert result.returncode == 0, result.stdout + result.stderr
    # the continuous-training pipeline pushed a first version, and the stack served it and stopped
    assert "deployed versions [1]" in result.stdout and (tmp_path / "a" / "models" / "recsys" / "1").is_dir()
    assert "user 196 gets (source model" in result.stdout and "stack stopped" in result.stdout
    assert "ml-latest-small" in result.stdout and "verified" in result.stdout
    assert "00_environment_and_data.ipynb" in result.stdout and "1/1 labs ran" in result.stdout
    for model in ("most-popular", "content-based", "item-knn", "mf+bias"):
        assert model in result.stdout, f"the summary must report {model}"
    assert (tmp_path / "00_environment_and_data.ipynb").is_file()


def test_main_job_fails_loudly_on_an_unknown_dataset(tmp_path):
    result = run("run", "--scale", "ci", "--only", "00", "--datasets", "ml-20m", "--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: Unknown MovieLens data set 'ml-20m'")
    assert "Traceback" not in result.stderr
