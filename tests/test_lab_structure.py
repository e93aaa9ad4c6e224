"""The repository's own labs/ and solutions/: built from source/, paired, and shaped the way the labs work.

These tests read the real notebooks (no temporary tree). With no sources yet they still check that
labs/ and solutions/ hold no stray notebooks; ``test_labbuild.py`` tests the builder itself.
"""

import re
from pathlib import Path

import nbformat
import pytest

from tools import labbuild

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
STUB = re.compile(r'^(?P<indent>\s*)raise NotImplementedError\("Exercise (?P<n>\d+)\.(?P<m>\d+)"\)$')
READS_SCALE = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["']WORKSHOP_SCALE["']""")
READS_CI = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["']CI["']""")


def _stems(folder: str, pattern: str) -> set[str]:
    return {p.stem for p in (ROOT / folder).glob(pattern)}


def _pairs() -> list[tuple[str, nbformat.NotebookNode, nbformat.NotebookNode]]:
    """(name, lab, solution) for every source whose two notebooks exist."""
    pairs = []
    for source in labbuild.find_sources(ROOT):
        lab, solution = (ROOT / folder / f"{source.stem}.ipynb" for folder in ("labs", "solutions"))
        if lab.exists() and solution.exists():
            pairs.append(
                (source.stem, nbformat.read(lab, as_version=4), nbformat.read(solution, as_version=4))
            )
    return pairs


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.split("\n") if line.strip()), "")


def _same_outside_stub(lab: str, solution: str) -> bool:
    """True if ``solution`` is ``lab`` with its one stub line replaced by indented code."""
    lines, full = lab.split("\n"), solution.split("\n")
    stubs = [k for k, line in enumerate(lines) if STUB.match(line)]
    if not stubs:
        return lines == full
    assert len(stubs) == 1, f"more than one exercise stub in a cell:\n{lab}"
    k = stubs[0]
    before, after, indent = lines[:k], lines[k + 1 :], STUB.match(lines[k])["indent"]
    filled = full[k : len(full) - len(after)]
    return (
        full[:k] == before
        and full[len(full) - len(after) :] == after
        and bool(filled)
        and all(line.startswith(indent) or not line.strip() for line in filled)
    )


def test_notebooks_are_built_from_the_current_sources(capsys):
    status = labbuild.main(["--check", "--root", str(ROOT)])
    captured = capsys.readouterr()
    assert status == 0, f"labs/ or solutions/ out of date with source/:\n{captured.err}"
    assert "up to date" in captured.out


def test_every_source_has_exactly_one_lab_and_one_solution():
    sources = _stems("source", "*.py")
    assert _stems("labs", "*.ipynb") == sources
    assert _stems("solutions", "*.ipynb") == sources
    assert len(_pairs()) == len(sources)


def test_lab_and_solution_differ_only_inside_solution_regions():
    for name, lab, solution in _pairs():
        assert len(lab.cells) == len(solution.cells), name
        for a, b in zip(lab.cells, solution.cells, strict=True):
            where = f"{name} cell {a.id}"
            assert (a.id, a.cell_type, a.metadata) == (b.id, b.cell_type, b.metadata), where
            assert a.get("outputs") == b.get("outputs"), where
            assert _same_outside_stub(a.source, b.source), (
                f"{where}: lab and solution differ outside a region"
            )
            assert not STUB.search(b.source), f"{where}: a stub in the solution"


def test_stubs_are_numbered_in_order_and_followed_by_a_self_check():
    for name, lab, _ in _pairs():
        code = _code_cells(lab)
        numbers = []
        for i, cell in enumerate(code):
            for line in cell.source.split("\n"):
                if match := STUB.match(line):
                    numbers.append((int(match["n"]), int(match["m"])))
                    assert i + 1 < len(code), f"{name}: Exercise {match['n']}.{match['m']} has no self-check"
                    following = code[i + 1]
                    assert _first_line(following.source).startswith("# Self-check"), (
                        f"{name}: the cell after Exercise {match['n']}.{match['m']} is not a '# Self-check'"
                    )
        lab_number = int(name[:2])
        assert numbers == [(lab_number, m) for m in range(1, len(numbers) + 1)], name


CHECK_ID = re.compile(r"""\b(?:check|yours_or|yours_if_passed)\(\s*["'](\d+)\.(\d+)["']""")


def test_self_checks_carry_their_labs_number():
    """A self-check prints 'Exercise N.M: correct': N must be the lab's number (a renumbering once left the
    old numbers in the checks while the headings moved on)."""
    for name, _, solution in _pairs():
        lab_number = int(name[:2])
        ids = [(int(n), int(m)) for cell in _code_cells(solution) for n, m in CHECK_ID.findall(cell.source)]
        assert ids, f"{name}: no self-check"
        assert {n for n, _ in ids} == {lab_number}, f"{name}: self-check ids {sorted(set(ids))}"
        headings = {int(n) for cell in solution.cells if cell.cell_type == "markdown"
                    for n in re.findall(r"Exercise (\d+)\.\d+", cell.source)}
        assert headings <= {lab_number}, f"{name}: exercises of other labs named in the text: {sorted(headings)}"


def test_every_self_check_has_both_hint_tiers():
    """Issue 15: hints come in two tiers, the concept first, then the code on request; a check without its
    code hint leaves a stuck learner with nothing but the concept."""
    for source in sorted((ROOT / "source").glob("[0-9][0-9]_*.py")):
        text = source.read_text(encoding="utf-8")
        calls = text.split("selfcheck.check(")[1:]
        assert calls, f"{source.name}: no self-check"
        for call in calls:
            exercise = re.match(r'\s*"(\d+\.\d+)"', call)
            body = call[: call.index("\n)\n")] if "\n)\n" in call else call
            has_hint = re.search(r"(?<!code_)hint=", body) is not None
            assert has_hint and "code_hint=" in body, f"{source.name} {exercise and exercise.group(1)}"


def test_only_checkpoint_cells_carry_output():
    for name, lab, solution in _pairs():
        for nb in (lab, solution):
            for cell in _code_cells(nb):
                if cell.source.split("\n", 1)[0].strip() == "# NBVAL_CHECK_OUTPUT":
                    assert [o.output_type for o in cell.outputs] == ["stream"], f"{name} {cell.id}"
                    assert cell.outputs[0].name == "stdout" and cell.outputs[0].text.endswith("\n")
                else:
                    assert cell.outputs == [] and cell.execution_count is None, f"{name} {cell.id} has output"


def test_one_parameters_cell_reads_workshop_scale():
    for name, lab, solution in _pairs():
        for nb in (lab, solution):
            tagged = [c for c in _code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
            assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged parameters"
            assert READS_SCALE.search(tagged[0].source), (
                f"{name}: the parameters cell must read WORKSHOP_SCALE"
            )
            for cell in _code_cells(nb):
                if cell is not tagged[0]:
                    assert not READS_SCALE.search(cell.source), (
                        f"{name} {cell.id}: read it in the parameters cell"
                    )
                assert not READS_CI.search(cell.source), f"{name} {cell.id}: no CI branches in learner code"


def test_notebooks_are_valid_and_their_code_compiles():
    from IPython.core.inputtransformer2 import TransformerManager  # turns %magics into Python

    transformer = TransformerManager()
    for name, lab, solution in _pairs():
        for variant, nb in (("lab", lab), ("solution", solution)):
            nbformat.validate(nb)
            assert nb.metadata.recsys_workshop == {"source": f"source/{name}.py", "variant": variant}
            for cell in _code_cells(nb):
                compile(transformer.transform_cell(cell.source), f"{variant}s/{name}.ipynb:{cell.id}", "exec")
