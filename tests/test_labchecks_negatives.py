"""Lab 03's Exercise 3.1 (recsys_workshop.labchecks.negatives): the uniform negative sampler. The solution
notebook's function and the package's NegativeSampler pass, as does another correct way (a choice among the
unseen films); each usual wrong answer gets a message of its own (no redraw, one redraw only, the first
unseen film, popularity-weighted draws, np.random instead of rng, item ids instead of columns, floats, a
list of the wrong length, seen changed). And the lab's own swap (``your_negatives``) puts the solution into
NCF's sampler only once its check has passed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from check_helpers import fails, solution_functions

from recsys_workshop.labchecks import negatives
from recsys_workshop.models.sampling import NegativeSampler

pytestmark = pytest.mark.unit

@pytest.fixture(scope="module")
def solution():
    """``sample_negatives`` as the solution notebook defines it."""
    return solution_functions("03_deep_recommenders.ipynb", "sample_negatives", np=np)["sample_negatives"]


def _until_unseen(seen, rows, rng, draw):
    items = draw(len(rows))
    todo = np.flatnonzero(np.asarray(seen[rows, items]).ravel())
    while len(todo):
        items[todo] = draw(len(todo))
        todo = todo[np.asarray(seen[rows[todo], items[todo]]).ravel()]
    return items


def _uniform(seen, rows, rng):
    return _until_unseen(seen, rows, rng, lambda n: rng.integers(0, seen.shape[1], n))


def _choice_among_unseen(seen, rows, rng):
    out = np.empty(len(rows), np.int64)
    for row in np.unique(rows):
        unseen = np.setdiff1d(np.arange(seen.shape[1]), seen[row].indices)
        out[rows == row] = rng.choice(unseen, (rows == row).sum())
    return out


def test_the_solution_passes(solution):
    negatives.check_sampler(solution)


@pytest.mark.parametrize("right", [_uniform, _choice_among_unseen, lambda s, r, g: NegativeSampler(s).sample(r, g)],
                         ids=["rejection", "choice-among-unseen", "package"])  # fmt: skip
def test_other_right_answers_pass(right):
    negatives.check_sampler(right)


def _no_redraw(seen, rows, rng):
    return rng.integers(0, seen.shape[1], len(rows))


def _one_redraw(seen, rows, rng):
    items = rng.integers(0, seen.shape[1], len(rows))
    hit = np.flatnonzero(np.asarray(seen[rows, items]).ravel())
    items[hit] = rng.integers(0, seen.shape[1], len(hit))
    return items


def _first_unseen(seen, rows, rng):
    return np.array([np.setdiff1d(np.arange(seen.shape[1]), seen[row].indices)[0] for row in rows])


def _popularity(seen, rows, rng):
    counts = np.asarray(seen.sum(axis=0)).ravel()
    weights = (counts + 1.0) ** 0.75
    return _until_unseen(seen, rows, rng, lambda n: rng.choice(seen.shape[1], n, p=weights / weights.sum()))


def _global_random(seen, rows, rng):
    return _uniform(seen, rows, np.random.default_rng())


def _changes_seen(seen, rows, rng):
    seen[1, 3] = True
    return _uniform(seen, rows, rng)


WRONG = {
    "no redraw": (_no_redraw, "find the draws that hit a seen film and draw those again"),
    "one redraw": (_one_redraw, "one redraw is not enough"),
    "first unseen film": (_first_unseen, "every draw was film column 0"),
    "popularity weights": (_popularity, "uniform over the unseen films; chi-square"),
    "np.random": (_global_random, "not from np.random"),
    "item ids": (lambda s, r, g: _uniform(s, r, g) + 1, "not item ids"),
    "floats": (lambda s, r, g: _uniform(s, r, g).astype(float), "expected integers"),
    "one per user": (lambda s, r, g: _uniform(s, np.unique(r), g), "one column per entry of user_rows"),
    "seen changed": (_changes_seen, "changed `seen`"),
    "not an array": (lambda s, r, g: 3, "expected a numpy array"),
}


@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")
@pytest.mark.parametrize("name", WRONG)
def test_each_usual_mistake_gets_its_own_message(name):
    wrong, match = WRONG[name]
    message = fails(negatives.check_sampler, wrong, match=match)
    others = [m for n, (_, m) in WRONG.items() if n != name and m not in match and match not in m]
    assert not any(m in message for m in others), message


def test_the_uniform_test_is_not_fooled_by_a_fair_sampler_at_other_seeds():
    """The chi-square bound sits at p = 1e-6: fair samplers at 50 seeds all pass it."""

    def fair(seed):
        def sample(seen, rows, rng):  # a stream of its own, still decided by rng
            return _uniform(seen, rows, np.random.default_rng([seed, int(rng.integers(2**31))]))

        return sample

    for seed in range(50):
        negatives.check_sampler(fair(seed))


def test_the_lab_swaps_the_solution_into_training_only_after_its_check_passed(solution):
    """``your_negatives()`` as lab 03 defines it: the package's sampler until Exercise 3.1 passed, then the
    learner's, whose negatives are unseen and spread over the catalogue; the popularity strategy is the
    package's either way."""
    from unittest import mock

    from recsys_workshop import selfcheck

    calls = []

    def spy(seen, user_rows, rng):
        calls.append(len(user_rows))
        return solution(seen, user_rows, rng)

    namespace = solution_functions("03_deep_recommenders.ipynb", "your_negatives", np=np, mock=mock,
                                   selfcheck=selfcheck, NegativeSampler=NegativeSampler,
                                   sample_negatives=spy)  # fmt: skip
    seen = sp.random(50, 200, density=0.3, format="csr", random_state=1).astype(bool)
    rows = np.repeat(np.arange(50), 100)
    with pytest.raises(selfcheck.ExerciseIncorrect):
        selfcheck.check("3.1", lambda: negatives.check_sampler(_no_redraw))
    with namespace["your_negatives"]():
        NegativeSampler(seen).sample(rows, np.random.default_rng(0))
    assert calls == [], "the package's sampler stands in until the check passed"
    selfcheck.check("3.1", lambda: negatives.check_sampler(solution))
    with namespace["your_negatives"]():
        drawn = NegativeSampler(seen).sample(rows, np.random.default_rng(0))
        NegativeSampler(seen, "popularity").sample(rows, np.random.default_rng(0))
    assert calls == [len(rows)] and isinstance(drawn, np.ndarray)
    assert not np.asarray(seen[rows, drawn]).ravel().any()
    assert len(np.unique(drawn)) > 190
