"""``GET /recommendations/{user_id}``: a user's top-k films after the business logic (seen filter,
diversity, bandit arm, cold-start fallback: :meth:`recsys_workshop.api.app.Service.recommend`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam

from recsys_workshop.api.responses import error_response, json_response, not_ready
from recsys_workshop.api.schemas import MAX_K, MAX_USER_ID

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.get(
        "/recommendations/{user_id}",
        summary="Top-k films for a user, after the business logic",
        responses={404: {"description": "unknown user"}, 422: {"description": "invalid user id or k"}},
    )
    async def recommendations(
        request: Request,
        user_id: Annotated[int, PathParam(ge=1, le=MAX_USER_ID)],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="number of films")] = 10,
        mmr_lambda: Annotated[
            float | None, Query(ge=0.0, le=1.0, description="diversity trade-off: 1 = the model's order")
        ] = None,
    ):
        if (busy := not_ready(service)) is not None:
            return busy
        if not await service.knows(user_id):
            return error_response(
                404, f"unknown user {user_id}: use a MovieLens user id or create one with POST /users"
            )
        lam = service.settings.mmr_lambda if mmr_lambda is None else mmr_lambda
        payload = await service.recommend(user_id, k, lam)
        payload["request_id"] = request.scope["state"]["request_id"]
        return json_response(payload)
