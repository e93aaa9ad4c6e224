"""The UI: ``GET /`` (the page) and ``/static`` (its script and style sheet)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def register(app: FastAPI, service: Service) -> None:
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
