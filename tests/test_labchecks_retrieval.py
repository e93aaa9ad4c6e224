"""Lab 10's serving at catalogue scale (recsys_workshop.labchecks.retrieval): Exercises 10.4 (``sweep``) and 10.5
(``choose``) pass with the lab's solution and the package's versions, which agree; each usual wrong answer gets
a message of its own (an untuned or swapped tune, a batched request, the wrong k, recall as a percentage, a hit
count, a positional match, a median, one user's, misaligned rows; the floor ignored or exclusive, the highest
recall, a tie, rows out of order, None, a changed table); the check on a real HNSW version compares recall,
never time, and leaves the version's settings as they were; the cost curve and its sentences come from the
benchmark's records."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from check_helpers import fails, solution_functions
from threadpoolctl import threadpool_limits

from recsys_workshop import retrieval, synthetic
from recsys_workshop.labchecks import retrieval as checks
from recsys_workshop.serving import LoadedVersion

pytestmark = pytest.mark.unit

K = 10


def _solution_functions() -> dict:
    """``one_by_one``, ``sweep`` and ``choose`` as the solution notebook defines them."""
    return solution_functions("10_serving.ipynb", "one_by_one", "sweep", "choose", np=np, pd=pd, time=time,
                              retrieval=retrieval, K=K, threadpool_limits=threadpool_limits)  # fmt: skip


@pytest.fixture(scope="module")
def versions():
    """A small catalogue served exactly and through an HNSW index, without TensorFlow (the arrays directly)."""
    arrays = synthetic.catalogue(3000, 60, 16, seed=3)
    arrays.update(user_bias=np.zeros(60, np.float32), global_bias=np.float32(0.0))
    config = retrieval.RetrievalConfig(index="hnsw", candidates=40, m=16, ef_construction=40, ef_search=32)
    searcher = retrieval.HnswSearch.build(retrieval.augment_items(arrays["item_vectors"], arrays["item_bias"]), config)
    exact = LoadedVersion(1, Path("exact"), arrays, {})
    hnsw = LoadedVersion(2, Path("hnsw"), arrays, {}, searcher, config.candidates)
    users = arrays["user_ids"][:30]
    exact_top = np.array(exact.top_k(users, K)[0])
    return hnsw, users, exact_top


# --------------------------------------------------------------------------------------------- the solutions


def test_the_lab_solution_and_the_package_pass_and_agree(versions):
    lab = _solution_functions()
    hnsw, users, exact_top = versions
    checks.check_sweep(lab["sweep"], hnsw, users, exact_top)
    checks.check_sweep(checks.sweep, hnsw, users, exact_top)
    checks.check_choose(lab["choose"])
    checks.check_choose(checks.choose)
    settings = [(10, 8), (40, 64)]
    ours, theirs = checks.sweep(hnsw, users, exact_top, settings), lab["sweep"](hnsw, users, exact_top, settings)
    assert ours[["candidates", "ef_search", "recall"]].equals(theirs[["candidates", "ef_search", "recall"]])
    for _, table, floor, _ in checks.CHOOSE_CASES:
        assert lab["choose"](table, floor) == checks.choose(table, floor)


def test_recall_rises_with_the_search_width_on_a_real_index(versions):
    hnsw, users, exact_top = versions
    table = checks.sweep(hnsw, users, exact_top, [(10, 10), (300, 300)])
    narrow, wide = table["recall"]
    assert 0.5 < narrow < 0.9 < 0.95 < wide <= 1  # about 0.84 and 0.98
    assert list(table.columns) == list(checks.COLUMNS)
    assert (table["ms"] > 0).all()


def test_the_check_on_a_real_version_compares_recall_and_restores_its_settings(versions):
    hnsw, users, exact_top = versions
    before = (hnsw.candidates, hnsw.searcher.ef_search)

    def right_on_the_stand_in_only(version, users_, exact, settings):
        table = checks.sweep(version, users_, exact, settings)
        if isinstance(version, LoadedVersion):
            table["recall"] = table["recall"] - 0.01
        return table

    message = fails(checks.check_sweep, right_on_the_stand_in_only, hnsw, users, exact_top, match="recall_at_k")
    assert "the lab's HNSW version" in message and "(10, 16)" in message
    assert (hnsw.candidates, hnsw.searcher.ef_search) == before

    def slow_or_instant(version, users_, exact, settings):  # any time passes: times are never compared
        table = checks.sweep(version, users_, exact, settings)
        table["ms"] = [0.0, 1e6, 0.0][: len(table)]
        return table

    checks.check_sweep(slow_or_instant, hnsw, users, exact_top)
    assert (hnsw.candidates, hnsw.searcher.ef_search) == before


def test_a_version_without_an_index_is_a_usage_error(versions):
    hnsw, users, exact_top = versions
    searcher, hnsw.searcher = hnsw.searcher, None
    try:
        with pytest.raises(ValueError, match="HNSW index"):
            checks.check_sweep(checks.sweep, hnsw, users, exact_top)
    finally:
        hnsw.searcher = searcher


# ------------------------------------------------------------------------------------ Exercise 10.4: sweep


def _sweep(*, tune="named", batch=False, k=K, recall="mean", sort_users=False, skip_user=False, reverse=False,
           as_list=False, drop=None, ms=0.1):  # fmt: skip
    """A learner's sweep with one thing changed."""

    def yours(version, users, exact_top, settings):
        rows = []
        for n_candidates, ef_search in settings:
            if tune == "named":
                version.tune(candidates=n_candidates, ef_search=ef_search)
            elif tune == "swapped":
                version.tune(ef_search, n_candidates)
            asked = sorted(users) if sort_users else list(users)
            asked, exact = (asked[1:], exact_top[1:]) if skip_user else (asked, exact_top)
            if batch:
                answers = np.array(version.top_k(asked, k)[0])
            else:
                answers = np.array([version.top_k([user], k)[0][0] for user in asked])
            shares = np.array([len(np.intersect1d(a, e)) / K for a, e in zip(answers, exact, strict=True)])
            value = {
                "mean": shares.mean(),
                "percent": 100 * shares.mean(),
                "hits": K * shares.mean(),
                "positional": np.mean(answers[:, :K] == exact),
                "median": np.median(shares),
                "first": shares[0],
                "last": shares[-1],
            }[recall]
            rows.append({"candidates": n_candidates, "ef_search": ef_search, "recall": value, "ms": ms})
        rows = rows[::-1] if reverse else rows
        if as_list:
            return rows
        return pd.DataFrame(rows).drop(columns=drop or [])

    return yours


@pytest.mark.parametrize(
    ("learner", "says"),
    [
        (_sweep(tune="none"), "no request was made with the version tuned to candidates=10, ef_search=16"),
        (_sweep(tune="swapped"), "the two are swapped; pass them by name"),
        (_sweep(batch=True), "users in one top_k call: ask one user per call"),
        (_sweep(k=20), "asked top_k for k=20"),
        (_sweep(recall="percent"), "expected 0.8, got 80: a percentage"),
        (_sweep(recall="hits"), "expected 0.8, got 8: that is the number of hits per user"),
        (_sweep(recall="positional"), "got 0.05: you compared position by position"),
        (_sweep(recall="median"), "got 0.85: that is the median of the users' recall"),
        (_sweep(recall="first"), "got 0.5: that is the first user's recall only"),
        (_sweep(recall="last"), "got 1: that is the last user's recall only"),
        (_sweep(sort_users=True), "got 0: the answers are not compared with their own user's row"),
        (_sweep(skip_user=True), "the users [7] were never asked"),
        (_sweep(reverse=True), "should be the settings in their order"),
        (_sweep(as_list=True), "returned list; expected a DataFrame"),
        (_sweep(drop=["ms"]), "the table lacks the columns ['ms']"),
        (_sweep(ms=None), "not a number"),
        (_sweep(ms=-1.0), "not a number of milliseconds"),
    ],
)
def test_each_usual_sweep_mistake_gets_its_own_message(learner, says):
    message = fails(checks.check_sweep, learner, match=says)
    assert message.startswith("sweep(a stand-in version, users [7, 3, 12, 5]"), message


def test_a_right_sweep_passes_the_stand_in_whatever_its_times():
    checks.check_sweep(_sweep())
    checks.check_sweep(_sweep(ms=0.0))
    checks.check_sweep(_sweep(ms=1e9))


# ------------------------------------------------------------------------------------ Exercise 10.5: choose


def _setting(row) -> tuple[int, int]:
    return int(row["candidates"]), int(row["ef_search"])


def _reaching(table, floor):
    return table[table["recall"] >= floor]


def ignores_the_floor(table, floor):
    return _setting(table.loc[table["ms"].idxmin()])


def strictly_above(table, floor):
    above = table[table["recall"] > floor]
    return None if above.empty else _setting(above.loc[above["ms"].idxmin()])


def best_recall(table, floor):
    r = _reaching(table, floor)
    return None if r.empty else _setting(r.loc[r["recall"].idxmax()])


def lower_recall_on_a_tie(table, floor):
    r = _reaching(table, floor)
    return None if r.empty else _setting(r.sort_values(["ms", "recall"]).iloc[0])


def first_row(table, floor):
    r = _reaching(table, floor)
    return None if r.empty else _setting(r.iloc[0])


def slowest(table, floor):
    r = _reaching(table, floor)
    return None if r.empty else _setting(r.loc[r["ms"].idxmax()])


def raises_when_none_reach(table, floor):
    r = _reaching(table, floor)
    return _setting(r.loc[r.sort_values(["ms", "recall"], ascending=[True, False]).index[0]])


def best_there_is_when_none_reach(table, floor):
    r = _reaching(table, floor)
    r = table.sort_values("recall", ascending=False).head(1) if r.empty else r
    return _setting(r.sort_values(["ms", "recall"], ascending=[True, False]).iloc[0])


def a_row(table, floor):
    return _reaching(table, floor).sort_values(["ms", "recall"], ascending=[True, False]).iloc[0]


def swapped(table, floor):
    found = checks.choose(table, floor)
    return found and found[::-1]


def sorts_in_place(table, floor):
    table.sort_values(["ms", "recall"], ascending=[True, False], inplace=True)
    return checks.choose(table, floor)


@pytest.mark.parametrize(
    ("learner", "says"),
    [
        (ignores_the_floor, "the fastest setting misses the floor, 0.95): expected (50, 64), got (10, 16): it is "
         "the fastest of all, but its recall is below the floor"),
        (strictly_above, "exactly at the floor, 0.95): expected (10, 64), got (200, 256): a recall equal to the "
         "floor reaches it: compare with >="),
        (best_recall, "expected (10, 16), got (50, 64): you took the highest recall"),
        (lower_recall_on_a_tie, "two settings equally fast, 0.95): expected (200, 16), got (10, 256): those "
         "settings are equally fast: take the one with the higher recall"),
        (first_row, "index labels 5, 3, 9, 0.95): expected (50, 64), got (200, 256): you took the first row"),
        (slowest, "expected (10, 16), got (200, 256): you took the slowest setting"),
        (raises_when_none_reach, "raised IndexError"),
        (best_there_is_when_none_reach, "no setting reaches the floor (the best recall is 0.9): expected None, "
         "got (200, 256)"),
        (a_row, "returned Series"),
        (swapped, "expected (10, 16), got (16, 10): (candidates, ef_search), in that order"),
        (sorts_in_place, "changed the table it was given"),
        (lambda table, floor: None, "expected (10, 16), got None"),
    ],
)  # fmt: skip
def test_each_usual_choose_mistake_gets_its_own_message(learner, says):
    fails(checks.check_choose, learner, match=says)


def test_choose_accepts_numpy_ints_and_lists():
    checks.check_choose(lambda table, floor: None if (s := checks.choose(table, floor)) is None else list(s))
    checks.check_choose(lambda t, f: None if (s := checks.choose(t, f)) is None else tuple(np.int64(v) for v in s))


# ------------------------------------------------------------------------------------------ the cost curve


def _records(rows):
    return [{"dataset": f"synthetic-{size}", "model": model, "metric": metric, "value": value}
            for size, model, metric, value in rows]  # fmt: skip


CURVE = _records([
    ("1.7k", "exact", "p99_ms", 0.5), ("1.7k", "ann", "p99_ms", 0.8), ("1.7k", "exact", "rss_mb", 700.0),
    ("1.7k", "ann", "rss_mb", 701.0), ("1.7k", "ann", "recall@10", 1.0), ("1.7k", "ann", "served_recall@10", 1.0),
    ("1.7k", "ann", "build_seconds", 0.1), ("1.7k", "ann-two-stage", "recall@10", 1.0),
    ("100k", "exact", "p99_ms", 12.0), ("100k", "exact", "p50_ms", 9.0),
    ("1m", "exact", "p99_ms", 40.0), ("1m", "ann", "p99_ms", 1.5), ("1m", "exact", "rss_mb", 1200.0),
    ("1m", "ann", "rss_mb", 1750.0), ("1m", "ann", "recall@10", 0.952), ("1m", "ann", "served_recall@10", 0.981),
    ("1m", "ann", "build_seconds", 95.0),
    ("10k", "exact", "p99_ms", 2.0),
    ("1m", "api-ann", "requests_per_s", 812.4), ("1m", "api-ann", "p99_ms", 31.0),
])  # fmt: skip


def test_the_cost_table_has_one_row_per_size_in_order_and_nan_where_unmeasured():
    table = checks.cost_table(CURVE)
    assert list(table.index) == [1_700, 10_000, 100_000, 1_000_000]
    assert list(table.columns) == list(checks.TABLE_COLUMNS.values())
    assert table.loc[1_000_000, "HNSW RSS MB"] == 1750.0 and table.loc[1_000_000, "served recall@10"] == 0.981
    assert table.loc[100_000, "exact p99 ms"] == 12.0 and np.isnan(table.loc[100_000, "HNSW p99 ms"])


def test_the_summary_quotes_the_records():
    assert checks.cost_summary(CURVE) == [
        "exact search: p99 0.5 ms at 1,700 items, 40 ms at 1,000,000 items (80x for 588x the items)",
        "exact search leaves the 10 ms budget at 100,000 items (within it up to 10,000)",
        "HNSW at 1,000,000 items: p99 1.5 ms, served recall@10 0.981 (the index alone 0.952), built in 95 s; "
        "the server holds 1,750 MB against 1,200 MB for exact search",
        "the API end to end at 1,000,000 items: 812 requests/s, p99 31 ms (20 Locust users)",
    ]


def test_the_summary_says_when_exact_search_never_or_always_leaves_the_budget():
    small = [r for r in CURVE if r["dataset"] in ("synthetic-1.7k", "synthetic-10k")]
    assert "exact search stays within the 10 ms budget at every size measured" in checks.cost_summary(small)
    assert "exact search leaves the 1 ms budget at 10,000 items (within it up to 1,700)" in checks.cost_summary(
        small, budget_ms=1.0
    )
    assert "exact search leaves the 0.1 ms budget at 1,700 items" in checks.cost_summary(small, budget_ms=0.1)


def test_a_dataset_outside_the_benchmark_is_refused():
    with pytest.raises(ValueError, match="not a serving-scale dataset"):
        checks.cost_table(_records([("ml-100k", "exact", "p99_ms", 1.0)]))
