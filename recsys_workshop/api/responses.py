"""How the API answers: JSON bodies (``orjson``, or the safe encoder for echoes of client input), errors as
``{"error": message}``, and the app's exception handlers that give every error that shape."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys_workshop.api.observability import LOG
from recsys_workshop.store import StoreUnavailable

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def safe_json_response(payload: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """For echoes of client input: ASCII-escaped (lone surrogates survive), NaN and infinity refused."""
    body = json.dumps(payload, ensure_ascii=True, allow_nan=False, default=str).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, **extra) -> Response:
    return json_response({"error": message, **extra}, status)


def rate_limited(retry_after: int, what: str) -> Response:
    """429 with ``Retry-After``: this client sent more ``what`` writes than its limit allows."""
    response = error_response(429, f"too many {what} requests from this client: retry in {retry_after} s")
    response.headers["Retry-After"] = str(retry_after)
    return response


def over_write_limit(service: Service, request: Request, scope: str) -> Response | None:
    """The 429 to answer when this client (the connection's peer address) is over its ``scope`` write
    limit (:mod:`recsys_workshop.api.ratelimit`), else None."""
    client = request.client.host if request.client else "unknown"
    retry = service.limiter.check(scope, client)
    return None if retry is None else rate_limited(retry, {"users": "new-user"}.get(scope, scope))


def not_ready(service: Service) -> Response | None:
    """The 503 to answer while ``service`` still loads its data, else None."""
    return None if service.ready else error_response(503, "the API is still loading its data")


def register_error_handlers(app: FastAPI) -> None:
    """Invalid requests (422), HTTP errors (FastAPI's, and the router's 404/405), a database that is down
    (503, nothing stored) and unexpected exceptions (500, traceback logged) all answer ``{"error": ...}``."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # only location, message and type: the offending input may not even be JSON (NaN, lone surrogates)
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "invalid")),
             "type": str(err.get("type", ""))}
            for err in exc.errors()[:20]
        ]
        reasons = [f"{'.'.join(err['loc'])}: {err['msg']}" for err in errors[:5]]
        payload = {"error": "invalid request: " + "; ".join(reasons), "detail": errors}
        return safe_json_response(payload, 422)

    @app.exception_handler(StarletteHTTPException)  # also FastAPI's HTTPException and the router's 404/405
    async def http_error(request: Request, exc: StarletteHTTPException):
        return safe_json_response({"error": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable):  # not the client's fault, not a bug
        LOG.warning("database unavailable", extra={"path": request.url.path, "reason": exc.reason})
        return safe_json_response({"error": f"the database is unavailable, nothing was stored: {exc.reason}"},
                                  503, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: say so briefly, log the traceback
        LOG.exception("unhandled error", extra={"path": request.url.path})
        return safe_json_response({"error": f"internal error ({type(exc).__name__})"}, 500)
