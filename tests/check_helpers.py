"""What the tests of the lab self-checks share (``recsys_workshop.labchecks``)."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


def fails(check, *args, match: str, **kwargs) -> str:
    """The message of the ``AssertionError`` that ``check(*args, **kwargs)`` raises; it must contain ``match``."""
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert match in message, message
    return message


def solution_functions(notebook: str, *names: str, **namespace) -> dict:
    """The functions ``names`` as ``solutions/<notebook>`` defines them, exec'd in ``namespace`` (returned).

    Only a cell's top-level ``def`` statements run, not the code around them (its self-check call, its demo), so
    a test gets the learner-facing function exactly as the solution writes it and supplies its globals itself.
    """
    path = REPO / "solutions" / notebook
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for name in names:
        cell = next((source for source in cells if f"def {name}(" in source), None)
        assert cell is not None, f"{path.name} defines no {name}()"
        tree = ast.parse(cell)
        tree.body = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        exec(compile(tree, f"{path.name}:{name}", "exec"), namespace)  # noqa: S102 - the repository's own notebooks
    return namespace
