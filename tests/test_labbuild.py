"""The lab builder: source/NN_slug.py -> labs/NN_slug.ipynb + solutions/NN_slug.ipynb, and --check."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import labbuild
from tools.labbuild import LabSourceError

REPO = Path(__file__).resolve().parents[1]  # `python -m tools.labbuild` runs from the repository root

PARAMETERS = (
    '# %% tags=["parameters"]\nimport os\n\nWORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")\n'
)

pytestmark = pytest.mark.unit


def md(text: str) -> str:
    """A markdown cell in percent format."""
    return "# %% [markdown]\n" + "".join(f"# {line}\n" if line else "#\n" for line in text.split("\n"))


def code(text: str) -> str:
    return "# %%\n" + text.strip("\n") + "\n"


def self_check(exercise: str) -> str:
    return code(
        f'# Self-check\nfrom recsys_workshop import selfcheck\n\nselfcheck.check("{exercise}", lambda: True)'
    )


def write_source(root: Path, name: str, *cells: str) -> Path:
    path = root / "source" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(cells), encoding="utf-8")
    return path


def line_of(path: Path, text: str, occurrence: int = 1) -> int:
    """1-based number of the line of ``path`` whose stripped text is ``text``."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip() == text]
    return hits[occurrence - 1]


EXERCISE_IN_FUNCTION = """
def mean_rating(ratings):
    ### BEGIN SOLUTION
    total = sum(ratings)
    return total / len(ratings)
    ### END SOLUTION
"""

EXERCISE_IN_LOOP = """
counts = {}
for user in [1, 2, 2]:
    if user > 0:
        ### BEGIN SOLUTION
        counts[user] = counts.get(user, 0) + 1
        ### END SOLUTION
print(counts)
"""

CHECKPOINT = """
# NBVAL_CHECK_OUTPUT
print("shape: (3, 4)")
print()
print("  indented")

# Expected output:
# shape: (3, 4)
#
#   indented
"""


def good_lab(root: Path, name: str = "03_demo_lab.py") -> Path:
    """A valid source with two exercises (in a function body, in a loop) and a checkpoint."""
    return write_source(
        root,
        name,
        md("# Lab 3: a demo"),
        PARAMETERS,
        md("## Exercise 3.1: the mean rating\n\nWrite `mean_rating`."),
        code(EXERCISE_IN_FUNCTION),
        self_check("3.1"),
        md("## Exercise 3.2: count"),
        code(EXERCISE_IN_LOOP),
        self_check("3.2"),
        code(CHECKPOINT),
    )


def run(capsys, root: Path, *args: str) -> tuple[int, str, str]:
    code_ = labbuild.main([*args, "--root", str(root)])
    captured = capsys.readouterr()
    return code_, captured.out, captured.err


def read(root: Path, rel: str):
    return nbformat.read(root / rel, as_version=4)


def cell_with(nb, text: str):
    (cell,) = [c for c in nb.cells if text in c.source]
    return cell


# ---------------------------------------------------------------- stubs, solutions, numbering


def test_stub_at_function_body_indentation(tmp_path, capsys):
    good_lab(tmp_path)
    assert run(capsys, tmp_path)[0] == 0
    lab = cell_with(read(tmp_path, "labs/03_demo_lab.ipynb"), "def mean_rating")
    assert lab.source == 'def mean_rating(ratings):\n    raise NotImplementedError("Exercise 3.1")'


def test_stub_at_loop_body_indentation(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    lab = cell_with(read(tmp_path, "labs/03_demo_lab.ipynb"), "counts = {}")
    assert lab.source.split("\n") == [
        "counts = {}",
        "for user in [1, 2, 2]:",
        "    if user > 0:",
        '        raise NotImplementedError("Exercise 3.2")',
        "print(counts)",
    ]


def test_solution_keeps_code_and_drops_markers(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    nb = read(tmp_path, "solutions/03_demo_lab.ipynb")
    assert cell_with(nb, "def mean_rating").source == (
        "def mean_rating(ratings):\n    total = sum(ratings)\n    return total / len(ratings)"
    )
    assert (
        "        counts[user] = counts.get(user, 0) + 1\nprint(counts)" in cell_with(nb, "counts = {}").source
    )
    for path in ("labs/03_demo_lab.ipynb", "solutions/03_demo_lab.ipynb"):
        text = (tmp_path / path).read_text()
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_built_code_compiles(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    for path in ("labs/03_demo_lab.ipynb", "solutions/03_demo_lab.ipynb"):
        for cell in read(tmp_path, path).cells:
            if cell.cell_type == "code":
                compile(cell.source, f"{path}:{cell.id}", "exec")


def test_exercise_numbering_follows_lab_number_and_file_order(tmp_path, capsys):
    cells = [PARAMETERS]
    for m in (1, 2, 3):
        cells += [
            md(f"### Exercise 0.{m}"),
            code(f"### BEGIN SOLUTION\nx{m} = {m}\n### END SOLUTION"),
            self_check(f"0.{m}"),
        ]
    write_source(tmp_path, "00_numbers.py", *cells)
    assert run(capsys, tmp_path)[0] == 0
    text = (tmp_path / "labs/00_numbers.ipynb").read_text()
    stubs = re.findall(r'NotImplementedError\(\\"Exercise (\d+\.\d+)\\"\)', text)
    assert stubs == ["0.1", "0.2", "0.3"]


def test_marker_as_substring_is_not_a_marker(tmp_path, capsys):
    write_source(
        tmp_path,
        "01_strings.py",
        PARAMETERS,
        code('x = "### BEGIN SOLUTION"\ny = 1  # ### END SOLUTION\nprint(x)'),
    )
    assert run(capsys, tmp_path)[0] == 0
    for path in ("labs/01_strings.ipynb", "solutions/01_strings.ipynb"):
        cell = cell_with(read(tmp_path, path), "print(x)")
        assert cell.source == 'x = "### BEGIN SOLUTION"\ny = 1  # ### END SOLUTION\nprint(x)'
        assert "NotImplementedError" not in (tmp_path / path).read_text()


def test_markers_match_the_whole_stripped_line(tmp_path, capsys):
    write_source(
        tmp_path,
        "01_ws.py",
        PARAMETERS,
        md("Exercise 1.1"),
        code("if True:\n\t  ### BEGIN SOLUTION   \n    y = 2\n  ### END SOLUTION\t"),
        self_check("1.1"),
    )
    assert run(capsys, tmp_path)[0] == 0
    lab = cell_with(read(tmp_path, "labs/01_ws.ipynb"), "if True")
    assert lab.source == 'if True:\n\t  raise NotImplementedError("Exercise 1.1")'


def test_magics_follow_jupytext_and_comments_that_look_like_commands_are_errors(tmp_path):
    ok = write_source(tmp_path, "01_magic.py", PARAMETERS, code("# %time x = 1\n# !echo hi\n# a comment"))
    nb = json.loads(labbuild.build_source(ok, tmp_path)["solutions/01_magic.ipynb"])
    assert "".join(nb["cells"][2]["source"]) == "%time x = 1\n!echo hi\n# a comment"
    bad = write_source(tmp_path, "02_magic.py", PARAMETERS, code("x = 1\n# cd into the data folder\ny = 2"))
    with pytest.raises(LabSourceError, match="reads this comment as the IPython command 'cd into") as info:
        labbuild.build_source(bad, tmp_path)
    assert str(info.value).startswith(
        f"source/02_magic.py:{line_of(bad, '# cd into the data folder')} (cell 2)"
    )


# ---------------------------------------------------------------- errors name file, line and cell


def _region_source(tmp_path: Path, body: str) -> Path:
    return write_source(tmp_path, "04_bad.py", PARAMETERS, md("Exercise 4.1"), code(body), self_check("4.1"))


@pytest.mark.parametrize(
    ("body", "bad_line", "message"),
    [
        (
            "### BEGIN SOLUTION\nx = 1\n    ### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n### END SOLUTION",
            ("### BEGIN SOLUTION", 2),
            "nested",
        ),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1", ("### BEGIN SOLUTION", 1), "not closed"),
        ("x = 1\n### END SOLUTION", ("### END SOLUTION", 1), "without a '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### END SOLUTION", ("### BEGIN SOLUTION", 1), "empty solution region"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", ("# BEGIN SOLUTION", 1), "looks like a solution marker"),
        ("x = 1\n### End Solution", ("### End Solution", 1), "looks like a solution marker"),
        (
            "### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n### BEGIN SOLUTION\ny = 1\n### END SOLUTION",
            ("### BEGIN SOLUTION", 2),
            "one solution region per cell",
        ),
    ],
    ids=["nested", "unterminated", "stray-end", "empty", "near-miss-begin", "near-miss-end", "two-regions"],
)
def test_malformed_regions_name_file_line_and_cell(tmp_path, capsys, body, bad_line, message):
    path = _region_source(tmp_path, body)
    line = line_of(path, *bad_line)
    with pytest.raises(LabSourceError, match=re.escape(message)) as info:
        labbuild.build_source(path, tmp_path)
    assert str(info.value).startswith(f"source/04_bad.py:{line} (cell 3): ")
    status, out, err = run(capsys, tmp_path)
    assert status == 1 and f"source/04_bad.py:{line} (cell 3)" in err
    assert not (tmp_path / "labs").exists(), "nothing is written when a source is broken"


def test_region_may_not_span_cells(tmp_path):
    path = write_source(
        tmp_path,
        "04_bad.py",
        PARAMETERS,
        md("Exercise 4.1"),
        code("### BEGIN SOLUTION\nx = 1"),
        code("y = 2\n### END SOLUTION"),
        self_check("4.1"),
    )
    with pytest.raises(LabSourceError, match="not closed") as info:
        labbuild.build_source(path, tmp_path)
    assert f"source/04_bad.py:{line_of(path, '### BEGIN SOLUTION')} (cell 3)" in str(info.value)


def test_region_in_markdown_cell_is_an_error(tmp_path):
    path = write_source(
        tmp_path, "04_bad.py", PARAMETERS, md("Intro\n\n### BEGIN SOLUTION\nsecret\n### END SOLUTION")
    )
    with pytest.raises(LabSourceError, match="belong in code cells") as info:
        labbuild.build_source(path, tmp_path)
    assert str(info.value).startswith(f"source/04_bad.py:{line_of(path, '# ### BEGIN SOLUTION')} (cell 2): ")


def test_missing_self_check_is_an_error(tmp_path):
    path = write_source(
        tmp_path,
        "05_x.py",
        PARAMETERS,
        md("Exercise 5.1"),
        code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        md("Some text"),
        code("print(x)"),
    )
    with pytest.raises(
        LabSourceError, match=r"Exercise 5\.1: the next code cell must be its self-check"
    ) as info:
        labbuild.build_source(path, tmp_path)
    assert f"source/05_x.py:{line_of(path, '### BEGIN SOLUTION')} (cell 3)" in str(info.value)


def test_exercise_in_last_cell_needs_a_self_check(tmp_path):
    path = write_source(
        tmp_path,
        "05_x.py",
        PARAMETERS,
        md("Exercise 5.1"),
        code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
    )
    with pytest.raises(LabSourceError, match="self-check"):
        labbuild.build_source(path, tmp_path)


def test_missing_exercise_markdown_is_an_error(tmp_path):
    path = write_source(
        tmp_path,
        "05_x.py",
        PARAMETERS,
        md("Exercise 5.1"),
        code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        self_check("5.1"),
        code("### BEGIN SOLUTION\ny = 2\n### END SOLUTION"),
        self_check("5.2"),
    )
    with pytest.raises(LabSourceError, match=r"no markdown cell with 'Exercise 5\.2' after cell 3") as info:
        labbuild.build_source(path, tmp_path)
    assert f"source/05_x.py:{line_of(path, '### BEGIN SOLUTION', 2)} (cell 5)" in str(info.value)


def test_exercise_markdown_must_come_after_the_previous_exercise(tmp_path):
    path = write_source(
        tmp_path,
        "05_x.py",
        PARAMETERS,
        md("Exercise 5.1 and Exercise 5.2"),
        code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        self_check("5.1"),
        code("### BEGIN SOLUTION\ny = 2\n### END SOLUTION"),
        self_check("5.2"),
    )
    with pytest.raises(LabSourceError, match=r"Exercise 5\.2"):
        labbuild.build_source(path, tmp_path)


def test_exercise_5_1_does_not_introduce_5_10(tmp_path):
    cells = [PARAMETERS]
    for m in range(1, 11):
        title = "Exercise 5.1" if m == 10 else f"Exercise 5.{m}"  # 5.10 wrongly titled
        cells += [md(title), code(f"### BEGIN SOLUTION\nx = {m}\n### END SOLUTION"), self_check(f"5.{m}")]
    path = write_source(tmp_path, "05_x.py", *cells)
    with pytest.raises(LabSourceError, match=r"'Exercise 5\.10'"):
        labbuild.build_source(path, tmp_path)


def test_markdown_naming_a_missing_exercise_is_an_error(tmp_path):
    path = write_source(
        tmp_path,
        "05_x.py",
        PARAMETERS,
        md("Exercise 5.1"),
        code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        self_check("5.1"),
        md("## Exercise 5.2: gone"),
    )
    with pytest.raises(LabSourceError, match=r"names Exercise 5\.2, but the lab has 1 exercises"):
        labbuild.build_source(path, tmp_path)


@pytest.mark.parametrize("parameter_cells", [0, 2])
def test_exactly_one_parameters_cell(tmp_path, parameter_cells):
    path = write_source(tmp_path, "06_p.py", md("Intro"), *[PARAMETERS] * parameter_cells, code("x = 1"))
    with pytest.raises(LabSourceError, match="tagged parameters") as info:
        labbuild.build_source(path, tmp_path)
    assert "source/06_p.py" in str(info.value)


@pytest.mark.parametrize("name", ["3_lab.py", "03-lab.py", "03_Lab.py", "lab_03.py", "03_lab mooc.py"])
def test_bad_source_name(tmp_path, capsys, name):
    write_source(tmp_path, name, PARAMETERS)
    with pytest.raises(LabSourceError, match="NN_slug.py"):
        labbuild.find_sources(tmp_path)
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1 and name in err


def test_two_sources_may_not_share_a_number(tmp_path):
    write_source(tmp_path, "02_a.py", PARAMETERS)
    write_source(tmp_path, "02_b.py", PARAMETERS)
    with pytest.raises(LabSourceError, match="share the lab number 02"):
        labbuild.find_sources(tmp_path)


# ---------------------------------------------------------------- checkpoints, metadata, determinism


def test_checkpoint_output_is_taken_as_written(tmp_path):
    body = "# NBVAL_CHECK_OUTPUT\nprint('ls')\nprint('why?')\n# Expected output:\n# ls\n# why?"
    path = write_source(tmp_path, "07_c.py", PARAMETERS, code(body))
    nb = json.loads(labbuild.build_source(path, tmp_path)["labs/07_c.ipynb"])
    assert nb["cells"][2]["outputs"][0]["text"] == ["ls\n", "why?\n"]


def test_checkpoint_output_is_stored_and_removed_from_the_source(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    for path in ("labs/03_demo_lab.ipynb", "solutions/03_demo_lab.ipynb"):
        nb = read(tmp_path, path)
        checkpoint = cell_with(nb, "# NBVAL_CHECK_OUTPUT")
        assert (
            checkpoint.source == '# NBVAL_CHECK_OUTPUT\nprint("shape: (3, 4)")\nprint()\nprint("  indented")'
        )
        assert checkpoint.execution_count == 1
        assert [dict(o) for o in checkpoint.outputs] == [
            {"output_type": "stream", "name": "stdout", "text": "shape: (3, 4)\n\n  indented\n"}
        ]
        others = [c for c in nb.cells if c.cell_type == "code" and c is not checkpoint]
        assert others and all(c.outputs == [] and c.execution_count is None for c in others)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("# NBVAL_CHECK_OUTPUT\nprint(1)", "must end with a '# Expected output:' block"),
        ("# NBVAL_CHECK_OUTPUT\nprint(1)\n# Expected output:\n# 1\nprint(2)", "only comment lines"),
        ("# NBVAL_CHECK_OUTPUT\nprint(1)\n# Expected output:", "block is empty"),
        ("print(1)\n# Expected output:\n# 1", "belongs in a cell whose first line is"),
        ("print(1)\n# NBVAL_CHECK_OUTPUT", "must be the first line"),
    ],
)
def test_malformed_checkpoints(tmp_path, body, message):
    path = write_source(tmp_path, "07_c.py", PARAMETERS, code(body))
    with pytest.raises(LabSourceError, match=re.escape(message)) as info:
        labbuild.build_source(path, tmp_path)
    assert str(info.value).startswith("source/07_c.py:")


def test_notebook_metadata_ids_and_note(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    lab, solution = read(tmp_path, "labs/03_demo_lab.ipynb"), read(tmp_path, "solutions/03_demo_lab.ipynb")
    for nb, variant in ((lab, "lab"), (solution, "solution")):
        nbformat.validate(nb)
        assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
        assert set(nb.metadata) == {"kernelspec", "language_info", "recsys_workshop"}
        assert nb.metadata.kernelspec.name == "python3" and nb.metadata.language_info == {"name": "python"}
        assert nb.metadata.recsys_workshop == {"source": "source/03_demo_lab.py", "variant": variant}
        assert nb.cells[0].cell_type == "markdown"
        assert "source/03_demo_lab.py" in nb.cells[0].source and "make labs" in nb.cells[0].source
        assert [c.id for c in nb.cells] == [f"03_demo_lab-{i:03d}" for i in range(len(nb.cells))]
        assert all(set(c.metadata) <= {"tags"} for c in nb.cells)
        (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert "WORKSHOP_SCALE" in parameters.source
    assert lab.cells[0].source == solution.cells[0].source


def test_cell_metadata_other_than_tags_is_dropped(tmp_path, capsys):
    write_source(
        tmp_path,
        "08_m.py",
        PARAMETERS,
        '# %% Some title tags=["hide"] jupyter={"source_hidden": true}\nx = 1\n',
    )
    run(capsys, tmp_path)
    cell = cell_with(read(tmp_path, "labs/08_m.ipynb"), "x = 1")
    assert dict(cell.metadata) == {"tags": ["hide"]}


def test_build_is_deterministic(tmp_path, capsys):
    good_lab(tmp_path)
    assert run(capsys, tmp_path)[0] == 0
    first = {
        p: (tmp_path / p).read_bytes() for p in ("labs/03_demo_lab.ipynb", "solutions/03_demo_lab.ipynb")
    }
    for p in first:
        (tmp_path / p).unlink()
    assert run(capsys, tmp_path)[0] == 0
    assert {p: (tmp_path / p).read_bytes() for p in first} == first
    assert all(b.endswith(b"}\n") and b"\r" not in b for b in first.values())
    assert json.loads(first["labs/03_demo_lab.ipynb"])["cells"][1]["id"] == "03_demo_lab-001"
    # built elsewhere (another checkout) the bytes are the same too
    other = tmp_path / "other"
    good_lab(other)
    run(capsys, other)
    assert (other / "labs/03_demo_lab.ipynb").read_bytes() == first["labs/03_demo_lab.ipynb"]


def test_rebuild_writes_nothing_when_up_to_date(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    status, out, _ = run(capsys, tmp_path)
    assert status == 0 and "wrote" not in out and "0 notebook(s) written, 2 unchanged" in out


# ---------------------------------------------------------------- --check


def test_check_passes_after_build(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    status, out, err = run(capsys, tmp_path, "--check")
    assert status == 0 and err == ""
    assert out == "labbuild: 2 notebooks up to date with 1 source(s)\n"


def test_check_with_no_sources_passes(tmp_path, capsys):
    status, out, _ = run(capsys, tmp_path, "--check")
    assert status == 0 and "0 notebooks up to date" in out


def test_check_does_not_write(tmp_path, capsys):
    good_lab(tmp_path)
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1
    assert "missing: labs/03_demo_lab.ipynb" in err and "missing: solutions/03_demo_lab.ipynb" in err
    assert not (tmp_path / "labs").exists()


def test_check_fails_after_hand_edited_solution(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    path = tmp_path / "solutions/03_demo_lab.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell_with(nb, "def mean_rating").source += "\n# a quick fix"
    nbformat.write(nb, path)
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1
    assert "stale: solutions/03_demo_lab.ipynb" in err and "labs/03_demo_lab.ipynb" not in err
    assert "make labs" in err


def test_check_fails_after_source_edit(tmp_path, capsys):
    path = good_lab(tmp_path)
    run(capsys, tmp_path)
    path.write_text(path.read_text().replace("total / len(ratings)", "total / max(len(ratings), 1)"))
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1
    # only the solution shows the region's content; the lab is unchanged
    assert "stale: solutions/03_demo_lab.ipynb" in err and "stale: labs/03_demo_lab.ipynb" not in err
    path.write_text(path.read_text().replace("Write `mean_rating`.", "Write `mean_rating(ratings)`."))
    status, _, err = run(capsys, tmp_path, "--check")
    assert "stale: solutions/03_demo_lab.ipynb" in err and "stale: labs/03_demo_lab.ipynb" in err
    assert run(capsys, tmp_path)[0] == 0
    assert run(capsys, tmp_path, "--check")[0] == 0


def test_check_reports_orphans(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    (tmp_path / "labs/02_renamed.ipynb").write_text("{}")
    (tmp_path / "solutions/09_gone.ipynb").write_text("{}")
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1
    assert "orphan: labs/02_renamed.ipynb (no source/02_renamed.py)" in err
    assert "orphan: solutions/09_gone.ipynb (no source/09_gone.py)" in err
    status, _, err = run(capsys, tmp_path)  # a build warns about orphans but deletes nothing
    assert (
        status == 0
        and "orphan labs/02_renamed.ipynb" in err
        and (tmp_path / "labs/02_renamed.ipynb").exists()
    )


def test_check_fails_on_invalid_source(tmp_path, capsys):
    good_lab(tmp_path)
    run(capsys, tmp_path)
    write_source(tmp_path, "06_noparams.py", code("x = 1"))
    status, _, err = run(capsys, tmp_path, "--check")
    assert status == 1 and "source/06_noparams.py: no code cell tagged parameters" in err


def test_names_select_sources(tmp_path, capsys):
    good_lab(tmp_path)
    write_source(tmp_path, "01_other.py", PARAMETERS)
    status, out, _ = run(capsys, tmp_path, "03")
    assert status == 0 and "wrote labs/03_demo_lab.ipynb" in out and "01_other" not in out
    assert run(capsys, tmp_path, "--check", "source/03_demo_lab.py")[0] == 0
    assert run(capsys, tmp_path, "--check", "01_other")[0] == 1
    status, _, err = run(capsys, tmp_path, "--check", "07_nothing")
    assert status == 1 and "07_nothing: no such source" in err


def test_command_line_entry_point(tmp_path):
    good_lab(tmp_path)
    cmd = [sys.executable, "-m", "tools.labbuild", "--root", str(tmp_path)]
    assert subprocess.run(cmd, capture_output=True, check=False, cwd=REPO).returncode == 0
    done = subprocess.run([*cmd, "--check"], capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0 and "up to date" in done.stdout


def test_import_is_light():
    heavy = "{'jupytext', 'nbformat', 'tensorflow'}"
    code_ = f"import sys, tools.labbuild; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code_], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"
