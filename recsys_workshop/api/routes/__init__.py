"""The API's routes, one module per resource; each ``register(app, service)`` adds its routes to ``app``,
answering from ``service`` (the app's state, :class:`recsys_workshop.api.app.Service`).

Routes are added to the app itself rather than through ``APIRouter``s: the route objects, their order and
the request scope (``scope["route"]``, read by the metrics middleware) stay those of one flat app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys_workshop.api.routes import bandit, feedback, health, items, recommendations, ui, users

if TYPE_CHECKING:
    from fastapi import FastAPI

    from recsys_workshop.api.app import Service

# registration order is the order of the routes (and of the OpenAPI paths)
RESOURCES = (ui, health, recommendations, feedback, users, items, bandit)


def register_all(app: FastAPI, service: Service) -> None:
    """Every route of the API, in :data:`RESOURCES` order."""
    for resource in RESOURCES:
        resource.register(app, service)
