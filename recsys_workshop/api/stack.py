"""The local stack: the model server and the API as two processes on free loopback ports.

    from recsys_workshop.api import local_stack

    with local_stack("artifacts/models/recsys") as stack:
        requests.get(f"{stack.api_url}/recommendations/196?k=10").json()
        stack.stop_model_server()          # the API keeps answering, from its fallback

The same from a shell (Ctrl-C stops both)::

    python -m recsys_workshop.api --model-dir artifacts/models/recsys [--query 196] [--port 8000]

The API talks to the model server over HTTP only, as it does on a cluster. Both processes write their
logs to files (``stack.api_log``, ``stack.model_server.log_path``), never to a pipe nobody reads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["ApiProcess", "LocalStack", "local_stack", "main", "start_api"]


def _get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a loopback URL we built
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return None, b""


@dataclasses.dataclass
class ApiProcess:
    """A running API process: its URL, the ``subprocess.Popen`` and its log file."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def start_api(
    model_url: str,
    *,
    port: int | None = None,
    model_name: str = "recsys",
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[ApiProcess]:
    """Start ``uvicorn recsys_workshop.api:app`` on 127.0.0.1 (a free port unless ``port``), wait for
    ``/readyz``, yield an :class:`ApiProcess`, stop it on exit. ``env``: extra ``RECSYS_*`` settings."""
    from recsys_workshop.serving import free_port, log_file, stop_process

    port = port or free_port()
    log_path = log_file(log_path, "recsys-api-")
    command = [
        sys.executable, "-m", "uvicorn", "recsys_workshop.api:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    child_env = {
        **os.environ,
        "RECSYS_MODEL_URL": model_url,
        "RECSYS_MODEL_NAME": model_name,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
        )
    api = ApiProcess(url=url, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while _get(f"{url}/readyz")[0] != 200:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the API exited with code {process.returncode} before it was ready\n"
                    f"--- API log ({log_path}) ---\n{api.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API at {url} was not ready after {timeout:.0f} s\n{api.log()[-3000:]}")
            time.sleep(delay)  # polling interval; the loop checks the real state
            delay = min(delay * 1.5, 0.5)
        yield api
    finally:
        stop_process(process)


@dataclasses.dataclass
class LocalStack:
    """What :func:`local_stack` yields: both URLs and both processes."""

    api_url: str
    model_url: str
    api: ApiProcess
    model_server: object  # serving.LocalServer (a str subclass with .process, .log_path, ...)

    @property
    def ui_url(self) -> str:
        return self.api_url + "/"

    def stop_model_server(self) -> None:
        """Stop the model server now (the API then answers from its fallback)."""
        from recsys_workshop.serving import stop_process

        stop_process(self.model_server.process)

    def get(self, path: str, timeout: float = 10.0) -> dict:
        """``GET api_url + path`` and the decoded JSON (any status)."""
        status, body = _get(self.api_url + path, timeout)
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
) -> Iterator[LocalStack]:
    """Start the model server on ``model_dir`` (versions ``<model_dir>/<n>/``) and the API in front of it,
    both on free loopback ports; yield a :class:`LocalStack`; stop both (API first) on exit."""
    from recsys_workshop.serving import local_server

    with local_server(model_dir, model_name=model_name, enable_grpc=enable_grpc, timeout=timeout) as server:
        with start_api(server.url, port=api_port, model_name=model_name, env=env, timeout=timeout) as api:
            yield LocalStack(api_url=api.url, model_url=server.url, api=api, model_server=server)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys_workshop.api",
        description="Start the model server and the API locally (loopback only); Ctrl-C stops both.",
    )
    parser.add_argument("--model-dir", required=True, help="exported versions: <dir>/1/, <dir>/2/, ...")
    parser.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    parser.add_argument("--query", type=int, default=None, metavar="USER_ID",
                        help="print this user's recommendations, then stop (instead of serving until Ctrl-C)")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    if not Path(args.model_dir).is_dir():
        parser.error(f"--model-dir {args.model_dir}: no such folder (export a model first)")
    with local_stack(args.model_dir, api_port=args.port) as stack:
        print(f"model server: {stack.model_url}", f"API:          {stack.api_url}", f"UI:           {stack.ui_url}",
              sep="\n", flush=True)
        if args.query is not None:
            answer = stack.get(f"/recommendations/{args.query}?k={args.k}")
            print(json.dumps(answer, indent=2))
            return 0
        try:
            while stack.api.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0
