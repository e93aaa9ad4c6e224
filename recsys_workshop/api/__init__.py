"""The API layer: business logic (:mod:`.logic`), the FastAPI app (:mod:`.app`) and :func:`local_stack`.

``uvicorn recsys_workshop.api:app`` serves the app (settings from the environment, see :mod:`.app`).
``app`` is created on first access, so ``from recsys_workshop.api import logic`` stays cheap (no
FastAPI import, no data loaded).
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "create_app", "local_stack", "start_api"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from recsys_workshop.api.app import create_app

        globals()["app"] = application = create_app()
        return application
    if name == "create_app":
        from recsys_workshop.api.app import create_app

        return create_app
    if name in ("local_stack", "start_api", "LocalStack", "ApiProcess"):
        from recsys_workshop.api import stack

        return getattr(stack, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
