"""Build the lab and solution notebooks from their single source (``make labs``).

Usage::

    python -m tools.labbuild [--check] [--root DIR] [NAMES...]

``source/NN_slug.py`` (jupytext percent format) is the only hand-edited form of a lab. This tool writes
``labs/NN_slug.ipynb`` (exercises replaced by stubs) and ``solutions/NN_slug.ipynb`` (complete). With
``--check`` it writes nothing and exits 1 when a notebook is stale, missing or orphaned (CI runs this).
NAMES restricts the run to some sources (``00``, ``00_environment_and_data`` or its path); the orphan
check only runs over the whole tree.

The format (every rule is checked; a violation raises :class:`LabSourceError` naming file, line and cell):

* File name ``NN_slug.py``: two digits, then lower-case letters, digits and ``_``. N = int(NN) is the
  lab number; two sources may not share it.
* Cells start with ``# %%`` (code) or ``# %% [markdown]``; tags go on the marker line:
  ``# %% tags=["parameters"]``. Leading and trailing blank lines of a cell are dropped. As in
  jupytext, ``# %time f()`` and ``# !cmd`` are IPython magics; a plain comment that jupytext would also
  read as a command (``# ls the files``, ``# cd data``, ``# why?``) is an error: reword it.
* Exactly one code cell is tagged ``parameters``.
* A solution region is a line whose stripped text is exactly ``### BEGIN SOLUTION`` up to a line that
  is exactly ``### END SOLUTION``, both in the same code cell. The solution notebook keeps the lines in
  between and drops the markers; the lab replaces the whole region by
  ``raise NotImplementedError("Exercise N.M")`` at the indentation of the BEGIN line, M = 1, 2, ... in
  file order. Regions may not nest, be empty, be left open, sit in a markdown cell, or share a cell.
  A comment that looks like a marker but is not exactly one (``# BEGIN SOLUTION``, ``### End solution``)
  is an error, so a typo can never leak a solution into a lab. Text such as ``x = "### BEGIN SOLUTION"``
  is ordinary code.
* Exercise N.M is introduced by a markdown cell containing ``Exercise N.M``, placed after the cell of
  exercise N.(M-1) and before its own cell; no markdown may name an ``Exercise N.M`` that does not exist.
* The first code cell after an exercise's cell is its self-check: its first non-empty line starts with
  ``# Self-check`` (it calls :mod:`recsys_workshop.selfcheck`).
* A checkpoint cell has ``# NBVAL_CHECK_OUTPUT`` as its first line and ends with a block::

      # Expected output:
      # first line of output
      #
      # third line (a lone ``#`` is an empty line)

  The block is removed from the code and stored as the cell's stdout output (execution count 1), which
  ``pytest --nbval-lax`` compares with what the cell prints. No other cell carries output.

The notebooks are deterministic: cell ids ``NN_slug-000``, ``NN_slug-001``, ... are the same in lab and
solution, metadata is reduced to the kernelspec, the language and the source path, and the files are
written by nbformat (indent 1, sorted keys, trailing newline). Building twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SOURCE_DIR, LABS_DIR, SOLUTIONS_DIR = "source", "labs", "solutions"
SOURCE_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# Comments that were probably meant as markers ("# BEGIN SOLUTION", "### End Solution:").
NEAR_MARKER = re.compile(r"^#+\s*(BEGIN|END)[\s_-]*SOLUTION\b", re.IGNORECASE)
STUB = 'raise NotImplementedError("Exercise {exercise}")'
SELF_CHECK = "# Self-check"
CHECKPOINT = "# NBVAL_CHECK_OUTPUT"
EXPECTED = "# Expected output:"
CHECKPOINT_EXECUTION_COUNT = 1
PARAMETERS_TAG = "parameters"

# The lines jupytext reads as the start of a percent-format cell (jupytext/cell_reader.py).
CELL_MARKER = re.compile(r"^\s*#\s*(%%(%*)\s.*|%%|<codecell>|In\[[0-9 ]*\]:?)\s*$")

NOTE = (
    "*Generated from `{source}` by `make labs`.* Workshop authors: edit the source, not this notebook "
    "(rebuilding overwrites it). Learners: work right here."
)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class LabSourceError(ValueError):
    """A lab source breaks the format; the message names the file, line and cell."""


@dataclass
class _Cell:
    """One cell in both variants; ``lab`` and ``solution`` differ only inside solution regions."""

    cell_type: str
    lab: str
    solution: str
    tags: list[str] = field(default_factory=list)
    expected: str | None = None  # stdout text of a checkpoint cell


class _Source:
    """A parsed source file that can point an error message at a line of the file."""

    def __init__(self, path: Path, root: Path):
        import jupytext  # not at module import: it pulls in jsonschema (about a second)

        self.rel = path.relative_to(root).as_posix()
        match = SOURCE_NAME.match(path.name)
        if not match:
            raise LabSourceError(f"{self.rel}: the name must look like NN_slug.py (lower-case, digits, _)")
        self.stem, self.number = path.stem, int(match.group(1))
        text = path.read_text(encoding="utf-8")
        self.cells = jupytext.reads(text, fmt="py:percent").cells
        for cell in self.cells:  # line numbers in messages count from the first non-blank line
            cell.source = "\n".join(_trim(cell.source.split("\n")))
        self._lines = text.splitlines()
        # Where each cell starts in the file: after its "# %%" marker, or after the YAML header.
        starts = [i + 1 for i, line in enumerate(self._lines) if CELL_MARKER.match(line)]
        if len(starts) == len(self.cells) - 1:  # text before the first marker is a cell too
            header = self._lines[0] == "# ---" and "# ---" in self._lines[1:]
            starts.insert(0, self._lines.index("# ---", 1) + 1 if header else 0)
        self._first: list[int | None] = [None] * len(self.cells)
        if len(starts) == len(self.cells):  # otherwise messages give the line within the cell
            for c, (start, end) in enumerate(zip(starts, [*starts[1:], len(self._lines) + 1], strict=True)):
                content = [i for i in range(start, end - 1) if self._plain(c, self._lines[i]).strip()]
                self._first[c] = content[0] if content else None

    def _plain(self, cell: int, text: str) -> str:
        """A file line as the cell sees it: markdown lines lose their leading "# "."""
        return re.sub(r"^\s*#\s?", "", text) if self.cells[cell].cell_type != "code" else text

    def _index(self, cell: int, line: int) -> int | None:
        """0-based file index of line ``line`` of cell ``cell`` (jupytext maps lines one to one)."""
        first = self._first[cell]
        return None if first is None or first + line >= len(self._lines) else first + line

    def raw(self, cell: int, line: int) -> str:
        """Line ``line`` of code cell ``cell`` as written in the file: jupytext turns comments that look
        like IPython commands (``# ls``, ``# cd data``, ``# why?``) into commands."""
        index = self._index(cell, line)
        return self._lines[index] if index is not None else self.cells[cell].source.split("\n")[line]

    def where(self, cell: int, line: int = 0) -> str:
        """``source/NN_slug.py:LINE (cell C)``, the prefix of every error message."""
        index = self._index(cell, line)
        if index is None:
            return f"{self.rel} (cell {cell + 1}, line {line + 1} of the cell)"
        return f"{self.rel}:{index + 1} (cell {cell + 1})"

    def error(self, cell: int, line: int, message: str) -> LabSourceError:
        return LabSourceError(f"{self.where(cell, line)}: {message}")


def _trim(lines: list[str]) -> list[str]:
    """Drop leading and trailing blank lines."""
    keep = [i for i, line in enumerate(lines) if line.strip()]
    return lines[keep[0] : keep[-1] + 1] if keep else []


def _split_checkpoint(src: _Source, c: int, lines: list[str]) -> tuple[list[str], str | None]:
    """Remove the ``# Expected output:`` block of a checkpoint cell; return (code lines, stdout text)."""
    is_checkpoint = bool(lines) and lines[0].strip() == CHECKPOINT
    for k, line in enumerate(lines[1:], start=1):
        if line.strip() == CHECKPOINT:
            raise src.error(c, k, f"{CHECKPOINT!r} must be the first line of its cell")
    blocks = [k for k, line in enumerate(lines) if line.strip() == EXPECTED]
    if not blocks:
        if is_checkpoint:
            raise src.error(c, 0, f"a checkpoint cell must end with a {EXPECTED!r} block")
        return lines, None
    if not is_checkpoint:
        raise src.error(c, blocks[0], f"{EXPECTED!r} belongs in a cell whose first line is {CHECKPOINT!r}")
    if len(blocks) > 1:
        raise src.error(c, blocks[1], f"a second {EXPECTED!r} block in one cell")
    output = []
    for k in range(blocks[0] + 1, len(lines)):
        text = src.raw(c, k).lstrip()  # as written: jupytext would read "# ls" as a command
        if text == "#":
            output.append("")
        elif text.startswith("# "):
            output.append(text[2:])
        else:
            raise src.error(
                c, k, f"only comment lines ('# text', or '#' for an empty line) may follow {EXPECTED!r}"
            )
    if not output:
        raise src.error(c, blocks[0], f"the {EXPECTED!r} block is empty")
    return _trim(lines[: blocks[0]]), "\n".join(output) + "\n"


def _find_region(src: _Source, c: int, lines: list[str]) -> tuple[int, int] | None:
    """Line indices (begin, end) of the cell's solution region, or None; rejects malformed markers."""
    regions: list[tuple[int, int]] = []
    begin = None
    for k, line in enumerate(lines):
        text = line.strip()
        if text == BEGIN:
            if begin is not None:
                raise src.error(c, k, f"nested {BEGIN!r}: the region opened at {src.where(c, begin)} is open")
            begin = k
        elif text == END:
            if begin is None:
                raise src.error(c, k, f"{END!r} without a {BEGIN!r} before it in the same cell")
            if not any(between.strip() for between in lines[begin + 1 : k]):
                raise src.error(c, begin, "empty solution region")
            regions.append((begin, k))
            begin = None
        elif NEAR_MARKER.match(text):
            raise src.error(c, k, f"{text!r} looks like a solution marker; write {BEGIN!r} or {END!r}")
    if begin is not None:
        raise src.error(c, begin, f"{BEGIN!r} is not closed by {END!r} in the same cell")
    if len(regions) > 1:
        raise src.error(c, regions[1][0], "one solution region per cell (one exercise, one self-check)")
    return regions[0] if regions else None


def _parse(src: _Source) -> list[_Cell]:
    """Turn the source cells into lab/solution cell pairs, checking every rule of the format."""
    cells: list[_Cell] = []
    exercises: list[tuple[int, int]] = []  # (cell, line of BEGIN) of exercise N.1, N.2, ...
    for c, cell in enumerate(src.cells):
        tags = list(cell.metadata.get("tags", []))
        lines = cell.source.split("\n")
        if cell.cell_type != "code":
            for k, line in enumerate(lines):
                if line.strip() in (BEGIN, END):
                    raise src.error(
                        c, k, f"solution markers belong in code cells, not {cell.cell_type} cells"
                    )
            cells.append(_Cell(cell.cell_type, cell.source, cell.source, tags))
            continue
        lines, expected = _split_checkpoint(src, c, lines)
        for k, line in enumerate(lines):
            if src.raw(c, k).lstrip().startswith("#") and not line.lstrip().startswith(("#", "%", "!")):
                message = f"jupytext reads this comment as the IPython command {line.strip()!r}; reword it"
                raise src.error(c, k, message)
        region = _find_region(src, c, lines)
        solution, lab = lines, lines
        if region is not None:
            begin, end = region
            exercises.append((c, begin))
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            stub = indent + STUB.format(exercise=f"{src.number}.{len(exercises)}")
            solution = lines[:begin] + lines[begin + 1 : end] + lines[end + 1 :]
            lab = lines[:begin] + [stub] + lines[end + 1 :]
        cells.append(_Cell("code", "\n".join(lab), "\n".join(solution), tags, expected))
    _check_structure(src, cells, exercises)
    return cells


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def _check_structure(src: _Source, cells: list[_Cell], exercises: list[tuple[int, int]]) -> None:
    """One parameters cell; every exercise introduced by markdown and followed by its self-check."""
    code = [c for c, cell in enumerate(cells) if cell.cell_type == "code"]
    parameters = [c for c in code if PARAMETERS_TAG in cells[c].tags]
    if not parameters:
        raise LabSourceError(f'{src.rel}: no code cell tagged parameters (# %% tags=["parameters"])')
    if len(parameters) > 1:
        first = parameters[0] + 1
        raise src.error(parameters[1], 0, f"a second cell tagged parameters (the first is cell {first})")

    markdown = [c for c, cell in enumerate(cells) if cell.cell_type == "markdown"]
    for c in markdown:
        for m in re.findall(rf"\bExercise {src.number}\.(\d+)\b", cells[c].solution):
            if not 1 <= int(m) <= len(exercises):
                count = len(exercises)
                raise src.error(c, 0, f"names Exercise {src.number}.{m}, but the lab has {count} exercises")
    previous = -1
    for m, (c, begin) in enumerate(exercises, start=1):
        exercise = f"{src.number}.{m}"
        title = re.compile(rf"\bExercise {re.escape(exercise)}\b(?!\.\d)")
        if not any(previous < k < c and title.search(cells[k].solution) for k in markdown):
            after = f"after cell {previous + 1} (Exercise {src.number}.{m - 1}) and " if previous >= 0 else ""
            raise src.error(c, begin, f"no markdown cell with 'Exercise {exercise}' {after}before this one")
        following = next((k for k in code if k > c), None)
        if following is None or not _first_line(cells[following].solution).startswith(SELF_CHECK):
            message = (
                f"Exercise {exercise}: the next code cell must be its self-check, first line {SELF_CHECK!r}"
            )
            raise src.error(c, begin, message)
        previous = c


def _cell_id(stem: str, index: int) -> str:
    """Stable nbformat 4.5 cell id (letters, digits, - and _; at most 64 characters)."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', stem)[:59]}-{index:03d}"


def _notebook(src: _Source, cells: list[_Cell], variant: str) -> bytes:
    """Serialise one variant ("lab" or "solution") as deterministic notebook bytes."""
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook(
        metadata={
            "kernelspec": dict(KERNELSPEC),
            "language_info": {"name": "python"},
            "recsys_workshop": {"source": src.rel, "variant": variant},
        }
    )
    nb.cells.append(v4.new_markdown_cell(NOTE.format(source=src.rel)))
    for cell in cells:
        source = cell.lab if variant == "lab" else cell.solution
        metadata = {"tags": cell.tags} if cell.tags else {}
        if cell.cell_type == "code":
            new = v4.new_code_cell(source, metadata=metadata)
            if cell.expected is not None:
                new.execution_count = CHECKPOINT_EXECUTION_COUNT
                new.outputs = [v4.new_output("stream", name="stdout", text=cell.expected)]
        elif cell.cell_type == "markdown":
            new = v4.new_markdown_cell(source, metadata=metadata)
        else:
            new = v4.new_raw_cell(source, metadata=metadata)
        nb.cells.append(new)
    for index, cell in enumerate(nb.cells):
        cell.id = _cell_id(src.stem, index)
    nbformat.validate(nb)
    text = nbformat.writes(nb, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def build_source(path: Path, root: Path) -> dict[str, bytes]:
    """Build one source; return {"labs/NN_slug.ipynb": bytes, "solutions/NN_slug.ipynb": bytes}."""
    src = _Source(path, root)
    cells = _parse(src)
    return {
        f"{LABS_DIR}/{src.stem}.ipynb": _notebook(src, cells, "lab"),
        f"{SOLUTIONS_DIR}/{src.stem}.ipynb": _notebook(src, cells, "solution"),
    }


def find_sources(root: Path) -> list[Path]:
    """All ``source/*.py`` files, sorted; every name must be ``NN_slug.py`` with a unique NN."""
    paths = sorted((root / SOURCE_DIR).glob("*.py"))
    bad = [p.name for p in paths if not SOURCE_NAME.match(p.name)]
    if bad:
        raise LabSourceError(
            f"{SOURCE_DIR}/: {', '.join(bad)}: a lab source is named NN_slug.py "
            "(two digits, then lower-case letters, digits and _)"
        )
    numbers: dict[str, str] = {}
    for p in paths:
        if p.name[:2] in numbers:
            other = numbers[p.name[:2]]
            raise LabSourceError(f"{SOURCE_DIR}/: {other} and {p.name} share the lab number {p.name[:2]}")
        numbers[p.name[:2]] = p.name
    return paths


def find_orphans(root: Path, sources: list[Path]) -> list[str]:
    """Notebooks in labs/ or solutions/ without a source of the same name."""
    stems = {p.stem for p in sources}
    return [
        f"{folder}/{nb.name}"
        for folder in (LABS_DIR, SOLUTIONS_DIR)
        for nb in sorted((root / folder).glob("*.ipynb"))
        if nb.stem not in stems
    ]


def _select(sources: list[Path], names: list[str]) -> list[Path]:
    """The sources named on the command line (``00``, ``00_slug``, ``00_slug.py``, ``source/00_slug.py``)."""
    chosen = []
    for name in names:
        key = Path(name).name.removesuffix(".py").removesuffix(".ipynb")
        hits = [p for p in sources if key in (p.stem, p.stem[:2])]
        if not hits:
            raise LabSourceError(f"{name}: no such source in {SOURCE_DIR}/")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def _compare(root: Path, built: dict[str, bytes]) -> list[str]:
    """``missing: labs/NN_slug.ipynb`` or ``stale: ...`` for every built notebook unlike the file on disk."""
    problems = []
    for rel, content in built.items():
        if not (root / rel).exists():
            problems.append(f"missing: {rel}")
        elif (root / rel).read_bytes() != content:
            problems.append(f"stale: {rel}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Build (or with ``--check`` compare) the notebooks; return the exit status (0 ok, 1 failure)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.labbuild",
        description="Build labs/ and solutions/ notebooks from source/NN_slug.py (make labs).",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is stale")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
    parser.add_argument("names", nargs="*", metavar="NAMES", help="only these sources (default: all)")
    args = parser.parse_args(argv)
    root: Path = args.root

    errors, built = [], {}
    try:
        sources = find_sources(root)
        selected = _select(sources, args.names) if args.names else sources
    except LabSourceError as err:
        print(f"labbuild: error: {err}", file=sys.stderr)
        return 1
    for path in selected:
        try:
            built.update(build_source(path, root))
        except LabSourceError as err:
            errors.append(str(err))
    if errors:
        print("\n".join(f"labbuild: error: {e}" for e in errors), file=sys.stderr)
        print(
            f"labbuild: {len(errors)} source(s) break the format; the rules: "
            "python -m pydoc tools.labbuild",
            file=sys.stderr,
        )
        return 1
    orphans = [] if args.names else find_orphans(root, sources)

    if args.check:
        problems = _compare(root, built) + [
            f"orphan: {rel} (no {SOURCE_DIR}/{Path(rel).stem}.py)" for rel in orphans
        ]
        if problems:
            print("\n".join(f"labbuild: {p}" for p in problems), file=sys.stderr)
            print(
                "labbuild: fix: run `make labs` (python -m tools.labbuild) and commit the "
                "notebooks; edit source/, never labs/ or solutions/; delete orphans or restore their source",
                file=sys.stderr,
            )
            return 1
        print(f"labbuild: {len(built)} notebooks up to date with {len(selected)} source(s)")
        return 0

    written = 0
    for rel, content in built.items():
        target = root / rel
        if not target.exists() or target.read_bytes() != content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            print(f"labbuild: wrote {rel}")
            written += 1
    for rel in orphans:
        source = f"{SOURCE_DIR}/{Path(rel).stem}.py"
        print(f"labbuild: warning: orphan {rel} has no {source}; delete it", file=sys.stderr)
    unchanged = len(built) - written
    print(f"labbuild: {len(selected)} source(s), {written} notebook(s) written, {unchanged} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
