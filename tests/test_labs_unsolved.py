"""Every exercise notebook runs top to bottom with its exercises unsolved, as a learner's "Run All" does.

The only errors allowed are the verdicts of the self-checks (``ExerciseNotDone``: "not done yet") and an
exercise cell's own stub; every other cell (a plot, a training run, a later step) must still run, using
the package's version of whatever the learner has not written yet. nbval runs the solutions; this runs
``labs/`` at CI size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

LABS = Path(__file__).resolve().parents[1] / "labs"
ALLOWED = {"ExerciseNotDone"}


def _unexpected_errors(notebook) -> list[str]:
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            stub = 'raise NotImplementedError("Exercise' in cell.source
            if output["ename"] in ALLOWED or (stub and output["ename"] == "NotImplementedError"):
                continue
            first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
            problems.append(f"cell {index} ({first_line[:60]!r}): {output['ename']}: {output['evalue'][:300]}")
    return problems


@pytest.mark.parametrize("path", sorted(LABS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_an_unsolved_lab_runs_to_the_end(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("WORKSHOP_SCALE", "ci")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1200, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(LABS)}})
    with open(os.devnull, "w") as quiet:
        client.execute(stdout=quiet, stderr=quiet)
    silent_checks = [
        index for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and "selfcheck.check(" in cell.source
        and not any(o.get("ename") == "ExerciseNotDone" for o in cell.get("outputs", []))
    ]
    assert silent_checks == [], f"{path.name}: self-checks that did not say 'not done yet' on an unsolved lab"
    assert _unexpected_errors(notebook) == [], f"{path.name}: cells that fail when the exercises are not done"
