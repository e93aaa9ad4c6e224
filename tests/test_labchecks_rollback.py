"""Lab 10's Exercise 10.2 (recsys_workshop.labchecks.operations.rollback) against the real model server with
two versions: the solution notebook's rollback passes; each usual wrong answer gets its own message (no
credential, the token in another header, the wrong route, the whole answer returned, a version hard-coded
without a request, a refusal that passes unnoticed)."""

from __future__ import annotations

import pytest
import requests
from check_helpers import fails, solution_functions
from model_fixtures import exported_versions

from recsys_workshop import serving
from recsys_workshop.labchecks import operations

pytestmark = [pytest.mark.tf, pytest.mark.slow]

TOKEN = "test-admin-token-rollback-0123456789"
QUESTION = {"instances": [{"user_id": 196, "k": 5}]}
SOLUTION = solution_functions("10_serving.ipynb", "rollback", requests=requests)["rollback"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = exported_versions(tmp_path_factory.mktemp("rollback"), 2)
    with serving.local_server(base, timeout=180, admin_token=TOKEN, enable_grpc=False) as running:
        yield running


def rollback(server_url, token, model_name="recsys", mistake=""):
    """The solution, or the rollback a learner who makes ``mistake`` writes."""
    if mistake == "hard-coded":
        return 2
    headers = {"no header": {}, "X-Token": {"X-Token": token}}.get(mistake, {"Authorization": f"Bearer {token}"})
    route = f"{server_url}/v1/models/{model_name}" + (":rollbacks" if mistake == "route" else ":rollback")
    response = requests.post(route, headers=headers, timeout=30)
    if mistake != "no raise":
        response.raise_for_status()
    if mistake == "whole answer":
        return response.json()
    if mistake == "no raise":
        return int(response.json().get("active", 2))
    return int(response.json()["active"])


def test_the_solution_passes(server):
    operations.rollback(SOLUTION, server, QUESTION)
    operations.rollback(rollback, server, QUESTION)
    assert requests.get(f"{server.url}/v1/models/recsys/versions", timeout=10).json()["active"] == 2


@pytest.mark.parametrize(
    ("mistake", "says"),
    [
        ("no header", "answered 401: the server saw no credential: send the header Authorization: Bearer <token>"),
        ("X-Token", "answered 401"),
        ("route", "answered 405: no POST route there: the route is POST <server_url>/v1/models/<model_name>:rollback"),
        ("whole answer", "the answer's 'active' field, as an int"),
        ("hard-coded", "version 1 is active, expected 2"),
        ("no raise", "the server refused (403) but yours returned 2"),
    ],
)
def test_a_wrong_rollback_is_diagnosed(server, mistake, says):
    fails(operations.rollback, lambda url, token: rollback(url, token, mistake=mistake), server, QUESTION, match=says)
