"""The catalogue: ``GET /items?q=`` searches films by title, most popular first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Query

from recsys_workshop.api.responses import json_response, not_ready

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.get("/items", summary="Search films by title (most popular first)")
    async def items(
        q: Annotated[str, Query(max_length=100, description="part of a title, case-insensitive")] = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ):
        if (busy := not_ready(service)) is not None:
            return busy
        catalogue, needle = service.catalogue, q.strip().lower()
        found = []
        for item in catalogue.popular:
            row = catalogue.row_of[item]
            if needle in catalogue.titles[row].lower():
                found.append({"item_id": item, "title": catalogue.titles[row], "genres": catalogue.genres[row]})
                if len(found) >= limit:
                    break
        return json_response({"items": found})
