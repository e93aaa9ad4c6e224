"""Lab 05's sequence exercise check (recsys_workshop.labchecks.sequences): the right answer passes, and
each usual wrong answer gets a message that names the case and says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_workshop.labchecks import sequences
from recsys_workshop.models.sequence import windows


def _window(chunk, max_len):
    x, y = np.zeros(max_len, int), np.zeros(max_len, int)
    x[max_len - len(chunk) + 1 :], y[max_len - len(chunk) + 1 :] = chunk[:-1], chunk[1:]
    return x, y


def from_the_start(history, max_len):
    return [_window(history[s : s + max_len + 1], max_len) for s in range(0, len(history) - 1, max_len)]


def padded_on_the_right(history, max_len):
    return [(np.roll(x, -int((x == 0).sum())), np.roll(y, -int((y == 0).sum()))) for x, y in windows(history, max_len)]


def without_overlap(history, max_len):
    out, end = [], len(history)
    while end >= 2:
        start = max(0, end - max_len - 1)
        out.append(_window(history[start:end], max_len))
        end = start
    return out


def target_not_shifted(history, max_len):
    return [(x, x.copy()) for x, _ in windows(history, max_len)]


def one_film_window(history, max_len):
    return windows(history, max_len) or [_window(np.r_[history, 0], max_len)]


@pytest.mark.unit
def test_the_package_answer_passes():
    assert sequences.next_film_windows(lambda history, max_len: windows(history, max_len)) is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("answer", "case", "advice"),
    [
        (from_the_start, "(6 films", "cut from the end of the history backwards"),
        (padded_on_the_right, "(2 films", "pad on the left"),
        (without_overlap, "(6 films", "overlap by one film"),
        (target_not_shifted, "(2 films", "the target is the input shifted by one"),
        (one_film_window, "(1 film)", "none for a single film"),
    ],
)
def test_each_usual_mistake_gets_its_message(answer, case, advice):
    with pytest.raises(AssertionError) as failure:
        sequences.next_film_windows(answer)
    message = str(failure.value)
    assert case in message and advice in message, message
    assert "expected [" in message and "got [" in message


@pytest.mark.unit
def test_a_wrong_shape_or_type_says_so():
    with pytest.raises(AssertionError, match="not a list of"):
        sequences.next_film_windows(lambda history, max_len: np.zeros((2, 4)))
    with pytest.raises(AssertionError, match=r"must be \(4,\)"):
        sequences.next_film_windows(lambda history, max_len: [(np.zeros(5), np.zeros(5))])
