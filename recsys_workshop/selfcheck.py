"""Verdicts for the self-check cell that follows every exercise in a lab.

A self-check cell calls :func:`check` with the exercise number and a zero-argument function that
asserts (or returns a bool)::

    # Self-check
    from recsys_workshop import selfcheck

    def _test():
        selfcheck.close(precision_at_k([1, 2, 3], {1, 3}, k=2), 0.5)
        assert precision_at_k([], {1}, k=2) == 0.0, "no recommendations: precision 0"

    selfcheck.check("2.1", _test, hint="Divide the hits among the first k items by k.")

A failed check names the case and what was expected and got (the ``labchecks`` functions and
:func:`close`/:func:`equal` write such messages). Hints come in two tiers, ``hint`` (the idea) and
``code_hint`` (how to write it); in Jupyter both appear as collapsed boxes under the verdict, so a learner
opens the idea first and the code only if needed. Outside Jupyter they are plain lines of the message.

The learner sees ``✅ Exercise 2.1: correct``. Otherwise :func:`check` raises :class:`ExerciseNotDone`
(the ``raise NotImplementedError("Exercise 2.1")`` stub is still there) or :class:`ExerciseIncorrect`
(an assertion failed, the function returned False, or the learner's code raised). Both subclass
``AssertionError``, so running the solutions under nbval fails on a wrong solution, and both render in
Jupyter as the verdict and the hint instead of a long traceback (the original error is chained as
``__cause__``). The verdict is not printed a second time: the exception is the message.

A check that passes also records the learner's functions it ran (those it names, defined in the same notebook, and
theirs in turn) by a digest of their source. :func:`yours_if_passed` and :func:`yours_in_use`, which put a
learner's function into code whose results are saved, take it only while it is the code that passed: a function
redefined with other code since then (the ``def`` cell edited and run again, the check not) is left out, and the
package's version stands in until the check passes again.
"""

from __future__ import annotations

import dis
import hashlib
import inspect
import math
import numbers
import sys
import textwrap
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "ExerciseFailed",
    "ExerciseIncorrect",
    "ExerciseNotDone",
    "check",
    "close",
    "equal",
    "function_digest",
    "passed",
    "yours_if_passed",
    "yours_or",
]


class ExerciseFailed(AssertionError):
    """A self-check did not pass; ``str()`` and the IPython rendering give the verdict and the hint."""

    def __init__(self, exercise: str, verdict: str, hint: str = "", code_hint: str = ""):
        self.exercise, self.verdict, self.hint, self.code_hint = exercise, verdict, hint, code_hint
        self.hints_shown = False  # set once the hints were displayed as collapsed boxes (Jupyter)
        super().__init__("\n".join(self._lines()))

    def _lines(self) -> list[str]:
        return (
            [self.verdict]
            + ([f"Hint: {self.hint}"] if self.hint else [])
            + ([f"Code hint: {self.code_hint}"] if self.code_hint else [])
        )

    def _render_traceback_(self) -> list[str]:
        """What IPython and nbval show instead of a long traceback: verdict, hints, and where it broke."""
        if self.hints_shown:
            return [self.verdict, "Hints: open the boxes above (the idea first, then the code)."] + self._where()
        return self._lines() + self._where()

    def _where(self) -> list[str]:
        """For an unexpected error in the learner's code: the line where it happened."""
        cause = self.__cause__
        if cause is None or isinstance(cause, AssertionError | NotImplementedError):
            return []
        frame = traceback.extract_tb(cause.__traceback__)[-1:]
        return [f"  (at line {f.lineno} in {f.name}: {f.line})" for f in frame]


class ExerciseNotDone(ExerciseFailed):
    """The exercise still raises ``NotImplementedError``: the learner has not written it yet."""


class ExerciseIncorrect(ExerciseFailed):
    """The learner's answer is wrong, or their code raised an error."""


def check(exercise: str, fn: Callable[[], Any], hint: str = "", code_hint: str = "") -> None:
    """Run ``fn`` (asserts, or returns a bool) and print the verdict for exercise ``exercise``.

    Prints ``✅ Exercise N.M: correct`` when ``fn`` returns without raising and does not return a false
    value; otherwise raises :class:`ExerciseNotDone` or :class:`ExerciseIncorrect` with ``hint`` (the idea)
    and ``code_hint`` (the code), shown first as collapsed boxes when running in Jupyter.
    """
    try:
        _run(exercise, fn, hint, code_hint)
    except ExerciseFailed as failure:
        if failure.exercise == exercise and not failure.hints_shown:
            failure.hints_shown = _show_hints(failure.hint, failure.code_hint)
        raise


def _show_hints(hint: str, code_hint: str) -> bool:
    """Display the hints as two collapsed HTML boxes when a Jupyter kernel runs this; True if shown."""
    if not (hint or code_hint) or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    from html import escape

    from IPython.display import HTML, display

    boxes = [f"<details><summary><b>Hint 1: the idea</b> (click to open)</summary><p>{escape(hint)}</p></details>"
             if hint else "",
             f"<details><summary><b>Hint 2: the code</b> (open it if the idea was not enough)</summary>"
             f"<pre>{escape(code_hint)}</pre></details>" if code_hint else ""]  # fmt: skip
    display(HTML("".join(boxes)))
    return True


def _run(exercise: str, fn: Callable[[], Any], hint: str, code_hint: str) -> None:
    name = f"Exercise {exercise}"
    _PASSED.pop(exercise, None)  # until this run says otherwise
    try:
        result = fn()
    except ExerciseFailed:
        raise
    except NotImplementedError as err:
        stub = str(err)  # "Exercise N.M" from a lab stub; anything else is an ordinary error below
        if not stub.startswith("Exercise "):
            raise ExerciseIncorrect(
                exercise, f"❌ {name}: your code raised NotImplementedError: {err}", hint, code_hint
            ) from err
        detail = "" if stub == name else f" ({stub}, which this one uses, is not done either)"
        verdict = f"❌ {name}: not done yet{detail}: replace `raise NotImplementedError(...)` with your code."
        raise ExerciseNotDone(exercise, verdict, hint, code_hint) from err
    except AssertionError as err:
        detail = f": {err}" if str(err) else ""
        raise ExerciseIncorrect(exercise, f"❌ {name}: not correct yet{detail}", hint, code_hint) from err
    except Exception as err:
        verdict = f"❌ {name}: your code raised {type(err).__name__}: {err}"
        raise ExerciseIncorrect(exercise, verdict, hint, code_hint) from err
    if result is not None and not result:
        raise ExerciseIncorrect(
            exercise, f"❌ {name}: not correct yet (the check returned {result!r})", hint, code_hint
        )
    _PASSED[exercise] = _learners_code(fn, itself=False)
    print(f"✅ {name}: correct")


def close(
    actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9, what: str = "the value"
) -> None:
    """Raise ``AssertionError`` unless ``actual`` is within tolerance of ``expected``.

    Works for numbers, sequences and arrays; the message shows what was expected and what was found,
    e.g. ``precision@2: expected 0.5, got 0.25 (rtol 1e-06)``.
    """
    if isinstance(actual, numbers.Real) and isinstance(expected, numbers.Real):
        if not math.isclose(float(actual), float(expected), rel_tol=rtol, abs_tol=atol):
            raise AssertionError(
                f"{what}: expected {float(expected)!r}, got {float(actual)!r} (rtol {rtol:g})"
            )
        return
    import numpy as np  # only for sequences and arrays

    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: expected shape {e.shape}, got shape {a.shape}")
    if not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        worst = np.unravel_index(np.argmax(np.where(np.isnan(a - e), np.inf, np.abs(a - e))), a.shape)
        at = worst[0] if len(worst) == 1 else tuple(int(i) for i in worst)
        raise AssertionError(
            f"{what}: at index {at} expected {e[worst].item()!r}, got {a[worst].item()!r} (rtol {rtol:g})"
        )


def equal(actual: Any, expected: Any, what: str = "the value") -> None:
    """Raise ``AssertionError`` unless ``actual == expected``; the message shows both."""
    if not actual == expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def yours_or(exercise: str, yours: Callable[..., Any], reference: Callable[..., Any]) -> Callable[..., Any]:
    """``yours`` where Exercise ``exercise`` is written, else ``reference``.

    For the cells after an exercise that use its result: with the exercise still a stub they run on the
    package's version instead of failing, so "Run All" on an unsolved lab reaches the end. The switch is
    announced once per wrapper (it may be called in a loop).
    """
    announced = False

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal announced
        try:
            return yours(*args, **kwargs)
        except NotImplementedError as err:
            if not str(err).startswith("Exercise "):
                raise
            if not announced:
                print(f"(Exercise {exercise} is not done yet: the package's version stands in for yours.)")
                announced = True
            return reference(*args, **kwargs)

    return call


_PASSED: dict[str, dict[str, str]] = {}  # exercise -> {name: digest} of the learner's code its latest check passed


def passed(exercise: str) -> bool:
    """Whether the latest self-check of Exercise ``exercise`` in this kernel passed."""
    return exercise in _PASSED


def yours_if_passed(exercise: str, yours: Callable[..., Any], reference: Callable[..., Any]) -> Callable[..., Any]:
    """``yours`` once Exercise ``exercise`` has passed its self-check in this kernel, else ``reference``.

    For code whose result is saved and reused, such as a model that later labs load: nothing saved was made
    by a function its check has not accepted. ``yours`` (or a wrapper around the learner's function) counts as
    passed only while the learner's functions it runs are those the check ran: one redefined with other code
    since then makes the package's stand in again. Decided when called, and said when the package's stands in.
    """
    if exercise not in _PASSED:
        print(f"(Exercise {exercise} has not passed its self-check yet: the package's version stands in for yours.)")
        return reference
    changed = _changed(exercise, yours)
    if changed:
        print(f"(Exercise {exercise}: your {', '.join(changed)} changed since its self-check passed: run the "
              "self-check cell again to use it. The package's version stands in meanwhile.)")  # fmt: skip
        return reference
    return yours


def yours_in_use(functions: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The learner's functions among ``functions`` (``{exercise: function}``) that :func:`yours_if_passed` swaps
    in: their check passed and they have not changed since. For ``saved.fit(..., yours=...)`` to train with and
    record. Silent: :func:`yours_if_passed` has said why the package's version stands in."""
    return {
        exercise: function
        for exercise, function in functions.items()
        if exercise in _PASSED and not _changed(exercise, function)
    }


def _changed(exercise: str, yours: Callable[..., Any]) -> list[str]:
    """The learner's functions that ``yours`` runs whose code differs from when Exercise ``exercise`` passed
    (functions the check did not run, such as a wrapper defined after it, are not compared)."""
    recorded = _PASSED[exercise]
    return sorted(name for name, digest in _learners_code(yours, itself=True).items()
                  if name in recorded and recorded[name] != digest)  # fmt: skip


def _learners_code(fn: Any, *, itself: bool) -> dict[str, str]:
    """``{name: digest}`` of the learner's functions that ``fn`` runs: ``fn`` itself if ``itself``, and the functions
    it names (globals or closure variables) that were defined in the same namespace (a notebook's), transitively.
    A KFP component or a decorated function counts as the function it wraps; the package's are not the learner's."""
    fn = _unwrap(fn)
    if not _learners(fn, getattr(fn, "__globals__", None)):
        return {}
    found = {fn.__name__: fn} if itself else {}
    seen, todo = {id(fn)}, [fn]
    while todo:
        function = todo.pop()
        for name, value in _named(function):
            value = _unwrap(value)
            if id(value) not in seen and _learners(value, function.__globals__):
                seen.add(id(value))
                found.setdefault(name, value)
                todo.append(value)
    return {name: function_digest(function) for name, function in found.items()}


def _learners(value: Any, namespace: dict | None) -> bool:
    """Whether ``value`` is a plain function defined in ``namespace`` outside the package."""
    return (
        isinstance(value, types.FunctionType)
        and value.__globals__ is namespace
        and not str(value.__module__ or "").startswith("recsys_workshop")
    )


def _named(function: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """The ``(name, value)`` pairs ``function`` (and the functions and lambdas inside it) reads by name: its
    closure variables, and the globals it loads."""
    code = function.__code__
    for name, cell in zip(code.co_freevars, function.__closure__ or (), strict=False):
        try:
            yield name, cell.cell_contents
        except ValueError:  # a cell not yet filled
            continue
    todo = [code]
    while todo:
        code = todo.pop()
        todo.extend(c for c in code.co_consts if inspect.iscode(c))
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and name in function.__globals__:
                yield name, function.__globals__[name]


def _unwrap(value: Any) -> Any:
    """The plain function behind ``value``: a KFP component's ``python_func``, a decorated one's ``__wrapped__``."""
    for _ in range(10):
        try:
            inner = getattr(value, "python_func", None) or getattr(value, "__wrapped__", None)
        except Exception:  # an object whose attributes are computed may raise anything
            return value
        if not isinstance(inner, types.FunctionType):
            return value
        value = inner
    return value


def function_digest(function: Callable) -> str:
    """Hash of a function's source (its bytecode and constants when the source cannot be found): the same in every
    process, and different when the code or a default differs."""
    try:
        source = textwrap.dedent(inspect.getsource(function)).encode()
    except (OSError, TypeError):
        defaults = function.__defaults__, sorted((function.__kwdefaults__ or {}).items())
        source = repr((_code_parts(function.__code__), defaults)).encode()
    return hashlib.sha256(source).hexdigest()[:16]


def _code_parts(code) -> tuple:
    """What a code object does, without where it was compiled (no file names, lines or addresses) and in an order
    that does not change from process to process (a frozenset constant's order follows the hash seed)."""
    consts = tuple(
        _code_parts(c) if inspect.iscode(c) else sorted(map(repr, c)) if isinstance(c, frozenset) else c
        for c in code.co_consts
    )
    return code.co_code, code.co_names, consts
