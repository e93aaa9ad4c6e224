"""The local stack: the model server and the API as two supervised processes on free loopback ports.

    from recsys_workshop.api import local_stack

    with local_stack("artifacts/models/recsys") as stack:
        requests.get(f"{stack.api_url}/recommendations/196?k=10").json()
        stack.stop_model_server()          # the API keeps answering, from its fallback
        stack.start_model_server()         # back on the same port, the API uses it again

The same from a shell (SIGTERM or Ctrl-C stops both, and the command exits 0)::

    python -m recsys_workshop.api --model-dir artifacts/models/recsys [--query 196] [--port 8000]

The API talks to the model server over HTTP only, as it does on a cluster. Both processes write their
logs to files (``stack.api.log_path``, ``stack.model_server.log_path``), never to a pipe nobody reads. Both
get the same admin token (``$RECSYS_ADMIN_TOKEN``): ``stack.admin_token``, ``stack.admin_headers()``.

Supervision (what a Deployment's restart policy does on a cluster). A daemon thread (:class:`Supervisor`)
watches both children: one that exits, whatever the reason (a crash, ``kill -9``, the OOM killer), is
reaped at once (no zombie), logged in one line (exit code, where its log is) and started again with the
same command, environment and ports (its log file continues), after an exponential back-off
(:func:`backoff_delay`: 1 s, 2 s, 4 s, ... at most 30 s; a child that stayed up :data:`STABLE_AFTER`
seconds starts again from 1 s). A child that keeps crashing at start-up is retried every 30 s, and the log
says so. :meth:`LocalStack.stop_model_server` stops the model server *on purpose*: the supervisor leaves
it stopped until :meth:`LocalStack.start_model_server`. ``local_stack(..., supervise=False)`` turns the
restarts off. The log lines go to the ``recsys_workshop.api.stack`` logger (warnings reach a notebook's
output without any set-up; ``python -m recsys_workshop.api`` prints them all on stderr).

Readiness: ``GET /readyz`` of the API says whether the API is ready (200 once its data is loaded) and, in
its body, the model server's state (``"model_server": "ready"``, ``"not_ready"`` or ``"unreachable"``);
``GET /readyz?strict=1`` answers 503 unless the model server is ready too (see
:mod:`recsys_workshop.api.routes.health`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from recsys_workshop import procs, security
from recsys_workshop.supervisor import SupervisedProcess, Supervisor, backoff_delay

__all__ = [
    "ApiProcess",
    "LocalStack",
    "SupervisedProcess",
    "Supervisor",
    "backoff_delay",
    "local_stack",
    "main",
    "start_api",
]

LOG = logging.getLogger(__name__)

MODEL_SERVER, API = "model server", "API"


@dataclasses.dataclass
class ApiProcess:
    """A running API process: its URL, the ``subprocess.Popen`` (replaced when the supervisor restarts
    it), its log file and its admin token."""

    url: str
    process: subprocess.Popen
    log_path: Path
    admin_token: str = ""

    def admin_headers(self) -> dict[str, str]:
        return security.bearer_headers(self.admin_token)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _api_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "recsys_workshop.api:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip


def _api_env(model_url: str, model_name: str, env: dict[str, str] | None, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "RECSYS_MODEL_URL": model_url,
        "RECSYS_MODEL_NAME": model_name,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **(env or {}),
        security.ADMIN_TOKEN_ENV: token,
    }


@contextlib.contextmanager
def start_api(
    model_url: str,
    *,
    port: int | None = None,
    model_name: str = "recsys",
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log_path: str | os.PathLike[str] | None = None,
    admin_token: str | None = None,
) -> Iterator[ApiProcess]:
    """Start ``uvicorn recsys_workshop.api:app`` on 127.0.0.1 (a free port unless ``port``), wait for
    ``/readyz``, yield an :class:`ApiProcess`, stop it on exit (not supervised: see :func:`local_stack`).
    ``env``: extra ``RECSYS_*`` settings. ``admin_token``: given to the API as ``$RECSYS_ADMIN_TOKEN``
    (default: ``env``'s, the configured one, else the local token file, see :mod:`recsys_workshop.security`)."""
    token = admin_token or (env or {}).get(security.ADMIN_TOKEN_ENV) or _default_token()
    port = port or procs.free_port()
    log_path = procs.log_file(log_path, "recsys-api-")
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _api_command(port), stdout=log, stderr=subprocess.STDOUT, env=_api_env(model_url, model_name, env, token),
            start_new_session=True,
        )  # fmt: skip
    api = ApiProcess(url=url, process=process, log_path=log_path, admin_token=token)
    try:
        procs.wait_ready(f"{url}/readyz", timeout=timeout, process=process, log_path=log_path, name="the API")
        yield api
    finally:
        procs.stop_process(api.process)  # the current one: a supervisor may have replaced the first
        procs.stop_process(process)


def _default_token() -> str:
    return security.admin_token() or security.local_admin_token()




# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LocalStack:
    """What :func:`local_stack` yields: both URLs, both processes, the admin token they share and the
    :class:`Supervisor` that restarts them."""

    api_url: str
    model_url: str
    api: ApiProcess
    model_server: object  # serving.LocalServer (a str subclass with .process, .log_path, ...)
    admin_token: str = ""
    supervisor: Supervisor | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url + "/"

    def admin_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <admin token>"}``, accepted by the model server and the API."""
        return security.bearer_headers(self.admin_token)

    def stop_model_server(self) -> None:
        """Stop the model server now and keep it stopped (the API then answers from its fallback; the
        supervisor does not restart it) until :meth:`start_model_server`."""
        if self.supervisor is None:
            procs.stop_process(self.model_server.process)
        else:
            self.supervisor.pause(MODEL_SERVER)

    def start_model_server(self, timeout: float = 120.0) -> None:
        """Start the model server again (same port) after :meth:`stop_model_server`, and wait until it is
        ready; nothing to do if it runs. The supervisor watches it again."""
        if self.supervisor is None:
            raise RuntimeError("this LocalStack has no supervisor: start it with local_stack(...)")
        self.supervisor.resume(MODEL_SERVER, timeout=timeout)

    def get(self, path: str, timeout: float = 10.0) -> dict:
        """``GET api_url + path`` and the decoded JSON (any status)."""
        status, body = procs.http_get(self.api_url + path, timeout)
        if status is None:
            raise ConnectionError(f"no answer from {self.api_url}{path}")
        return json.loads(body)


@contextlib.contextmanager
def local_stack(
    model_dir: str | os.PathLike[str],
    *,
    api_port: int | None = None,
    model_name: str = "recsys",
    env: dict[str, str] | None = None,
    enable_grpc: bool = False,
    timeout: float = 120.0,
    admin_token: str | None = None,
    supervise: bool = True,
) -> Iterator[LocalStack]:
    """Start the model server on ``model_dir`` (versions ``<model_dir>/<n>/``) and the API in front of it,
    both on free loopback ports and with the same admin token (default: the configured one, else the local
    token file); yield a :class:`LocalStack`; stop both on exit. ``supervise``: restart a child that exits
    (see the module's docs), from a daemon thread that stops on exit."""
    from recsys_workshop.serving import local_server
    from recsys_workshop.serving.local import server_env

    token = admin_token or (env or {}).get(security.ADMIN_TOKEN_ENV) or _default_token()
    with local_server(
        model_dir, model_name=model_name, enable_grpc=enable_grpc, timeout=timeout, admin_token=token
    ) as server:
        with start_api(
            server.url, port=api_port, model_name=model_name, env=env, timeout=timeout, admin_token=token
        ) as api:
            supervisor = Supervisor([
                SupervisedProcess(API, api, list(api.process.args), _api_env(server.url, model_name, env, token),
                                  f"{api.url}/readyz", api.log_path),
                SupervisedProcess(MODEL_SERVER, server, list(server.process.args), server_env(token),
                                  f"{server.url}/v2/models/{model_name}/ready", server.log_path),
            ])  # fmt: skip
            if supervise:
                supervisor.start()
            try:
                yield LocalStack(api_url=api.url, model_url=server.url, api=api, model_server=server,
                                 admin_token=token, supervisor=supervisor)  # fmt: skip
            finally:
                try:
                    supervisor.close()
                except BaseException:  # interrupted (Ctrl-C, SIGTERM): finish stopping, then let it through
                    supervisor.close()
                    raise


# --------------------------------------------------------------------------------------------
# python -m recsys_workshop.api
# --------------------------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM or SIGINT reached the wrapper: unwind, stopping every child on the way."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


def _stop_on_signal(signum: int, frame) -> None:
    # once only: a second signal must not interrupt the clean-up. A Python-level no-op rather than SIG_IGN,
    # which a child started meanwhile would inherit (it would then ignore our SIGTERM).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    raise _Stop(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys_workshop.api",
        description="Start the model server and the API locally (loopback only), restart either if it exits; "
        "SIGTERM or Ctrl-C stops both.",
    )
    parser.add_argument("--model-dir", required=True, help="exported versions: <dir>/1/, <dir>/2/, ...")
    parser.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    parser.add_argument("--query", type=int, default=None, metavar="USER_ID",
                        help="print this user's recommendations, then stop (instead of serving until Ctrl-C)")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    if not Path(args.model_dir).is_dir():
        parser.error(f"--model-dir {args.model_dir}: no such folder (export a model first)")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    previous = {}  # signal handlers can only be installed from the main thread
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with local_stack(args.model_dir, api_port=args.port) as stack:
            server, api = stack.model_server, stack.api
            print(f"model server: {stack.model_url} (pid {server.process.pid}, log {server.log_path})",
                  f"API:          {stack.api_url} (pid {api.process.pid}, log {api.log_path})",
                  f"UI:           {stack.ui_url}",
                  sep="\n", flush=True)  # fmt: skip
            if args.query is not None:
                answer = stack.get(f"/recommendations/{args.query}?k={args.k}")
                print(json.dumps(answer, indent=2))
                return 0
            print("supervised: a process that exits is restarted on its port; SIGTERM or Ctrl-C stops both",
                  flush=True)  # fmt: skip
            while True:
                time.sleep(3600)  # the supervisor thread works; this thread waits for a signal
    except _Stop as stop:
        print(f"{stop.signal_name}: the API and the model server are stopped", flush=True)
        return 0
    finally:
        for sig, previous_handler in previous.items():
            signal.signal(sig, previous_handler)
        LOG.removeHandler(handler)
