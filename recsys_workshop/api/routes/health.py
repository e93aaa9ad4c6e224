"""Probes and metrics: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and ``GET /metrics``
(Prometheus).

The readiness contract. The API answers from its fallback when the model server is down, so a model server
that is down must not take the API out of service: if ``/readyz`` failed with it, every API pod would leave
its Kubernetes Service at once (same model server behind all of them) and users would get connection errors
instead of fallback answers. Hence two forms:

- ``GET /readyz``, the Kubernetes readiness probe (``cluster-setup/manifests/base/api.yaml``): 503
  ``{"error": ..., "ready": false}`` while the API loads its data, then 200 whatever the model server does,
  with its state in the body: ``{"ready": true, "model_server": "ready", "model_url": ...}``, or
  ``"model_server": "not_ready"`` / ``"unreachable"`` plus a ``"detail"`` (degraded: the API answers from
  its fallback).
- ``GET /readyz?strict=1``: 200 only when the model server is ready too, else 503 with
  ``{"ready": false, "model_server": "not_ready" | "unreachable", "model_url": ..., "detail": ...}``. For
  scripts, smoke tests and the local stack that need the whole path to the model.

The model server's state comes from its readiness path ``GET <model_url>/v2/models/<name>/ready`` (the
model server pod's own probe), through the API's pooled client with a :data:`MODEL_CHECK_TIMEOUT` timeout
(well inside a probe's default 1 s): 200 is ``ready``, another status ``not_ready`` (no active version),
no answer (refused, reset, timed out: down or hung) ``unreachable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Query
from fastapi.responses import Response

from recsys_workshop.api.responses import error_response, json_response

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service

MODEL_CHECK_TIMEOUT = 0.5  # seconds the readiness check waits for the model server


def register(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz", summary="Readiness: the API's data is loaded; the model server's state in the body")
    async def readyz(
        strict: Annotated[bool, Query(description="also answer 503 unless the model server is ready")] = False,
    ):
        """200 once the API has loaded its data, whatever the model server's state, which the body reports
        (``"model_server": "ready" | "not_ready" | "unreachable"``): the Kubernetes readiness probe, so that a
        model server outage leaves the API pods in service, answering from their fallback. With
        ``?strict=1``: 503 (``"ready": false``) unless the model server is ready too. 503 while loading."""
        if not service.ready:
            return error_response(503, "the API is still loading its data", ready=False)
        state, detail = await service.model.state(MODEL_CHECK_TIMEOUT)
        ready = state == "ready" or not strict
        body = {"ready": ready, "model_server": state, "model_url": service.settings.model_url}
        if detail is not None:
            body["detail"] = detail
        return json_response(body, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
