"""Execute lab notebooks one by one, quietly, and say in one line why one failed and what to do.

Used by the main job (``python -m recsys_workshop run``) and by ``python -m recsys_workshop html`` (the
solutions executed and rendered as HTML, for reading ahead). Each notebook runs in a fresh kernel whose own
output (TensorFlow's start-up chatter, the kernel's transport warning) goes to a log file beside the
executed notebook instead of the terminal; a failure is reduced to its exception and one line of advice,
and its full traceback (without colour codes) is written to ``<notebook>.error.txt``.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["LabResult", "describe_failure", "render_html", "run_notebooks", "strip_ansi", "write_index"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Exception name -> what to do, for failures whose message does not carry its own advice.
_FIXES = {
    "ModuleNotFoundError": "the environment is incomplete: run `make install` (or `make clean install`)",
    "ImportError": "the environment is incomplete: run `make install` (or `make clean install`)",
    "MemoryError": "the kernel ran out of memory: close other programs, or run with WORKSHOP_SCALE=ci",
    "DeadKernelError": "the kernel died (often out of memory): close other programs, or run with WORKSHOP_SCALE=ci",
    "CellTimeoutError": "a cell ran past --timeout: raise it (e.g. --timeout 3600) or run with --scale ci",
    "ExerciseIncorrect": "a solution notebook failed its own self-check: a bug in the workshop, please report it",
    "ExerciseNotDone": "a solution notebook still holds an exercise stub: rebuild with `make labs`",
}


@dataclasses.dataclass
class LabResult:
    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    reason: str = ""
    fix: str = ""
    log: str = ""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def describe_failure(error: BaseException, error_file: Path) -> tuple[str, str]:
    """(one-line reason, one-line fix) of a notebook's failure."""
    ename = getattr(error, "ename", None) or type(error).__name__
    evalue = strip_ansi(str(getattr(error, "evalue", None) or error)).strip()
    lines = [line.strip() for line in evalue.splitlines() if line.strip()]
    if type(error).__name__ == "CellExecutionError" and not getattr(error, "evalue", None):
        lines = lines[-1:]  # no structured fields: the last line of the traceback is "Name: message"
    reason = f"{ename}: {lines[0]}" if lines else ename
    advice = [line for line in lines[1:] if re.match(r"(If |Set |set |Run |Delete |Replace |Unset |Retry)", line)]
    fix = advice[0] if advice else _FIXES.get(ename, f"see the full error in {error_file}")
    return _shorten(reason), _shorten(fix)


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _execute(path: Path, out_dir: Path, timeout: int) -> LabResult:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    log = out_dir / "logs" / f"{path.stem}.kernel.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = LabResult(path.name, "ok", 0.0, log=str(log))
    with open(log, "w", encoding="utf-8") as kernel_output:
        try:
            client.execute(stdout=kernel_output, stderr=kernel_output)
        except Exception as error:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
            error_file = out_dir / "logs" / f"{path.stem}.error.txt"
            error_file.write_text(strip_ansi(str(error)) + "\n", encoding="utf-8")
            result.status = "failed"
            result.reason, result.fix = describe_failure(error, error_file)
    result.seconds = round(time.perf_counter() - started, 1)
    nbformat.write(notebook, out_dir / path.name)
    return result


def run_notebooks(
    notebooks: Sequence[Path],
    out_dir: Path,
    *,
    scale: str,
    timeout: int,
    say: Callable[[str], None] = print,
) -> list[LabResult]:
    """Execute each notebook in a fresh kernel at ``scale``; write the executed copies to ``out_dir``.

    Announces each notebook when it starts and reports it when it ends (ok/failed, seconds, and for a
    failure the reason and the fix).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WORKSHOP_SCALE"] = scale
    results = []
    for number, path in enumerate(notebooks, 1):
        say(f"  [{number}/{len(notebooks)}] {path.name} ...")
        result = _execute(path, out_dir, timeout)
        say(f"        {result.status} in {result.seconds:.0f} s")
        if result.status != "ok":
            say(f"        reason: {result.reason}\n        fix:    {result.fix}")
        results.append(result)
    return results


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600: a page to read, share or serve
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_html(notebook: Path, html_path: Path) -> Path:
    """An executed notebook as one HTML page (nbconvert's JupyterLab template, outputs and all)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(notebook, as_version=4))
    _write_atomically(html_path, body)
    return html_path


def write_index(results: Sequence[LabResult], out_dir: Path, *, scale: str) -> Path:
    """``index.html`` of the renderings: each lab, whether it ran to the end, and how long it took."""
    rows = "\n".join(
        f'<tr><td><a href="{html.escape(Path(r.notebook).stem)}.html">{html.escape(Path(r.notebook).stem)}</a></td>'
        f"<td>{html.escape(r.status)}</td><td>{r.seconds:.0f} s</td>"
        f"<td>{html.escape(r.reason) if r.status != 'ok' else ''}</td></tr>"
        for r in results
    )
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Deep-Learning Recommenders in Production: the solutions, executed</title></head><body>\n"
        f"<h1>The solutions, executed at WORKSHOP_SCALE={html.escape(scale)}</h1>\n"
        "<p>Each page is a solution notebook run top to bottom by <code>python -m recsys_workshop html</code>: "
        "read a lab's results before you run it. The times are this machine's.</p>\n"
        "<table><thead><tr><th>lab</th><th>status</th><th>run time</th><th>why it stopped</th></tr></thead>"
        f"<tbody>\n{rows}\n</tbody></table>\n</body></html>\n"
    )
    path = out_dir / "index.html"
    _write_atomically(path, page)
    return path
