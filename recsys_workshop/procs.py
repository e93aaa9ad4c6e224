"""Starting, watching and stopping the local helper processes (model server, API, Locust, training workers).

The one copy of the small helpers every local launcher needs: a free loopback port, a log file, polling a
URL until the process behind it is ready (failing early, with the end of its log, when it exits), and
stopping a process for good (a polite signal, then SIGKILL, and the child reaped so that no zombie stays).

Standard library only: importing this module starts nothing and imports neither numpy nor TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "ProcessExited",
    "free_port",
    "free_ports",
    "http_get",
    "http_status",
    "log_file",
    "stop_process",
    "stop_processes",
    "tail",
    "wait_ready",
]


class ProcessExited(RuntimeError):
    """The process exited before it was ready; the message ends with the tail of its log."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports nothing listens on right now (the OS picks them; all sockets are held
    until the last one is bound, so the ports differ)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    return free_ports(1, host)[0]


def log_file(path: str | os.PathLike[str] | None, prefix: str) -> Path:
    """``path``, or a new empty temporary ``<prefix>*.log`` file: where a local process's output goes."""
    if path is None:
        handle, path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(handle)
    return Path(path)


def tail(path: str | os.PathLike[str] | None, lines: int = 25, max_chars: int = 3000) -> str:
    """The last ``lines`` lines of a log file (at most ``max_chars`` characters), or ``"(no log)"``."""
    if path is None:
        return "(no log)"
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]


def http_get(url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> tuple[int | None, bytes]:
    """``GET url``: the status and the body (any status), or ``(None, b"")`` when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback URLs we built
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of ``GET url``, or None when nothing answers."""
    return http_get(url, timeout)[0]


def wait_ready(
    url: str,
    *,
    timeout: float = 120.0,
    process: subprocess.Popen | None = None,
    log_path: str | os.PathLike[str] | None = None,
    name: str = "the server",
) -> None:
    """Poll ``url`` until it answers 200. Raises :class:`ProcessExited` as soon as ``process`` exits, and
    :class:`TimeoutError` after ``timeout`` seconds; both messages end with the tail of ``log_path``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if http_status(url) == 200:
            return
        if process is not None and process.poll() is not None:
            message = f"{name} exited with code {process.returncode} before it was ready"
            raise ProcessExited(_with_log(message, log_path))
        if time.monotonic() > deadline:
            raise TimeoutError(_with_log(f"{name} at {url} was not ready after {timeout:g} s", log_path))
        time.sleep(delay)  # polling interval, not synchronisation: the loop checks the real state
        delay = min(delay * 1.5, 0.5)


def _with_log(message: str, log_path: str | os.PathLike[str] | None) -> str:
    if log_path is None:
        return message
    return f"{message}\n--- log ({log_path}) ---\n{tail(log_path, lines=40)}"


def stop_processes(processes: Iterable[subprocess.Popen], timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every process still running, wait up to ``timeout`` seconds in all, then SIGKILL the
    stragglers (with their process group when they lead one, i.e. were started with
    ``start_new_session=True``). Every process is reaped: none is left as a zombie."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(process)
            process.wait()


def stop_process(process: subprocess.Popen, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
    """Stop one process (see :func:`stop_processes`); its exit code."""
    stop_processes([process], timeout, sig)
    return process.returncode


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:  # it leads its own group: take its children along
            os.killpg(process.pid, signal.SIGKILL)
            return
    with contextlib.suppress(ProcessLookupError):
        process.kill()
