"""The API as an attacker and an operator meet it: credentials, signed feedback, write limits, and state
that survives ``kill -9`` and is shared by two replicas, on SQLite and on a real PostgreSQL server.

Real processes only: one model server (``python -m recsys_workshop.serving`` on two small exported
versions) and API processes (``uvicorn recsys_workshop.api:app``) started and killed by the tests.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import time

import pytest
import requests
from model_fixtures import exported_versions

from recsys_workshop.api import start_api
from recsys_workshop.serving import local_server

pytestmark = [pytest.mark.tf, pytest.mark.slow]

TOKEN = "test-admin-token-0123456789"
BASE_ENV = {"RECSYS_ARMS": "1,2", "RECSYS_POLICY": "epsilon-greedy", "RECSYS_EPSILON": "0.5",
            "RECSYS_MODEL_TIMEOUT": "2", "RECSYS_SIGNING_KEY": "test-signing-key-0123456789",
            "RECSYS_SYNC_INTERVAL": "0.2", "RECSYS_FEEDBACK_RATE": "off", "RECSYS_USERS_RATE": "off"}


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    with local_server(exported_versions(tmp_path_factory.mktemp("models"), n_versions=2), admin_token=TOKEN) as srv:
        yield srv


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.db'}"
        return
    import postgres_server as pg

    url = pg.create_database(request.getfixturevalue("postgres_url"), f"api_{os.getpid()}_{time.time_ns()}")
    yield url
    pg.drop_database(url)


def api(model_server, database_url, **env):
    return start_api(model_server.url, admin_token=TOKEN,
                     env={**BASE_ENV, "RECSYS_DATABASE_URL": database_url, **env})


def admin(url: str, token: str | None = TOKEN, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{url}/feedback", params=params, headers=headers, timeout=10)


def recommend(url: str, user_id: int, k: int = 10) -> dict:
    response = requests.get(f"{url}/recommendations/{user_id}", params={"k": k, "mmr_lambda": 1}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def feedback(url: str, rec: dict, item: int, action: str = "click", **extra) -> requests.Response:
    body = {"user_id": rec["user_id"], "item_id": item, "action": action,
            "recommendation_id": rec["recommendation_id"], **extra}
    return requests.post(f"{url}/feedback", json=body, timeout=10)


def bandit(url: str) -> dict:
    return requests.get(f"{url}/bandit", timeout=10).json()["arms"]


# ------------------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reading_every_users_feedback_needs_the_admin_token(model_server, database_url):
    with api(model_server, database_url) as running:
        missing = admin(running.url, token=None)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert admin(running.url, token="not-the-token-at-all").status_code == 403
        assert admin(running.url, token=TOKEN[:-1] + "X").status_code == 403
        assert admin(running.url).status_code == 200
        assert requests.get(f"{running.url}/bandit", timeout=10).status_code == 200  # aggregate: public


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_feedback_must_come_from_a_recommendation_the_api_made(model_server, database_url):
    with api(model_server, database_url) as running:
        rec = recommend(running.url, 196)
        shown = [i["item_id"] for i in rec["items"]]
        before = bandit(running.url)
        version, payload, tag = rec["recommendation_id"].split(".")
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        user, arm, rest = text.split("|", 2)
        other_arm = "2" if arm == "1" else "1"
        forged = base64.urlsafe_b64encode(f"{user}|{other_arm}|{rest}".encode()).rstrip(b"=").decode()
        cases = [
            ({**rec, "recommendation_id": f"{version}.{forged}.{tag}"}, shown[0], 403, "not issued by this service"),
            ({**rec, "user_id": 197}, shown[0], 403, "made for another user"),
            (rec, next(i for i in range(1, 1683) if i not in shown), 403, "was not in the recommendation"),
            ({**rec, "recommendation_id": "v1.nonsense"}, shown[0], 400, "malformed"),
        ]
        for body, item, status, reason in cases:
            response = feedback(running.url, body, item)
            assert response.status_code == status and reason in response.json()["error"], response.text
        named = feedback(running.url, rec, shown[0], arm=other_arm)
        assert named.status_code == 400 and "not the arm" in named.json()["error"]
        fabricated = {**rec, "recommendation_id": f"{version}.{forged}.{tag}"}
        for _ in range(300):  # 300 fabricated clicks for one arm: none counts
            assert feedback(running.url, fabricated, shown[0]).status_code == 403
        assert admin(running.url).json()["total"] == 0
        assert {a: s["rewards"] for a, s in bandit(running.url).items()} == {a: s["rewards"] for a, s in before.items()}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_recommendation_rewards_its_arm_once_and_a_retry_stores_nothing(model_server, database_url):
    with api(model_server, database_url) as running:
        rec = recommend(running.url, 196)
        first, second = (i["item_id"] for i in rec["items"][:2])
        click = feedback(running.url, rec, first, "click")
        assert click.status_code == 201 and click.json()["rewarded"] is True
        assert feedback(running.url, rec, first, "click").json() == {**click.json(), "duplicate": True,
                                                                    "rewarded": False}
        like = feedback(running.url, rec, second, "like")
        assert like.status_code == 201 and like.json()["rewarded"] is False  # one reward per recommendation
        keyed = requests.post(f"{running.url}/feedback", headers={"Idempotency-Key": "retry-1"}, timeout=10, json={
            "user_id": 196, "item_id": second, "action": "dislike", "recommendation_id": rec["recommendation_id"]})
        again = requests.post(f"{running.url}/feedback", headers={"Idempotency-Key": "retry-1"}, timeout=10, json={
            "user_id": 196, "item_id": second, "action": "dislike", "recommendation_id": rec["recommendation_id"]})
        assert (keyed.status_code, again.status_code) == (201, 200)
        events = admin(running.url, user_id=196).json()
        assert events["total"] == 3 and [e["action"] for e in events["events"]] == ["click", "like", "dislike"]
        assert bandit(running.url)[rec["arm"]]["rewards"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_writes_are_limited_per_client(model_server, database_url):
    with api(model_server, database_url, RECSYS_USERS_RATE="3/minute") as running:
        answers = [requests.post(f"{running.url}/users", json={"liked_item_ids": [1]}, timeout=10) for _ in range(5)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        assert 1 <= int(answers[3].headers["retry-after"]) <= 60 and "retry in" in answers[3].json()["error"]
        created = {a.json()["user_id"] for a in answers[:3]}
        assert requests.get(f"{running.url}/users/{max(created) + 1}", timeout=10).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_half_sent_body_is_closed_by_the_timeout(model_server, database_url):
    with api(model_server, database_url, RECSYS_BODY_TIMEOUT="1") as running:
        port = int(running.url.rsplit(":", 1)[1])
        sockets = []
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"liked_item_ids\": [")
            sockets.append(conn)
        started = time.monotonic()
        answers = []
        for conn in sockets:
            with contextlib.closing(conn):
                answers.append(conn.recv(200).split(b"\r\n", 1)[0])
        assert time.monotonic() - started < 8
        assert all(line.startswith(b"HTTP/1.1 408") for line in answers), answers[:3]


# --------------------------------------------------------------------------------------- durability


def test_users_and_feedback_survive_kill_9(model_server, database_url):
    users, clicks = [], 0
    with api(model_server, database_url) as running:
        for _ in range(50):
            response = requests.post(f"{running.url}/users", json={"liked_item_ids": [50, 172]}, timeout=10)
            assert response.status_code == 201
            users.append(response.json()["user_id"])
        for user_id in range(1, 51):
            rec = recommend(running.url, user_id)
            for item in rec["items"]:
                assert feedback(running.url, rec, item["item_id"]).status_code == 201
                clicks += 1
        rewards = {arm: s["rewards"] for arm, s in bandit(running.url).items()}
        running.process.send_signal(signal.SIGKILL)
        running.process.wait(10)
    assert len(set(users)) == 50 and min(users) >= 944 and clicks == 500
    with api(model_server, database_url) as restarted:
        assert admin(restarted.url, limit=1).json()["total"] == 500
        assert all(requests.get(f"{restarted.url}/users/{u}", timeout=10).status_code == 200 for u in users)
        new = requests.post(f"{restarted.url}/users", json={"liked_item_ids": [1]}, timeout=10).json()["user_id"]
        assert new not in users and new > max(users)
        assert {arm: s["rewards"] for arm, s in bandit(restarted.url).items()} == rewards
        assert sum(rewards.values()) == 50  # one per recommendation, whichever arm answered


def test_two_replicas_share_users_feedback_and_the_bandit(model_server, database_url):
    with api(model_server, database_url) as one, api(model_server, database_url) as two:
        ids = []
        for _ in range(20):
            for replica in (one, two):
                created = requests.post(f"{replica.url}/users", json={"liked_item_ids": [7]}, timeout=10)
                ids.append(created.json()["user_id"])
        assert len(set(ids)) == 40 and min(ids) >= 944
        assert requests.get(f"{two.url}/users/{ids[0]}", timeout=10).status_code == 200  # created on `one`
        rec = recommend(one.url, 196)
        assert feedback(two.url, rec, rec["items"][0]["item_id"], "like").status_code == 201  # id from `one`
        assert admin(one.url, user_id=196).json()["total"] == 1
        deadline = time.monotonic() + 10
        while bandit(one.url)[rec["arm"]]["rewards"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bandit(one.url)[rec["arm"]]["rewards"] == 1, "the reward given on `two` reached `one`"
        liked = requests.get(f"{one.url}/users/196", timeout=10).json()["liked"][0]["item_id"]
        assert liked == rec["items"][0]["item_id"], "the like given on `two` is in `one`'s history"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_failing_database_answers_503_and_stores_nothing(model_server, database_url):
    """The database turns read-only (as a full disk or a failed-over replica would refuse writes): every
    write is a 503 with the reason, nothing is half-stored, recommendations keep working; then it recovers."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    name = sa.engine.make_url(database_url).database

    def read_only(on: bool) -> None:
        with engine.connect() as conn:
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            conn.execute(sa.text(f'ALTER DATABASE "{name}" {setting}'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})

    with api(model_server, database_url) as running:
        rec = recommend(running.url, 196)
        read_only(True)
        try:
            refused = feedback(running.url, rec, rec["items"][0]["item_id"])
            new_user = requests.post(f"{running.url}/users", json={"liked_item_ids": [1]}, timeout=10)
            for response in (refused, new_user):
                assert response.status_code == 503 and "nothing was stored" in response.json()["error"]
                assert response.headers["retry-after"] == "1"
            assert recommend(running.url, 196)["items"], "recommendations do not need the database"
            log = running.log()
            assert "Traceback" not in log and "database unavailable" in log
        finally:
            read_only(False)
        assert admin(running.url).json()["total"] == 0
        assert feedback(running.url, rec, rec["items"][0]["item_id"]).status_code == 201  # works again
    engine.dispose()
