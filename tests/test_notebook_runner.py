"""recsys_workshop.notebook_runner: the main job's lab runner says what failed and what to do, quietly."""

from __future__ import annotations

import nbformat
import pytest

from recsys_workshop import notebook_runner

pytestmark = pytest.mark.notebooks


def write_notebook(path, *cells: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_each_lab_is_announced_reported_and_its_kernel_chatter_kept_out_of_the_terminal(tmp_path, capfd):
    ok = write_notebook(tmp_path / "00_ok.ipynb",
                   "import os, sys\nos.write(2, b'WARNING: All log messages before absl::InitializeLog()\\n')",
                   "print('hello')")
    crd = write_notebook(
        tmp_path / "01_crd.ipynb",
        "from recsys_workshop.kube.crds import CRDUnavailableError\n"
        "raise CRDUnavailableError('Could not download https://x/y: refused.\\n'\n"
        "    'If this machine is offline, set KUBEFLOW_CRDS_DIR to a folder holding the Kubeflow CRDs.')",
        "print('never')",
    )
    missing = write_notebook(tmp_path / "02_import.ipynb", "import a_module_nobody_installed")
    lines = []
    results = notebook_runner.run_notebooks([ok, crd, missing], tmp_path / "out", scale="ci", timeout=120,
                                            say=lines.append)
    assert [r.status for r in results] == ["ok", "failed", "failed"]
    assert lines[0] == "  [1/3] 00_ok.ipynb ..." and lines[1].strip().startswith("ok in")
    assert results[1].reason == "CRDUnavailableError: Could not download https://x/y: refused."
    assert results[1].fix.startswith("If this machine is offline, set KUBEFLOW_CRDS_DIR")
    assert results[2].reason == "ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    assert "make install" in results[2].fix
    assert any("reason: CRDUnavailableError" in line for line in lines)
    captured = capfd.readouterr()
    assert "absl::InitializeLog" not in captured.out + captured.err
    assert "absl::InitializeLog" in (tmp_path / "out" / "logs" / "00_ok.kernel.log").read_text()
    error_text = (tmp_path / "out" / "logs" / "01_crd.error.txt").read_text()
    assert "CRDUnavailableError" in error_text and "\x1b[" not in error_text
    assert (tmp_path / "out" / "01_crd.ipynb").is_file(), "a failed notebook is kept, executed up to its error"


def test_a_failure_without_advice_points_at_the_full_error(tmp_path):
    class Boom(Exception):
        pass

    reason, fix = notebook_runner.describe_failure(Boom("\x1b[31mred\x1b[0m and long " + "x" * 400), tmp_path / "e.txt")
    assert reason.startswith("Boom: red and long") and len(reason) <= 300 and "\x1b" not in reason
    assert fix == f"see the full error in {tmp_path / 'e.txt'}"


def test_html_renders_every_solution_run_and_indexes_it(tmp_path, monkeypatch):
    """`python -m recsys_workshop html`: executed pages to read ahead, a failed lab rendered up to its error."""
    from recsys_workshop import cli

    solutions = tmp_path / "solutions"
    solutions.mkdir()
    write_notebook(solutions / "00_fine.ipynb", "print('the answer is', 6 * 7)")
    write_notebook(solutions / "01_broken.ipynb", "print('before')", "1 / 0", "print('after')")
    write_notebook(solutions / "02_skipped.ipynb", "print('not asked for')")
    monkeypatch.setattr(cli, "REPO", tmp_path)
    out = tmp_path / "html"
    status = cli.main(["html", "--only", "00", "01", "--output", str(out), "--timeout", "120"])
    assert status == 1, "a failed lab fails the command"
    fine = (out / "00_fine.html").read_text()
    assert "the answer is 42" in fine and fine.lstrip().lower().startswith("<!doctype html>")
    assert (out / "00_fine.html").stat().st_mode & 0o777 == 0o644, "a page others may read (mkstemp makes 0600)"
    broken = (out / "01_broken.html").read_text()
    assert "before" in broken and "ZeroDivisionError" in broken
    executed = nbformat.read(out / "notebooks" / "01_broken.ipynb", as_version=4)
    assert executed.cells[0].outputs and not executed.cells[2].outputs, "rendered as far as it ran, no further"
    assert not (out / "02_skipped.html").exists()
    index = (out / "index.html").read_text()
    assert '<a href="00_fine.html">00_fine</a></td><td>ok</td>' in index
    assert '<a href="01_broken.html">01_broken</a></td><td>failed</td>' in index and "ZeroDivisionError" in index
    assert "WORKSHOP_SCALE=ci" in index
    assert not list(out.glob(".*.tmp")), "no half-written page is left behind"
