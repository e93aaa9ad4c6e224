"""The self-checks of Exercises 9.1, 9.4, 11.3, 12.1 and 12.2 (recsys_workshop.labchecks.operations; 10.2 is in
test_labchecks_rollback.py): the solutions and the package's versions pass, and a wrong answer of each usual kind
gets a message that names the case, expected vs got and the mistake."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from check_helpers import fails, solution_functions

from recsys_workshop import loadtest
from recsys_workshop.api import logic
from recsys_workshop.labchecks import operations
from recsys_workshop.pipelines import steps

pytestmark = pytest.mark.unit
RATINGS = {"like": 5.0, "click": 4.0, "dislike": 1.0}


# ------------------------------------------------------------------------------------------- 9.1 leakage


def ratings_table(users: int = 60, items: int = 80, seed: int = 0) -> pd.DataFrame:
    """About 1,700 ratings, no pair twice, every user with a few."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(i)) for u in range(1, users + 1) for i in rng.choice(items, size=rng.integers(5, 50)) + 1}
    users_, items_ = map(np.array, zip(*sorted(pairs), strict=True))
    return pd.DataFrame({"user_id": users_, "item_id": items_, "rating": rng.integers(1, 6, len(users_)),
                         "timestamp": 880_000_000 + rng.integers(0, 10**6, len(users_))})  # fmt: skip


LEAKAGE = {
    "users": lambda train, test: len(set(train.user_id) & set(test.user_id)),
    "films": lambda train, test: len(set(train.item_id) & set(test.item_id)),
    "rows": lambda train, test: len(test.merge(train[["user_id", "item_id"]], on=["user_id", "item_id"])),
    "a float": lambda train, test: 0.5,
}


def test_the_solution_passes_the_leakage_check():
    solution = solution_functions("09_pipelines.ipynb", "leaked_pairs", pd=pd)["leaked_pairs"]
    operations.leaked_pairs(solution, ratings_table())


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("users", "a proper split): expected 0, got 60: you counted the users in both splits"),
        ("films", "you counted the films in both splits"),
        ("rows", "added twice): expected 7, got 14: you counted rows"),
        ("a float", "expected 0, got 0.5"),
    ],
)
def test_a_wrong_leakage_count_is_diagnosed(mistake, says):
    fails(operations.leaked_pairs, LEAKAGE[mistake], ratings_table(), match=says)


# ------------------------------------------------------------------------------------------ 9.4 feedback


def to_ratings(events: pd.DataFrame, mistake: str = "") -> pd.DataFrame:
    """A right feedback_to_ratings, or the one a learner who makes ``mistake`` would write."""
    if mistake == "ties_keep_first":
        events = events.iloc[::-1]
    if mistake != "no_sort":
        events = events.sort_values("time", kind="stable")
    keep = "first" if mistake == "keep_first" else "last"
    latest = events if mistake == "no_dedup" else events.drop_duplicates(["user_id", "item_id"], keep=keep)
    mapping = {**RATINGS, "click": 3.0} if mistake == "click_3" else RATINGS
    return pd.DataFrame({
        "user_id": latest["user_id"].to_numpy(),
        "item_id": latest["item_id"].to_numpy(),
        "rating": latest["action"].map(mapping).to_numpy(),
        "timestamp": (latest["time"] if mistake == "float_time" else latest["time"].astype("int64")).to_numpy(),
    })  # fmt: skip


def stored_feedback(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user_id": rng.integers(1, 20, n), "item_id": rng.integers(1, 30, n),
                         "action": rng.choice(list(RATINGS), n), "arm": "latest",
                         "time": rng.integers(1000, 1100, n).astype(float) + 0.5})  # fmt: skip


def test_the_package_and_the_solution_pass():
    operations.feedback_to_ratings(steps.feedback_to_ratings, stored_feedback())
    operations.feedback_to_ratings(to_ratings, stored_feedback())


@pytest.mark.parametrize(
    ("mistake", "match"),
    [
        ("keep_first", "pair (7, 1): expected rating 5.0, got 4.0: you kept the earliest event"),
        ("no_sort", "pair (10, 4): expected rating 5.0, got 4.0: you kept the last row as stored: sort by time"),
        ("ties_keep_first", "pair (9, 3): expected rating 1.0, got 5.0: of two events at the same time keep the later"),
        ("no_dedup", "expected 5 rows, one per (user_id, item_id) pair, got 8; the pair (7, 1) appears 2 times"),
        ("click_3", "pair (11, 5): expected rating 4.0, got 3.0: map each action to its rating"),
        ("float_time", "pair (7, 1): expected timestamp 200, got 200.7: the timestamp is int(time)"),
    ],
)
def test_a_wrong_feedback_to_ratings_is_diagnosed(mistake, match):
    message = fails(operations.feedback_to_ratings, lambda events: to_ratings(events, mistake), match=match)
    assert message.startswith("the small example (5 pairs): "), message


def test_feedback_shape_mistakes():
    fails(operations.feedback_to_ratings, lambda events: [], match="return a DataFrame, not list")
    fails(operations.feedback_to_ratings, lambda events: to_ratings(events).drop(columns="timestamp"),
          match="['timestamp'] missing")  # fmt: skip
    fails(operations.feedback_to_ratings, lambda events: to_ratings(events).iloc[1:],
          match="the pair (11, 5) is missing in your answer")  # fmt: skip


def test_feedback_stub_propagates():
    def stub(events):
        raise NotImplementedError("Exercise 9.4")

    with pytest.raises(NotImplementedError, match="Exercise 9.4"):
        operations.feedback_to_ratings(stub)


# ----------------------------------------------------------------------------------------- 11.3 bandit


def choose(arms, pulls, rewards, rng, mistake=""):
    if mistake == "index":
        return int(np.argmax([rng.betavariate(1 + rewards[a], 1 + pulls[a] - rewards[a]) for a in arms]))
    if mistake == "no_prior":
        draws = [rng.betavariate(rewards[a], pulls[a] - rewards[a]) for a in arms]
    elif mistake == "swapped":
        draws = [rng.betavariate(1 + pulls[a] - rewards[a], 1 + rewards[a]) for a in arms]
    elif mistake == "two_draws":
        draws = [rng.betavariate(1 + rewards[a], 1 + pulls[a] - rewards[a]) + 0 * rng.random() for a in arms]
    else:
        draws = [rng.betavariate(1 + rewards[a], 1 + pulls[a] - rewards[a]) for a in arms]
    pick = np.argmin if mistake == "lowest" else np.argmax
    return arms[int(pick(draws))]


def test_the_solution_passes_the_bandit_check():
    operations.choose_arm(choose)


@pytest.mark.parametrize(
    ("mistake", "match"),
    [
        ("lowest", "you returned the arm of the lowest draw"),
        ("swapped", "the two Beta parameters are swapped"),
        ("no_prior", "needs the prior's 1 + on both parameters"),
        ("index", "return the arm itself (arms[i]), not its position"),
        ("two_draws", "draw exactly once per arm, in the order of arms"),
    ],
)
def test_a_wrong_arm_choice_is_diagnosed(mistake, match):
    message = fails(operations.choose_arm, lambda *args: choose(*args, mistake=mistake), match=match)
    assert message.startswith("pulls {"), message


def test_a_wrong_choice_names_its_position_and_both_arms():
    message = fails(operations.choose_arm, lambda *args: choose(*args, mistake="lowest"), match="choice 1 of 300")
    first = logic.ThompsonSampling(["1", "2"], seed=3).choose()
    assert f"expected {first!r}, got {({'1', '2'} - {first}).pop()!r}" in message


def test_an_always_first_arm_fails_on_the_sequence():
    fails(operations.choose_arm, lambda arms, pulls, rewards, rng: (rng.random(), arms[0])[1],
          match="pulls {'1': 0, '2': 0}")  # fmt: skip


# --------------------------------------------------------------------------------------------- 12.2 SLO


def slo(stats, p95_ms, max_error_rate, mistake=""):
    total = stats.iloc[-1] if mistake != "first_row" else stats.iloc[0]
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    if requests == 0 and mistake != "divide_by_zero":
        return (True, []) if mistake == "empty_passes" else (False, ["no requests"])
    reasons = []
    if total["95%"] > p95_ms if mistake == "p95_not_strict" else not total["95%"] < p95_ms:
        reasons.append("p95")
    rate = failures / requests
    broken = rate > max_error_rate if mistake == "rate_not_strict" else not rate < max_error_rate
    if broken and not (mistake == "one_reason" and reasons):
        reasons.append("errors")
    return (not reasons) if mistake == "bool_only" else (not reasons, reasons)


def test_the_solution_passes_the_slo_check():
    operations.meets_slo(slo)
    operations.meets_slo(lambda s, p, m: (lambda v: (v.passed, list(v.reasons)))(
        loadtest.verdict(s.assign(**{"Requests/s": 1.0}), loadtest.SLO(p, m))))  # fmt: skip


@pytest.mark.parametrize(
    ("mistake", "match"),
    [
        ("p95_not_strict", "p95 100 ms (SLO p95 < 100 ms, error rate < 0.001): expected passed=False, got True: "
         "'p95 < 100 ms' is strict"),
        ("rate_not_strict", "1 failure, p95 10 ms (SLO p95 < 100 ms, error rate < 0.001): expected passed=False, "
         "got True: 'error rate < 0.001' is strict"),
        ("empty_passes", "0 requests (SLO p95 < 100 ms, error rate < 0.001): expected passed=False, got True: a run "
         "that sent no request proves nothing"),
        ("divide_by_zero", "0 requests (SLO p95 < 100 ms, error rate < 0.001): division by zero"),
        ("first_row", "expected passed=True, got False: read the row whose Name is 'Aggregated'"),
        ("one_reason", "10 requests, 5 failures, p95 500 ms (SLO p95 < 100 ms, error rate < 0.001): expected 2 "
         "reason(s)"),
        ("bool_only", "return a pair (passed, reasons), got True"),
    ],
)  # fmt: skip
def test_a_wrong_slo_check_is_diagnosed(mistake, match):
    fails(operations.meets_slo, lambda *args: slo(*args, mistake=mistake), match=match)


def test_the_slo_cases_follow_the_given_thresholds():
    fails(operations.meets_slo, lambda stats, p95_ms, rate: (True, []), 200, 0.01,
          match="5 failures, p95 500 ms (SLO p95 < 200 ms, error rate < 0.01): expected passed=False")  # fmt: skip


# -------------------------------------------------------------------------------------------- 12.1 task


def dislike(user, mistake=""):
    """The solution's task, or the one a learner who makes ``mistake`` writes."""
    user_id = user.pick_user()
    items = user.get_recommendations(user.pick_user() if mistake == "draws twice" else user_id,
                                     10 if mistake == "k" else 5)  # fmt: skip
    if items or mistake == "no empty check":
        body = {"user_id": user_id, "item_id": items[0] if items else None, "action": "dislike",
                "recommendation_id": None if mistake == "no id" else user.recommendation_id}  # fmt: skip
        if mistake == "last item":
            body["item_id"] = items[-1]
        user.client.post("/feedback", json=body, name=None if mistake == "no name" else "/feedback [dislike]")


def test_the_solution_passes_the_task_check():
    operations.dislike_top(dislike)
    operations.dislike_top(solution_functions("12_load_testing.ipynb", "dislike_top")["dislike_top"])


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("draws twice", "the task drew 2 users"),
        ("k", "expected one get_recommendations(196, 5)"),
        ("no id", "differ {'recommendation_id': None} (expected {'recommendation_id': 'v1.the-signed-id'})"),
        ("last item", "these fields differ {'item_id': 181} (expected {'item_id': 50})"),
        ("no name", "expected the post"),
        ("no empty check", "with no recommendations (a failed answer) there is nothing to dislike"),
    ],
)  # fmt: skip
def test_a_wrong_task_is_diagnosed(mistake, says):
    fails(operations.dislike_top, lambda user: dislike(user, mistake), match=says)
