"""The verdicts the self-check cells of the labs print or raise."""

import subprocess
import sys

import numpy as np
import pytest

from recsys_workshop import selfcheck
from recsys_workshop.selfcheck import ExerciseFailed, ExerciseIncorrect, ExerciseNotDone

pytestmark = pytest.mark.unit


def _stub():
    raise NotImplementedError("Exercise 0.1")


def _asserts_wrong():
    raise AssertionError("expected 3 users")  # an assert statement, without pytest's rewriting


def _raises_key_error():
    return {}["user_id"]


def test_correct_when_fn_returns_none(capsys):
    assert selfcheck.check("0.1", lambda: None, hint="never shown") is None
    out = capsys.readouterr().out
    assert out == "✅ Exercise 0.1: correct\n"


def test_correct_when_fn_returns_true(capsys):
    selfcheck.check("2.3", lambda: 1 + 1 == 2)
    assert "✅ Exercise 2.3: correct" in capsys.readouterr().out


@pytest.mark.parametrize("result", [False, np.False_, 0, []])
def test_false_result_is_incorrect(result, capsys):
    with pytest.raises(ExerciseIncorrect, match="❌ Exercise 0.1: not correct yet"):
        selfcheck.check("0.1", lambda: result)
    assert "✅" not in capsys.readouterr().out


def test_stub_means_not_done_and_shows_hint(capsys):
    with pytest.raises(ExerciseNotDone) as info:
        selfcheck.check("0.1", _stub, hint="Use data.load_ratings().")
    err = info.value
    assert isinstance(err, AssertionError) and isinstance(err, ExerciseFailed)
    assert "❌ Exercise 0.1: not done yet" in str(err)
    assert "Hint: Use data.load_ratings()." in str(err)
    assert err.exercise == "0.1" and err.hint == "Use data.load_ratings()."
    assert isinstance(err.__cause__, NotImplementedError)
    assert "✅" not in capsys.readouterr().out


def test_stub_of_an_earlier_exercise_is_named():
    with pytest.raises(ExerciseNotDone, match=r"Exercise 0\.2: not done yet \(Exercise 0\.1, which"):
        selfcheck.check("0.2", _stub)


def test_other_not_implemented_error_is_an_error_not_a_stub():
    def fn():
        raise NotImplementedError("sparse input")

    with pytest.raises(ExerciseIncorrect, match="raised NotImplementedError: sparse input"):
        selfcheck.check("0.1", fn)


def test_failed_assertion_is_incorrect_with_its_message():
    with pytest.raises(ExerciseIncorrect) as info:
        selfcheck.check("1.2", _asserts_wrong, hint="Count distinct users.")
    assert str(info.value).splitlines() == [
        "❌ Exercise 1.2: not correct yet: expected 3 users",
        "Hint: Count distinct users.",
    ]


def test_unexpected_error_is_incorrect_and_says_where():
    with pytest.raises(ExerciseIncorrect, match="your code raised KeyError: 'user_id'") as info:
        selfcheck.check("1.3", _raises_key_error, hint="Name the column.")
    lines = info.value._render_traceback_()
    assert lines[:2] == ["❌ Exercise 1.3: your code raised KeyError: 'user_id'", "Hint: Name the column."]
    assert "_raises_key_error" in lines[2] and 'return {}["user_id"]' in lines[2]


def test_render_traceback_is_short_verdict_and_hint():
    with pytest.raises(ExerciseNotDone) as info:
        selfcheck.check("0.1", _stub, hint="Read the docstring.")
    lines = info.value._render_traceback_()
    assert all(isinstance(line, str) for line in lines)
    assert lines == [
        "❌ Exercise 0.1: not done yet: replace `raise NotImplementedError(...)` with your code.",
        "Hint: Read the docstring.",
    ]


def test_no_hint_line_without_hint():
    with pytest.raises(ExerciseIncorrect) as info:
        selfcheck.check("0.1", lambda: False)
    assert len(info.value._render_traceback_()) == 1
    assert "Hint" not in str(info.value)


def test_nested_exercise_failure_passes_through():
    def fn():
        selfcheck.check("0.1", _stub)

    with pytest.raises(ExerciseNotDone, match="Exercise 0.1"):
        selfcheck.check("0.2", fn)


def test_close_scalars():
    selfcheck.close(0.1 + 0.2, 0.3)
    selfcheck.close(np.float64(0.5), 0.5)
    selfcheck.close(100.0, 101.0, rtol=0.02)
    with pytest.raises(AssertionError, match=r"precision@2: expected 0.5, got 0.25 \(rtol 1e-06\)"):
        selfcheck.close(0.25, 0.5, what="precision@2")


def test_close_arrays_and_sequences():
    selfcheck.close([1.0, 2.0], np.array([1.0, 2.0 + 1e-9]))
    selfcheck.close([[1, float("nan")]], [[1, float("nan")]])
    with pytest.raises(AssertionError, match=r"at index \(1, 1\) expected 5.0, got 4.0"):
        selfcheck.close(np.array([[1, 2], [3, 4]]), [[1, 2], [3, 5]])
    with pytest.raises(AssertionError, match=r"expected shape \(3,\), got shape \(2,\)"):
        selfcheck.close([1, 2], [1, 2, 3])


def test_close_inside_check_gives_the_verdict():
    with pytest.raises(ExerciseIncorrect, match="ndcg: expected 1.0, got 0.5"):
        selfcheck.check("3.1", lambda: selfcheck.close(0.5, 1.0, what="ndcg"), hint="Sort by score first.")


def test_equal():
    selfcheck.equal([1, 2], [1, 2])
    with pytest.raises(AssertionError, match=r"top-3: expected \[1, 2, 3\], got \[1, 3, 2\]"):
        selfcheck.equal([1, 3, 2], [1, 2, 3], what="top-3")


def test_import_is_light():
    code = "import sys, recsys_workshop.selfcheck; print('numpy' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_yours_or_falls_back_to_the_reference_only_for_an_exercise_stub(capsys):
    def stub(x):
        raise NotImplementedError("Exercise 10.9")

    def broken(x):
        raise NotImplementedError("something else")

    wrapped = selfcheck.yours_or("10.9", stub, lambda x: x + 1)
    assert [wrapped(1), wrapped(2)] == [2, 3]
    assert capsys.readouterr().out.count("Exercise 10.9 is not done yet") == 1
    assert selfcheck.yours_or("10.9", lambda x: x * 10, lambda x: x + 1)(1) == 10
    with pytest.raises(NotImplementedError, match="something else"):
        selfcheck.yours_or("10.9", broken, lambda x: x + 1)(1)


def test_yours_if_passed_takes_the_learners_code_only_after_its_check_passed(capsys):
    """For saved models: the package's version stands in until the latest check of the exercise passed."""
    yours, package = (lambda: "yours"), (lambda: "package")
    assert selfcheck.yours_if_passed("10.8", yours, package)() == "package"
    assert "Exercise 10.8 has not passed its self-check yet" in capsys.readouterr().out
    selfcheck.check("10.8", lambda: None)
    assert selfcheck.passed("10.8") and selfcheck.yours_if_passed("10.8", yours, package)() == "yours"
    with pytest.raises(ExerciseIncorrect):
        selfcheck.check("10.8", lambda: selfcheck.equal(1, 2))
    assert not selfcheck.passed("10.8") and selfcheck.yours_if_passed("10.8", yours, package)() == "package"
    with pytest.raises(ExerciseNotDone):
        selfcheck.check("10.8", _stub)
    assert not selfcheck.passed("10.8")


def test_yours_in_use_names_the_learners_functions_that_are_swapped_in():
    """What ``saved.fit(..., yours=...)`` records: only the exercises whose check passed."""
    yours, theirs = (lambda: "yours"), (lambda: "also yours")
    selfcheck.check("10.9", lambda: None)
    with pytest.raises(ExerciseIncorrect):
        selfcheck.check("10.10", lambda: selfcheck.equal(1, 2))
    assert selfcheck.yours_in_use({"10.9": yours, "10.10": theirs, "10.11": theirs}) == {"10.9": yours}
