"""recsys_workshop.notebook_runner: the main job's lab runner says what failed and what to do, quietly."""

from __future__ import annotations

import nbformat
import pytest

from recsys_workshop import notebook_runner

pytestmark = pytest.mark.notebooks


def _notebook(path, *cells: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_each_lab_is_announced_reported_and_its_kernel_chatter_kept_out_of_the_terminal(tmp_path, capfd):
    ok = _notebook(tmp_path / "00_ok.ipynb",
                   "import os, sys\nos.write(2, b'WARNING: All log messages before absl::InitializeLog()\\n')",
                   "print('hello')")
    crd = _notebook(
        tmp_path / "01_crd.ipynb",
        "from recsys_workshop.kube.crds import CRDUnavailableError\n"
        "raise CRDUnavailableError('Could not download https://x/y: refused.\\n'\n"
        "    'If this machine is offline, set KUBEFLOW_CRDS_DIR to a folder holding the Kubeflow CRDs.')",
        "print('never')",
    )
    missing = _notebook(tmp_path / "02_import.ipynb", "import a_module_nobody_installed")
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
