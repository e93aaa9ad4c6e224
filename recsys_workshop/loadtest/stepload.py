"""A step-load shape for Locust: more users every few seconds, and what each step measured.

Give it to Locust beside the locustfile (it imports Locust: run it only inside a Locust process)::

    locust -f recsys_workshop/loadtest/locustfile.py,recsys_workshop/loadtest/stepload.py --headless --csv run/step ...

Steps of ``RECSYS_STEP_USERS`` users (default 10) up to ``RECSYS_STEP_MAX_USERS`` (default 100), each
``RECSYS_STEP_SECONDS`` long (default 30), spawning ``RECSYS_STEP_SPAWN_RATE`` users/s (default: a step's
users in one second); the run stops after the last step. At the end of every step the shape writes
one row to ``<csv prefix>_steps.csv`` (or ``RECSYS_STEP_CSV``): users, seconds measured, requests,
failures, requests/s and p50/p95/p99 in ms of the requests answered *during that step* (the first
``RECSYS_STEP_SETTLE`` seconds of each step, default a quarter of it up to 5 s, are left out while the
new users arrive). It reads the runner's aggregated statistics, so it works the same with local and
distributed (master + workers) runs. ``loadtest.find_knee`` turns the rows into the knee.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from locust import LoadTestShape
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

STEP_COLUMNS = ["users", "seconds", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms"]


def _positive(name: str, default: float) -> float:
    value = float(os.environ.get(name, default))
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class StepLoadShape(LoadTestShape):
    """``step_users`` more users every ``step_seconds`` up to ``max_users``, then stop."""

    def __init__(self) -> None:
        super().__init__()
        self.step_users = int(_positive("RECSYS_STEP_USERS", 10))
        self.max_users = int(_positive("RECSYS_STEP_MAX_USERS", 100))
        self.step_seconds = _positive("RECSYS_STEP_SECONDS", 30)
        self.spawn_rate = _positive("RECSYS_STEP_SPAWN_RATE", self.step_users)
        self.settle = float(os.environ.get("RECSYS_STEP_SETTLE", min(5.0, self.step_seconds / 4)))
        if not 0 <= self.settle < self.step_seconds:
            raise ValueError("RECSYS_STEP_SETTLE must be in [0, RECSYS_STEP_SECONDS)")
        self.n_steps = max(1, self.max_users // self.step_users)
        self._step = -1
        self._mark: tuple | None = None
        self._path: Path | None = None

    def users_at(self, step: int) -> int:
        return min(self.max_users, (step + 1) * self.step_users)

    def _snapshot(self) -> tuple:
        total = self.runner.environment.stats.total
        return (self.get_run_time(), dict(total.response_times), total.num_requests, total.num_failures)

    def _csv_path(self) -> Path | None:
        if self._path is None:
            explicit = os.environ.get("RECSYS_STEP_CSV")
            options = self.runner.environment.parsed_options
            prefix = getattr(options, "csv_prefix", None) if options else None
            if explicit or prefix:
                self._path = Path(explicit or f"{prefix}_steps.csv")
                with self._path.open("w", newline="") as f:
                    csv.writer(f).writerow(STEP_COLUMNS)
        return self._path

    def _record(self, step: int) -> None:
        if self._mark is None:
            return
        start_t, start_times, start_n, start_fail = self._mark
        end_t, times, n, failures = self._snapshot()
        count, seconds = n - start_n, max(end_t - start_t, 1e-9)
        window = diff_response_time_dicts(times, start_times)
        pct = [calculate_response_time_percentile(window, count, q) if count else 0 for q in (0.5, 0.95, 0.99)]
        row = [self.users_at(step), round(seconds, 2), count, failures - start_fail, round(count / seconds, 2), *pct]
        self._mark = None
        path = self._csv_path()
        if path is not None:
            with path.open("a", newline="") as f:
                csv.writer(f).writerow(row)

    def tick(self):
        run_time = self.get_run_time()
        step = int(run_time // self.step_seconds)
        if step != self._step:  # a step ended: record it, start the next
            self._record(self._step)
            self._step = step
        if self._mark is None and run_time - step * self.step_seconds >= self.settle and step < self.n_steps:
            self._mark = self._snapshot()
        if step >= self.n_steps:
            return None
        return self.users_at(step), self.spawn_rate
