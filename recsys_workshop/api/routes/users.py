"""Users: ``POST /users`` (a new user from a few liked films: cold start) and ``GET /users/{user_id}``
(liked films, most recent first, and profile)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi import Path as PathParam

from recsys_workshop.api.responses import error_response, json_response, not_ready, over_write_limit
from recsys_workshop.api.schemas import MAX_USER_ID, IdempotencyKey, NewUserIn

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.post("/users", status_code=201, summary="Create a new user from a few liked films (cold start)",
              responses={429: {"description": "too many new users"}, 503: {"description": "database down"}})
    async def create_user(
        request: Request,
        profile: Annotated[NewUserIn, Body()],
        idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
    ):
        """The new user is stored before the answer; a retry with the same ``Idempotency-Key`` header gets
        the same user id (and creates nobody)."""
        if (busy := not_ready(service)) is not None:
            return busy
        if (limited := over_write_limit(service, request, "users")) is not None:
            return limited
        unknown = [i for i in profile.liked_item_ids if i not in service.catalogue.row_of]
        if unknown:
            return error_response(422, f"unknown item ids in liked_item_ids: {unknown[:10]}")
        user_id = await service.state.create_user(
            profile.liked_item_ids, profile.age, profile.gender, profile.occupation, idempotency_key
        )
        return json_response({"user_id": user_id}, 201)

    @app.get("/users/{user_id}", summary="A user's liked films (most recent first) and profile")
    async def user(
        user_id: Annotated[int, PathParam(ge=1, le=MAX_USER_ID)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ):
        if (busy := not_ready(service)) is not None:
            return busy
        if not await service.knows(user_id):
            return error_response(404, f"unknown user {user_id}")
        liked = service.liked(user_id)
        catalogue = service.catalogue
        return json_response({
            "user_id": user_id,
            "new": user_id in service.new_users,
            "n_seen": len(service.seen(user_id)),
            "liked": [
                {"item_id": i, "title": catalogue.titles[catalogue.row_of[i]],
                 "genres": catalogue.genres[catalogue.row_of[i]]}
                for i in liked[:limit]
            ],
        })
