"""Feedback: ``POST /feedback`` (a click, like or dislike: the bandit's reward, the user's history) and
``GET /feedback`` (the most recent events)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Body, FastAPI, Query, Request

from recsys_workshop.api.responses import error_response, json_response, not_ready, safe_json_response
from recsys_workshop.api.schemas import MAX_USER_ID, FeedbackIn

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.post("/feedback", status_code=202, summary="Record a click, like or dislike")
    async def feedback(request: Request, event: Annotated[FeedbackIn, Body()]):
        if (busy := not_ready(service)) is not None:
            return busy
        if not service.is_known(event.user_id):
            return error_response(422, f"unknown user_id {event.user_id}")
        if event.item_id not in service.catalogue.row_of:
            return error_response(
                422, f"unknown item_id {event.item_id}: not in the {service.settings.dataset} catalogue"
            )
        record = {**event.model_dump(), "request_id": request.scope["state"]["request_id"],
                  "time": time.time()}
        service.record_feedback(record)
        return json_response({"accepted": True}, 202)

    @app.get("/feedback", summary="The most recent feedback events (newest last)")
    async def recent_feedback(
        user_id: Annotated[int | None, Query(ge=1, le=MAX_USER_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ):
        events = [e for e in service.feedback if user_id is None or e["user_id"] == user_id]
        return safe_json_response({"events": events[-limit:], "total": len(service.feedback)}, 200)
