"""Simulated users of the recommender API, for Locust.

Run it with Locust, never import it in a process that has imported kserve or urllib3 (Locust's gevent
monkey-patching then fails with ``RecursionError``). ``recsys_workshop.loadtest`` starts Locust as its own
process; on a cluster the master and the workers run::

    locust -f /app/recsys_workshop/loadtest/locustfile.py --host=http://recsys-api

What a :class:`RecsysUser` does, with weights and think times read from the environment:

========================= ======================================= ===================================
task (``RECSYS_LOCUST_WEIGHTS`` key) request(s)                       default weight
========================= ======================================= ===================================
``home``                  ``GET /`` (the UI page)                  1
``recommend``             ``GET /recommendations/{user_id}?k=..``, 10
                          then with probability
                          ``RECSYS_LOCUST_FEEDBACK_PROB`` (0.3) a
                          ``POST /feedback`` on one of the items
                          shown (the top of the list is clicked
                          more often), with the answer's signed
                          ``recommendation_id``
``new_user``              ``POST /users`` with a few liked items,  1
                          then ``GET /recommendations/{new id}``
========================= ======================================= ===================================

- ``RECSYS_LOCUST_WEIGHTS``: ``"home=1,recommend=10,new_user=1"`` (any subset; 0 switches a task off).
- ``RECSYS_LOCUST_WAIT``: think time between two tasks of one user, ``"min,max"`` seconds, uniform
  (default ``"0.5,2"``; ``"0"`` for a closed loop that measures capacity).
- ``RECSYS_LOCUST_K``: the list lengths asked for, one drawn per request (default ``"5,10,10,10,20,50"``).
- ``RECSYS_LOCUST_DATASET`` (default ``ml-100k``) and ``RECSYS_LOCUST_SEED`` (default 0): user ids are drawn
  from the dataset's users in proportion to how many ratings each has, so a few heavy users come back
  often and most users rarely, the long tail real traffic has; liked items for new users are drawn by
  popularity. When the dataset cannot be loaded (no copy, no network) the users fall back to a Zipf law
  over ids 1..943 and say so on stderr.

On a process that writes CSV statistics (``--csv PREFIX``), the end of the run also writes
``PREFIX_response_times.csv`` (every response time Locust recorded, rounded the way Locust rounds them,
with its count): the raw material of the latency histogram that ``loadtest.plot_run`` draws; and it
rewrites ``PREFIX_stats.csv`` with the final totals (Locust's own copy is refreshed once a second only).
"""

from __future__ import annotations

import csv
import itertools
import os
import sys
from pathlib import Path

import numpy as np
from locust import FastHttpUser, between, constant, events
from locust.runners import MasterRunner, WorkerRunner

DEFAULT_WEIGHTS = {"home": 1, "recommend": 10, "new_user": 1}
DEFAULT_K = (5, 10, 10, 10, 20, 50)


def parse_weights(text: str | None, defaults: dict[str, int] = DEFAULT_WEIGHTS) -> dict[str, int]:
    """``"home=1,recommend=10"`` -> the default weights updated with those; refuses unknown tasks."""
    weights = dict(defaults)
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in defaults:
            known = ", ".join(sorted(defaults))
            raise ValueError(f"RECSYS_LOCUST_WEIGHTS: expected name=weight with name in {known}, got {part!r}")
        try:
            weights[name] = int(value)
        except ValueError:
            message = f"RECSYS_LOCUST_WEIGHTS: the weight of {name!r} must be an integer, got {value!r}"
            raise ValueError(message) from None
        if weights[name] < 0:
            raise ValueError(f"RECSYS_LOCUST_WEIGHTS: the weight of {name!r} must be >= 0")
    if not any(weights.values()):
        raise ValueError("RECSYS_LOCUST_WEIGHTS: every task has weight 0, the users would have nothing to do")
    return weights


def parse_wait(text: str | None) -> tuple[float, float]:
    """``"0.5,2"`` -> (0.5, 2.0); ``"0"`` -> (0, 0)."""
    parts = [p.strip() for p in (text or "0.5,2").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"RECSYS_LOCUST_WAIT: expected 'min,max' seconds, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not 0 <= values[0] <= values[1]:
        raise ValueError(f"RECSYS_LOCUST_WAIT: expected 0 <= min <= max seconds, got {text!r}")
    return values[0], values[1]


def parse_k(text: str | None) -> tuple[int, ...]:
    try:
        ks = tuple(int(p) for p in (text or "").split(",") if p.strip()) or DEFAULT_K
    except ValueError:
        raise ValueError(f"RECSYS_LOCUST_K: expected comma-separated integers, got {text!r}") from None
    if not all(1 <= k <= 100 for k in ks):
        raise ValueError(f"RECSYS_LOCUST_K: every k must be in 1..100, got {ks}")
    return ks


class Population:
    """Who the simulated users are: user ids weighted by activity, item ids weighted by popularity."""

    def __init__(self, user_ids, user_weights, item_ids, item_weights, source: str):
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.user_p = np.asarray(user_weights, dtype=float) / np.sum(user_weights)
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.item_p = np.asarray(item_weights, dtype=float) / np.sum(item_weights)
        self.source = source

    @classmethod
    def from_dataset(cls, name: str = "ml-100k") -> Population:
        from recsys_workshop import data

        try:
            ratings = data.load_ratings(name, progress=False)
        except (data.MovieLensError, OSError) as err:  # no copy, no network, or a read-only cache
            print(f"locustfile: {name} unavailable ({err}); user ids follow a Zipf law over 1..943", file=sys.stderr)
            return cls.zipf(943, 1682)
        users = ratings["user_id"].value_counts()
        items = ratings["item_id"].value_counts()
        return cls(users.index, users.to_numpy(), items.index, items.to_numpy(), source=name)

    @classmethod
    def zipf(cls, n_users: int, n_items: int, exponent: float = 1.0) -> Population:
        ranks = np.arange(1, max(n_users, n_items) + 1, dtype=float) ** -exponent
        return cls(np.arange(1, n_users + 1), ranks[:n_users], np.arange(1, n_items + 1), ranks[:n_items], "zipf")

    def user(self, rng: np.random.Generator) -> int:
        return int(rng.choice(self.user_ids, p=self.user_p))

    def items(self, rng: np.random.Generator, n: int) -> list[int]:
        return [int(i) for i in rng.choice(self.item_ids, size=n, replace=False, p=self.item_p)]


_POPULATION: Population | None = None
_USER_NUMBERS = itertools.count()


def population() -> Population:
    """Loaded once per process, when Locust starts (before its clock does), or on first use."""
    global _POPULATION
    if _POPULATION is None:
        _POPULATION = Population.from_dataset(os.environ.get("RECSYS_LOCUST_DATASET", "ml-100k"))
    return _POPULATION


# ---------------------------------------------------------------------------------------------------
# Tasks: plain functions of the user, so a lab (or another locustfile) can add its own beside them.
# ---------------------------------------------------------------------------------------------------


def open_home(user: RecsysVisitor) -> None:
    """A visit to the UI page."""
    user.client.get("/", name="/")


def recommend(user: RecsysVisitor) -> None:
    """Recommendations for a known user; sometimes a click on one of them."""
    items = user.get_recommendations(user.pick_user(), user.pick_k())
    if items and user.rng.random() < user.feedback_prob:
        user.send_feedback(user.current_user, items, action="click")


def new_user(user: RecsysVisitor) -> None:
    """A brand-new visitor: signs up with a few liked movies, then looks at what is recommended."""
    liked = user.population.items(user.rng, int(user.rng.integers(1, 6)))
    with user.client.post("/users", json={"liked_item_ids": liked}, name="/users", catch_response=True) as resp:
        if resp.status_code not in (200, 201):
            resp.failure(f"POST /users answered {resp.status_code}")
            return
        try:
            new_id = int(resp.json()["user_id"])
        except (ValueError, KeyError, TypeError):
            resp.failure("POST /users: no user_id in the answer")
            return
    user.get_recommendations(new_id, user.pick_k(), name="/recommendations/[new user]")


TASKS = {"home": open_home, "recommend": recommend, "new_user": new_user}


class RecsysVisitor(FastHttpUser):
    """What every simulated visitor has: think time, who it is, and helpers for the tasks; no tasks.
    Subclass it with your own ``tasks`` (Locust adds a base class's tasks to a subclass's, so a user
    with a different mix of tasks derives from this class, not from :class:`RecsysUser`)."""

    abstract = True
    weights = parse_weights(os.environ.get("RECSYS_LOCUST_WEIGHTS"))
    _wait = parse_wait(os.environ.get("RECSYS_LOCUST_WAIT"))
    wait_time = constant(0) if _wait == (0.0, 0.0) else between(*_wait)
    ks = parse_k(os.environ.get("RECSYS_LOCUST_K"))
    feedback_prob = float(os.environ.get("RECSYS_LOCUST_FEEDBACK_PROB", "0.3"))
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        seed = int(os.environ.get("RECSYS_LOCUST_SEED", "0"))
        self.rng = np.random.default_rng([seed, os.getpid(), next(_USER_NUMBERS)])
        self.population = population()
        self.current_user: int | None = None
        self.recommendation_id: str | None = None

    def pick_user(self) -> int:
        self.current_user = self.population.user(self.rng)
        return self.current_user

    def pick_k(self) -> int:
        return int(self.rng.choice(self.ks))

    def get_recommendations(self, user_id: int, k: int, name: str = "/recommendations/[user_id]") -> list[int]:
        """The item ids recommended, or [] when the answer was not a valid list (counted as a failure). The
        answer's ``recommendation_id`` (what feedback on these items must carry) is kept in
        ``self.recommendation_id``."""
        self.recommendation_id = None
        with self.client.get(f"/recommendations/{user_id}?k={k}", name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return []
            try:
                payload = resp.json()
                items = [int(item["item_id"]) for item in payload["items"]]
                self.recommendation_id = str(payload["recommendation_id"])
            except (ValueError, KeyError, TypeError):
                resp.failure("no items list or recommendation_id in the answer")
                return []
            if len(items) > k:
                resp.failure(f"asked for {k} items, got {len(items)}")
            return items

    def send_feedback(self, user_id: int, items: list[int], action: str = "click") -> None:
        """Feedback on one of ``items``, the first ranks more likely (position bias 1/rank)."""
        p = 1.0 / np.arange(1, len(items) + 1)
        item = int(self.rng.choice(items, p=p / p.sum()))
        body = {"user_id": user_id, "item_id": item, "action": action, "recommendation_id": self.recommendation_id}
        self.client.post("/feedback", json=body, name="/feedback")


class RecsysUser(RecsysVisitor):
    """A visitor of the recommender: see the module docstring for what it does and how to tune it."""

    tasks = {TASKS[name]: w for name, w in RecsysVisitor.weights.items() if w > 0}


# ---------------------------------------------------------------------------------------------------
# The full response-time distribution at the end of a run with --csv (for the latency histogram).
# ---------------------------------------------------------------------------------------------------


def write_response_times(environment, path: str | os.PathLike) -> Path:
    """Every (request name, rounded response time in ms, count) of the run, plus the "Aggregated" rows."""
    path = Path(path)
    rows = []
    for entry in [*environment.stats.entries.values(), environment.stats.total]:
        name = entry.name if entry is not environment.stats.total else "Aggregated"
        rows.extend((name, ms, n) for ms, n in sorted(entry.response_times.items()))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Name", "Response Time", "Count"])
        writer.writerows(rows)
    return path


def write_final_stats(environment, prefix: str) -> None:
    """Rewrite ``PREFIX_stats.csv`` and ``PREFIX_failures.csv`` with the final totals. Locust rewrites them
    once a second, so its last copy can miss the run's last second; the response-time distribution
    written beside them must count exactly the same requests."""
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as f:
        writer.requests_csv(csv.writer(f))
    with open(f"{prefix}_failures.csv", "w", newline="") as f:
        writer.failures_csv(csv.writer(f))


if not getattr(events, "_recsys_response_times_listener", False):
    events._recsys_response_times_listener = True

    @events.init.add_listener
    def _on_init(environment, **_kwargs) -> None:
        """Load who the users are before the clock starts (a master runs no users: it needs none)."""
        if not isinstance(environment.runner, MasterRunner):
            population()

    @events.quitting.add_listener
    def _on_quitting(environment, **_kwargs) -> None:
        prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
        if prefix and not isinstance(environment.runner, WorkerRunner):
            write_final_stats(environment, prefix)
            write_response_times(environment, f"{prefix}_response_times.csv")
