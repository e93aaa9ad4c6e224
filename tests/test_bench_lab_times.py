"""bench/lab_times.py: Run All times of the solutions, the figures the labs' "Before you start" boxes quote."""

from __future__ import annotations

import json

import pytest
from test_notebook_runner import write_notebook

from bench import lab_times

pytestmark = pytest.mark.notebooks


def test_each_solution_is_timed_at_each_scale_and_merged_into_the_results(tmp_path, monkeypatch):
    fine = write_notebook(tmp_path / "00_fine.ipynb", "import os\nprint(os.environ['WORKSHOP_SCALE'])")
    broken = write_notebook(tmp_path / "01_broken.ipynb", "1 / 0")
    monkeypatch.setattr(lab_times, "solutions", lambda only=None: [fine, broken])
    monkeypatch.setattr(lab_times, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    kept = {"benchmark": "lab-times", "protocol": "run-all", "dataset": "full", "model": "lab-08",
            "metric": "run_seconds", "value": 500.0}  # fmt: skip
    stale = kept | {"dataset": "ci", "model": "lab-00", "value": 999.0}
    broken_before = kept | {"dataset": "ci", "model": "lab-01", "value": 3.0}
    (tmp_path / "results" / "lab-times.json").write_text(json.dumps([kept, stale, broken_before]))
    status = lab_times.main(["--scales", "ci", "--timeout", "120"])
    assert status == 1, "a lab that fails makes the run fail, and gets no time"
    records = json.loads((tmp_path / "results" / "lab-times.json").read_text())
    keys = [(r["dataset"], r["model"]) for r in records]
    assert keys == [("ci", "lab-00"), ("full", "lab-08")], "lab-00 replaced, lab-08 kept, lab-01 (fails now) dropped"
    fresh = records[0]
    assert 0 < fresh["value"] < 120 and fresh["value"] != 999.0
    assert (fresh["benchmark"], fresh["protocol"], fresh["metric"]) == ("lab-times", "run-all", "run_seconds")
    assert fresh["commit"] and fresh["date"] and fresh["seeds"] == [0]


def test_no_matching_solution_is_a_clear_error(capsys):
    assert lab_times.main(["--only", "99", "--no-write"]) == 2
    assert "no solution notebooks match ['99']" in capsys.readouterr().err
