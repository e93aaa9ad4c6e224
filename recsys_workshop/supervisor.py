"""Supervision of child processes: a child that exits is reaped at once (no zombie), logged, and started
again with the same command (so on the same ports) after an exponential back-off (:func:`backoff_delay`:
1, 2, 4 ... 30 s; back to 1 s once it has stayed ready for a minute). A child stopped on purpose
(:meth:`Supervisor.pause`) is left alone until :meth:`Supervisor.resume`.

Used by the local stack (:mod:`recsys_workshop.api.stack`) for the model server and the API; generic, with
no knowledge of what the children are (stdlib and :mod:`recsys_workshop.procs` only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from recsys_workshop import procs

__all__ = ["SupervisedProcess", "Supervisor", "backoff_delay"]

LOG = logging.getLogger("recsys_workshop.api.stack")  # the stack's logger: its users read this one

RESTART_BASE = 1.0  # seconds before restarting a child that exited (the first time in a row)
RESTART_CAP = 30.0  # the longest wait between two restarts
STABLE_AFTER = 60.0  # a child ready this long counts as healthy: its next restart waits RESTART_BASE again
POLL_INTERVAL = 0.2  # seconds between two looks of the supervisor at its children
READY_CHECK_TIMEOUT = 0.5  # seconds for one readiness check of a restarted child
STOP_TIMEOUT = 15.0  # seconds the children get to stop after SIGTERM before SIGKILL (model server grace + 10)

def backoff_delay(failures: int, base: float = RESTART_BASE, cap: float = RESTART_CAP) -> float:
    """Seconds to wait before restarting a child that has exited ``failures`` times in a row (1, 2, ...):
    ``base``, ``2 base``, ``4 base``, ... and never more than ``cap``; 0 when ``failures`` < 1."""
    if failures < 1:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 1000))


# --------------------------------------------------------------------------------------------
# The API process
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Supervision
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SupervisedProcess:
    """One child of the stack and how to start it again: the same ``command`` (ports included) and ``env``,
    output appended to ``log_path``. ``handle`` is the object the caller holds (the ``LocalServer`` or the
    :class:`ApiProcess`): a restart replaces its ``.process``, so ``stack.model_server.process`` is always
    the current one. ``ready_url`` answers 200 once a (re)started child is ready."""

    name: str
    handle: Any
    command: list[str]
    env: dict[str, str]
    ready_url: str
    log_path: Path
    paused: bool = False  # stopped on purpose: not restarted until resumed
    failures: int = 0  # exits in a row (reset once the child stayed ready STABLE_AFTER seconds)
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    ready_at: float | None = None  # None while (re)starting: an exit then is a crash at start-up
    restart_at: float | None = None  # set while the child is down and waits for its restart

    def __post_init__(self) -> None:
        if self.ready_at is None:  # handed over running and ready (local_stack waited for it)
            self.ready_at = self.started_at

    @property
    def process(self) -> subprocess.Popen:
        return self.handle.process


def _exit_code(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Keeps the stack's children running: :meth:`check` (called every ``interval`` seconds by the daemon
    thread of :meth:`start`) reaps a child that exited, logs it, and starts it again after
    :func:`backoff_delay` seconds. :meth:`pause` / :meth:`resume` stop and start one child on purpose;
    :meth:`close` stops the thread and then every child (SIGTERM, SIGKILL after ``stop_timeout``)."""

    def __init__(
        self,
        children: Iterable[SupervisedProcess],
        *,
        base: float = RESTART_BASE,
        cap: float = RESTART_CAP,
        stable_after: float = STABLE_AFTER,
        interval: float = POLL_INTERVAL,
        stop_timeout: float = STOP_TIMEOUT,
    ):
        self.children = {child.name: child for child in children}
        self.base, self.cap, self.stable_after, self.interval = base, cap, stable_after, interval
        self.stop_timeout = stop_timeout
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recsys-stack-supervisor", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check()

    def close(self) -> None:
        """Stop supervising (the thread ends within about a second), then stop every child for good. Safe to
        call again (what is stopped stays stopped)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            processes = [child.process for child in self.children.values()]
        procs.stop_processes(processes, timeout=self.stop_timeout)

    # ---- one look at the children
    def check(self, now: float | None = None) -> None:
        """Reap, log and schedule the restart of children that exited; start those whose back-off is over;
        notice restarted children becoming ready."""
        with self._lock:
            for child in self.children.values():
                if self._stopping.is_set():
                    return
                try:
                    self._check(child, time.monotonic() if now is None else now)
                except Exception:  # the supervisor must outlive any surprise
                    LOG.exception("the supervisor failed to check the %s", child.name)

    def _check(self, child: SupervisedProcess, now: float) -> None:
        if child.paused:
            return
        if child.restart_at is not None:
            if now >= child.restart_at:
                self._spawn(child, now)
            return
        code = child.process.poll()  # reaps an exited child: no zombie
        if code is None:
            if child.ready_at is None and procs.http_status(child.ready_url, READY_CHECK_TIMEOUT) == 200:
                child.ready_at = now
                LOG.info("%s (pid %d) is ready again, %.1f s after its restart",
                         child.name, child.process.pid, now - child.started_at)  # fmt: skip
            return
        starting = child.ready_at is None
        if not starting and now - child.ready_at >= self.stable_after:
            child.failures = 0
        child.failures += 1
        delay = backoff_delay(child.failures, self.base, self.cap)
        child.restart_at = now + delay
        if starting:
            what = "during start-up"
            if child.failures > 1:
                what += f" ({child.failures} exits in a row"
                what += f"; it keeps crashing: retrying every {self.cap:g} s)" if delay >= self.cap else ")"
        else:
            what = f"after {now - child.ready_at:.1f} s up"
        LOG.warning("%s (pid %d) exited with code %s %s; its log: %s; restarting it on the same port in %g s",
                    child.name, child.process.pid, _exit_code(code), what, child.log_path, delay)  # fmt: skip

    def _spawn(self, child: SupervisedProcess, now: float) -> None:
        child.restart_at, child.started_at, child.ready_at = None, now, None
        try:
            with open(child.log_path, "ab") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"\n--- {stamp}: restarted by the local stack's supervisor ---\n".encode())
                log.flush()
                process = subprocess.Popen(
                    child.command, stdout=log, stderr=subprocess.STDOUT, env=child.env, start_new_session=True
                )
        except OSError as err:
            child.failures += 1
            delay = backoff_delay(child.failures, self.base, self.cap)
            child.restart_at = now + delay
            LOG.warning("cannot start the %s (%s); its log: %s; trying again in %g s", child.name, err,
                        child.log_path, delay)  # fmt: skip
            return
        child.handle.process = process
        LOG.info("%s restarted: pid %d (log %s)", child.name, process.pid, child.log_path)

    # ---- on purpose
    def pause(self, name: str) -> None:
        """Stop child ``name`` and leave it stopped (no restart) until :meth:`resume`."""
        with self._lock:
            child = self.children[name]
            child.paused, child.restart_at = True, None
            process = child.process
        procs.stop_process(process, timeout=self.stop_timeout)

    def resume(self, name: str, timeout: float = 120.0) -> None:
        """Supervise child ``name`` again, start it now if it is not running, and wait until it is ready.
        Raises :class:`recsys_workshop.procs.ProcessExited` (or TimeoutError) if it fails to start (a
        running supervisor keeps retrying it)."""
        with self._lock:
            child = self.children[name]
            child.paused, child.failures = False, 0
            if child.restart_at is not None or child.process.poll() is not None:
                self._spawn(child, time.monotonic())
            process = child.process
        procs.wait_ready(child.ready_url, timeout=timeout, process=process, log_path=child.log_path,
                         name=f"the {child.name}")  # fmt: skip
