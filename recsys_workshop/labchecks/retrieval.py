"""Lab 10, section 5 (serving at catalogue scale): the checks of Exercises 10.4 and 10.5, the package's own
versions of both, and the benchmark's cost curve as the lab shows it.

- Exercise 10.4, ``sweep(version, users, exact_top, settings)``: for each ``(candidates, ef_search)``, tune an
  HNSW version (:meth:`recsys_workshop.serving.LoadedVersion.tune`), ask each user's top-10 one request at a
  time, and return one row per setting: ``candidates``, ``ef_search``, ``recall`` (recall@10 against
  ``exact_top``, :func:`recsys_workshop.retrieval.recall_at_k`) and ``ms`` (median milliseconds per request).
  :func:`check_sweep` runs it first on a stand-in version whose answers are planted (so that each usual
  mistake gives a recall of its own, and the calls show whether the version was tuned, to what, and how it
  was asked), then on the lab's own HNSW version against the package's recall of the same answers (an
  index searches the same way every time it is asked). Times are never checked: they depend on the machine.
- Exercise 10.5, ``choose(table, min_recall)``: the cheapest setting (smallest ``ms``) whose recall reaches the
  floor (``>=``), the higher recall between equally fast ones, ``None`` when none reaches it; returned as
  ``(candidates, ef_search)``. :func:`check_choose` runs it on named tables.
- :func:`cost_table` and :func:`cost_summary`: the records of ``bench/results/serving-scale.json``
  (``bench/serving_scale.py``) as one row per catalogue size, and the sentences the lab prints from them, so
  that the lab's text quotes no figure of its own.

Every check raises ``AssertionError`` naming the case, what was expected and what came back (and the likely
mistake), which :func:`recsys_workshop.selfcheck.check` turns into the verdict. numpy and pandas (and
threadpoolctl inside the reference sweep, which times requests on one thread as the model server runs).
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from recsys_workshop.retrieval import recall_at_k

__all__ = ["COLUMNS", "check_choose", "check_sweep", "choose", "cost_summary", "cost_table", "sweep"]

COLUMNS = ("candidates", "ef_search", "recall", "ms")
K = 10
BUDGET_MS = 10.0  # issue #16's p99 target for one request at 1M items


# ----------------------------------------------------------------------------------------- the references


def _one_by_one(version, users: Sequence[int], k: int) -> tuple[np.ndarray, float]:
    """Each user's top-``k`` item ids (one request per user) and the median milliseconds per request."""
    from threadpoolctl import threadpool_limits

    answers, seconds = [], []
    with threadpool_limits(1):  # the model server's numpy runs on one thread
        for user in users:
            start = time.perf_counter()
            items, _, _ = version.top_k([user], k)
            seconds.append(time.perf_counter() - start)
            answers.append(items[0])
    return np.array(answers), 1000 * float(np.median(seconds))


def sweep(version, users: Sequence[int], exact_top: np.ndarray, settings: Sequence[tuple[int, int]], k: int = K):
    """Exercise 10.4: one row per ``(candidates, ef_search)`` of ``settings``, in order (see the module)."""
    rows = []
    for candidates, ef_search in settings:
        version.tune(candidates=candidates, ef_search=ef_search)
        answers, ms = _one_by_one(version, users, k)
        rows.append((int(candidates), int(ef_search), recall_at_k(answers, exact_top, k), ms))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def choose(table: pd.DataFrame, min_recall: float) -> tuple[int, int] | None:
    """Exercise 10.5: the fastest setting with ``recall >= min_recall`` (equal times: the higher recall, then
    the first row), as ``(candidates, ef_search)``; ``None`` if no setting reaches the floor."""
    reaching = table[table["recall"] >= min_recall]
    if reaching.empty:
        return None
    best = reaching.sort_values(["ms", "recall"], ascending=[True, False], kind="stable").iloc[0]
    return int(best["candidates"]), int(best["ef_search"])


# ------------------------------------------------------------------------------------- Exercise 10.4: sweep


class _Planted:
    """A stand-in for an HNSW :class:`~recsys_workshop.serving.LoadedVersion`: ``tune`` and ``top_k`` as the
    real one (its state in ``candidates`` and ``searcher.ef_search``), answers planted per setting, and a
    record of every ``top_k`` call: ``(candidates, ef_search)`` at the time, the users asked, ``k``."""

    def __init__(self, exact: dict[int, np.ndarray], hits: dict[tuple[int, int], dict[int, int]]):
        self.exact, self.hits = exact, hits
        self.candidates, self.searcher = 100, SimpleNamespace(ef_search=100)
        self.calls: list[tuple[tuple[int, int], list[int], int]] = []

    def tune(self, candidates: int | None = None, ef_search: int | None = None) -> _Planted:
        self.candidates = int(candidates or self.candidates)
        self.searcher.ef_search = int(ef_search or self.searcher.ef_search)
        return self

    def answer(self, user: int, state: tuple[int, int], k: int = K) -> np.ndarray:
        """``hits`` of the user's exact top-10, best last (so that a position-by-position comparison finds
        fewer), then items outside it; beyond the 10th place the rest of the exact ten."""
        exact = self.exact[user]
        hits = self.hits.get(state, {}).get(user, 3)
        top = np.concatenate([exact[:hits][::-1], 10_000 + 100 * user + np.arange(K - hits)])
        extra = np.concatenate([exact[hits:], 20_000 + 100 * user + np.arange(max(k, K))])
        return np.concatenate([top, extra])[:k].astype(np.int64)

    def top_k(self, user_ids, k, exclude=None):
        users = [int(u) for u in np.asarray(user_ids).reshape(-1)]
        state = (self.candidates, self.searcher.ef_search)
        self.calls.append((state, users, int(k)))
        items = [self.answer(u, state, int(k)) for u in users]
        return items, [np.linspace(1.0, 0.0, len(i), dtype=np.float32) for i in items], np.ones(len(users), bool)


PLANTED_USERS = [7, 3, 12, 5]  # not in id order: a sweep that sorts them loses the rows of exact_top
PLANTED_HITS = {  # setting -> hits of each user (in PLANTED_USERS order): mean and median differ on purpose
    (10, 16): [5, 9, 8, 10],
    (50, 64): [9, 6, 10, 10],
    (200, 256): [10, 10, 7, 10],
}


def _wrong_recalls(planted: _Planted, users: list[int], exact_top: np.ndarray, state) -> dict[str, float]:
    """The recall each usual mistake gives for ``state``, by its advice."""
    answers = np.array([planted.answer(u, state) for u in users])
    shares = np.array([len(np.intersect1d(a, e)) / K for a, e in zip(answers, exact_top, strict=True)])
    in_id_order = np.array([planted.answer(u, state) for u in sorted(users)])
    return {
        "a percentage? Return recall as a share between 0 and 1": 100 * shares.mean(),
        "that is the number of hits per user: divide by k (10)": K * shares.mean(),
        "you compared position by position; recall counts the exact top-10 items found anywhere in the "
        "answer's top-10 (a set intersection)": float(np.mean(answers == exact_top)),
        "that is the median of the users' recall; recall@10 is their mean": float(np.median(shares)),
        "that is the first user's recall only: average over every user": shares[0],
        "that is the last user's recall only: average over every user": shares[-1],
        "the answers are not compared with their own user's row of exact_top: row i of exact_top is users[i]'s "
        "top-10 (did you sort the users?)": recall_at_k(in_id_order, exact_top, K),
    }


def _table(result: Any, call: str, n_rows: int) -> pd.DataFrame:
    if not isinstance(result, pd.DataFrame):
        raise AssertionError(
            f"{call} returned {type(result).__name__}; expected a DataFrame with the columns "
            f"{list(COLUMNS)}, one row per setting"
        )
    missing = [c for c in COLUMNS if c not in result.columns]
    if missing:
        raise AssertionError(f"{call}: the table lacks the columns {missing} (it has {list(result.columns)})")
    if len(result) != n_rows:
        raise AssertionError(f"{call}: expected one row per setting ({n_rows} rows), got {len(result)}")
    return result.reset_index(drop=True)


def _check_calls(planted: _Planted, users: list[int], settings: list[tuple[int, int]], call: str) -> None:
    """How the stand-in was asked: tuned to each setting (not swapped), every user, one per request, k = 10."""
    for _state, asked, k in planted.calls:
        if k != K:
            raise AssertionError(f"{call} asked top_k for k={k}: recall@10 compares the first 10 items, ask k={K}")
        if len(asked) > 1:
            raise AssertionError(
                f"{call} asked {len(asked)} users in one top_k call: ask one user per call "
                "(one_by_one does), so that the time is that of one request, as the server gets them"
            )
    asked_at: dict[tuple[int, int], set[int]] = {}
    for state, asked, _ in planted.calls:
        asked_at.setdefault(state, set()).update(asked)
    for candidates, ef_search in settings:
        if asked_at.get((candidates, ef_search)) == set(users):
            continue
        if (ef_search, candidates) in asked_at and (ef_search, candidates) not in settings:
            raise AssertionError(
                f"{call}: for the setting (candidates={candidates}, ef_search={ef_search}) the version was tuned to "
                f"candidates={ef_search}, ef_search={candidates}: the two are swapped; pass them by name, "
                f"version.tune(candidates=..., ef_search=...)"
            )
        if (candidates, ef_search) not in asked_at:
            seen = sorted(asked_at)
            raise AssertionError(
                f"{call}: no request was made with the version tuned to candidates={candidates}, "
                f"ef_search={ef_search} (the requests saw {seen}): call version.tune(candidates=..., "
                "ef_search=...) before each setting's requests"
            )
        missing = sorted(set(users) - asked_at[(candidates, ef_search)])
        raise AssertionError(
            f"{call}: at the setting ({candidates}, {ef_search}) the users {missing} were never "
            "asked: ask every user of users"
        )


def _check_rows(table: pd.DataFrame, expected: list[float], wrong: list[dict[str, float]], settings, call) -> None:
    got_settings = [
        (_as_number(c, call), _as_number(e, call)) for c, e in zip(table["candidates"], table["ef_search"], strict=True)
    ]
    if got_settings != [tuple(map(float, s)) for s in settings]:
        shown = [tuple(int(v) for v in s) for s in got_settings]
        raise AssertionError(
            f"{call}: the rows' (candidates, ef_search) should be the settings in their order "
            f"{list(settings)}, got {shown}"
        )
    for row, setting, want, mistakes in zip(table.itertuples(), settings, expected, wrong, strict=True):
        got = _as_number(row.recall, f"{call}, the recall of {setting}")
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            advice = next(
                (
                    text
                    for text, value in mistakes.items()
                    if not math.isclose(value, want) and math.isclose(got, value, abs_tol=1e-9)
                ),
                None,
            )
            raise AssertionError(
                f"{call}: recall of the setting {setting}: expected {want:.6g}, got {got:.6g}"
                + (f": {advice}" if advice else "")
            )
        _check_ms(row.ms, setting, call)


def _check_ms(value: Any, setting: tuple[int, int], call: str) -> None:
    """A time is never compared (it depends on the machine), only required to be a number of milliseconds."""
    ms = _as_number(value, f"{call}, the ms of {setting}")
    if not math.isfinite(ms) or ms < 0:
        raise AssertionError(f"{call}: the median time of {setting} is {ms!r}, not a number of milliseconds")


def _as_number(value: Any, what: str) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AssertionError(f"{what} is {type(value).__name__} {value!r}, not a number")
    return float(value)


def check_sweep(yours: Callable[..., Any], version=None, users=None, exact_top=None) -> None:
    """Exercise 10.4: ``yours`` on the planted stand-in (every usual mistake named), then, when ``version`` is
    given, on it (an HNSW LoadedVersion; ``users`` and their ``exact_top``) against the package's recall of
    the same answers, for two settings; the version's own settings are restored afterwards."""
    exact = {u: 100 * u + np.arange(K, dtype=np.int64) for u in PLANTED_USERS}
    planted = _Planted(exact, {s: dict(zip(PLANTED_USERS, h, strict=True)) for s, h in PLANTED_HITS.items()})
    ids, rows, settings = list(PLANTED_USERS), np.array([exact[u] for u in PLANTED_USERS]), list(PLANTED_HITS)
    call = f"sweep(a stand-in version, users {ids}, their exact top-10, settings {settings})"
    table = _table(yours(planted, np.array(ids), rows, settings), call, len(settings))
    _check_calls(planted, ids, settings, call)
    expected = [recall_at_k(np.array([planted.answer(u, s) for u in ids]), rows, K) for s in settings]
    wrong = [_wrong_recalls(planted, ids, rows, s) for s in settings]
    _check_rows(table, expected, wrong, settings, call)
    if version is not None:
        _check_on_version(yours, version, users, exact_top)


VERSION_SETTINGS = [(10, 16), (50, 64)]


def _check_on_version(yours: Callable[..., Any], version, users, exact_top) -> None:
    """``yours`` on a real HNSW version: the same recall as the package's sweep, whose answers are the same
    (the index is searched the same way each time)."""
    if getattr(version, "searcher", None) is None:
        raise ValueError("check_sweep needs a version with an HNSW index (its retrieval is exact)")
    saved = (version.candidates, version.searcher.ef_search)
    call = f"sweep(the lab's HNSW version, {len(users)} users, their exact top-10, settings {VERSION_SETTINGS})"
    try:
        table = _table(yours(version, users, exact_top, VERSION_SETTINGS), call, len(VERSION_SETTINGS))
        reference = sweep(version, users, exact_top, VERSION_SETTINGS)
    finally:
        version.tune(candidates=saved[0], ef_search=saved[1])
    for setting, got, want, ms in zip(VERSION_SETTINGS, table["recall"], reference["recall"], table["ms"], strict=True):
        got = _as_number(got, f"{call}, the recall of {setting}")
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            raise AssertionError(
                f"{call}: recall of the setting {setting}: expected {want:.6g} (recall_at_k of "
                f"the version's answers against exact_top), got {got:.6g}"
            )
        _check_ms(ms, setting, call)


# ------------------------------------------------------------------------------------ Exercise 10.5: choose


def _frame(rows: list[tuple[int, int, float, float]], index: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS), index=index)


CHOOSE_CASES = [  # (name, table, floor, expected)
    ("the fastest setting reaches the floor",
     _frame([(10, 16, 0.97, 0.10), (50, 64, 0.995, 0.20), (200, 256, 0.99, 0.40)]), 0.95, (10, 16)),
    ("the fastest setting misses the floor",
     _frame([(10, 16, 0.90, 0.10), (50, 64, 0.97, 0.20), (200, 256, 0.99, 0.40)]), 0.95, (50, 64)),
    ("a setting exactly at the floor",
     _frame([(10, 16, 0.94, 0.10), (10, 64, 0.95, 0.15), (200, 256, 0.99, 0.40)]), 0.95, (10, 64)),
    ("rows not in order of time, index labels 5, 3, 9",
     _frame([(200, 256, 0.99, 0.40), (10, 16, 0.90, 0.05), (50, 64, 0.97, 0.12)], [5, 3, 9]), 0.95, (50, 64)),
    ("two settings equally fast",
     _frame([(10, 256, 0.96, 0.30), (200, 16, 0.98, 0.30), (200, 256, 0.99, 0.45)]), 0.95, (200, 16)),
    ("no setting reaches the floor", _frame([(10, 16, 0.80, 0.10), (200, 256, 0.90, 0.40)]), 0.95, None),
]  # fmt: skip


def _choose_mistakes(table: pd.DataFrame, floor: float) -> dict[str, tuple[int, int]]:
    """The setting each usual mistake picks, by its advice, the likelier first."""

    def setting(row: pd.Series) -> tuple[int, int]:
        return int(row["candidates"]), int(row["ef_search"])

    out = {}
    above, reaching = table[table["recall"] > floor], table[table["recall"] >= floor]
    if (table["recall"] == floor).any() and len(above):
        out["a recall equal to the floor reaches it: compare with >="] = setting(above.loc[above["ms"].idxmin()])
    fastest_of_all = table.loc[table["ms"].idxmin()]
    if fastest_of_all["recall"] < floor:
        advice = "it is the fastest of all, but its recall is below the floor: keep only the settings that reach it"
        out[advice] = setting(fastest_of_all)
    if len(reaching):
        fastest = reaching[reaching["ms"] == reaching["ms"].min()]
        out["those settings are equally fast: take the one with the higher recall"] = setting(
            fastest.loc[fastest["recall"].idxmin()]
        )
        out["you took the first row that reaches the floor: the rows are not in order of time"] = setting(
            reaching.iloc[0]
        )
        out["you took the slowest setting that reaches the floor; the cheapest is the fastest"] = setting(
            reaching.loc[reaching["ms"].idxmax()]
        )
    out["you took the highest recall; the exercise asks for the cheapest setting that reaches the floor"] = setting(
        table.loc[table["recall"].idxmax()]
    )
    return out


def _as_setting(value: Any, call: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, pd.Series | pd.DataFrame) or not isinstance(value, tuple | list) or len(value) != 2:
        raise AssertionError(
            f"{call} returned {type(value).__name__} {value!r:.80}; return the setting as a tuple "
            "(candidates, ef_search), e.g. (50, 64), or None"
        )
    return _as_number(value[0], f"{call}[0]"), _as_number(value[1], f"{call}[1]")


def check_choose(yours: Callable[[pd.DataFrame, float], Any]) -> None:
    """Exercise 10.5 on the named tables of :data:`CHOOSE_CASES`."""
    for name, table, floor, expected in CHOOSE_CASES:
        call = f"choose(a table where {name}, {floor})"
        given = table.copy()
        try:
            got = _as_setting(yours(given, floor), call)
        except AssertionError:
            raise
        except Exception as error:
            if expected is None:
                raise AssertionError(
                    f"{call} raised {type(error).__name__}: {error}; when no setting reaches the floor, return None"
                ) from error
            raise
        if not given.equals(table):
            raise AssertionError(f"{call} changed the table it was given: filter or sort a copy, not the table")
        if got == (tuple(map(float, expected)) if expected else None):
            continue
        if expected is None:
            best = table["recall"].max()
            raise AssertionError(
                f"{call}: no setting reaches the floor (the best recall is {best:g}): expected "
                f"None, got {tuple(int(v) for v in got)}"
            )
        if got is None:
            raise AssertionError(f"{call}: expected {expected}, got None, but {expected} reaches the floor")
        shown = tuple(int(v) for v in got)
        if shown == expected[::-1]:
            raise AssertionError(f"{call}: expected {expected}, got {shown}: (candidates, ef_search), in that order")
        advice = next(
            (text for text, pick in _choose_mistakes(table, floor).items() if pick == shown and pick != expected), None
        )
        raise AssertionError(f"{call}: expected {expected}, got {shown}" + (f": {advice}" if advice else ""))


# ------------------------------------------------------------------------------------------ the cost curve

_SIZE = re.compile(r"^synthetic-(\d+(?:\.\d+)?)([km]?)$")


def _items(dataset: str) -> int:
    """Items of a benchmark dataset name: ``synthetic-1.7k`` -> 1,700, ``synthetic-1m`` -> 1,000,000."""
    match = _SIZE.match(dataset)
    if not match:
        raise ValueError(f"not a serving-scale dataset name: {dataset!r}")
    return round(float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)])


TABLE_COLUMNS = {  # (model, metric) -> column of cost_table
    ("exact", "p99_ms"): "exact p99 ms",
    ("ann", "p99_ms"): "HNSW p99 ms",
    ("exact", "rss_mb"): "exact RSS MB",
    ("ann", "rss_mb"): "HNSW RSS MB",
    ("ann", "recall@10"): "index recall@10",
    ("ann", "served_recall@10"): "served recall@10",
    ("ann", "build_seconds"): "build s",
}


def cost_table(records: list[dict]) -> pd.DataFrame:
    """One row per catalogue size (smallest first, indexed by items), the model server's p99 and memory for
    exact search and HNSW, the recall@10 of the index alone and of the served (two-stage) answer against
    exact, and the index's build time; NaN where the benchmark did not measure it."""
    values: dict[int, dict[str, float]] = {}
    for record in records:
        column = TABLE_COLUMNS.get((record["model"], record["metric"]))
        if column is not None:
            values.setdefault(_items(record["dataset"]), {})[column] = float(record["value"])
    table = pd.DataFrame.from_dict(values, orient="index").reindex(columns=list(TABLE_COLUMNS.values()))
    table.index.name = "items"
    return table.sort_index()


def cost_summary(records: list[dict], budget_ms: float = BUDGET_MS) -> list[str]:
    """What the curve says, in sentences whose figures all come from ``records``: how exact search's p99
    grows and where it leaves the budget, what HNSW costs and finds at the largest size, and the API's figures
    when measured."""
    table = cost_table(records)
    exact, lines = table["exact p99 ms"].dropna(), []
    if len(exact):
        first, last = exact.index[0], exact.index[-1]
        lines.append(
            f"exact search: p99 {exact[first]:.3g} ms at {first:,} items, {exact[last]:.3g} ms at "
            f"{last:,} items ({exact[last] / exact[first]:.3g}x for {last / first:.3g}x the items)"
        )
        over = exact[exact > budget_ms]
        if over.empty:
            lines.append(f"exact search stays within the {budget_ms:g} ms budget at every size measured")
        else:
            within = exact[exact.index < over.index[0]]
            lines.append(
                f"exact search leaves the {budget_ms:g} ms budget at {over.index[0]:,} items"
                + (f" (within it up to {within.index[-1]:,})" if len(within) else "")
            )
    hnsw = table.dropna(subset=["HNSW p99 ms"])
    if len(hnsw):
        size, row = hnsw.index[-1], hnsw.iloc[-1]
        lines.append(
            f"HNSW at {size:,} items: p99 {row['HNSW p99 ms']:.3g} ms, served recall@10 "
            f"{row['served recall@10']:.3f} (the index alone {row['index recall@10']:.3f}), built in "
            f"{row['build s']:.3g} s; the server holds {row['HNSW RSS MB']:,.0f} MB against "
            f"{row['exact RSS MB']:,.0f} MB for exact search"
        )
    for record in records:
        if record["model"] == "api-ann" and record["metric"] == "requests_per_s":
            p99 = next(
                (
                    r["value"]
                    for r in records
                    if r["model"] == "api-ann" and r["metric"] == "p99_ms" and r["dataset"] == record["dataset"]
                ),
                float("nan"),
            )
            lines.append(
                f"the API end to end at {_items(record['dataset']):,} items: {record['value']:,.0f} "
                f"requests/s, p99 {p99:.3g} ms (20 Locust users)"
            )
    return lines
