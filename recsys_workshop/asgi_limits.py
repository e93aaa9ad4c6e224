"""ASGI middleware bounding what a client may make a server hold: the size of a request body, and how long
the server waits for the rest of a body that a client stopped sending.

    app = BodyLimits(app, max_bytes=8 * 2**20, read_timeout=10.0)

- a body larger than ``max_bytes`` gets ``413`` (from ``Content-Length`` before anything is read, or as
  soon as the bytes received pass the limit, for a chunked body);
- a client that sends nothing for ``read_timeout`` seconds while its body is incomplete gets ``408`` and
  its connection is closed: a slow or stalled client no longer holds a connection and a task forever.

``limit_for(method, path)`` (optional) gives a route its own limit (an int), or None for ``max_bytes``: the
model server accepts large bodies on its version upload only, and keeps every other route small.

Both answers are ``{"error": reason}`` with ``Connection: close``. Wrap the whole application (outermost),
so that the limits hold before any framework code runs. Standard library only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from recsys_workshop.security import send_json

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_READ_TIMEOUT", "BodyLimitExceeded", "BodyLimits"]

DEFAULT_MAX_BYTES = 8 * 2**20
DEFAULT_READ_TIMEOUT = 10.0


class BodyLimitExceeded(Exception):
    """Raised inside the application by ``receive`` when a limit is hit (``status`` 408 or 413);
    :class:`BodyLimits` answers for it, whatever the application did with the exception."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class BodyLimits:
    """Limit the request body to ``max_bytes`` (413) and the wait for each part of it to ``read_timeout``
    seconds (408); see the module docstring."""

    def __init__(
        self,
        app: Callable,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        limit_for: Callable[[str, str], int | None] | None = None,
    ):
        if max_bytes < 1 or read_timeout <= 0:
            raise ValueError("max_bytes must be >= 1 and read_timeout > 0")
        self.app, self.max_bytes, self.read_timeout = app, int(max_bytes), float(read_timeout)
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if not declared and not chunked:  # no body (RFC 9112 6.3): nothing to bound, no wrappers
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self.limit_for is not None:
            limit = self.limit_for(scope.get("method", "GET"), scope.get("path", "")) or self.max_bytes
        if declared is not None and declared > limit:
            await _refuse(send, 413, _too_large(limit))
            return
        state = {"received": 0, "done": False, "started": False, "error": None}

        async def limited_receive():
            if state["done"]:  # body complete: later calls wait for a disconnect, without a deadline
                return await receive()
            try:  # asyncio.timeout: a timer handle, not the extra task per call that wait_for costs
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError:
                reason = f"the request body did not arrive within {self.read_timeout:g} s"
                state["error"] = BodyLimitExceeded(408, reason)
                raise state["error"] from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    state["error"] = BodyLimitExceeded(413, _too_large(limit))
                    raise state["error"]
                state["done"] = not message.get("more_body", False)
            else:
                state["done"] = True
            return message

        async def tracking_send(message):
            if state["error"] is not None:
                return  # the application's own answer to our exception (often a 500): ours replaces it
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if state["error"] is None:
                raise  # not ours
        error = state["error"]
        if error is not None and not state["started"]:
            await _refuse(send, error.status, error.reason)


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


def _body_headers(scope) -> tuple[int | None, bool]:
    """``(Content-Length or None, whether Transfer-Encoding is set)``; an unparsable length counts as
    unknown (the server rejects it before the application runs)."""
    declared, chunked = None, False
    for key, value in scope.get("headers", ()):
        key = key.lower()
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                chunked = True  # unknown length: bound the reads as for a chunked body
        elif key == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def _refuse(send, status: int, reason: str) -> None:
    await send_json(send, status, {"error": reason}, {"connection": "close"})
