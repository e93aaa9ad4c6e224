"""Clients of a running model server: :func:`local_server` (a server process on free loopback ports, for
the labs, tests and benchmarks) and :class:`GrpcClient` (Open Inference Protocol v2 over gRPC)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys_workshop import procs, security
from recsys_workshop.asgi_limits import DEFAULT_MAX_BYTES, DEFAULT_READ_TIMEOUT
from recsys_workshop.serving.parsing import DEFAULT_K, VERSION_HEADER
from recsys_workshop.serving.watch import DEFAULT_POLL_INTERVAL

__all__ = ["GrpcClient", "LocalServer", "local_server"]

LOCAL_GRACE_PERIOD = 5  # seconds a local server waits for in-flight requests when stopped


class LocalServer(str):
    """The base URL of a running local model server (a ``str``, so ``url + "/v1/models/recsys"`` works),
    with the details: ``url``, ``grpc_target``, ``http_port``, ``grpc_port``, ``model_name``, ``model_dir``,
    ``process``, ``log_path`` and ``admin_token`` (see :meth:`admin_headers`)."""

    url: str
    grpc_target: str
    http_port: int
    grpc_port: int
    model_name: str
    model_dir: Path
    process: subprocess.Popen
    log_path: Path
    admin_token: str

    def __new__(cls, url: str, **details):
        obj = super().__new__(cls, url)
        obj.url = url
        for key, value in details.items():
            setattr(obj, key, value)
        return obj

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.model_name}:predict"

    def admin_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <admin token>"}``: pass as ``headers=`` to ``:activate``, ``:rollback``
        and the repository routes."""
        return security.bearer_headers(self.admin_token)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _command(model_dir, model_name: str, http_port: int, grpc_port: int, options: dict[str, Any]) -> list[str]:
    command = [
        sys.executable, "-m", "recsys_workshop.serving", "--model-dir", str(model_dir), "--model-name", model_name,
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--host", "127.0.0.1",
        "--access-log" if options["access_log"] else "--no-access-log",
        "--max-body-bytes", str(options["max_body_bytes"]), "--body-timeout", f"{options['body_timeout']:g}",
        "--max-upload-bytes", str(options["max_upload_bytes"]),
        "--grace-period", str(options["grace_period"]),
    ]  # fmt: skip
    if not options["enable_grpc"]:
        command.append("--no-grpc")
    if options["version"] is not None:
        command += ["--version", str(options["version"])]
    if options["wait_for_model"]:
        command += ["--wait-for-model", "--poll-interval", f"{options['poll_interval']:g}"]
    for name in ("candidates", "ef_search"):
        if options.get(name) is not None:
            command += ["--" + name.replace("_", "-"), str(options[name])]
    return command


def server_env(token: str, threads: int = 1) -> dict[str, str]:
    """The environment a local model server process runs with: this one's, plus its admin token and
    ``threads`` BLAS/OpenMP threads (a supervisor restarting the server gives it the same)."""
    env = {
        **os.environ,
        security.ADMIN_TOKEN_ENV: token,
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop(security.ADMIN_TOKEN_FILE_ENV, None)
    return env


@contextlib.contextmanager
def local_server(
    model_dir: str | os.PathLike[str],
    *,
    model_name: str = "recsys",
    http_port: int | None = None,
    grpc_port: int | None = None,
    enable_grpc: bool = True,
    access_log: bool = False,
    timeout: float = 120.0,
    threads: int = 1,
    log_path: str | os.PathLike[str] | None = None,
    version: int | None = None,
    admin_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BYTES,
    max_upload_bytes: int | None = None,
    body_timeout: float = DEFAULT_READ_TIMEOUT,
    grace_period: int = LOCAL_GRACE_PERIOD,
    wait_for_model: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    candidates: int | None = None,
    ef_search: int | None = None,
) -> Iterator[LocalServer]:
    """Start ``python -m recsys_workshop.serving`` on free loopback ports, wait until the model is ready,
    yield its :class:`LocalServer` (the base URL, e.g. ``http://127.0.0.1:40123``), stop it on exit.

    ``threads``: numpy/BLAS threads of the server process (1 leaves the other cores to the clients);
    ``version``: the version active at start (default the latest that loads). ``log_path``: where the
    server's output goes (default a temporary file, removed on exit unless the server failed to start).
    ``admin_token``: the admin credential (default: the configured one, else the local token file, see
    :mod:`recsys_workshop.security`), given to the server in ``$RECSYS_ADMIN_TOKEN``. ``wait_for_model``:
    start on a folder without a version yet (``--wait-for-model``, a look every ``poll_interval`` seconds);
    the server is then yielded as soon as it is *live* (``/v2/health/live``), not yet ready.
    ``max_upload_bytes``: the version upload's body limit (default the server's, 512 MiB). ``candidates``,
    ``ef_search``: the server's ``--candidates`` and ``--ef-search`` (default: each version's own)."""
    from recsys_workshop.serving.server import DEFAULT_MAX_UPLOAD_BYTES

    token = admin_token or security.admin_token() or security.local_admin_token()
    free = procs.free_ports(2)
    http_port, grpc_port = http_port or free[0], grpc_port or free[1]
    temporary_log = log_path is None
    log_path = procs.log_file(log_path, "recsys-model-server-")
    options = {"access_log": access_log, "enable_grpc": enable_grpc, "version": version, "grace_period": grace_period,
               "max_body_bytes": max_body_bytes, "body_timeout": body_timeout, "wait_for_model": wait_for_model,
               "poll_interval": poll_interval, "candidates": candidates, "ef_search": ef_search,
               "max_upload_bytes": max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES}  # fmt: skip
    env = server_env(token, threads)
    url = f"http://127.0.0.1:{http_port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _command(model_dir, model_name, http_port, grpc_port, options),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    server = LocalServer(
        url, model_dir=Path(model_dir), grpc_target=f"127.0.0.1:{grpc_port}", http_port=http_port,
        grpc_port=grpc_port, model_name=model_name, process=process, log_path=log_path, admin_token=token,
    )  # fmt: skip
    try:
        try:
            ready_url = f"{url}/v2/health/live" if wait_for_model else f"{url}/v2/models/{model_name}/ready"
            procs.wait_ready(ready_url, timeout=timeout, process=process, log_path=log_path, name="the model server")
        except (procs.ProcessExited, TimeoutError) as error:
            temporary_log = False  # keep the log of a server that failed to start: the error names it
            raise RuntimeError(str(error)) from None
        yield server
    finally:
        procs.stop_process(process, timeout=grace_period + 10)
        if temporary_log:
            log_path.unlink(missing_ok=True)


class GrpcClient:
    """A small Open Inference Protocol v2 client for the model server's gRPC port; ``token``: the admin
    token, sent as ``authorization`` metadata (only the repository methods need it).

    >>> with GrpcClient("127.0.0.1:8081") as client:          # doctest: +SKIP
    ...     client.predict([196, 1], k=10)["item_ids"]
    """

    def __init__(self, target: str, model_name: str = "recsys", timeout: float = 10.0, token: str | None = None):
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

        self._pb = pb
        self.model_name, self.timeout, self.token = model_name, timeout, token
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def _metadata(self, version: int | None = None) -> list[tuple[str, str]] | None:
        metadata = [(VERSION_HEADER, str(version))] if version is not None else []
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        return metadata or None

    def ready(self) -> bool:
        request = self._pb.ModelReadyRequest(name=self.model_name)
        return self.stub.ModelReady(request, timeout=self.timeout).ready

    def load(self) -> bool:
        """``RepositoryModelLoad`` of this model (admin: needs ``token``)."""
        request = self._pb.RepositoryModelLoadRequest(model_name=self.model_name)
        return self.stub.RepositoryModelLoad(request, timeout=self.timeout, metadata=self._metadata()).isLoaded

    def unload(self) -> bool:
        """``RepositoryModelUnload`` of this model (admin: needs ``token``); the server stops serving it."""
        request = self._pb.RepositoryModelUnloadRequest(model_name=self.model_name)
        return self.stub.RepositoryModelUnload(request, timeout=self.timeout, metadata=self._metadata()).isUnloaded

    def predict(self, user_ids: Sequence[int], k: int = DEFAULT_K, version: int | None = None) -> dict[str, Any]:
        """``{"item_ids": (n, k) int64, "scores": (n, k) float32, "known": (n,) bool, "version": int}``."""
        pb = self._pb
        users = [int(u) for u in user_ids]
        request = pb.ModelInferRequest(
            model_name=self.model_name,
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name="user_id",
                    datatype="INT64",
                    shape=[len(users)],
                    contents=pb.InferTensorContents(int64_contents=users),
                ),
                pb.ModelInferRequest.InferInputTensor(
                    name="k", datatype="INT32", shape=[1], contents=pb.InferTensorContents(int_contents=[int(k)])
                ),
            ],
        )
        response = self.stub.ModelInfer(request, timeout=self.timeout, metadata=self._metadata(version))
        return _decode(response)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(response) -> dict[str, Any]:
    out: dict[str, Any] = {"version": int(response.model_version) if response.model_version else None}
    for tensor in response.outputs:
        shape = tuple(tensor.shape)
        if tensor.datatype == "INT64":
            values = np.asarray(tensor.contents.int64_contents, dtype=np.int64)
        elif tensor.datatype == "FP32":
            values = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        else:
            values = np.asarray(tensor.contents.bool_contents, dtype=bool)
        out[tensor.name] = values.reshape(shape)
    return out
