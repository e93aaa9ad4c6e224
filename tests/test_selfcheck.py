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


class Notebook:
    """A kernel's namespace: each ``run`` executes a cell as IPython does (a new file name for every run, its source
    in ``linecache`` so that ``inspect`` finds it), or, with ``source=False``, with no source to find."""

    def __init__(self, source: bool = True):
        self.namespace: dict = {"__name__": "__main__", "selfcheck": selfcheck}
        self.source, self.runs = source, 0

    def run(self, cell: str) -> None:
        import linecache
        import textwrap

        cell, self.runs = textwrap.dedent(cell), self.runs + 1
        filename = f"<notebook-cell-{id(self)}-{self.runs}>"
        if self.source:
            linecache.cache[filename] = (len(cell), None, cell.splitlines(keepends=True), filename)
        exec(compile(cell, filename, "exec"), self.namespace)  # noqa: S102 - what a kernel does with a cell

    def __getitem__(self, name: str):
        return self.namespace[name]


SAMPLE = "def sample(x):\n    return x + 1\n"
CHECK = "selfcheck.check('{exercise}', lambda: selfcheck.equal(sample(1), 2, what='sample(1)'))\n"


@pytest.fixture(params=[True, False], ids=["source", "bytecode"])
def notebook(request) -> Notebook:
    return Notebook(source=request.param)


def _reference(x):
    return "package"


def test_a_function_unchanged_since_its_check_passed_is_used(notebook, capsys):
    notebook.run(SAMPLE)
    notebook.run(CHECK.format(exercise="91.1"))
    assert capsys.readouterr().out == "✅ Exercise 91.1: correct\n"
    assert selfcheck.yours_if_passed("91.1", notebook["sample"], _reference)(1) == 2
    assert selfcheck.yours_in_use({"91.1": notebook["sample"]}) == {"91.1": notebook["sample"]}
    assert capsys.readouterr().out == ""


def test_a_function_redefined_after_its_check_passed_is_not_used(notebook, capsys):
    notebook.run(SAMPLE)
    notebook.run(CHECK.format(exercise="91.2"))
    notebook.run(SAMPLE.replace("x + 1", "x + 2"))  # the def cell edited and run again, its check not
    capsys.readouterr()
    assert selfcheck.yours_if_passed("91.2", notebook["sample"], _reference)(1) == "package"
    assert capsys.readouterr().out.splitlines() == [
        "(Exercise 91.2: your sample changed since its self-check passed: run the self-check cell again to use it. "
        "The package's version stands in meanwhile.)"
    ]
    assert selfcheck.yours_in_use({"91.2": notebook["sample"]}) == {}
    assert capsys.readouterr().out == "", "yours_if_passed has said it"

    notebook.run(SAMPLE)  # changed back: the code that passed
    assert selfcheck.yours_if_passed("91.2", notebook["sample"], _reference)(1) == 2
    assert selfcheck.yours_in_use({"91.2": notebook["sample"]}) == {"91.2": notebook["sample"]}


def test_a_changed_default_counts_as_a_change(notebook):
    notebook.run("def sample(x, step=1):\n    return x + step\n")
    notebook.run(CHECK.format(exercise="91.3"))
    notebook.run("def sample(x, step=2):\n    return x + step\n")
    assert selfcheck.yours_in_use({"91.3": notebook["sample"]}) == {}


def test_a_function_redefined_with_the_same_code_is_used(notebook, capsys):
    notebook.run(SAMPLE)
    notebook.run(CHECK.format(exercise="91.4"))
    before = notebook["sample"]
    notebook.run("\n\n" + SAMPLE)  # Run All again: a new function object, from a new cell, the same code
    assert notebook["sample"] is not before
    assert selfcheck.yours_if_passed("91.4", notebook["sample"], _reference)(1) == 2
    assert selfcheck.yours_in_use({"91.4": notebook["sample"]}) == {"91.4": notebook["sample"]}
    capsys.readouterr()


def test_a_failed_check_is_not_used_even_with_the_code_that_passed_before(notebook, capsys):
    notebook.run(SAMPLE)
    notebook.run(CHECK.format(exercise="91.5"))
    notebook.run(SAMPLE.replace("x + 1", "x + 2"))
    with pytest.raises(ExerciseIncorrect, match="sample\\(1\\): expected 2, got 3"):
        notebook.run(CHECK.format(exercise="91.5"))
    notebook.run(SAMPLE)
    capsys.readouterr()
    assert selfcheck.yours_if_passed("91.5", notebook["sample"], _reference)(1) == "package"
    assert "Exercise 91.5 has not passed its self-check yet" in capsys.readouterr().out
    assert selfcheck.yours_in_use({"91.5": notebook["sample"]}) == {}


def test_a_wrapper_defined_after_the_check_follows_the_function_it_calls(notebook, capsys):
    """Lab 03 swaps in ``_yours``, a wrapper around the learner's function defined after the check."""
    notebook.run("def helper(x):\n    return 1\n\n\ndef sample(x):\n    return x + helper(x)\n")
    notebook.run(CHECK.format(exercise="91.6"))
    notebook.run("def _yours(sampler, x):\n    return sample(x)\n")
    assert selfcheck.yours_if_passed("91.6", notebook["_yours"], _reference) is notebook["_yours"]
    notebook.run("def helper(x):\n    return 2\n")  # a function the learner's calls: changed too
    capsys.readouterr()
    assert selfcheck.yours_if_passed("91.6", notebook["_yours"], _reference) is _reference
    assert "your helper changed since its self-check passed" in capsys.readouterr().out
    assert selfcheck.yours_in_use({"91.6": notebook["sample"]}) == {}


def test_a_component_counts_as_the_function_it_runs(notebook, capsys):
    """A KFP component (lab 09's push gate) is known by its ``python_func``, a decorated function by its own."""
    notebook.run("""
        import functools

        class Component:  # what @dsl.component returns
            def __init__(self, python_func):
                self.python_func = python_func

        def logged(function):
            @functools.wraps(function)
            def call(*args):
                return function(*args)
            return call
    """)
    for decorator in ("Component", "logged"):
        notebook.run(f"@{decorator}\ndef gate(x):\n    return x > 0\n")
        notebook.run("selfcheck.check('91.7', lambda: gate.python_func(1) if hasattr(gate, 'python_func') "
                     "else gate(1))")  # fmt: skip
        notebook.run(f"@{decorator}\ndef gate(x):\n    return x >= 0\n")
        capsys.readouterr()
        assert selfcheck.yours_if_passed("91.7", notebook["gate"], _reference) is _reference, decorator
        assert "your gate changed" in capsys.readouterr().out


def test_a_check_written_as_a_function_records_what_it_calls(notebook):
    """``def _check(): ...`` then ``selfcheck.check("N.M", _check)``, as most labs write it."""
    notebook.run(SAMPLE + "\n\ndef _check():\n    assert sample(1) == 2\n")
    notebook.run("selfcheck.check('91.8', _check)")
    assert selfcheck._PASSED["91.8"] == {"sample": selfcheck.function_digest(notebook["sample"])}, "not _check"
    notebook.run(SAMPLE.replace("x + 1", "x + 3"))
    assert selfcheck.yours_in_use({"91.8": notebook["sample"]}) == {}
