"""Running the predictor: KServe's single-process ``ModelServer`` with REST and gRPC bound to one host, the
admin guard and the body limits in front of REST, the admin interceptor and quiet error statuses on gRPC.

Shutdown (SIGTERM, SIGINT): uvicorn stops accepting, lets in-flight requests finish (at most
``grace_period`` seconds) and returns; KServe's handler then stops gRPC with the same grace, and
:func:`serve` returns, so the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

from recsys_workshop.asgi_limits import DEFAULT_MAX_BYTES, DEFAULT_READ_TIMEOUT, BodyLimits
from recsys_workshop.security import AdminGuard, grpc_admin_interceptor
from recsys_workshop.serving.model import RequestError, VersionError
from recsys_workshop.serving.predictor import build_predictor
from recsys_workshop.serving.routes import (
    UPLOAD_FACTOR,
    VersionQueryToHeader,
    add_routes,
    install_error_handlers,
    is_admin_grpc_method,
    is_admin_route,
    is_upload_route,
    short_reason,
    single_model_repository,
)
from recsys_workshop.serving.versions import VersionManager
from recsys_workshop.serving.watch import DEFAULT_POLL_INTERVAL

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_MAX_UPLOAD_BYTES", "serve"]

DEFAULT_GRACE_PERIOD = 20  # seconds; below Kubernetes' default terminationGracePeriodSeconds (30)
DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20  # the version upload's body (a .tar.gz of a SavedModel)
logger = logging.getLogger("recsys_workshop.serving")


def serve(
    model_dir: str | os.PathLike[str],
    *,
    admin_token: str,
    model_name: str = "recsys",
    host: str = "127.0.0.1",
    http_port: int = 8080,
    grpc_port: int = 8081,
    enable_grpc: bool = True,
    access_log: bool = True,
    version: int | None = None,
    max_body_bytes: int = DEFAULT_MAX_BYTES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    body_timeout: float = DEFAULT_READ_TIMEOUT,
    grace_period: int = DEFAULT_GRACE_PERIOD,
    wait_for_model: bool = False,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    candidates: int | None = None,
    ef_search: int | None = None,
) -> None:
    """Load the versions under ``model_dir`` and serve them (blocks until SIGTERM/SIGINT); ``version``:
    the version active at start (default the latest that loads). Admin routes need ``admin_token``.
    Request bodies are bounded by ``max_body_bytes``, except the version upload's, by ``max_upload_bytes``
    (it may unpack to ``UPLOAD_FACTOR`` times that).

    ``wait_for_model``: serve at once, not ready (``/v2/models/<name>/ready`` 503, ``/v2/health/live`` 200),
    and load in the background the first complete version that appears under ``model_dir`` (a look every
    ``poll_interval`` seconds, see :mod:`.watch`), instead of exiting when none loads. ``candidates``,
    ``ef_search``: override the versions' own retrieval settings (:meth:`.model.LoadedVersion.tune`)."""
    from kserve.model_server import app  # KServe's FastAPI app (importing KServe reads sys.argv: see cli.main)

    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # KServe's V1 routes, per request
    _limit_tensorflow_threads()
    manager = VersionManager(model_dir, candidates=candidates, ef_search=ef_search)
    predictor = build_predictor(model_name, manager, version)
    if wait_for_model:
        predictor.wait_for_first_version(poll_interval)
    else:
        predictor.load()  # raises (and the process exits) if no version loads
    add_routes(app, model_name, manager, predictor, max_unpacked=UPLOAD_FACTOR * max_upload_bytes)
    app.add_middleware(VersionQueryToHeader)
    limits = {"max_bytes": max_body_bytes, "read_timeout": body_timeout, "max_upload": max_upload_bytes}
    server = _loopback_model_server(
        host, predictor, admin_token, limits,
        access_log=access_log, http_port=http_port, grpc_port=grpc_port, enable_grpc=enable_grpc,
        grace_period=grace_period,
    )  # fmt: skip
    server.start([predictor])


def _loopback_rest_server_class(host: str, admin_token: str, limits: dict, access_log: bool):
    """KServe's ``RESTServer`` bound to ``host`` (KServe hard-codes 0.0.0.0), with our error handlers and
    the ASGI stack ``BodyLimits(AdminGuard(app))`` outermost."""
    from kserve.protocol.rest.server import RESTServer

    class LoopbackRESTServer(RESTServer):
        def create_application(self):
            from kserve.model_server import app

            super().create_application()  # KServe's middleware, endpoints and handlers ...
            install_error_handlers(app)  # ... whose handlers ours replace
            guarded = AdminGuard(app, admin_token, is_admin_route)
            upload = limits.get("max_upload", limits["max_bytes"])

            def limit_for(method: str, path: str) -> int | None:
                return upload if is_upload_route(method, path) else None  # only the upload may be large

            self.config.app = BodyLimits(guarded, max_bytes=limits["max_bytes"], read_timeout=limits["read_timeout"],
                                         limit_for=limit_for)  # fmt: skip
            self.config.host = host
            if not access_log:
                _silence_access_log()

    return LoopbackRESTServer


def _client_error_interceptor():
    """KServe's exception interceptor, without a traceback in the log for a client's mistake."""
    from grpc import StatusCode
    from kserve.errors import (
        InvalidInput,
        ModelNotFound,
        ModelNotReady,
        ServerNotLive,
        ServerNotReady,
        UnsupportedProtocol,
    )
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor

    statuses = [
        ((InvalidInput, RequestError, UnsupportedProtocol), StatusCode.INVALID_ARGUMENT),
        ((ModelNotFound,), StatusCode.NOT_FOUND),
        ((ModelNotReady, ServerNotReady, ServerNotLive), StatusCode.UNAVAILABLE),
        ((NotImplementedError,), StatusCode.UNIMPLEMENTED),
    ]

    class ClientErrorInterceptor(ExceptionToStatusInterceptor):
        async def handle_exception(self, ex, request_or_iterator, context, method_name):
            if isinstance(ex, VersionError):
                code = StatusCode.NOT_FOUND if ex.status == 404 else StatusCode.FAILED_PRECONDITION
                await context.abort(code, short_reason(ex))
            for types, code in statuses:
                if isinstance(ex, types):
                    logger.debug("gRPC client error %s on %s: %s", code.name, method_name, ex)
                    await context.abort(code, short_reason(ex))
            await super().handle_exception(ex, request_or_iterator, context, method_name)

    return ClientErrorInterceptor()


def _loopback_grpc_server_class(host: str, admin_token: str, max_receive: int, access_log: bool):
    """KServe's ``GRPCServer`` bound to ``host`` (KServe's binds ``[::]``), with the admin interceptor first
    and messages larger than ``max_receive`` bytes refused (RESOURCE_EXHAUSTED)."""
    from concurrent import futures

    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    class LoopbackGRPCServer(GRPCServer):
        async def start(self, max_workers):
            interceptors = [grpc_admin_interceptor(admin_token, is_admin_grpc_method)]
            interceptors += [LoggingInterceptor()] if access_log else []
            interceptors.append(_client_error_interceptor())
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=interceptors,
                options=[
                    ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                    ("grpc.max_receive_message_length", max_receive),
                ],
            )
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server
            )
            address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
            self._server.add_insecure_port(address)
            await self._server.start()
            await self._server.wait_for_termination()

    return LoopbackGRPCServer


def _loopback_model_server(host: str, predictor, admin_token: str, limits: dict, *, access_log: bool,
                           http_port: int, grpc_port: int, enable_grpc: bool, grace_period: int):  # fmt: skip
    """KServe's single-process ``ModelServer`` with REST and gRPC bound to ``host``; its ``start(models)``
    blocks until a signal stops it."""
    import asyncio

    import kserve

    rest_class = _loopback_rest_server_class(host, admin_token, limits, access_log)
    grpc_class = _loopback_grpc_server_class(host, admin_token, limits["max_bytes"], access_log)
    repository, extension = single_model_repository(predictor)

    class LoopbackModelServer(kserve.ModelServer):
        def start(self, models) -> None:
            self.model_repository_extension = extension  # the dataplane already uses `repository`
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = rest_class(
                "kserve.model_server:app",
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self.servers.append(self._rest_server.start())
            if self.enable_grpc:
                from kserve.model_server import args

                self._grpc_server = grpc_class(
                    self.grpc_port, self.dataplane, extension, kwargs=vars(args), grace_period=self.grace_period
                )
                self.servers.append(self._grpc_server.start(self.max_threads))
            # KServe's handlers for SIGINT/SIGTERM/SIGQUIT call `stop` (gRPC); uvicorn's own drain REST first
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._serve())

    return LoopbackModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        enable_grpc=enable_grpc,
        enable_latency_logging=False,
        grace_period=grace_period,
        registered_models=repository,
    )


def _silence_access_log() -> None:
    """No log line per request: neither uvicorn's access log nor KServe's timing trace."""
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)


def _limit_tensorflow_threads() -> None:
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
