"""The checks behind the self-checks of the labs on running the service: leakage between splits and feedback as
ratings (lab 09, Exercises 9.1 and 9.4), a rollback (lab 10, Exercise 10.2), Thompson sampling's arm choice
(lab 11, Exercise 11.3), a Locust task and the SLO check (lab 12, Exercises 12.1 and 12.2)::

    from recsys_workshop.labchecks import operations

    selfcheck.check("9.4", lambda: operations.feedback_to_ratings(feedback_to_ratings, feedback), hint=...)

Each runs the learner's function on named cases against the package's version (``data.check_split``,
``pipelines.steps.feedback_to_ratings``, the model server's own answer, ``api.logic.ThompsonSampling``,
``loadtest.verdict``) and raises
``AssertionError`` naming the case, what was expected and what came back, and the likely mistake. The
package modules are imported inside the functions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pandas as pd

__all__ = ["FEEDBACK_EXAMPLE", "choose_arm", "dislike_top", "feedback_to_ratings", "leaked_pairs", "meets_slo",
           "rollback"]  # fmt: skip

# Five pairs, each with a trap: a click then a like (the latest wins); a single dislike; a like and a
# dislike at the same time (the later row wins); a like stored *before* a click that came earlier (sort by
# time); a single click.
FEEDBACK_EXAMPLE = pd.DataFrame({
    "user_id": [7, 7, 8, 9, 9, 10, 10, 11],
    "item_id": [1, 1, 2, 3, 3, 4, 4, 5],
    "action": ["click", "like", "dislike", "like", "dislike", "like", "click", "click"],
    "arm": "latest",
    "time": [100.0, 200.7, 150.0, 300.0, 300.0, 500.0, 400.0, 50.0],
})  # fmt: skip
RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


# ------------------------------------------------------------------------------------------------ lab 09


def leaked_pairs(yours: Callable[[pd.DataFrame, pd.DataFrame], Any], ratings: pd.DataFrame) -> None:
    """Exercise 9.1: a proper split, 7 training rows added to the test split, the same rows added twice; and
    the package's ``data.check_split`` (which the pipeline runs) reports the same 7."""
    from recsys_workshop import data

    train, test = data.stratified_split(ratings, 0.75, seed=42)
    leaky = pd.concat([test, train.head(7)])
    cases = [("a proper split", test, 0), ("a test split with 7 training rows added", leaky, 7),
             ("the same 7 training rows added twice", pd.concat([leaky, train.head(7)]), 7)]  # fmt: skip
    for case, test_split, expected in cases:
        got = yours(train, test_split)
        if _equal_number(got, expected):
            continue
        mistakes = {
            len(set(train.user_id) & set(test_split.user_id)): "you counted the users in both splits",
            len(set(train.item_id) & set(test_split.item_id)): "you counted the films in both splits",
            len(test_split) - len(test): "you counted rows: count each (user_id, item_id) pair once",
        }
        advice = next((f": {text}" for count, text in mistakes.items() if _equal_number(got, count)), "")
        raise AssertionError(f"leaked_pairs(train, {case}): expected {expected}, got {got!r}{advice}")
    reported = data.check_split(train, leaky)[0]
    if not reported.startswith("leakage: 7 "):
        raise AssertionError(f"data.check_split, which the pipeline runs, reports {reported!r}")


def feedback_to_ratings(yours: Callable[[pd.DataFrame], Any], feedback: pd.DataFrame | None = None) -> None:
    """Exercise 9.4 on :data:`FEEDBACK_EXAMPLE`, then on ``feedback`` (the stored events) if given."""
    from recsys_workshop.pipelines import steps

    cases = [("the small example (5 pairs)", FEEDBACK_EXAMPLE)]
    if feedback is not None:
        cases.append(("the stored feedback", feedback))
    for name, events in cases:
        got = yours(events.copy())
        _same_ratings(name, events, got, steps.feedback_to_ratings(events), steps.FEEDBACK_RATINGS)


def _same_ratings(name: str, events: pd.DataFrame, got: Any, expected: pd.DataFrame, mapping: dict) -> None:
    if not isinstance(got, pd.DataFrame):
        raise AssertionError(f"{name}: return a DataFrame, not {type(got).__name__}")
    missing = [c for c in RATING_COLUMNS if c not in got.columns]
    if missing:
        raise AssertionError(f"{name}: columns {RATING_COLUMNS} expected, {missing} missing (got {list(got.columns)})")
    key = ["user_id", "item_id"]
    doubled = got[got.duplicated(key, keep=False)]
    if len(doubled):
        pair = tuple(int(v) for v in doubled.iloc[0][key])
        raise AssertionError(
            f"{name}: expected {len(expected)} rows, one per (user_id, item_id) pair, got {len(got)}; the pair "
            f"{pair} appears {int((got[key] == pair).all(axis=1).sum())} times: keep only its latest event"
        )
    merged = expected.merge(got[RATING_COLUMNS], on=key, how="outer", suffixes=("", "_got"), indicator=True)
    for side, word in (("left_only", "missing"), ("right_only", "not in the feedback")):
        if (merged["_merge"] == side).any():
            pair = tuple(int(v) for v in merged.loc[merged["_merge"] == side, key].iloc[0])
            raise AssertionError(f"{name}: the pair {pair} is {word} in your answer")
    for row in merged.itertuples(index=False):
        pair = (int(row.user_id), int(row.item_id))
        if not _equal_number(row.rating_got, row.rating):
            advice = _rating_mistake(events, pair, row.rating_got, mapping)
            raise AssertionError(
                f"{name}: pair {pair}: expected rating {row.rating}, got {row.rating_got!r}"
                + (f": {advice}" if advice else "")
            )
        if not _equal_number(row.timestamp_got, row.timestamp):
            advice = "the timestamp is int(time), whole seconds" if isinstance(row.timestamp_got, float) else ""
            raise AssertionError(
                f"{name}: pair {pair}: expected timestamp {row.timestamp}, got {row.timestamp_got!r}"
                + (f": {advice}" if advice else "")
            )


def _equal_number(got: Any, expected: Any) -> bool:
    try:
        return float(got) == float(expected)
    except (TypeError, ValueError):
        return False


def _rating_mistake(events: pd.DataFrame, pair: tuple[int, int], got: Any, mapping: dict) -> str:
    """What a wrong rating for ``pair`` probably means, from that pair's events."""
    if not any(_equal_number(got, value) for value in mapping.values()):
        return "map each action to its rating: " + ", ".join(f"{a} -> {r}" for a, r in mapping.items())
    rows = events[(events["user_id"] == pair[0]) & (events["item_id"] == pair[1])]
    by_time = rows.sort_values("time", kind="stable")
    latest_time = by_time["time"].iloc[-1]
    if _equal_number(got, mapping[rows["action"].iloc[-1]]) and rows["time"].iloc[-1] < latest_time:
        return "you kept the last row as stored: sort by time first (the latest event wins)"
    ties = by_time[by_time["time"] == latest_time]
    if len(ties) > 1 and _equal_number(got, mapping[ties["action"].iloc[0]]):
        return "of two events at the same time keep the later row: a stable sort (kind='stable'), then keep='last'"
    if _equal_number(got, mapping[by_time["action"].iloc[0]]):
        return "you kept the earliest event: the latest one wins (keep='last' after sorting by time)"
    return "like -> 5.0, click -> 4.0, dislike -> 1.0, from the latest event of the pair"


# ------------------------------------------------------------------------------------------------ lab 10

REFUSED = {
    401: "the server saw no credential: send the header Authorization: Bearer <token>",
    403: "the token sent is not the server's admin token",
    404: "no such model: the route is POST <server_url>/v1/models/<model_name>:rollback",
    405: "no POST route there: the route is POST <server_url>/v1/models/<model_name>:rollback",
}


def rollback(yours: Callable[..., Any], server: Any, question: dict, model_name: str = "recsys") -> None:
    """Exercise 10.2 against the running model ``server`` (a ``serving.LocalServer`` with versions 1 and 2, 2
    active): version 1 is activated, ``yours(server.url, server.admin_token)`` must roll back to 2, return 2 and
    have version 2 answer ``question``; with a wrong token it must raise, and nothing changes."""
    import requests

    versions = f"{server.url}/v1/models/{model_name}/versions"
    requests.post(f"{versions}/1:activate", headers=server.admin_headers(), timeout=30).raise_for_status()
    try:
        got = yours(server.url, server.admin_token)
    except requests.HTTPError as error:
        status = error.response.status_code
        raise AssertionError(f"rollback(server.url, token): the server answered {status}: "
                             f"{REFUSED.get(status, error.response.text[:200])}") from error  # fmt: skip
    if not isinstance(got, int) or isinstance(got, bool):
        advice = ": the answer's 'active' field, as an int" if isinstance(got, dict | str | float) else ""
        raise AssertionError(f"rollback(server.url, token): return the version active afterwards, got {got!r}{advice}")
    active = requests.get(versions, timeout=10).json()["active"]
    if active != 2:
        raise AssertionError(f"after rollback(server.url, token) version {active} is active, expected 2 (1 was active)")
    if got != 2:
        raise AssertionError(f"rollback(server.url, token): expected 2 (the version active afterwards), got {got!r}")
    served = requests.post(f"{server.url}/v1/models/{model_name}:predict", json=question, timeout=10)
    version = served.json()["predictions"][0]["version"]
    if version != 2:
        raise AssertionError(f"after the rollback version {version} answers, expected 2")
    try:
        got = yours(server.url, "not-the-admin-token")
    except Exception:  # noqa: BLE001 - any error will do: the refusal must not pass unnoticed
        return
    raise AssertionError(f"rollback(server.url, 'not-the-admin-token'): the server refused (403) but yours "
                         f"returned {got!r}: fail loudly (response.raise_for_status())")  # fmt: skip


# ------------------------------------------------------------------------------------------------ lab 11

# (pulls, rewards) per arm for the two arms "1" and "2": no data, a clear winner, uneven data, a small sample
BANDIT_CASES = [({"1": 0, "2": 0}, {"1": 0, "2": 0}), ({"1": 100, "2": 100}, {"1": 30, "2": 5}),
                ({"1": 20, "2": 400}, {"1": 3, "2": 50}), ({"1": 7, "2": 3}, {"1": 1, "2": 2})]  # fmt: skip
CHOICES = 300


def _thompson(arms, pulls, rewards, rng, prior=(1, 1), swapped=False, pick=max):
    """Thompson sampling's choice, or a usual wrong variant of it (for the diagnosis)."""
    draws = []
    for arm in arms:
        a, b = prior[0] + rewards[arm], prior[1] + pulls[arm] - rewards[arm]
        draws.append(rng.betavariate(*((b, a) if swapped else (a, b))))
    return arms[pick(range(len(arms)), key=draws.__getitem__)]


BANDIT_MISTAKES = {
    "you returned the arm of the lowest draw: play the highest": {"pick": min},
    "the two Beta parameters are swapped: Beta(1 + rewards, 1 + pulls - rewards)": {"swapped": True},
}


def choose_arm(yours: Callable[..., Any]) -> None:
    """Exercise 11.3: 300 seeded choices per case equal ``api.logic.ThompsonSampling``'s, then arm 1 (30%
    clicks) beats arm 2 (5%) in more than 99% of 500 choices."""
    from recsys_workshop.api import logic

    arms = ["1", "2"]
    answers = [_choices(yours, arms, pulls, rewards) for pulls, rewards in BANDIT_CASES]
    for (pulls, rewards), got in zip(BANDIT_CASES, answers, strict=True):
        case = f"pulls {pulls}, rewards {rewards}"
        reference = logic.ThompsonSampling(arms, seed=3)
        reference.pulls, reference.rewards = dict(pulls), {a: float(r) for a, r in rewards.items()}
        expected = [reference.choose() for _ in range(CHOICES)]
        wrong = [arm for arm in got if arm not in arms]
        if wrong:
            advice = ": return the arm itself (arms[i]), not its position" if isinstance(wrong[0], int) else ""
            raise AssertionError(f"{case}: choose_arm must return one of {arms}, got {wrong[0]!r}{advice}")
        if got == expected:
            continue
        first = next(i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e)
        message = (f"{case}: choice {first + 1} of {CHOICES} (rng = random.Random(3)): expected {expected[first]!r}, "
                   f"got {got[first]!r}")  # fmt: skip
        for advice, variant in BANDIT_MISTAKES.items():  # the mistake whose choices are the learner's in every case
            if answers == [_choices(_thompson, arms, p, r, **variant) for p, r in BANDIT_CASES]:
                raise AssertionError(f"{message}: {advice}")
        raise AssertionError(f"{message}: draw exactly once per arm, in the order of arms, and nothing else from rng")
    rng = random.Random(0)
    share = sum(yours(arms, {"1": 100, "2": 100}, {"1": 30, "2": 5}, rng) == "1" for _ in range(500)) / 500
    if share <= 0.99:
        raise AssertionError(f"arm 1 (30% clicks) against arm 2 (5%): arm 1 should win more than 99%, won {share:.0%}")


def _choices(choose: Callable[..., Any], arms: list[str], pulls: dict, rewards: dict, **variant: Any) -> list:
    """``CHOICES`` choices of ``choose`` from ``random.Random(3)``; a Beta without its prior named."""
    rng = random.Random(3)
    try:
        return [choose(arms, pulls, rewards, rng, **variant) for _ in range(CHOICES)]
    except ValueError as err:
        if "must be > 0" not in str(err):
            raise
        raise AssertionError(
            f"pulls {pulls}, rewards {rewards}: rng.betavariate raised {err}: with no data an arm's Beta needs "
            "the prior's 1 + on both parameters"
        ) from err


# ------------------------------------------------------------------------------------------------ lab 12


class _Client:
    """Records what a task sends, without any network."""

    def __init__(self) -> None:
        self.posts: list[tuple] = []
        self.gets: list[tuple] = []

    def post(self, path: str, json: Any = None, name: str | None = None, **kwargs: Any) -> None:
        self.posts.append((path, json, name))

    def get(self, path: str, name: str | None = None, **kwargs: Any) -> None:
        self.gets.append((path, name))


class _User:
    """A simulated user whose recommendations are ``items``; records what the task asks for."""

    def __init__(self, items: list[int]) -> None:
        self.client, self.items, self.asked, self.recommendation_id = _Client(), items, [], None
        self.drawn = 0

    def pick_user(self) -> int:
        self.drawn += 1
        return 196 if self.drawn == 1 else 405

    def get_recommendations(self, user_id: int, k: int, name: str | None = None) -> list[int]:
        self.asked.append((user_id, k))
        self.recommendation_id = "v1.the-signed-id" if self.items else None
        return list(self.items)


def dislike_top(yours: Callable[[Any], Any]) -> None:
    """Exercise 12.1 on a simulated user (no network): 5 recommendations for the user drawn, the first one
    disliked with the recommendation's signed id; nothing sent when the list is empty."""
    user = _User([50, 100, 181])
    yours(user)
    if user.drawn > 1:
        raise AssertionError(f"the task drew {user.drawn} users: draw one (user.pick_user()) and use it for both calls")
    if user.asked != [(196, 5)]:
        raise AssertionError(
            f"expected one get_recommendations(196, 5) for the user drawn (196), got calls {user.asked}"
        )
    body = {"user_id": 196, "item_id": 50, "action": "dislike", "recommendation_id": "v1.the-signed-id"}
    want = [("/feedback", body, "/feedback [dislike]")]
    if user.client.posts != want:
        got = user.client.posts
        advice = ""
        if len(got) == 1 and isinstance(got[0][1], dict):
            wrong = {key: got[0][1].get(key) for key in body if got[0][1].get(key) != body[key]}
            expected = {key: body[key] for key in wrong}
            advice = f": these fields differ {wrong} (expected {expected})" if wrong else ""
        raise AssertionError(f"user 196, recommendations [50, 100, 181]: expected the post {want}, got {got}{advice}")
    empty = _User([])
    yours(empty)
    if empty.client.posts:
        raise AssertionError(f"with no recommendations (a failed answer) there is nothing to dislike; the task "
                             f"sent {empty.client.posts}")  # fmt: skip


def _table(requests: int, failures: int, p95: float, first_row: dict | None = None) -> pd.DataFrame:
    total = {"Request Count": requests, "Failure Count": failures, "95%": p95, "Requests/s": 1.0}
    return pd.DataFrame([{"Name": "/x", **(first_row or total)}, {"Name": "Aggregated", **total}])


# (case, table, advice when the verdict is wrong), against the SLO p95 < 100 ms, error rate < 0.001
SLO_CASES = [
    ("1000 requests, 0 failures, p95 99 ms", _table(1000, 0, 99), ""),
    ("1000 requests, 0 failures, p95 100 ms", _table(1000, 0, 100),
     "'p95 < 100 ms' is strict: a p95 of exactly 100 ms misses"),
    ("1000 requests, 1 failure, p95 10 ms", _table(1000, 1, 10),
     "'error rate < 0.001' is strict: 1 failure in 1000 is exactly 0.001 and misses"),
    ("999 requests, 0 failures, p95 5 ms", _table(999, 0, 5), ""),
    ("10 requests, 5 failures, p95 500 ms", _table(10, 5, 500), ""),
    ("0 requests", _table(0, 0, 0), "a run that sent no request proves nothing: it does not pass"),
    ("the 'Aggregated' row meets it, the first row (/x: p95 500 ms) does not",
     _table(1000, 0, 50, {"Request Count": 10, "Failure Count": 0, "95%": 500, "Requests/s": 1.0}),
     "read the row whose Name is 'Aggregated', not the first row"),
]  # fmt: skip


def meets_slo(yours: Callable[..., Any], p95_ms: float = 100, max_error_rate: float = 0.001) -> None:
    """Exercise 12.2 on :data:`SLO_CASES` against ``loadtest.verdict``."""
    from recsys_workshop.loadtest import SLO, verdict

    slo = SLO(p95_ms, max_error_rate)
    for case, table, advice in SLO_CASES:
        call = f"{case} (SLO p95 < {p95_ms} ms, error rate < {max_error_rate})"
        expected = verdict(table, slo)
        try:
            answer = yours(table.drop(columns="Requests/s"), p95_ms, max_error_rate)
        except ZeroDivisionError as err:
            raise AssertionError(f"{call}: division by zero: with no requests there is no error rate; "
                                 "return (False, [a reason]) before dividing") from err  # fmt: skip
        if not (isinstance(answer, tuple | list) and len(answer) == 2):
            raise AssertionError(f"{call}: return a pair (passed, reasons), got {answer!r}")
        passed, reasons = answer
        if bool(passed) != expected.passed:
            detail = f": {advice}" if advice else ""
            raise AssertionError(f"{call}: expected passed={expected.passed}, got {passed!r}{detail}")
        if not isinstance(reasons, list | tuple) or not all(isinstance(r, str) for r in reasons):
            raise AssertionError(f"{call}: reasons must be a list of strings, got {reasons!r}")
        if len(reasons) != len(expected.reasons):
            raise AssertionError(
                f"{call}: expected {len(expected.reasons)} reason(s) ({'; '.join(expected.reasons) or 'none'}), "
                f"got {len(reasons)} {list(reasons)}: one short string per broken condition, none when it passes"
            )
