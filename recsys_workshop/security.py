"""The admin credential: one bearer token that every state-changing route requires (REST and gRPC).

Where it comes from, in this order:

- ``$RECSYS_ADMIN_TOKEN``: the token itself (a cluster fills it from a Kubernetes Secret);
- ``$RECSYS_ADMIN_TOKEN_FILE``: a file holding it (e.g. a Secret mounted as a volume);
- local mode only (:func:`local_admin_token`): ``artifacts/secrets/admin-token``, generated on first use
  (mode 0600 in a 0700 folder), so that a learner's model server and API share one token without setup.

A client sends it as ``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata). Missing or
malformed: 401 (gRPC ``UNAUTHENTICATED``); wrong: 403 (``PERMISSION_DENIED``). The comparison is constant
time. :class:`AdminGuard` (ASGI) and :func:`grpc_admin_interceptor` (grpc.aio) apply it to the routes or
methods a predicate names, so the model server and the API share them. Never log the token itself.

Standard library only (gRPC is imported inside :func:`grpc_admin_interceptor`).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ADMIN_TOKEN_ENV",
    "ADMIN_TOKEN_FILE_ENV",
    "MIN_TOKEN_LENGTH",
    "AdminGuard",
    "AdminTokenError",
    "admin_token",
    "bearer_headers",
    "check_bearer",
    "grpc_admin_interceptor",
    "local_admin_token",
    "local_token_path",
]

ADMIN_TOKEN_ENV = "RECSYS_ADMIN_TOKEN"
ADMIN_TOKEN_FILE_ENV = "RECSYS_ADMIN_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16


class AdminTokenError(ValueError):
    """The configured admin token is unusable (unreadable or empty file, too short, bad characters)."""


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise AdminTokenError(f"the admin token from {source} is empty")
    if len(token) < MIN_TOKEN_LENGTH:
        raise AdminTokenError(
            f"the admin token from {source} is too short ({len(token)} characters; at least {MIN_TOKEN_LENGTH}, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if any(not ch.isprintable() or ch.isspace() or ord(ch) > 126 for ch in token):
        raise AdminTokenError(f"the admin token from {source} must be printable ASCII without spaces")
    return token


def admin_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured admin token: ``$RECSYS_ADMIN_TOKEN``, else the content of ``$RECSYS_ADMIN_TOKEN_FILE``,
    else None. Raises :class:`AdminTokenError` for a set but unusable value."""
    env = os.environ if environ is None else environ
    if ADMIN_TOKEN_ENV in env:
        return _checked(env[ADMIN_TOKEN_ENV], f"${ADMIN_TOKEN_ENV}")
    file_name = env.get(ADMIN_TOKEN_FILE_ENV)
    if file_name:
        path = Path(file_name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise AdminTokenError(f"${ADMIN_TOKEN_FILE_ENV} names {path}, which cannot be read: {reason}") from None
        return _checked(text, f"the file {path} (${ADMIN_TOKEN_FILE_ENV})")
    return None


def local_token_path() -> Path:
    """Where local mode keeps its admin token: ``artifacts/secrets/admin-token`` (git-ignored)."""
    from recsys_workshop import paths

    return paths.ARTIFACTS_DIR / "secrets" / "admin-token"


def local_admin_token(path: str | os.PathLike[str] | None = None) -> str:
    """Local mode: the token stored at ``path`` (default :func:`local_token_path`), generated on first use.

    A new token is written to a private temporary file (mode 0600, folder 0700) and linked into place, so
    two processes starting at once end up with the same token and nobody ever reads half a file."""
    path = Path(path) if path is not None else local_token_path()
    if not path.exists():
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700)
            os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)  # fails if another process was first: then its token is the one
            except FileExistsError:
                pass
        finally:
            temporary.unlink(missing_ok=True)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AdminTokenError(f"cannot read the local admin token {path}: {error.strerror}") from None
    return _checked(text, f"the file {path} (delete it to generate a new token)")


def bearer_headers(token: str) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``: the headers of an admin call."""
    return {"Authorization": f"Bearer {token}"}


def check_bearer(authorization: str | None, token: str) -> tuple[int, str] | None:
    """None when ``authorization`` is ``Bearer <token>``; else ``(401, reason)`` for a missing or malformed
    header, ``(403, reason)`` for a wrong token. Constant-time comparison (on bytes)."""
    if not authorization or not authorization.strip():
        return 401, "admin route: send the header 'Authorization: Bearer <admin token>'"
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return 401, "admin route: the Authorization header must be 'Bearer <admin token>'"
    given = credentials.encode("utf-8", errors="replace")
    if not hmac.compare_digest(given, token.encode("utf-8")):
        return 403, "admin route: wrong admin token"
    return None


# --------------------------------------------------------------------------------------------- ASGI


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_json(send: Callable, status: int, content: Any, headers: Mapping[str, str] | None = None) -> None:
    """Send a whole JSON response through an ASGI ``send`` (for middleware answering on its own)."""
    body = json.dumps(content).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class AdminGuard:
    """ASGI middleware: requests for which ``is_admin_route(method, path)`` is true need the admin token;
    without it they get 401 (with ``WWW-Authenticate: Bearer``) or 403 and ``{"error": reason}``, and never
    reach ``app``. Everything else passes through untouched."""

    def __init__(self, app: Callable, token: str, is_admin_route: Callable[[str, str], bool]):
        if not token:
            raise ValueError("AdminGuard needs a non-empty token")
        self.app, self.token, self.is_admin_route = app, token, is_admin_route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.is_admin_route(scope.get("method", "GET"), scope.get("path", "")):
            refused = check_bearer(_header(scope, b"authorization"), self.token)
            if refused is not None:
                status, reason = refused
                headers = {"www-authenticate": 'Bearer realm="admin"'} if status == 401 else {}
                await send_json(send, status, {"error": reason}, headers)
                return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------- gRPC


def grpc_admin_interceptor(token: str, is_admin_method: Callable[[str], bool]):
    """A ``grpc.aio.ServerInterceptor`` refusing the methods ``is_admin_method(full_method_name)`` names
    unless the ``authorization`` metadata is ``Bearer <token>``: ``UNAUTHENTICATED`` when missing or
    malformed, ``PERMISSION_DENIED`` when wrong. Other methods pass through."""
    import grpc
    from grpc import aio

    if not token:
        raise ValueError("the admin interceptor needs a non-empty token")
    codes = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}

    def refusal(code, reason: str):
        async def deny(_request, context):
            await context.abort(code, reason)

        return grpc.unary_unary_rpc_method_handler(deny)

    class AdminInterceptor(aio.ServerInterceptor):
        async def intercept_service(self, continuation, handler_call_details):
            if is_admin_method(handler_call_details.method):
                metadata = {key.lower(): value for key, value in handler_call_details.invocation_metadata or ()}
                value = metadata.get("authorization")
                if isinstance(value, bytes):
                    value = value.decode("latin-1")
                refused = check_bearer(value, token)
                if refused is not None:
                    return refusal(codes[refused[0]], refused[1])
            return await continuation(handler_call_details)

    return AdminInterceptor()


def local_secret(name: str) -> str:
    """Local mode: the secret ``artifacts/secrets/<name>`` (e.g. the API's ``signing-key``), generated on first
    use exactly like the admin token (:func:`local_admin_token`)."""
    return local_admin_token(local_token_path().with_name(name))
