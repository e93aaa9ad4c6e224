"""What the model server adds to KServe's REST app: version management, a strict V2 ``infer`` route (with
``/versions/{v}/infer``), ``?version=N`` pinning, the repository extension made safe, the admin-route
predicates and error handlers that answer every client error with a short 4xx.

Admin (needs the bearer token, see :mod:`recsys_workshop.security`): ``POST .../versions/{v}:activate``,
``POST ...:rollback``, the version archives (``GET .../versions/{v|latest}/archive``: download; ``POST
.../versions``: upload a new version, see :mod:`.archive`) and every KServe repository route (REST
``/v2/repository/...``, gRPC ``Repository*``). ``GET .../versions`` stays public (read-only).
"""


import logging
import os
import re
import tempfile
from typing import Any

from recsys_workshop.serving.archive import ARCHIVE_MEDIA_TYPES, ArchiveError, pack_version, publish_archive
from recsys_workshop.serving.model import RequestError, VersionError, scrub_paths
from recsys_workshop.serving.parsing import VERSION_HEADER, clip, header_version, parse_v2_body, parse_version
from recsys_workshop.serving.versions import VersionManager

__all__ = [
    "VersionQueryToHeader",
    "add_routes",
    "is_upload_route",
    "install_error_handlers",
    "is_admin_grpc_method",
    "is_admin_route",
    "short_reason",
    "single_model_repository",
]

logger = logging.getLogger("recsys_workshop.serving")
MAX_REASON = 240  # characters of an error message sent back
_ADMIN_PATH = re.compile(r"^/v\d+/repository(/|$)|:(activate|rollback)$|^/v\d+/models/[^/]+/versions/[^/]+/archive$")
_VERSIONS_PATH = re.compile(r"^/v\d+/models/[^/]+/versions$")
UPLOAD_FACTOR = 4  # an upload may unpack to this many times --max-upload-bytes (SavedModels compress little)


def _normal(path: str) -> str:
    return re.sub(r"/{2,}", "/", path).rstrip("/") or "/"


def is_admin_route(method: str, path: str) -> bool:
    """True for the state-changing REST routes (any method: an unexpected method still needs the token), the
    archive downloads, and every method but GET/HEAD on ``.../versions`` (the upload; the list is public)."""
    if "repository" not in path and "activate" not in path and "rollback" not in path and "versions" not in path:
        return False  # the hot path (every predict call): four substring scans, no regex
    normal = _normal(path)
    if _ADMIN_PATH.search(normal):
        return True
    return method.upper() not in ("GET", "HEAD") and bool(_VERSIONS_PATH.search(normal))


def is_upload_route(method: str, path: str) -> bool:
    """True for the version upload (``POST /v1/models/{name}/versions``): the one route whose body may be
    large (``--max-upload-bytes``)."""
    return method.upper() == "POST" and "versions" in path and bool(_VERSIONS_PATH.search(_normal(path)))


def is_admin_grpc_method(method: str) -> bool:
    """True for KServe's repository methods (``/inference.GRPCInferenceService/RepositoryModelLoad``, ...)."""
    return method.rsplit("/", 1)[-1].startswith("Repository")


# --------------------------------------------------------------------------------------------- routes


def add_routes(app, name: str, manager: VersionManager, predictor, max_unpacked: int | None = None) -> None:
    """Versions list, activate and rollback, the version archives (``max_unpacked``: the most bytes an
    upload may unpack to), and the strict V2 infer routes, on KServe's FastAPI app (before the server
    starts, so that they take precedence over KServe's own routes for the same paths)."""
    import orjson
    from fastapi import Request
    from fastapi.responses import Response
    from kserve.errors import ModelNotFound, ModelNotReady
    from starlette.concurrency import run_in_threadpool

    def check(model_name: str) -> None:
        if model_name != name:
            raise ModelNotFound(clip(model_name, 40))

    def versions(model_name: str):
        check(model_name)
        return {"name": name, **manager.describe()}

    def activate(model_name: str, version: str):
        check(model_name)
        return {"name": name, **manager.activate(parse_version(version, "the version in the URL"))}

    def rollback(model_name: str):
        check(model_name)
        return {"name": name, **manager.rollback()}

    async def infer(model_name: str, request: Request, model_version: str | None = None):
        check(model_name)
        if not await predictor.healthy():  # unloaded, or still waiting for its first version
            raise ModelNotReady(name)
        if request.headers.get("inference-header-content-length") is not None:
            raise RequestError("binary tensor data is not supported here: send the tensors as JSON 'data'")
        infer_request = parse_v2_body(await request.body(), name)
        headers = dict(request.headers)
        pinned = header_version(headers)
        if model_version is not None:
            in_url = parse_version(model_version, "the version in the URL")
            if pinned is not None and pinned != in_url:
                raise RequestError(f"the URL pins version {in_url} but the {VERSION_HEADER} header asks for {pinned}")
            pinned = in_url
        if pinned is not None:
            await run_in_threadpool(manager.get, pinned)  # 404 (unknown) or 409 (broken) before any work
            headers[VERSION_HEADER] = str(pinned)
        response, response_headers = await predictor(infer_request, headers=headers)
        body, _ = response.to_rest()
        return Response(orjson.dumps(body), media_type="application/json", headers=response_headers)

    add_archive_routes(app, name, manager, max_unpacked)
    app.add_api_route("/v1/models/{model_name}/versions", versions, methods=["GET"])
    app.add_api_route("/v1/models/{model_name}/versions/{version}:activate", activate, methods=["POST"])
    app.add_api_route("/v1/models/{model_name}:rollback", rollback, methods=["POST"])
    app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"], response_model=None)
    app.add_api_route(
        "/v2/models/{model_name}/versions/{model_version}/infer", infer, methods=["POST"], response_model=None
    )


def add_archive_routes(app, name: str, manager: VersionManager, max_unpacked: int | None = None) -> None:
    """``GET /v1/models/{name}/versions/{v|latest}/archive`` (the folder as .tar.gz, built in a temporary
    file) and ``POST /v1/models/{name}/versions`` (a .tar.gz body published as the next version: 201
    ``{"name", "version"}``, see :mod:`.archive`). Both are admin routes (:func:`is_admin_route`)."""
    from fastapi import Request
    from fastapi.responses import FileResponse, JSONResponse
    from kserve.errors import ModelNotFound
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    from recsys_workshop.serving.archive import DEFAULT_MAX_UNPACKED
    from recsys_workshop.serving.watch import is_complete

    limit = max_unpacked or DEFAULT_MAX_UNPACKED

    def download(model_name: str, version: str):
        if model_name != name:
            raise ModelNotFound(clip(model_name, 40))
        if version == "latest":
            available = manager.available()
            if not available:
                raise VersionError("no version exists yet", 404)
            number = available[-1]
        else:
            number = parse_version(version, "the version in the URL")
        folder = manager.base / str(number)
        if not folder.is_dir():
            raise VersionError(f"version {number} does not exist (available: {manager.available()})", 404)
        if not is_complete(folder):
            raise VersionError(f"version {number} is incomplete: no archive of it", 409)
        handle = tempfile.NamedTemporaryFile(prefix="recsys-archive-", suffix=".tar.gz", delete=False)  # noqa: SIM115
        try:
            with handle:
                pack_version(folder, handle)
        except BaseException:
            os.unlink(handle.name)
            raise
        return FileResponse(handle.name, media_type="application/gzip", filename=f"{name}-{number}.tar.gz",
                            headers={"x-model-version": str(number)},
                            background=BackgroundTask(os.unlink, handle.name))  # fmt: skip

    async def upload(model_name: str, request: Request):
        if model_name != name:
            raise ModelNotFound(clip(model_name, 40))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ARCHIVE_MEDIA_TYPES:
            raise ArchiveError(415, f"send the version as a .tar.gz body with Content-Type: {ARCHIVE_MEDIA_TYPES[0]}")
        handle = tempfile.NamedTemporaryFile(prefix="recsys-upload-", suffix=".tar.gz", delete=False)  # noqa: SIM115
        try:
            size = 0
            with handle:
                async for chunk in request.stream():
                    handle.write(chunk)
                    size += len(chunk)
            if size == 0:
                raise ArchiveError(400, "the body is empty: send the version as a .tar.gz")
            loaded = await run_in_threadpool(publish_archive, handle.name, manager.base, max_unpacked=limit)
        finally:
            os.unlink(handle.name)
        manager.adopt(loaded)
        logger.info("version %d published by an upload", loaded.version)
        return JSONResponse(status_code=201, content={"name": name, "version": loaded.version})

    app.add_api_route("/v1/models/{model_name}/versions/{version}/archive", download, methods=["GET"],
                      response_model=None)  # fmt: skip
    app.add_api_route("/v1/models/{model_name}/versions", upload, methods=["POST"], response_model=None)


class VersionQueryToHeader:
    """ASGI middleware: ``?version=N`` on a request becomes the ``x-model-version: N`` header."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and b"version=" in scope.get("query_string", b""):
            from urllib.parse import parse_qs

            query = parse_qs(scope["query_string"].decode("latin-1"))
            if "version" in query:
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != VERSION_HEADER.encode()]
                headers.append((VERSION_HEADER.encode(), query["version"][-1].encode("latin-1", errors="replace")))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------- repository


def single_model_repository(predictor):
    """KServe's model repository and its V2 extension for our one predictor: ``load`` of an unloaded model
    registers it again (KServe's does nothing, so a pod that was unloaded could never serve again),
    ``load``/``unload`` of another name is 404, and both return what the gRPC servicer reads (KServe 0.21's
    return None, which made every gRPC repository call fail with INTERNAL)."""
    from kserve.errors import ModelNotFound
    from kserve.model_repository import ModelRepository
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    class SingleModelRepository(ModelRepository):
        def load(self, name: str) -> bool:
            if name != predictor.name:
                raise ModelNotFound(clip(name, 40))
            if self.get_model(name) is None:
                predictor.load()
                self.update(predictor)
            return True

    class SingleModelExtension(ModelRepositoryExtension):
        async def load(self, model_name: str) -> dict[str, Any]:
            if model_name != predictor.name:
                raise ModelNotFound(clip(model_name, 40))
            await super().load(model_name)
            return {"name": model_name, "load": True}

        async def unload(self, model_name: str) -> dict[str, Any]:
            if model_name != predictor.name:
                raise ModelNotFound(clip(model_name, 40))
            await super().unload(model_name)
            return {"name": model_name, "unload": True}

    repository = SingleModelRepository()
    return repository, SingleModelExtension(model_registry=repository)


# --------------------------------------------------------------------------------------------- errors


def short_reason(error: BaseException | str) -> str:
    """The text of an error as a client may see it: no absolute path, at most ``MAX_REASON`` characters."""
    text = error if isinstance(error, str) else (getattr(error, "reason", None) or str(error))
    return scrub_paths(str(text), MAX_REASON)


def install_error_handlers(app) -> None:
    """Replace KServe's handlers (which log a traceback for every bad request and answer 500 with the
    exception's text) by short ``{"error": reason}`` answers: 4xx for what the client got wrong, 503 for
    "not ready", and a bare 500 (traceback in the log) only for a fault of the server itself."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.errors import (
        InferenceError,
        InvalidInput,
        ModelNotFound,
        ModelNotReady,
        ServerNotLive,
        ServerNotReady,
        UnsupportedProtocol,
    )
    from starlette.exceptions import HTTPException

    from recsys_workshop.asgi_limits import BodyLimitExceeded

    def answer(status: int, reason: str, headers: dict[str, str] | None = None):
        if status < 500:
            logger.debug("client error %d: %s", status, reason)
        return JSONResponse(status_code=status, content={"error": reason}, headers=headers)

    def fixed(status: int):
        async def handler(_request, error):
            return answer(status, short_reason(error))

        return handler

    async def version_error(_request, error: VersionError):
        return answer(error.status, short_reason(error))

    async def http_error(_request, error: HTTPException):
        return answer(error.status_code, short_reason(str(error.detail)), getattr(error, "headers", None))

    async def validation_error(_request, error: RequestValidationError):
        first = (error.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return answer(400, short_reason(f"invalid request: {where}: {first.get('msg', 'malformed')}"))

    async def not_supported(_request, error: NotImplementedError):
        return answer(404, short_reason(f"not supported by this server: {error}"))

    async def body_limit(_request, error: BodyLimitExceeded):
        return answer(error.status, error.reason, {"connection": "close"})

    async def archive_error(_request, error: ArchiveError):
        return answer(error.status, short_reason(error.reason))

    async def server_fault(request, error: Exception):
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse(status_code=500, content={"error": "internal server error"})

    for error_type in (InvalidInput, RequestError, UnsupportedProtocol):
        app.add_exception_handler(error_type, fixed(400))
    app.add_exception_handler(ModelNotFound, fixed(404))
    for error_type in (ModelNotReady, ServerNotReady, ServerNotLive):
        app.add_exception_handler(error_type, fixed(503))
    app.add_exception_handler(VersionError, version_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(NotImplementedError, not_supported)
    app.add_exception_handler(BodyLimitExceeded, body_limit)
    app.add_exception_handler(ArchiveError, archive_error)
    app.add_exception_handler(InferenceError, server_fault)
    app.add_exception_handler(Exception, server_fault)
