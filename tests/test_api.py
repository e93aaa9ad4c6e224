"""The API end to end: the real model server and the API as processes on free loopback ports.

Nothing is faked: the model server is ``python -m recsys_workshop.serving`` on two small exported
matrix-factorisation versions (tests/model_fixtures.py), the API is ``uvicorn recsys_workshop.api:app``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import threading
import time

import pytest
import requests
from model_fixtures import exported_versions

from recsys_workshop.api import local_stack, start_api

pytestmark = [pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return exported_versions(tmp_path_factory.mktemp("models"), n_versions=2)


@pytest.fixture(scope="module")
def stack(model_dir, tmp_path_factory):
    database = tmp_path_factory.mktemp("api") / "api.db"
    env = {"RECSYS_ARMS": "1,2", "RECSYS_POLICY": "epsilon-greedy", "RECSYS_EPSILON": "0.5", "RECSYS_SEED": "0",
           "RECSYS_DATABASE_URL": f"sqlite:///{database}", "RECSYS_MODEL_TIMEOUT": "2"}
    with local_stack(model_dir, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def seen_196(ml100k_ratings):
    return set(ml100k_ratings.loc[ml100k_ratings["user_id"] == 196, "item_id"])


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match[1] or "").split(","))) == wanted:
            return float(match[2])
    return 0.0


def test_recommendations_come_from_the_model_without_seen_items(stack, seen_196, ml100k):
    titles = ml100k.items.set_index("item_id")["title"]
    response = requests.get(f"{stack.api_url}/recommendations/196", params={"k": 10}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "model" and body["fallback_reason"] is None
    assert body["arm"] in {"1", "2"} and body["model_version"] == int(body["arm"])
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"]) and response.headers["x-request-id"] == body["request_id"]
    items = body["items"]
    assert len(items) == 10 and len({i["item_id"] for i in items}) == 10
    assert not {i["item_id"] for i in items} & seen_196
    for item in items:
        assert item["title"] == titles[item["item_id"]]
        assert isinstance(item["genres"], list) and item["genres"]
        assert isinstance(item["score"], float)
        assert item["reason"].startswith("because you liked ") or item["reason"] == "recommended for you"
    assert any(i["reason"].startswith("because you liked ") for i in items)


def test_k_and_the_arms(stack):
    seen_arms, lists = set(), {}
    for _ in range(20):  # epsilon 0.5 over two arms: both are played
        body = stack.get("/recommendations/1?k=3&mmr_lambda=1")
        assert len(body["items"]) == 3 and body["source"] == "model"
        seen_arms.add(body["arm"])
        lists[body["arm"]] = [i["item_id"] for i in body["items"]]
    assert seen_arms == {"1", "2"}
    assert lists["1"] != lists["2"], "the two model versions should recommend different lists"
    assert len(stack.get("/recommendations/1?k=100")["items"]) == 100
    metrics = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    assert metric(metrics, "recsys_api_arm_total", arm="1") + metric(metrics, "recsys_api_arm_total", arm="2") >= 21


def test_mmr_lambda_trades_relevance_for_variety(stack, ml100k):
    genres = ml100k.items.set_index("item_id")["genres"]

    def distinct_genres(lam):
        body = stack.get(f"/recommendations/405?k=10&mmr_lambda={lam}")
        return body["items"], len({g for i in body["items"] for g in genres[i["item_id"]]})

    relevant, n_relevant = distinct_genres(1.0)
    diverse, n_diverse = distinct_genres(0.1)
    assert [i["item_id"] for i in relevant] != [i["item_id"] for i in diverse]
    assert n_diverse > n_relevant
    scores = [i["score"] for i in relevant]
    assert scores == sorted(scores, reverse=True), "lam = 1 keeps the model's order"


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/recommendations/196?k=0", 422, "query.k: Input should be greater than or equal to 1"),
        ("/recommendations/196?k=-5", 422, "query.k"),
        ("/recommendations/196?k=101", 422, "query.k: Input should be less than or equal to 100"),
        ("/recommendations/196?k=99999999999999999999999", 422, "query.k"),
        ("/recommendations/196?k=ten", 422, "query.k: Input should be a valid integer"),
        ("/recommendations/196?mmr_lambda=2", 422, "query.mmr_lambda"),
        ("/recommendations/abc", 422, "path.user_id: Input should be a valid integer"),
        ("/recommendations/-3", 422, "path.user_id"),
        ("/recommendations/99999", 404, "unknown user 99999"),
        ("/users/99999", 404, "unknown user 99999"),
        ("/nowhere", 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(stack, path, status, reason):
    response = requests.get(stack.api_url + path, timeout=10)
    assert response.status_code == status
    assert reason in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "JSON decode error"),
        (b"[1, 2]", "body: Input should be a valid dictionary"),
        (b'{"user_id": 196, "item_id": 1}', "body.action: Field required"),
        (b'{"user_id": "196", "item_id": 1, "action": "like"}', "body.user_id: Input should be a valid integer"),
        (b'{"user_id": 196, "item_id": 1.5, "action": "like"}', "body.item_id"),
        (b'{"user_id": 196, "item_id": 1, "action": "love"}', "body.action: Input should be 'click', 'like' or"),
        (b'{"user_id": 196, "item_id": 1, "action": "like", "extra": 1}', "body.extra: Extra inputs"),
        (b'{"user_id": 196, "item_id": 1, "action": "like"}', "body.recommendation_id: Field required"),
        (b'{"user_id": 196, "item_id": 1, "action": "like", "recommendation_id": ""}', "body.recommendation_id"),
    ],
)
def test_bad_feedback_gets_a_4xx_with_a_reason(stack, body, reason):
    response = requests.post(
        f"{stack.api_url}/feedback", data=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 422
    assert reason in response.json()["error"]


def test_feedback_is_recorded_counted_and_filters_the_next_list(stack):
    before = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    shown = stack.get("/recommendations/7?k=5&mmr_lambda=1")
    arm, top = shown["arm"], shown["items"][0]["item_id"]
    bandit_before = stack.get("/bandit")["arms"][arm]["rewards"]
    like = {"user_id": 7, "item_id": top, "action": "like", "recommendation_id": shown["recommendation_id"]}
    response = requests.post(f"{stack.api_url}/feedback", json=like, timeout=10)
    assert response.status_code == 201
    assert response.json() == {"accepted": True, "duplicate": False, "rewarded": True, "arm": arm}
    retried = requests.post(f"{stack.api_url}/feedback", json=like, timeout=10)  # a retry: stored once
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    after = requests.get(f"{stack.api_url}/metrics", timeout=10).text
    labels = {"action": "like", "arm": arm}
    count = "recsys_api_feedback_total"
    assert metric(after, count, **labels) == metric(before, count, **labels) + 1
    assert stack.get("/bandit")["arms"][arm]["rewards"] == bandit_before + 1
    events = requests.get(f"{stack.api_url}/feedback?user_id=7", headers=stack.admin_headers(), timeout=10).json()
    assert [(e["item_id"], e["action"], e["arm"]) for e in events["events"]] == [(top, "like", arm)]
    again = stack.get(f"/recommendations/7?k=5&mmr_lambda=1&_={time.time()}")
    assert top not in [i["item_id"] for i in again["items"]], "a liked item is seen: never recommended again"
    assert stack.get("/users/7")["liked"][0]["item_id"] == top


def test_a_new_user_gets_metadata_fallback_recommendations(stack, ml100k):
    genres = ml100k.items.set_index("item_id")["genres"]
    horror = [int(i) for i in ml100k.items.loc[ml100k.items["genres"].apply(lambda g: g == ["Horror"]), "item_id"]][:4]
    response = requests.post(f"{stack.api_url}/users", json={"liked_item_ids": horror, "age": 25}, timeout=10)
    assert response.status_code == 201
    user_id = response.json()["user_id"]
    assert user_id > 943
    body = stack.get(f"/recommendations/{user_id}?k=10")
    assert body["source"] == "fallback" and body["fallback_reason"] == "new_user" and body["arm"] == "fallback"
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 10 and not set(ids) & set(horror)
    assert sum("Horror" in genres[i] for i in ids) >= 6
    assert any(i["reason"].startswith("because you liked ") for i in body["items"])
    bad = requests.post(f"{stack.api_url}/users", json={"liked_item_ids": [1, 99999]}, timeout=10)
    assert bad.status_code == 422 and "99999" in bad.json()["error"]


def test_health_readiness_ui_and_schema(stack):
    assert stack.get("/healthz") == {"status": "ok"}
    assert stack.get("/readyz")["model_server"] == "ready"
    page = requests.get(stack.ui_url, timeout=10)
    assert page.status_code == 200 and "<script src=\"/static/app.js\">" in page.text
    assert "cdn" not in page.text.lower() and "http" not in page.text.replace("http-equiv", "")
    assert requests.get(f"{stack.api_url}/static/app.js", timeout=10).status_code == 200
    schema = stack.get("/openapi.json")
    paths = {"/recommendations/{user_id}", "/feedback", "/users", "/healthz", "/readyz", "/metrics"}
    assert paths <= set(schema["paths"])


def test_the_api_follows_a_rollback_on_the_model_server(stack):
    """An API on the default arm (`latest`) serves whatever version the model server has active."""
    model = f"{stack.model_url}/v1/models/recsys"
    with start_api(stack.model_url) as api:
        def version():
            return requests.get(f"{api.url}/recommendations/196?k=3", timeout=10).json()["model_version"]

        assert version() == 2
        assert stack.admin_token == stack.model_server.admin_token == stack.api.admin_token, "one token for both"
        rolled = requests.post(f"{model}:rollback", timeout=10, headers=stack.admin_headers())
        assert rolled.status_code == 200, rolled.text
        try:
            assert version() == 1
        finally:
            activated = requests.post(f"{model}/versions/2:activate", timeout=10, headers=stack.admin_headers())
            assert activated.status_code == 200
        assert version() == 2


def test_model_server_stopped_or_hung_during_requests_gives_only_fallback_answers(model_dir):
    env = {"RECSYS_MODEL_TIMEOUT": "1"}
    with local_stack(model_dir, env=env) as stack:
        url = f"{stack.api_url}/recommendations/{{}}?k=5"
        session = requests.Session()

        def wait_for_the_model():  # the model path answers again (a loaded machine may time out a call)
            deadline = time.monotonic() + 30
            while session.get(url.format(196), timeout=10).json()["source"] != "model":
                assert time.monotonic() < deadline, "the model server never answered through the API"
                time.sleep(0.2)

        wait_for_the_model()

        # hung: a stopped (SIGSTOP) model server accepts connections but never answers -> timeout
        os.kill(stack.model_server.process.pid, signal.SIGSTOP)
        try:
            body = session.get(url.format(196), timeout=10).json()
            assert (body["source"], body["fallback_reason"], len(body["items"])) == ("fallback", "timeout", 5)
        finally:
            os.kill(stack.model_server.process.pid, signal.SIGCONT)
        wait_for_the_model()

        # killed while requests are in flight
        results, stop = [], threading.Event()

        def hammer(user_id):
            with requests.Session() as s:
                while not stop.is_set():
                    r = s.get(url.format(user_id), timeout=10)
                    results.append((time.monotonic(), r.status_code, r.json()))

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(hammer, u) for u in (1, 2, 3, 4)]
            try:
                deadline = time.monotonic() + 30
                while not (len(results) >= 40 and any(b["source"] == "model" for _, _, b in results)):
                    assert time.monotonic() < deadline, f"no model answer among {len(results)} before the kill"
                    assert not any(f.done() for f in futures), "a client thread stopped early"
                    time.sleep(0.05)
                stack.model_server.process.send_signal(signal.SIGKILL)
                stack.model_server.process.wait()
                killed_at = time.monotonic()
                while sum(t > killed_at for t, _, _ in results) < 40 and time.monotonic() < deadline + 30:
                    time.sleep(0.05)
            finally:
                stop.set()
            for future in futures:
                future.result()  # re-raises any client-side error (connection reset, bad JSON, ...)

        assert {status for _, status, _ in results} == {200}
        assert all(len(body["items"]) == 5 for _, _, body in results)
        before = [body["source"] for t, _, body in results if t < killed_at]
        after = [body for t, _, body in results if t > killed_at + 0.01]
        assert "model" in before
        assert len(after) >= 40 and {b["source"] for b in after} == {"fallback"}
        assert {b["fallback_reason"] for b in after} <= {"unavailable", "circuit_open", "timeout"}
        assert {b["arm"] for b in after} == {"fallback"}
        assert stack.get("/readyz")["model_server"] == "unreachable"
        metrics = session.get(f"{stack.api_url}/metrics", timeout=10).text
        fallbacks = sum(metric(metrics, "recsys_api_fallback_total", reason=r) for r in ("unavailable", "circuit_open"))
        assert fallbacks >= 40
        assert metric(metrics, "recsys_api_requests_total", method="GET", route="/recommendations/{user_id}",
                      status="500") == 0
    # leaving local_stack stops both processes, and the ports are free again
    assert stack.api.process.poll() is not None and stack.model_server.process.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{stack.api_url}/healthz", timeout=2)


def test_logs_are_json_lines_with_the_request_id(stack):
    response = requests.get(f"{stack.api_url}/recommendations/196?k=2", headers={"x-request-id": "trace-me-42"},
                            timeout=10)
    assert response.json()["request_id"] == "trace-me-42" == response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in stack.api.log().splitlines() if line.startswith("{")]
        mine = [e for e in lines if e.get("request_id") == "trace-me-42"]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine, "no JSON log line carries the request id"
    entry = mine[-1]
    assert (entry["level"], entry["message"], entry["path"], entry["status"]) == (
        "info", "request", "/recommendations/196", 200)
    assert entry["ms"] > 0 and entry["time"].endswith("Z")
    assert any(e["message"] == "ready" for e in lines)
