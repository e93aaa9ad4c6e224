"""Every exercise notebook runs top to bottom with its exercises unsolved, as a learner's "Run All" does.

The only errors allowed are the verdicts of the self-checks (``ExerciseNotDone``: "not done yet") and an
exercise cell's own stub; every other cell (a plot, a training run, a later step) must still run, using
the package's version of whatever the learner has not written yet. nbval runs the solutions; this runs
``labs/`` at CI size, from a fresh clone (``fresh_clone``: nothing beside the checkout but the variables that
point at offline copies of the data and CRDs), as a learner who has just cloned the repository would.
Under pytest-xdist each worker makes its own clone, so two labs never share an ``artifacts/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fresh_clone import REPO, make_fresh_clone

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

LABS = REPO / "labs"
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


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    return make_fresh_clone(tmp_path_factory.mktemp("fresh"))


@pytest.mark.parametrize("name", sorted(p.name for p in LABS.glob("[0-9][0-9]_*.ipynb")), ids=lambda n: n[:-6])
def test_an_unsolved_lab_runs_to_the_end(name, fresh):
    import nbformat
    from nbclient import NotebookClient

    clone, env = fresh
    path = clone / "labs" / name
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1200, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    with open(os.devnull, "w") as quiet:  # the kernel gets the clone's environment (start_kernel's env)
        client.execute(stdout=quiet, stderr=quiet, env={**env, "WORKSHOP_SCALE": "ci"})
    silent_checks = [
        index for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and "selfcheck.check(" in cell.source
        and not any(o.get("ename") == "ExerciseNotDone" for o in cell.get("outputs", []))
    ]
    assert silent_checks == [], f"{path.name}: self-checks that did not say 'not done yet' on an unsolved lab"
    assert _unexpected_errors(notebook) == [], f"{path.name}: cells that fail when the exercises are not done"
