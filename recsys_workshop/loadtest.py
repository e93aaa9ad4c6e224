"""Load tests with Locust: bounded headless runs on this machine, charts, an SLO verdict and the knee.

Locust runs as its own process, always (its gevent monkey-patching breaks a process that has already
imported kserve or urllib3): this module never imports Locust. It only targets loopback addresses, with a
bounded number of users and a bounded duration.

    from recsys_workshop import loadtest

    run = loadtest.run("http://127.0.0.1:8000", users=20, run_time=30, prefix="artifacts/loadtest/first")
    verdict = loadtest.verdict(run.prefix, loadtest.SLO(p95_ms=100, max_error_rate=0.001))
    loadtest.plot_run(run.prefix, slo=verdict.slo)          # -> first_charts.png

    steps = loadtest.run_steps("http://127.0.0.1:8000", step_users=10, max_users=100, step_seconds=20,
                               prefix="artifacts/loadtest/steps")
    knee = loadtest.find_knee(loadtest.read_steps(steps.prefix), slo)
    loadtest.plot_knee(steps.prefix, slo)                   # -> steps_knee.png

From the command line (exit status 0 when the SLO is met, 1 when it is missed, 2 on bad input; for a
step run, 0 when there is a knee, i.e. at least the first step met the SLO)::

    python -m recsys_workshop.loadtest run --host http://127.0.0.1:8000 --users 20 --run-time 30 \\
        --out artifacts/loadtest/first --p95-ms 100 --max-error-rate 0.001 [--workers 2]
    python -m recsys_workshop.loadtest steps --host http://127.0.0.1:8000 --step-users 10 --max-users 100 \\
        --step-seconds 20 --out artifacts/loadtest/steps --p95-ms 100
    python -m recsys_workshop.loadtest report artifacts/loadtest/first --p95-ms 100

Files of a run with prefix ``P`` (Locust's own CSV files, plus two of ours):
``P_stats.csv`` (totals per request name and "Aggregated"), ``P_stats_history.csv`` (one row per
second and name: users, requests/s, failures/s, latency percentiles over Locust's sliding 10 s window),
``P_failures.csv``, ``P_exceptions.csv``, ``P_response_times.csv`` (the whole latency distribution, from
the locustfile), ``P_steps.csv`` (step runs: one row per step, from ``stepload.py``), ``P.log``
(Locust's output) and the charts ``P_charts.png`` / ``P_knee.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pandas as pd

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
STEPLOAD = HERE / "stepload.py"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_USERS = 2000
MAX_SECONDS = 3600
STARTUP_GRACE_SECONDS = 90  # importing Locust and loading MovieLens in each Locust process

__all__ = [
    "SLO",
    "Knee",
    "LoadTestError",
    "Run",
    "Verdict",
    "check_host",
    "cpu_seconds",
    "find_knee",
    "locustfile_with_tasks",
    "main",
    "plot_knee",
    "plot_run",
    "read_history",
    "read_response_times",
    "read_stats",
    "read_steps",
    "run",
    "run_steps",
    "step_verdicts",
    "verdict",
]


class LoadTestError(RuntimeError):
    """Locust did not run (bad locustfile, crash, timeout); the message holds the end of its log."""


# ---------------------------------------------------------------------------------------------------
# Service-level objective and verdict
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SLO:
    """Met when p95 latency < ``p95_ms`` and failures / requests < ``max_error_rate``, over at least
    ``min_requests`` requests (a run that sent nothing proves nothing)."""

    p95_ms: float = 100.0
    max_error_rate: float = 0.001
    min_requests: int = 1

    def __post_init__(self):
        if not self.p95_ms > 0:
            raise ValueError(f"SLO p95_ms must be > 0, got {self.p95_ms}")
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"SLO max_error_rate must be in [0, 1], got {self.max_error_rate}")
        if self.min_requests < 1:
            raise ValueError("SLO min_requests must be >= 1")

    def __str__(self) -> str:
        return f"p95 < {self.p95_ms:g} ms and error rate < {self.max_error_rate:.2%}"

    def problems(self, requests: int, failures: int, p95_ms: float) -> list[str]:
        """Why these figures miss the objective ([] when they meet it)."""
        reasons = []
        if requests < self.min_requests:
            reasons.append(f"only {requests} requests (need at least {self.min_requests})")
            return reasons
        if not p95_ms < self.p95_ms:
            reasons.append(f"p95 {p95_ms:g} ms >= {self.p95_ms:g} ms")
        rate = failures / requests
        if not rate < self.max_error_rate:
            reasons.append(f"error rate {rate:.3%} ({failures}/{requests}) >= {self.max_error_rate:.3%}")
        return reasons


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    slo: SLO
    requests: int
    failures: int
    error_rate: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = "SLO met" if self.passed else "SLO MISSED"
        figures = (
            f"{self.requests} requests, {self.rps:.1f} req/s, p50 {self.p50_ms:g} ms, p95 {self.p95_ms:g} ms, "
            f"p99 {self.p99_ms:g} ms, {self.failures} failures ({self.error_rate:.3%})"
        )
        why = "" if self.passed else ": " + "; ".join(self.reasons)
        return f"{head} ({self.slo}){why}\n  {figures}"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["slo"] = dataclasses.asdict(self.slo)
        out["reasons"] = list(self.reasons)
        return out


def _prefix(prefix_or_run) -> Path:
    return Path(prefix_or_run.prefix if isinstance(prefix_or_run, Run) else prefix_or_run)


def read_stats(prefix) -> pd.DataFrame:
    """``P_stats.csv``: one row per request name, plus the "Aggregated" row."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_stats.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no Locust statistics at {path}: did the run write --csv {_prefix(prefix)}?")
    return pd.read_csv(path, na_values=["N/A"])


def read_history(prefix) -> pd.DataFrame:
    """``P_stats_history.csv`` with a ``seconds`` column (since the first row); "N/A" becomes NaN."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_stats_history.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no Locust history at {path}")
    history = pd.read_csv(path, na_values=["N/A"])
    history["seconds"] = history["Timestamp"] - (history["Timestamp"].min() if len(history) else 0)
    return history


def read_response_times(prefix, name: str = "Aggregated") -> pd.DataFrame:
    """``P_response_times.csv`` for one request name: response time (ms) and count, sorted."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_response_times.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no response-time distribution at {path} (written by the workshop locustfile)")
    table = pd.read_csv(path)
    return table[table["Name"] == name].sort_values("Response Time").reset_index(drop=True)


def verdict(prefix_or_stats, slo: SLO = SLO()) -> Verdict:
    """The SLO verdict of a run, from its "Aggregated" statistics (a run prefix or a stats DataFrame)."""
    stats = prefix_or_stats if hasattr(prefix_or_stats, "columns") else read_stats(prefix_or_stats)
    total = stats[stats["Name"] == "Aggregated"]
    if total.empty:
        raise ValueError("the statistics have no 'Aggregated' row: not a Locust --csv _stats.csv file")
    row = total.iloc[0]
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])

    def ms(column: str) -> float:
        value = row.get(column)
        return float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else math.nan

    p95 = ms("95%")
    reasons = slo.problems(requests, failures, p95)
    return Verdict(
        passed=not reasons,
        slo=slo,
        requests=requests,
        failures=failures,
        error_rate=failures / requests if requests else math.nan,
        rps=float(row["Requests/s"]),
        p50_ms=ms("50%"),
        p95_ms=p95,
        p99_ms=ms("99%"),
        reasons=tuple(reasons),
    )


# ---------------------------------------------------------------------------------------------------
# The knee: the highest user count whose step still meets the SLO
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Knee:
    users: int | None  # None: even the first step missed the SLO
    rps: float  # throughput at the knee (nan without one)
    p95_ms: float
    first_miss_users: int | None  # the first step that missed (None: every step met it)
    reason: str  # why the first missing step missed

    def __str__(self) -> str:
        if self.users is None:
            return f"no knee: the first step ({self.first_miss_users} users) already misses the SLO ({self.reason})"
        tail = (
            f"; at {self.first_miss_users} users: {self.reason}"
            if self.first_miss_users is not None
            else "; every step met the SLO (add steps to find where it breaks)"
        )
        return f"knee at {self.users} users: {self.rps:.1f} req/s, p95 {self.p95_ms:g} ms{tail}"


def read_steps(prefix) -> pd.DataFrame:
    """``P_steps.csv`` written by the step-load shape: one row per step."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_steps.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no step statistics at {path}: was the run a step-load run (run_steps)?")
    return pd.read_csv(path)


def step_verdicts(steps: pd.DataFrame, slo: SLO) -> pd.DataFrame:
    """``steps`` with ``error_rate``, ``meets_slo`` and ``reason`` columns, sorted by users."""
    missing = {"users", "requests", "failures", "rps", "p95_ms"} - set(steps.columns)
    if missing:
        raise ValueError(f"step statistics lack columns {sorted(missing)}")
    out = steps.sort_values("users").reset_index(drop=True).copy()
    reasons = [
        "; ".join(slo.problems(int(r.requests), int(r.failures), float(r.p95_ms))) for r in out.itertuples()
    ]
    out["error_rate"] = out["failures"] / out["requests"].where(out["requests"] > 0)
    out["meets_slo"] = [not r for r in reasons]
    out["reason"] = reasons
    return out


def find_knee(steps: pd.DataFrame, slo: SLO) -> Knee:
    """The highest user count such that its step and every lighter step meet ``slo``.

    Past the knee, adding users adds latency, not throughput. Steps are judged on the requests answered
    during each step (see ``stepload.py``), in order of users; the first miss ends the search, since a
    lucky heavier step after a miss is noise, not capacity.
    """
    judged = step_verdicts(steps, slo)
    if judged.empty:
        raise ValueError("no steps to judge: the step-load run recorded nothing")
    misses = judged.index[~judged["meets_slo"]]
    first_miss = int(misses[0]) if len(misses) else None
    good = judged.iloc[: first_miss if first_miss is not None else len(judged)]
    miss = judged.iloc[first_miss] if first_miss is not None else None
    if good.empty:
        return Knee(None, math.nan, math.nan, int(miss.users), miss.reason)
    best = good.iloc[-1]
    return Knee(
        users=int(best.users),
        rps=float(best.rps),
        p95_ms=float(best.p95_ms),
        first_miss_users=int(miss.users) if miss is not None else None,
        reason=miss.reason if miss is not None else "",
    )


# ---------------------------------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(prefix, out: str | os.PathLike | None = None, *, slo: SLO | None = None, show: bool = False) -> Path:
    """Four panels from a run's CSV files: throughput and users, p50/p95/p99, failures over time, and the
    latency histogram (when ``P_response_times.csv`` exists). Returns the PNG path (``P_charts.png``)."""
    import numpy as np

    prefix = _prefix(prefix)
    history = read_history(prefix)
    total = history[history["Name"] == "Aggregated"]
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5))
    (ax_rps, ax_lat), (ax_fail, ax_hist) = axes

    ax_rps.plot(total["seconds"], total["Requests/s"], color="#1f77b4", label="requests/s")
    ax_rps.set(title="Throughput", xlabel="seconds", ylabel="requests/s")
    users = ax_rps.twinx()
    users.plot(total["seconds"], total["User Count"], color="#777777", ls=":", label="users")
    users.set_ylabel("users")
    lines = ax_rps.get_lines() + users.get_lines()
    ax_rps.legend(lines, [line.get_label() for line in lines], loc="lower right")

    for column, colour in (("50%", "#2ca02c"), ("95%", "#ff7f0e"), ("99%", "#d62728")):
        ax_lat.plot(total["seconds"], total[column], color=colour, label=f"p{column[:-1]}")
    if slo is not None:
        ax_lat.axhline(slo.p95_ms, color="#ff7f0e", ls="--", lw=1, label=f"SLO p95 < {slo.p95_ms:g} ms")
    ax_lat.set(title="Latency (sliding 10 s window)", xlabel="seconds", ylabel="ms")
    ax_lat.legend(loc="upper left")

    ax_fail.plot(total["seconds"], total["Failures/s"], color="#d62728", label="failures/s")
    requests = total["Total Request Count"].replace(0, np.nan)
    ax_fail.set(title="Failures", xlabel="seconds", ylabel="failures/s")
    share = ax_fail.twinx()
    share.plot(total["seconds"], 100 * total["Total Failure Count"] / requests, color="#9467bd", ls="--",
               label="failed so far (%)")
    share.set_ylabel("% of requests")
    share.set_ylim(bottom=0)
    ax_fail.set_ylim(bottom=0)
    lines = ax_fail.get_lines() + share.get_lines()
    ax_fail.legend(lines, [line.get_label() for line in lines], loc="upper left")

    try:
        dist = read_response_times(prefix)
    except FileNotFoundError:
        dist = None
    if dist is not None and len(dist):
        times, counts = dist["Response Time"].to_numpy(float), dist["Count"].to_numpy(float)
        top = np.percentile(np.repeat(times, counts.astype(int)), 99.5) if counts.sum() < 5e6 else times.max()
        bins = np.linspace(0, max(top, 1.0), 50)
        ax_hist.hist(times, bins=bins, weights=counts, color="#1f77b4", alpha=0.8)
        cumulative = np.cumsum(counts) / counts.sum()
        for q, colour in ((0.5, "#2ca02c"), (0.95, "#ff7f0e"), (0.99, "#d62728")):
            value = times[np.searchsorted(cumulative, q)]
            ax_hist.axvline(value, color=colour, ls="--", lw=1, label=f"p{round(q * 100)} {value:g} ms")
        ax_hist.legend(loc="upper right")
        ax_hist.set(title="Latency histogram (whole run, up to p99.5)", xlabel="ms", ylabel="requests")
    else:
        ax_hist.text(0.5, 0.5, "no response-time distribution\n(P_response_times.csv)", ha="center", va="center")
        ax_hist.set_axis_off()
    fig.suptitle(prefix.name)
    fig.tight_layout()
    path = Path(out) if out is not None else Path(f"{prefix}_charts.png")
    fig.savefig(path, dpi=90)
    if show:
        plt.show()
    plt.close(fig)
    return path


def plot_knee(prefix_or_steps, slo: SLO, out: str | os.PathLike | None = None, *, show: bool = False) -> Path:
    """Throughput and p95 against users, one point per step, the SLO line and the knee marked."""
    if hasattr(prefix_or_steps, "columns"):
        steps, default_out = prefix_or_steps, None
    else:
        steps, default_out = read_steps(prefix_or_steps), Path(f"{_prefix(prefix_or_steps)}_knee.png")
    if out is None and default_out is None:
        raise ValueError("give out= when plotting a steps DataFrame")
    judged = step_verdicts(steps, slo)
    knee = find_knee(steps, slo)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(judged["users"], judged["rps"], "o-", color="#1f77b4", label="requests/s")
    ax.set(xlabel="users", ylabel="requests/s", title=f"Step load: {knee}")
    ax.title.set_fontsize(9)
    lat = ax.twinx()
    lat.plot(judged["users"], judged["p95_ms"], "s-", color="#ff7f0e", label="p95 (ms)")
    lat.axhline(slo.p95_ms, color="#ff7f0e", ls="--", lw=1, label=f"SLO p95 < {slo.p95_ms:g} ms")
    missed = judged[~judged["meets_slo"]]
    lat.plot(missed["users"], missed["p95_ms"], "x", color="#d62728", ms=10, mew=2, label="misses the SLO")
    lat.set_ylabel("p95 (ms)")
    lat.set_ylim(bottom=0)
    if knee.users is not None:
        ax.axvline(knee.users, color="#2ca02c", lw=2, alpha=0.6, label=f"knee: {knee.users} users")
    lines = ax.get_lines() + lat.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(out) if out is not None else default_out
    fig.savefig(path, dpi=90)
    if show:
        plt.show()
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------
# Running Locust
# ---------------------------------------------------------------------------------------------------


def check_host(host: str) -> str:
    """``host`` if it is an http(s) URL on a loopback address; ValueError otherwise (we never load-test
    someone else's machine from here)."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"host must be an http:// URL such as http://127.0.0.1:8000, got {host!r}")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"host {parts.hostname!r} is not a loopback address: this helper only load-tests 127.0.0.1 "
            "(use the cluster's Locust master for a cluster)"
        )
    return host.rstrip("/")


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each process (and its children): measure before and
    after a run to get the CPU a server spent on it."""
    import psutil

    used = {}
    for pid in pids:
        try:
            process = psutil.Process(pid)
            family = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            raise ValueError(f"no process {pid}") from None
        total = 0.0
        for p in family:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
        used[pid] = total
    return used


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Run:
    """A finished Locust run: its CSV prefix, exit code, command and log."""

    prefix: Path
    returncode: int
    command: list[str]
    seconds: float

    @property
    def log(self) -> Path:
        return Path(f"{self.prefix}.log")

    def file(self, suffix: str) -> Path:
        return Path(f"{self.prefix}_{suffix}.csv")


def _bounded(users: int, run_time: float) -> None:
    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"users must be in 1..{MAX_USERS}, got {users}")
    if not 1 <= run_time <= MAX_SECONDS:
        raise ValueError(f"run_time must be in 1..{MAX_SECONDS} seconds, got {run_time}")


def _locustfiles(locustfile, extra: Sequence[Path] = ()) -> str:
    files = [Path(locustfile or LOCUSTFILE), *extra]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"no locustfile at {f}")
    return ",".join(str(f) for f in files)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)  # Locust writes its CSV files on SIGINT
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(
    host: str,
    *,
    prefix: str | os.PathLike,
    users: int = 10,
    spawn_rate: float | None = None,
    run_time: float = 10,
    locustfile: str | os.PathLike | None = None,
    workers: int = 0,
    env: Mapping[str, str] | None = None,
    user_classes: Sequence[str] = (),
    _extra_files: Sequence[Path] = (),
    _extra_args: Sequence[str] = (),
    _shape: bool = False,
) -> Run:
    """Run Locust headless against ``host`` (loopback only) for ``run_time`` seconds with ``users`` users,
    writing its CSV files under ``prefix``; ``workers`` > 0 runs one master and that many worker processes.

    ``env`` is added to the environment of the Locust processes (e.g. ``{"RECSYS_LOCUST_WAIT": "0"}``).
    Raises :class:`LoadTestError` when Locust fails to run; returns the :class:`Run` otherwise, whatever
    the requests' fate (judge that with :func:`verdict`).
    """
    host = check_host(host)
    _bounded(users, run_time)
    if not 0 <= workers <= 16:
        raise ValueError(f"workers must be in 0..16, got {workers}")
    spawn_rate = float(spawn_rate or users)
    if spawn_rate <= 0:
        raise ValueError("spawn_rate must be > 0")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for old in prefix.parent.glob(f"{prefix.name}_*.csv"):
        old.unlink()
    files = _locustfiles(locustfile, _extra_files)
    process_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    base = [sys.executable, "-m", "locust", "-f", files, "--host", host]
    load = ["--users", str(users), "--spawn-rate", f"{spawn_rate:g}", "--run-time", f"{math.ceil(run_time)}s"]
    load = [] if _shape else load
    master = [*base, "--headless", *load, "--csv", str(prefix), "--csv-full-history", "--only-summary",
              *_extra_args, *user_classes]  # fmt: skip
    workers_cmd: list[list[str]] = []
    if workers:
        port = free_port()
        master += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                   "--expect-workers", str(workers), "--expect-workers-max-wait", "60"]  # fmt: skip
        worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *user_classes]
        workers_cmd = [worker] * workers
    timeout = run_time + STARTUP_GRACE_SECONDS + (30 if workers else 0)
    started = time.monotonic()
    log = Path(f"{prefix}.log")
    procs: list[subprocess.Popen] = []
    with log.open("w") as out:
        try:
            procs.append(subprocess.Popen(master, stdout=out, stderr=subprocess.STDOUT, env=process_env))
            for k, cmd in enumerate(workers_cmd):
                wlog = open(f"{prefix}.worker{k}.log", "w")  # noqa: SIM115 (closed with the process)
                procs.append(subprocess.Popen(cmd, stdout=wlog, stderr=subprocess.STDOUT, env=process_env))
                wlog.close()
            try:
                code = procs[0].wait(timeout)
            except subprocess.TimeoutExpired:
                _stop(procs[0])
                message = f"Locust ran over {timeout:.0f} s and was stopped; log {log}:\n{_tail(log)}"
                raise LoadTestError(message) from None
        finally:
            for p in procs:
                _stop(p)
    result = Run(prefix, code, master, time.monotonic() - started)
    if not result.file("stats").is_file() or code not in (0, 1):
        raise LoadTestError(f"Locust failed (exit {code}); log {log}:\n{_tail(log)}")
    return result


def run_steps(
    host: str,
    *,
    prefix: str | os.PathLike,
    step_users: int = 10,
    max_users: int = 100,
    step_seconds: float = 30,
    settle_seconds: float | None = None,
    locustfile: str | os.PathLike | None = None,
    workers: int = 0,
    env: Mapping[str, str] | None = None,
) -> Run:
    """A step-load run (``stepload.StepLoadShape``): ``step_users`` more users every ``step_seconds``
    up to ``max_users``; writes ``P_steps.csv`` for :func:`find_knee`."""
    if not 1 <= step_users <= max_users:
        raise ValueError("need 1 <= step_users <= max_users")
    n_steps = max_users // step_users
    total = n_steps * step_seconds
    _bounded(max_users, total)
    shape_env = {
        "RECSYS_STEP_USERS": str(step_users),
        "RECSYS_STEP_MAX_USERS": str(max_users),
        "RECSYS_STEP_SECONDS": f"{step_seconds:g}",
        **({"RECSYS_STEP_SETTLE": f"{settle_seconds:g}"} if settle_seconds is not None else {}),
        **(env or {}),
    }
    # the shape stops the run after its last step; the process timeout of run() bounds it anyway
    return run(host, prefix=prefix, users=max_users, run_time=total + 5, locustfile=locustfile, workers=workers,
               env=shape_env, _extra_files=(STEPLOAD,), _shape=True)  # fmt: skip


def locustfile_with_tasks(
    path: str | os.PathLike, tasks: Mapping[Callable, int], *, keep_defaults: bool = True
) -> Path:
    """Write a locustfile whose users do what :class:`locustfile.RecsysUser` does plus ``tasks``
    (``{function: weight}``; each function takes the user, like the workshop's tasks). The functions'
    source is copied into the file, so they may use only their argument, ``np`` (numpy), ``json`` and ``os``.
    ``keep_defaults=False``: the users do only ``tasks``."""
    if not tasks:
        raise ValueError("give at least one task")
    blocks = []
    for fn, weight in tasks.items():
        if not callable(fn) or fn.__name__ == "<lambda>":
            raise ValueError("each task must be a named function taking the user (def my_task(user): ...)")
        if int(weight) < 0:
            raise ValueError(f"the weight of {fn.__name__} must be >= 0")
        blocks.append(textwrap.dedent(inspect.getsource(fn)))
    entries = ", ".join(f"{fn.__name__}: {int(w)}" for fn, w in tasks.items())
    defaults = "{base.TASKS[name]: w for name, w in base.RecsysVisitor.weights.items() if w > 0}"
    defaults = defaults if keep_defaults else "{}"
    text = (
        '"""Generated by recsys_workshop.loadtest.locustfile_with_tasks: the workshop user plus new tasks."""\n\n'
        "import json  # noqa: F401\nimport os  # noqa: F401\n\nimport numpy as np  # noqa: F401\n\n"
        "from recsys_workshop import locustfile as base\n\n\n"
        + "\n\n".join(blocks)
        + f"\n\nclass LabUser(base.RecsysVisitor):\n    tasks = {{**{defaults}, {entries}}}\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    compile(text, str(path), "exec")
    return path


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    text = text.strip().lower()
    factor = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    try:
        return float(text[:-1]) * factor if factor else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 30 or 30s or 2m, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.loadtest", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def slo_args(p):
        p.add_argument("--p95-ms", type=float, default=100.0, help="SLO: p95 latency below this (ms)")
        p.add_argument("--max-error-rate", type=float, default=0.001, help="SLO: failures / requests below this")

    def run_args(p):
        p.add_argument("--host", required=True, help="a loopback URL, e.g. http://127.0.0.1:8000")
        p.add_argument("--out", required=True, help="prefix of the CSV files and charts, e.g. artifacts/loadtest/run1")
        p.add_argument("--locustfile", default=None, help="default: the workshop's recsys_workshop/locustfile.py")
        p.add_argument("--workers", type=int, default=0, help="distributed: one master and this many workers")
        p.add_argument("--wait", default=None, help="think time 'min,max' s (RECSYS_LOCUST_WAIT), '0' for none")
        p.add_argument("--weights", default=None, help="task weights, e.g. home=1,recommend=10,new_user=1")
        slo_args(p)

    p_run = commands.add_parser("run", help="a headless run with a fixed number of users")
    run_args(p_run)
    p_run.add_argument("--users", type=int, default=10)
    p_run.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    p_run.add_argument("--run-time", type=_seconds, default=30.0, help="seconds (or 30s, 2m)")

    p_steps = commands.add_parser("steps", help="a step-load run and its knee")
    run_args(p_steps)
    p_steps.add_argument("--step-users", type=int, default=10)
    p_steps.add_argument("--max-users", type=int, default=100)
    p_steps.add_argument("--step-seconds", type=_seconds, default=30.0)

    p_report = commands.add_parser("report", help="charts and verdict of existing CSV files")
    p_report.add_argument("prefix")
    slo_args(p_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        slo = SLO(p95_ms=args.p95_ms, max_error_rate=args.max_error_rate)
        if args.command == "report":
            prefix = Path(args.prefix)
        else:
            env = {k: v for k, v in (("RECSYS_LOCUST_WAIT", args.wait), ("RECSYS_LOCUST_WEIGHTS", args.weights)) if v}
            common = dict(prefix=args.out, locustfile=args.locustfile, workers=args.workers, env=env)
            if args.command == "run":
                result = run(args.host, users=args.users, spawn_rate=args.spawn_rate, run_time=args.run_time, **common)
            else:
                result = run_steps(args.host, step_users=args.step_users, max_users=args.max_users,
                                   step_seconds=args.step_seconds, **common)  # fmt: skip
            prefix = result.prefix
        outcome = verdict(prefix, slo)
        charts = plot_run(prefix, slo=slo)
        print(outcome)
        print(f"charts: {charts}")
        summary = {"verdict": outcome.to_dict(), "charts": str(charts)}
        passed = outcome.passed
        if Path(f"{prefix}_steps.csv").is_file():  # a step run goes past the SLO on purpose: judge the knee
            knee = find_knee(read_steps(prefix), slo)
            print(knee)
            print(f"knee chart: {plot_knee(prefix, slo)}")
            summary["knee"] = dataclasses.asdict(knee)
            passed = knee.users is not None
        Path(f"{prefix}_verdict.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    except (ValueError, FileNotFoundError, LoadTestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
