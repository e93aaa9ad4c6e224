"""Probes and metrics: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and ``GET /metrics``
(Prometheus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import Response

from recsys_workshop.api.responses import json_response, not_ready

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz", summary="Readiness: data loaded (and whether the model server answers)")
    async def readyz():
        if (busy := not_ready(service)) is not None:
            return busy
        model_ready = await service.model.ready()
        return json_response({"ready": True, "model_server": "ready" if model_ready else "unavailable",
                              "model_url": service.settings.model_url})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
