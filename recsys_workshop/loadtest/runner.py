"""Running Locust: bounded headless runs against a loopback address, local or distributed.

Locust always runs as its own process (its gevent monkey-patching breaks a process that has already
imported kserve or urllib3): this module never imports Locust. :func:`run` starts one headless run (one
master and ``workers`` worker processes when asked), :func:`run_steps` a step-load run with the shape of
:mod:`recsys_workshop.loadtest.stepload`, and :func:`locustfile_with_tasks` writes a locustfile whose
users run the workshop's tasks plus your own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from recsys_workshop.procs import free_port, stop_process, tail

# The Locust files live beside this module: Locust loads them by path (``locust -f``), never by import.
HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
STEPLOAD = HERE / "stepload.py"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_USERS = 2000
MAX_SECONDS = 3600
STARTUP_GRACE_SECONDS = 90  # importing Locust and loading MovieLens in each Locust process


class LoadTestError(RuntimeError):
    """Locust did not run (bad locustfile, crash, timeout); the message holds the end of its log."""


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


def _stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    stop_process(process, timeout=grace, sig=signal.SIGINT)  # Locust writes its CSV files on SIGINT


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
    code = _run_processes(master, workers_cmd, prefix, timeout, process_env)
    result = Run(prefix, code, master, time.monotonic() - started)
    if not result.file("stats").is_file() or code not in (0, 1):
        raise LoadTestError(f"Locust failed (exit {code}); log {result.log}:\n{tail(result.log)}")
    return result


def _run_processes(
    master: list[str], workers: Sequence[list[str]], prefix: Path, timeout: float, env: Mapping[str, str]
) -> int:
    """Start the master (logging to ``P.log``) and the workers (``P.workerK.log``), wait for the master
    (at most ``timeout`` seconds), stop them all; the master's exit code."""
    log = Path(f"{prefix}.log")
    procs: list[subprocess.Popen] = []
    with log.open("w") as out:
        try:
            procs.append(subprocess.Popen(master, stdout=out, stderr=subprocess.STDOUT, env=env))
            for k, cmd in enumerate(workers):
                wlog = open(f"{prefix}.worker{k}.log", "w")  # noqa: SIM115 (closed with the process)
                procs.append(subprocess.Popen(cmd, stdout=wlog, stderr=subprocess.STDOUT, env=env))
                wlog.close()
            try:
                return procs[0].wait(timeout)
            except subprocess.TimeoutExpired:
                _stop(procs[0])
                message = f"Locust ran over {timeout:.0f} s and was stopped; log {log}:\n{tail(log)}"
                raise LoadTestError(message) from None
        finally:
            for p in procs:
                _stop(p)


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
        "from recsys_workshop.loadtest import locustfile as base\n\n\n"
        + "\n\n".join(blocks)
        + f"\n\nclass LabUser(base.RecsysVisitor):\n    tasks = {{**{defaults}, {entries}}}\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    compile(text, str(path), "exec")
    return path
