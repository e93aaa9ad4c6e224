"""The model server: numpy top-k against the TF signature, versions, and the real server on loopback ports."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import time

import numpy as np
import pytest
from model_fixtures import exported_versions, small_model

from recsys_workshop import serving
from recsys_workshop.serving import watch

pytestmark = [pytest.mark.tf, pytest.mark.slow]

USERS = [1, 2, 196, 405, 943, 10**9, 10**9 + 1]
TOKEN = "test-admin-token-0123456789"


# ------------------------------------------------------------------------------------------ in process


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return exported_versions(tmp_path_factory.mktemp("models"), 2)


@pytest.fixture(scope="module")
def v2(base):
    return serving.LoadedVersion.load(base / "2")


def test_numpy_top_k_equals_the_tf_signature(base, v2):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(base / "2"))
    for k in (1, 10, 50):
        out = loaded.signatures["serving_default"](user_id=tf.constant(USERS, tf.int64), k=tf.constant(k, tf.int32))
        items, scores, known = v2.top_k(USERS, k)
        np.testing.assert_array_equal(known, out["known"].numpy())
        np.testing.assert_array_equal(np.stack(items), out["item_ids"].numpy())
        np.testing.assert_allclose(np.stack(scores), out["scores"].numpy(), rtol=1e-5, atol=1e-5)
    users = np.repeat(USERS, 3)
    items = np.tile([50, 181, 10**9], len(USERS))
    expected = loaded.signatures["score"](user_id=tf.constant(users, tf.int64), item_id=tf.constant(items, tf.int64))
    np.testing.assert_allclose(v2.score(users, items), expected["scores"].numpy(), rtol=1e-5, atol=1e-5)


def test_numpy_top_k_equals_the_model(v2):
    model = small_model("mf", 6, 1)  # version 2 of the fixture
    recs = model.recommend(USERS, 10, exclude_seen=False)
    items, scores, _ = v2.top_k(USERS, 10)
    for i, user in enumerate(USERS):
        np.testing.assert_array_equal(items[i], recs[recs.user_id == user].item_id.to_numpy())


def test_exclude_removes_items_and_keeps_k(v2):
    items, _, _ = v2.top_k([196, 10**9], 10)
    n_excluded = [3, 5]
    excluded = [items[0][:3].tolist() + [10**9], items[1][:5].tolist()]  # 10**9: not in the catalogue
    again, scores, _ = v2.top_k([196, 10**9], 10, exclude=excluded)
    for i in range(2):
        assert len(again[i]) == 10
        assert not set(again[i]) & set(excluded[i])
        np.testing.assert_array_equal(again[i][: 10 - n_excluded[i]], items[i][n_excluded[i] :])
        assert np.all(np.diff(scores[i]) <= 0)
    everything = v2.item_ids.tolist()
    last_two, _, _ = v2.top_k([196], 10, exclude=[everything[:-2]])
    assert sorted(last_two[0].tolist()) == everything[-2:], "fewer than k items left: all of them, no padding"


def test_ties_go_to_the_smaller_item_id(v2):
    scores = np.array([[1.0, 3.0, 2.0, 3.0, 3.0, 0.0], [5.0, 4.0, 4.0, 4.0, 1.0, 4.0]], dtype=np.float32)
    cols, values = serving._top_k_rows(scores, 2)
    np.testing.assert_array_equal(cols, [[1, 3], [0, 1]])
    cols, values = serving._top_k_rows(scores, 3)
    np.testing.assert_array_equal(cols, [[1, 3, 4], [0, 1, 2]])
    np.testing.assert_array_equal(values, [[3, 3, 3], [5, 4, 4]])


def test_one_row_and_many_rows_rank_exactly_as_a_stable_sort():
    rng = np.random.default_rng(1)
    for _ in range(500):
        m = int(rng.integers(1, 40))
        k = int(rng.integers(1, m + 1))
        rows = rng.integers(0, 5, size=(2, m)).astype(np.float32)  # many ties
        rows[rng.random((2, m)) < 0.2] = -np.inf  # excluded items
        want = np.argsort(-rows, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(serving._top_k_rows(rows, k)[0], want)
        one, values = serving._top_k_rows(rows[:1].copy(), k)
        np.testing.assert_array_equal(one, want[:1])
        np.testing.assert_array_equal(values, rows[:1, want[0]])


def test_version_manager_refuses_a_broken_version(base, tmp_path):
    for version in (1, 2):
        shutil.copytree(base / str(version), tmp_path / str(version))
    broken = tmp_path / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    shutil.copy(base / "2" / "metadata.json", broken / "metadata.json")  # valid metadata: the protobuf is broken
    manager = serving.VersionManager(tmp_path)
    assert manager.start() == 2, "the latest version that loads is served"
    statuses = {v["version"]: v["status"] for v in manager.describe()["versions"]}
    assert statuses == {1: "loaded", 2: "active", 3: "failed"}, "the other versions are preloaded"
    with pytest.raises(serving.VersionError, match="version 3 failed to load") as error:
        manager.activate(3)
    assert error.value.status == 409 and manager.active == 2
    with pytest.raises(serving.VersionError, match="does not exist") as error:
        manager.get(7)
    assert error.value.status == 404
    assert manager.activate(1) == {"active": 1, "previous": 2}
    assert manager.rollback() == {"active": 2, "previous": 1}
    assert manager.rollback() == {"active": 1, "previous": 2}, "no history left: the highest lower version"
    with pytest.raises(serving.VersionError, match="no earlier version"):
        manager.rollback()
    statuses = {v["version"]: v["status"] for v in manager.describe()["versions"]}
    assert statuses == {1: "active", 2: "loaded", 3: "failed"}
    assert serving.VersionManager(tmp_path).start(version=1) == 1, "an explicit start version"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "must be a JSON object"),
        ({}, "missing 'instances'"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [{"k": 3}]}, "missing 'user_id'"),
        ({"instances": [{"user_id": 1.5}]}, "must be an integer"),
        ({"instances": [{"user_id": True}]}, "must be an integer"),
        ({"instances": [{"user_id": 1, "k": 1001}]}, "between 1 and 1000"),
        ({"instances": [{"user_id": 1, "exclude": "50"}]}, "must be a list of integers"),
        ({"instances": [{"user_id": 1, "usr": 2}]}, "unknown field"),
        ({"instances": [{"user_id": 1, "item_ids": [1], "k": 3}]}, "cannot be combined"),
        ({"instances": [{"user_id": 2**70}]}, "64-bit"),
        ({"instances": [{"user_id": 1}], "version": "x"}, "version must be an integer"),
        ({"instances": [{"user_id": 1}] * 1001}, "too many instances"),
    ],
)
def test_parse_instances_rejects_malformed_bodies(body, reason):
    with pytest.raises(serving.RequestError, match=reason):
        serving.parse_instances(body)


@pytest.mark.slow
def test_a_server_whose_only_version_is_broken_fails_with_the_reason(tmp_path):
    broken = tmp_path / "1"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"garbage")
    (broken / "metadata.json").write_text(json.dumps({"format": 2, "retrieval": {"index": "exact"}}))
    with pytest.raises(RuntimeError, match="exited with code 1") as error:
        with serving.local_server(tmp_path, timeout=180, log_path=tmp_path / "server.log", admin_token=TOKEN):
            pytest.fail("the server must not become ready")
    assert "no version loads: version 1 failed to load" in str(error.value), "the log tail names the reason"
    reason = next(line for line in str(error.value).splitlines() if "no version loads" in line)
    assert str(tmp_path) not in reason, "no absolute path in the reason (it may reach a client)"


def test_main_refuses_a_folder_without_versions(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serving.main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "holds no version folder" in error and "--wait-for-model" in error, "the hint names the option"
    options = serving.build_parser().parse_args(["--model-dir", str(tmp_path / "not-yet"), "--wait-for-model"])
    assert options.wait_for_model and options.poll_interval == watch.DEFAULT_POLL_INTERVAL


def test_only_complete_versions_count(base, tmp_path):
    shutil.copytree(base / "1", tmp_path / "1")
    copying = tmp_path / "2"  # a version someone is still copying by hand: no metadata.json yet
    shutil.copytree(base / "2", copying, ignore=shutil.ignore_patterns("metadata.json"))
    (tmp_path / ".export-3-tmp").mkdir()  # an export in progress (hidden, renamed into place when complete)
    assert serving.VersionManager(tmp_path).available() == [1, 2]
    assert watch.complete_versions(tmp_path) == [1]
    assert watch.complete_versions(tmp_path / "missing") == []


# ------------------------------------------------------------------------------------------ waiting for a model


@pytest.mark.slow
def test_a_server_without_a_model_stays_up_not_ready_and_serves_the_first_complete_version(tmp_path):
    """A cluster's model server starts before training has exported anything: it must neither exit (a crash
    loop) nor pass its readiness probe; it loads the first complete version as soon as one appears."""
    import grpc
    import requests

    from recsys_workshop import procs

    models = tmp_path / "models"  # not even the folder exists yet (the training job creates it)
    interval = 0.5
    with serving.local_server(models, wait_for_model=True, poll_interval=interval, timeout=180,
                              admin_token=TOKEN, log_path=tmp_path / "server.log") as server:  # fmt: skip
        ready_url = f"{server}/v2/models/recsys/ready"
        body = {"instances": [{"user_id": 196, "k": 5}]}
        for _ in range(3):  # several looks at the folder: alive, not ready, no answer
            assert procs.http_status(f"{server}/v2/health/live") == 200, "liveness passes: no restart"
            assert procs.http_status(ready_url) == 503, "readiness fails: no traffic"
            assert requests.post(server.predict_url, json=body, timeout=10).status_code == 503
            infer = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [196]}]}
            assert requests.post(f"{server}/v2/models/recsys/infer", json=infer, timeout=10).status_code == 503
            with serving.GrpcClient(server.grpc_target) as client:
                assert client.ready() is False
                with pytest.raises(grpc.RpcError) as error:
                    client.predict([196], k=5)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            time.sleep(interval)  # let the watcher look again: the state must not change by itself
        assert server.process.poll() is None, "the server did not exit"

        # a version still being copied by hand (no metadata.json yet) is not loaded
        exported = exported_versions(tmp_path / "export", 2)
        shutil.copytree(exported / "2", models / "2", ignore=shutil.ignore_patterns("metadata.json"))
        time.sleep(3 * interval)
        assert procs.http_status(ready_url) == 503
        assert "failed to load" not in server.log(), "an incomplete version is not even tried"

        # an export renamed into place (as export_model and the pipeline's push step do): served at once
        os.rename(exported / "1", models / "1")
        started = time.monotonic()
        procs.wait_ready(ready_url, timeout=interval + 30, process=server.process, log_path=server.log_path)
        print(f"ready {time.monotonic() - started:.1f} s after the version appeared")
        answer = requests.post(server.predict_url, json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["predictions"][0]["version"] == 1
        deadline = time.monotonic() + 5  # the line is printed just after the version became active
        while "version 1 loaded" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "version 1 loaded: the model is ready" in server.log()
        with serving.GrpcClient(server.grpc_target) as client:
            assert client.ready() and client.predict([196], k=5)["version"] == 1
        # version 2 completes later: listed, served when pinned or activated, never switched to by itself
        shutil.copy(exported / "2" / "metadata.json", models / "2" / "metadata.json")
        assert requests.post(server.predict_url, json={**body, "version": 2}, timeout=30).status_code == 200
        assert requests.get(f"{server}/v1/models/recsys/versions", timeout=10).json()["active"] == 1


# ------------------------------------------------------------------------------------------ the real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = exported_versions(tmp_path_factory.mktemp("served"), 2)
    with serving.local_server(base, timeout=180, admin_token=TOKEN) as url:
        yield url
    assert url.process.poll() is not None, "the server stops when the context exits"


@pytest.fixture(scope="module")
def http():
    import requests

    with requests.Session() as session:
        yield session


def predict(http, server, body, **kwargs):
    return http.post(server.predict_url, json=body, timeout=10, **kwargs)


@pytest.mark.slow
def test_server_listens_on_loopback_only(server):
    import psutil

    listening = [c for c in psutil.Process(server.process.pid).connections("inet") if c.status == "LISTEN"]
    ports = {c.laddr.port for c in listening}
    assert {server.http_port, server.grpc_port} <= ports
    for connection in listening:  # gRPC may listen on the IPv4-mapped form ::ffff:127.0.0.1
        address = ipaddress.ip_address(connection.laddr.ip)
        address = getattr(address, "ipv4_mapped", None) or address
        assert address == ipaddress.ip_address("127.0.0.1"), f"listening on {connection.laddr}"


@pytest.mark.slow
def test_ready_and_predict(server, http, v2):
    assert http.get(f"{server}/v1/models/recsys", timeout=5).json() == {"name": "recsys", "ready": True}
    response = predict(http, server, {"instances": [{"user_id": 196, "k": 10}, {"user_id": 10**9, "k": 3}]})
    assert response.status_code == 200 and response.headers["x-model-version"] == "2"
    first, cold = response.json()["predictions"]
    items, scores, _ = v2.top_k([196, 10**9], 10)
    assert first["user_id"] == 196 and first["known"] is True and first["version"] == 2
    assert first["item_ids"] == items[0].tolist()
    np.testing.assert_allclose(first["scores"], scores[0], rtol=1e-6)
    assert cold["known"] is False and cold["item_ids"] == items[1][:3].tolist(), "unknown user: popular items"


@pytest.mark.slow
def test_predict_exclude_and_score(server, http, v2):
    seen = v2.top_k([196], 5)[0][0].tolist()
    body = {"instances": [{"user_id": 196, "k": 5, "exclude": seen}, {"user_id": 196, "item_ids": [50, 10**9]}]}
    recs, scored = predict(http, server, body).json()["predictions"]
    assert len(recs["item_ids"]) == 5 and not set(recs["item_ids"]) & set(seen)
    assert scored["item_ids"] == [50, 10**9] and scored["scores"][1] is None
    assert scored["scores"][0] == pytest.approx(float(v2.score([196], [50])[0]), rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "Unrecognized request format"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"instances": 3}', "list"),
        (b'{"instances": [{"user_id": "196"}]}', "must be an integer"),
        (b'{"instances": [{"user_id": 196, "k": -1}]}', "between 1 and 1000"),
    ],
)
def test_malformed_bodies_get_400_with_a_reason(server, http, data, reason):
    response = http.post(server.predict_url, data=data, headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 400
    assert reason in response.json()["error"]


@pytest.mark.slow
def test_pinned_versions(server, http):
    body = {"instances": [{"user_id": 196, "k": 10}]}
    latest = predict(http, server, body).json()["predictions"][0]
    by_header = predict(http, server, body, headers={"X-Model-Version": "1"}).json()["predictions"][0]
    by_query = http.post(server.predict_url + "?version=1", json=body, timeout=10).json()["predictions"][0]
    by_body = predict(http, server, {**body, "version": 1}).json()["predictions"][0]
    assert latest["version"] == 2 and by_header["version"] == by_query["version"] == by_body["version"] == 1
    assert by_header["item_ids"] == by_query["item_ids"] == by_body["item_ids"] != latest["item_ids"]
    missing = predict(http, server, body, headers={"X-Model-Version": "9"})
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]
    bad = predict(http, server, body, headers={"X-Model-Version": "two"})
    assert bad.status_code == 400 and "integer" in bad.json()["error"]
    clash = predict(http, server, {**body, "version": 2}, headers={"X-Model-Version": "1"})
    assert clash.status_code == 400


@pytest.mark.slow
def test_activate_rollback_and_a_broken_version(server, http):
    versions_url = f"{server}/v1/models/recsys/versions"
    body = {"instances": [{"user_id": 196, "k": 10}]}
    admin = server.admin_headers()
    assert admin == {"Authorization": f"Bearer {TOKEN}"}
    assert http.get(versions_url, timeout=5).json()["active"] == 2, "listing the versions needs no token"
    v1_items = predict(http, server, {**body, "version": 1}).json()["predictions"][0]["item_ids"]

    switched = http.post(f"{versions_url}/1:activate", timeout=30, headers=admin)
    assert switched.status_code == 200 and switched.json()["active"] == 1 and switched.json()["previous"] == 2
    answer = predict(http, server, body).json()["predictions"][0]
    assert answer["version"] == 1 and answer["item_ids"] == v1_items

    rolled = http.post(f"{server}/v1/models/recsys:rollback", timeout=30, headers=admin)
    assert rolled.status_code == 200 and rolled.json() == {"name": "recsys", "active": 2, "previous": 1}
    assert predict(http, server, body).json()["predictions"][0]["version"] == 2
    assert server.process.poll() is None, "switching and rolling back need no restart"

    # a broken version 3 appears: it is refused, version 2 keeps serving
    broken = server.model_dir / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"garbage")
    shutil.copy(server.model_dir / "2" / "metadata.json", broken / "metadata.json")
    refused = http.post(f"{versions_url}/3:activate", timeout=30, headers=admin)
    assert refused.status_code == 409 and "failed to load" in refused.json()["error"]
    assert str(server.model_dir) not in refused.text, "no server path in an answer"
    assert predict(http, server, body).json()["predictions"][0]["version"] == 2
    listing = http.get(versions_url, timeout=5)
    listed = {v["version"]: v["status"] for v in listing.json()["versions"]}
    assert listed == {1: "loaded", 2: "active", 3: "failed"}
    assert str(server.model_dir) not in listing.text, "the load error of version 3 names no server path"
    assert http.post(f"{versions_url}/8:activate", timeout=30, headers=admin).status_code == 404
    assert http.post(f"{versions_url}/two:activate", timeout=30, headers=admin).status_code == 400
    assert http.post(f"{server}/v1/models/other:rollback", timeout=30, headers=admin).status_code == 404


@pytest.mark.slow
def test_grpc_predict_equals_rest(server, http):
    body = {"instances": [{"user_id": user, "k": 7} for user in USERS]}
    rest = predict(http, server, body).json()["predictions"]
    with serving.GrpcClient(server.grpc_target) as client:
        assert client.ready()
        answer = client.predict(USERS, k=7)
        pinned = client.predict([196], k=7, version=1)
    assert answer["version"] == 2 and pinned["version"] == 1
    assert answer["item_ids"].shape == (len(USERS), 7)
    np.testing.assert_array_equal(answer["item_ids"], [p["item_ids"] for p in rest])
    np.testing.assert_allclose(answer["scores"], [p["scores"] for p in rest], rtol=1e-6)
    np.testing.assert_array_equal(answer["known"], [p["known"] for p in rest])
    assert pinned["item_ids"][0].tolist() != answer["item_ids"][2].tolist()


@pytest.mark.slow
def test_open_inference_protocol_over_rest(server, http, v2):
    body = {
        "inputs": [
            {"name": "user_id", "shape": [2], "datatype": "INT64", "data": [196, 10**9]},
            {"name": "k", "shape": [1], "datatype": "INT32", "data": [4]},
        ]
    }
    response = http.post(f"{server}/v2/models/recsys/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    items, _, _ = v2.top_k([196, 10**9], 4)
    assert outputs["item_ids"]["shape"] == [2, 4]
    assert outputs["item_ids"]["data"] == np.concatenate(items).tolist()
    assert outputs["known"]["data"] == [True, False]
    assert response.json()["model_version"] == "2"


@pytest.mark.slow
def test_grpc_rejects_a_bad_request(server):
    import grpc

    with serving.GrpcClient(server.grpc_target) as client:
        with pytest.raises(grpc.RpcError) as error:
            client.predict([196], k=0)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "between 1 and 1000" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            client.predict([196], k=5, version=9)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "version 9 does not exist" in error.value.details()
        assert client.predict([196], k=5)["item_ids"].shape == (1, 5), "the server still answers"
