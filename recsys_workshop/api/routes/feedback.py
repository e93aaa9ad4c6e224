"""Feedback: ``POST /feedback`` (a click, like or dislike on a recommendation the API made: the bandit's
reward, the user's history) and ``GET /feedback`` (the most recent events; an admin call).

A feedback event must carry the ``recommendation_id`` of the answer it is about: it is signed
(:mod:`recsys_workshop.api.recommendation_ids`), so the user, the item (one of those shown) and the arm
(the one that answered, never one the client names) are the server's own. The event is stored before the
answer: 201 when it is new, 200 with ``"duplicate": true`` for a retry (the ``Idempotency-Key`` header, or
by default the recommendation, item and action: clicking the same film of the same answer twice counts
once). A recommendation rewards its arm at most once.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Body, FastAPI, Header, Query, Request

from recsys_workshop.api.recommendation_ids import InvalidRecommendationId
from recsys_workshop.api.responses import error_response, json_response, not_ready, over_write_limit, safe_json_response
from recsys_workshop.api.schemas import MAX_USER_ID, FeedbackIn, IdempotencyKey

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.post("/feedback", status_code=201, summary="Record a click, like or dislike on a recommendation",
              responses={200: {"description": "a retry: already stored"}, 403: {"description": "forged id"},
                         429: {"description": "too many writes"}, 503: {"description": "database down"}})
    async def feedback(
        request: Request,
        event: Annotated[FeedbackIn, Body()],
        idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
    ):
        if (busy := not_ready(service)) is not None:
            return busy
        if (limited := over_write_limit(service, request, "feedback")) is not None:
            return limited
        try:
            rec = service.signer.check_feedback(event.recommendation_id, event.user_id, event.item_id)
        except InvalidRecommendationId as refused:
            return error_response(refused.status, str(refused))
        if event.arm is not None and event.arm != rec.arm:
            return error_response(400, f"arm {event.arm[:20]!r} is not the arm of this recommendation")
        if event.item_id not in service.catalogue.row_of:
            dataset = service.settings.dataset
            return error_response(422, f"unknown item_id {event.item_id}: not in the {dataset} catalogue")
        digest = hashlib.sha256(event.recommendation_id.encode()).hexdigest()
        key = idempotency_key or f"{digest[:40]}:{event.item_id}:{event.action}"
        record = {"user_id": event.user_id, "item_id": event.item_id, "action": event.action, "arm": rec.arm,
                  "recommendation_id": digest, "request_id": request.scope["state"]["request_id"],
                  "time": time.time()}
        result = await service.record_feedback(record, key, digest, rec.arm)
        body = {"accepted": True, "duplicate": result.duplicate, "rewarded": result.rewarded, "arm": rec.arm}
        return json_response(body, 200 if result.duplicate else 201)

    @app.get("/feedback", summary="The most recent feedback events, newest last (admin: every user's data)")
    async def recent_feedback(
        user_id: Annotated[int | None, Query(ge=1, le=MAX_USER_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ):
        events, total = await service.state.recent_feedback(user_id, limit)
        return safe_json_response({"events": events, "total": total}, 200)
