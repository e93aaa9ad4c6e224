"""The check behind lab 05's sequence exercise (5.4): cutting one user's films, in time order, into the
``(input, target)`` windows a next-film model trains on, as :func:`recsys_workshop.models.sequence.windows`
does (``horizon=1``).

    selfcheck.check("5.4", lambda: sequences.next_film_windows(next_film_windows), hint=..., code_hint=...)

Each case is a history of a given length; a wrong answer names the case, the window and what was
expected against what came back, and says what the usual mistakes mean (windows taken from the start,
padding on the right, windows that do not overlap, a target that is not shifted). numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MAX_LEN = 4
CASES = {  # history length -> what the case is about
    1: "one film: nothing follows it, so no window",
    2: "two films: one window, mostly padding",
    4: "fewer films than max_len + 1: one padded window",
    5: "exactly max_len + 1 films: one full window",
    6: "one film more: a second window, overlapping the first by one film",
    11: "a long history: several windows",
}


def _as_pairs(value: Any, call: str) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(value, list | tuple):
        raise AssertionError(f"{call} returned {type(value).__name__}, not a list of (input, target) pairs")
    pairs = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise AssertionError(f"{call}: window {i} is {pair!r}, not an (input, target) pair")
        x, y = (np.asarray(part) for part in pair)
        if x.shape != (MAX_LEN,) or y.shape != (MAX_LEN,):
            raise AssertionError(
                f"{call}: window {i} has input shape {x.shape} and target shape {y.shape}; both must be "
                f"({MAX_LEN},): max_len films each, padded with 0"
            )
        pairs.append((x, y))
    return pairs


def _mistake(history: np.ndarray, got: list, expected: list) -> str:
    """What a wrong list of windows most likely means."""
    if got and expected and got[0][0][-1] != expected[0][0][-1]:
        first_input, first_target = got[0]
        if first_input[-1] == 0 and expected[0][0][0] == 0:
            return "pad on the left: the latest film must sit in the last position"
        if history[0] in first_input and history[-1] not in first_target:
            return "the first window must end with the latest films: cut from the end of the history backwards"
    if len(got) < len(expected):
        return "consecutive windows must overlap by one film, or the step between them is lost"
    if len(got) > len(expected):
        return "too many windows: stop once a window starts at the first film (and none for a single film)"
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        if np.array_equal(gx, ex) and not np.array_equal(gy, ey):
            if np.array_equal(gy, gx):
                return "the target is the input shifted by one: position t's target is the film after it"
            return "the target at position t is the film that follows the input's film t (0 under padding)"
        if not np.array_equal(gx, ex) and np.array_equal(gx[::-1][: len(ex)], ex[::-1]):
            return "the input is in the wrong order: oldest film first, latest last"
    return ""


def next_film_windows(yours: Callable[[np.ndarray, int], Any]) -> None:
    """Exercise 5.4 against the package's ``windows(history, max_len)`` on the histories of ``CASES``
    (films numbered 101, 102, ... in time order)."""
    from recsys_workshop.models.sequence import windows

    for length, about in CASES.items():
        history = np.arange(101, 101 + length)
        films = f"{length} film" + ("s" if length > 1 else "")
        call = f"next_film_windows(films {history[0]}..{history[-1]} ({films}), max_len={MAX_LEN})"
        expected = windows(history, MAX_LEN)
        got = _as_pairs(yours(history.copy(), MAX_LEN), call)
        if len(got) != len(expected) or any(
            not (np.array_equal(gx, ex) and np.array_equal(gy, ey))
            for (gx, gy), (ex, ey) in zip(got, expected, strict=False)
        ):
            shown = [(x.tolist(), y.tolist()) for x, y in expected]
            came = [(x.tolist(), y.tolist()) for x, y in got]
            advice = _mistake(history, got, expected)
            raise AssertionError(
                f"{call} ({about}): expected {shown}, got {came}" + (f": {advice}" if advice else "")
            )
