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
"""

from __future__ import annotations

import math
import numbers
import sys
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "ExerciseFailed",
    "ExerciseIncorrect",
    "ExerciseNotDone",
    "check",
    "close",
    "equal",
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
    _PASSED.discard(exercise)  # until this run says otherwise
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
    _PASSED.add(exercise)
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


_PASSED: set[str] = set()  # the exercises whose latest self-check in this kernel passed


def passed(exercise: str) -> bool:
    """Whether the latest self-check of Exercise ``exercise`` in this kernel passed."""
    return exercise in _PASSED


def yours_if_passed(exercise: str, yours: Callable[..., Any], reference: Callable[..., Any]) -> Callable[..., Any]:
    """``yours`` once Exercise ``exercise`` has passed its self-check in this kernel, else ``reference``.

    For code whose result is saved and reused, such as a model that later labs load: nothing saved was made
    by a function its check has not accepted. Decided when called, and said when the package's stands in.
    """
    if exercise in _PASSED:
        return yours
    print(f"(Exercise {exercise} has not passed its self-check yet: the package's version stands in for yours.)")
    return reference


def yours_in_use(functions: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The learner's functions among ``functions`` (``{exercise: function}``) whose checks have passed: those
    :func:`yours_if_passed` swaps in, for ``saved.fit(..., yours=...)`` to train with and record."""
    return {exercise: function for exercise, function in functions.items() if exercise in _PASSED}
