"""The bandit: ``GET /bandit``, its policy and each arm's pulls, rewards and click rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from recsys_workshop.api.responses import json_response

if TYPE_CHECKING:
    from recsys_workshop.api.app import Service


def register(app: FastAPI, service: Service) -> None:
    @app.get("/bandit", summary="The bandit's arms: pulls, rewards and click rate")
    async def bandit():
        return json_response({"policy": service.bandit.policy, "arms": service.bandit.state()})
