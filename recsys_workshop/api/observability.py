"""The API's structured logs and Prometheus metrics: JSON log lines on stderr, one metrics registry per
app, and the ASGI middleware that gives every request an id, a count, a latency and a log line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service

LOG = logging.getLogger("recsys_workshop.api")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    _RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in fields.keys() - self._RESERVED:
            entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. a lone surrogate echoed from a request: the slower, always-safe encoder
            return json.dumps(entry, default=str)


def configure_logging(level: str | None = None) -> None:
    """JSON lines on stderr for the API's logger (once)."""
    if any(isinstance(h.formatter, JsonFormatter) for h in LOG.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    LOG.addHandler(handler)
    LOG.setLevel(level or os.environ.get("RECSYS_LOG_LEVEL", "INFO").upper())
    LOG.propagate = False


class Metrics:
    """The Prometheus metrics of one app, in their own registry (several apps can live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recsys_api_requests", "HTTP requests by route and status", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recsys_api_request_seconds", "HTTP request latency by route", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.recommendations = Counter(
            "recsys_api_recommendations", "Recommendation responses by source", ["source"], registry=self.registry
        )
        self.fallbacks = Counter(
            "recsys_api_fallback", "Responses answered from the fallback, by reason", ["reason"],
            registry=self.registry,
        )
        self.arms = Counter("recsys_api_arm", "Responses served by each bandit arm", ["arm"], registry=self.registry)
        self.feedback = Counter(
            "recsys_api_feedback", "Feedback events by action and arm", ["action", "arm"], registry=self.registry
        )
        self.model_latency = Histogram(
            "recsys_api_model_call_seconds", "Latency of the calls to the model server", registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0),
        )


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id, request count and latency by route template, one JSON log line."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or ())
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics = self.service.metrics
            metrics.requests.labels(scope["method"], template, str(status[0])).inc()
            metrics.latency.labels(template).observe(seconds)
            if template != "/metrics":
                LOG.info(
                    "request",
                    extra={
                        "request_id": request_id, "method": scope["method"], "path": scope["path"],
                        "status": status[0], "ms": round(seconds * 1000, 2),
                    },
                )
