"""Lab 03, section 1 (implicit feedback needs negatives): the check of Exercise 3.1, the uniform sampler.

``sample_negatives(seen, user_rows, rng)`` takes a users x items CSR matrix of what each user has seen,
an array of user rows (a row may repeat) and a ``numpy.random.Generator``, and returns one item column
per entry of ``user_rows``: an item that user has not seen, every unseen item equally likely, drawn from
``rng`` (so that a seed reproduces the epoch's negatives). :class:`~recsys_workshop.models.sampling.
NegativeSampler` with ``strategy="uniform"`` is the package's version; lab 03 trains NCF with the
learner's function in its place.

:func:`check_sampler` runs the learner's function on a small named catalogue and says what is wrong,
with the usual mistakes named: not an integer array of the right length, columns out of range (ids
instead of 0-based columns), seen films returned (no redraw, or one redraw only), the same film every
time, a distribution that is not uniform over the unseen films (a chi-square test at a fixed seed, so
the verdict never changes between runs), draws that ignore ``rng`` (``np.random``), ``seen`` changed.
numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy import stats

__all__ = ["check_sampler", "draws_per_film"]

N_ITEMS = 10
DRAWS = 3000
# the user rows of the check's catalogue: what each has seen (item columns)
SEEN = {
    "user 0 (seen 9 of the 10 films)": [0, 1, 2, 3, 4, 5, 6, 8, 9],
    "user 1 (seen nothing)": [],
    "user 2 (seen 5 of the 10 films)": [0, 2, 4, 6, 8],
}
P_VALUE = 1e-6  # a fair sampler fails the chi-square test once in a million seeds; the check's seeds are fixed


def _seen_matrix() -> sp.csr_matrix:
    rows = [row for row, cols in enumerate(SEEN.values()) for _ in cols]
    cols = [col for cols in SEEN.values() for col in cols]
    return sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(len(SEEN), N_ITEMS))


def draws_per_film(columns: np.ndarray, n_items: int = N_ITEMS) -> np.ndarray:
    """How often each item column was drawn."""
    return np.bincount(np.asarray(columns, dtype=np.int64), minlength=n_items)


def _call(sample_negatives: Callable, seen: sp.csr_matrix, user_rows: np.ndarray, seed: int) -> np.ndarray:
    call = f"sample_negatives(seen, user_rows of length {len(user_rows)}, rng)"
    got = sample_negatives(seen, user_rows.copy(), np.random.default_rng(seed))
    if not hasattr(got, "__len__") or isinstance(got, str | bytes):
        raise AssertionError(f"{call} returned {type(got).__name__}, expected a numpy array of item columns")
    array = np.asarray(got)
    if array.shape != user_rows.shape:
        raise AssertionError(f"{call} returned shape {array.shape}, expected {user_rows.shape}: one column per entry "
                             "of user_rows, in the same order")  # fmt: skip
    if not np.issubdtype(array.dtype, np.integer):
        raise AssertionError(f"{call} returned dtype {array.dtype}, expected integers (item columns)")
    if array.min() < 0 or array.max() >= seen.shape[1]:
        ids = array.max() == seen.shape[1]
        hint = ": columns are 0-based positions, not item ids (which start at 1)" if ids else ""
        raise AssertionError(f"{call} returned columns from {array.min()} to {array.max()}, expected 0 to "
                             f"{seen.shape[1] - 1}{hint}")  # fmt: skip
    return array


def _check_unseen(got: np.ndarray, user_rows: np.ndarray, seen: sp.csr_matrix) -> None:
    for row, (name, seen_cols) in enumerate(SEEN.items()):
        drawn = got[user_rows == row]
        hits = np.isin(drawn, seen_cols)
        if hits.any():
            first = int(drawn[hits][0])
            if abs(hits.mean() - len(seen_cols) / N_ITEMS) < 0.05:  # as often as a plain uniform draw hits
                advice = "find the draws that hit a seen film and draw those again"
            else:
                advice = ("redraw the entries that hit a seen film again and again until none does (one redraw is "
                          "not enough when a user has seen most films), and keep each column at its entry's "
                          "position in user_rows")  # fmt: skip
            raise AssertionError(f"{name} got film column {first}, which it has seen, in {hits.sum():,} of its "
                                 f"{len(drawn):,} draws: {advice}")  # fmt: skip


def _check_uniform(got: np.ndarray, user_rows: np.ndarray) -> None:
    for row, (name, seen_cols) in enumerate(SEEN.items()):
        unseen = np.setdiff1d(np.arange(N_ITEMS), seen_cols)
        counts = draws_per_film(got[user_rows == row])[unseen]
        if len(unseen) > 1 and (counts > 0).sum() == 1:
            raise AssertionError(f"{name}: every draw was film column {unseen[counts > 0][0]}, expected each of its "
                                 f"{len(unseen)} unseen films about equally often: draw at random")  # fmt: skip
        expected = counts.sum() / len(unseen)
        chi2 = float(((counts - expected) ** 2 / expected).sum()) if len(unseen) > 1 else 0.0
        if len(unseen) > 1 and chi2 > stats.chi2.isf(P_VALUE, len(unseen) - 1):
            shown = ", ".join(f"{col}: {n}" for col, n in zip(unseen, counts, strict=True))
            raise AssertionError(f"{name}: its unseen films were drawn {{{shown}}} times, expected about "
                                 f"{expected:.0f} each (uniform over the unseen films; chi-square {chi2:.0f}). "
                                 "Draw every item column with the same probability and redraw the seen ones (or draw "
                                 "among the user's unseen columns directly)")  # fmt: skip


def check_sampler(sample_negatives: Callable) -> None:
    """Raise ``AssertionError`` saying what is wrong with ``sample_negatives``; return None when it is right."""
    seen = _seen_matrix()
    before = seen.copy()
    user_rows = np.random.default_rng(7).permutation(np.repeat(np.arange(len(SEEN)), DRAWS))
    got = _call(sample_negatives, seen, user_rows, seed=0)
    if (seen != before).nnz or seen.shape != before.shape:
        raise AssertionError("sample_negatives changed `seen`: it must only read it (the model's record of what "
                             "each user has seen is shared with everything else)")  # fmt: skip
    _check_unseen(got, user_rows, seen)
    _check_uniform(got, user_rows)
    again = _call(sample_negatives, seen, user_rows, seed=0)
    if not np.array_equal(got, again):
        raise AssertionError("two calls with generators of the same seed gave different columns: draw from the "
                             "`rng` argument (rng.integers, rng.choice), not from np.random or random")  # fmt: skip
    other = _call(sample_negatives, seen, user_rows, seed=1)
    if np.array_equal(got, other):
        raise AssertionError("generators of different seeds gave the same columns: draw from the `rng` argument")
