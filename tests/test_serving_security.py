"""The admin credential, the body limits and the model server's answers to malformed requests.

Unit tests for :mod:`recsys_workshop.security` and :mod:`recsys_workshop.asgi_limits` (fake ASGI calls, no
server), then the real model server: admin routes over REST and gRPC without / with a wrong / with the
right token, every malformed request a small 4xx with no traceback in the server's log, the 413 and 408
limits, the ready probe, and a graceful drain on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import stat
import time

import pytest

from recsys_workshop import asgi_limits, procs, security

TOKEN = "security-test-token-0123456789"
MAX_BYTES = 256 * 1024
BODY_TIMEOUT = 2.0
SMALL = 400  # bytes: the most an error answer may take


# ------------------------------------------------------------------------------------------ the token


@pytest.mark.unit
def test_admin_token_from_the_environment_or_a_file(tmp_path):
    assert security.admin_token({}) is None
    assert security.admin_token({security.ADMIN_TOKEN_ENV: f"  {TOKEN}\n"}) == TOKEN
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    assert security.admin_token({security.ADMIN_TOKEN_FILE_ENV: str(secret)}) == TOKEN
    both = {security.ADMIN_TOKEN_ENV: "x" * 20, security.ADMIN_TOKEN_FILE_ENV: str(secret)}
    assert security.admin_token(both) == "x" * 20, "the variable wins over the file"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot be read"), ("", "empty"), ("   \n", "empty"), ("short", "too short"), ("a b" * 10, "printable")],
)
def test_unusable_admin_tokens_are_refused_with_a_reason(tmp_path, content, reason):
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(security.AdminTokenError, match=reason):
        security.admin_token({security.ADMIN_TOKEN_FILE_ENV: str(secret)})


@pytest.mark.unit
def test_local_admin_token_is_generated_once_privately(tmp_path):
    path = tmp_path / "secrets" / "admin-token"
    token = security.local_admin_token(path)
    assert len(token) >= 32 and security.local_admin_token(path) == token, "generated once, then read"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["admin-token"], "no temporary file left behind"
    path.write_text("")
    with pytest.raises(security.AdminTokenError, match="delete it"):
        security.local_admin_token(path)


@pytest.mark.unit
def test_check_bearer():
    assert security.check_bearer(f"Bearer {TOKEN}", TOKEN) is None
    assert security.check_bearer(f"bearer   {TOKEN} ", TOKEN) is None
    for header in (None, "", "Bearer", "Basic abc", TOKEN):
        assert security.check_bearer(header, TOKEN)[0] == 401, header
    for header in ("Bearer wrong", f"Bearer {TOKEN}x", "Bearer \u00e9\u00e9"):
        assert security.check_bearer(header, TOKEN)[0] == 403, header


@pytest.mark.unit
def test_the_model_servers_admin_routes_and_methods():
    from recsys_workshop.serving.routes import is_admin_grpc_method, is_admin_route

    for path in ADMIN_ROUTES + ["//v2/repository/models/recsys/unload/", "/v2/repository", "/v1/models/x:rollback/"]:
        assert is_admin_route("POST", path) and is_admin_route("GET", path), path
    for path in ("/v1/models/recsys:predict", "/v2/models/recsys/infer", "/v2/models/recsys/versions/1/infer",
                 "/v2/models/recsys/ready", "/v2/models/repository", "/v1/models/activate"):  # fmt: skip
        assert not is_admin_route("POST", path), path
    assert not is_admin_route("GET", "/v1/models/recsys/versions"), "the version list is public"
    assert is_admin_route("POST", "/v1/models/recsys/versions"), "a version upload is not (tests/test_model_push.py)"
    service = "/inference.GRPCInferenceService/"
    assert all(is_admin_grpc_method(service + m) for m in ("RepositoryModelLoad", "RepositoryModelUnload"))
    assert not any(is_admin_grpc_method(service + m) for m in ("ModelInfer", "ModelReady", "ServerLive"))


@pytest.mark.unit
def test_a_server_started_by_hand_says_where_its_token_is(tmp_path, monkeypatch, capsys):
    from recsys_workshop.serving import cli

    path = tmp_path / "secrets" / "admin-token"
    monkeypatch.delenv(security.ADMIN_TOKEN_ENV, raising=False)
    monkeypatch.delenv(security.ADMIN_TOKEN_FILE_ENV, raising=False)
    monkeypatch.setattr(security, "local_token_path", lambda: path)
    token = cli.resolve_admin_token()
    printed = capsys.readouterr().out
    assert token == path.read_text().strip() and str(path) in printed and token not in printed
    assert printed.count("\n") == 1, "one line"
    monkeypatch.setenv(security.ADMIN_TOKEN_ENV, TOKEN)
    assert cli.resolve_admin_token() == TOKEN and capsys.readouterr().out == ""
    monkeypatch.setenv(security.ADMIN_TOKEN_ENV, "short")
    with pytest.raises(security.AdminTokenError):
        cli.resolve_admin_token()


async def _call(app, method="POST", path="/", headers=(), chunks=(b"",), stall=False):
    """One ASGI request through ``app``: (status, headers, body) of the answer."""
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}  # fmt: skip
    more = [stall or i < len(chunks) - 1 for i in range(len(chunks))]  # stall: the body never ends
    pending = [{"type": "http.request", "body": c, "more_body": m} for c, m in zip(chunks, more, strict=True)]
    sent = []

    async def receive():
        if pending:
            return pending.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


async def _echo_length(scope, receive, send):
    """An application reading the whole body and answering its length; a 500 (like Starlette's error
    middleware) if reading fails."""
    size = 0
    try:
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    except Exception:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"internal"})
        raise
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.mark.unit
def test_admin_guard_lets_only_the_token_through_to_admin_routes():
    app = security.AdminGuard(_echo_length, TOKEN, lambda method, path: path.startswith("/admin"))
    status, headers, body = asyncio.run(_call(app, path="/admin/x"))
    assert status == 401 and headers["www-authenticate"].startswith("Bearer") and "error" in json.loads(body)
    assert asyncio.run(_call(app, path="/admin/x", headers=[("Authorization", "Bearer nope")]))[0] == 403
    assert asyncio.run(_call(app, path="/admin/x", headers=[("Authorization", f"Bearer {TOKEN}")]))[0] == 200
    assert asyncio.run(_call(app, path="/public"))[0] == 200


@pytest.mark.unit
def test_body_limits_answer_413_and_408():
    app = asgi_limits.BodyLimits(_echo_length, max_bytes=100, read_timeout=0.2)
    chunked = [("Transfer-Encoding", "chunked")]
    assert asyncio.run(_call(app, headers=chunked, chunks=(b"x" * 60, b"x" * 40))) == (200, {}, b"100")
    status, headers, body = asyncio.run(_call(app, headers=[("Content-Length", "101")], chunks=(b"x" * 101,)))
    assert status == 413 and headers["connection"] == "close" and b"larger than 100 bytes" in body
    status, _, body = asyncio.run(_call(app, headers=chunked, chunks=(b"x" * 60, b"x" * 60)))
    assert status == 413, "a chunked body is counted as it arrives: the application's 500 is replaced"
    for declared in (chunked, [("Content-Length", "50")], [("Content-Length", "nan")]):
        started = time.monotonic()
        status, headers, body = asyncio.run(_call(app, headers=declared, chunks=(b"x" * 10,), stall=True))
        assert status == 408 and headers["connection"] == "close" and time.monotonic() - started < 2, declared


@pytest.mark.unit
def test_body_limits_hand_a_bodyless_request_straight_to_the_application():
    seen = {}

    async def app(scope, receive, send):
        seen["receive"], seen["send"] = receive, send
        await _echo_length(scope, receive, send)

    limited = asgi_limits.BodyLimits(app, max_bytes=100, read_timeout=0.2)
    for headers in ((), [("Content-Length", "0")]):
        assert asyncio.run(_call(limited, method="GET", headers=headers)) == (200, {}, b"0")
        assert seen["receive"].__name__ == "receive" and seen["send"].__name__ == "send", "no wrapper"


# ------------------------------------------------------------------------------------------ the real server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from model_fixtures import exported_versions

    return exported_versions(tmp_path_factory.mktemp("secured"), 2)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    from recsys_workshop import serving

    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    with serving.local_server(model_dir, timeout=180, log_path=log_path, admin_token=TOKEN,
                              max_body_bytes=MAX_BYTES, body_timeout=BODY_TIMEOUT) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def http():
    import requests

    with requests.Session() as session:
        yield session


def _predict_ok(http, server) -> bool:
    response = http.post(server.predict_url, json={"instances": [{"user_id": 196, "k": 3}]}, timeout=10)
    return response.status_code == 200 and len(response.json()["predictions"][0]["item_ids"]) == 3


def _ready(http, server) -> int:
    return http.get(f"{server}/v2/models/recsys/ready", timeout=10).status_code


ADMIN_ROUTES = [
    "/v1/models/recsys/versions/1:activate",
    "/v1/models/recsys:rollback",
    "/v2/repository/models/recsys/load",
    "/v2/repository/models/recsys/unload",
    "/v2/repository/index",
]


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("path", ADMIN_ROUTES)
def test_admin_routes_refuse_a_missing_or_wrong_token(server, http, path):
    for method in ("POST", "GET"):
        missing = http.request(method, server.url + path, timeout=10)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        basic = http.request(method, server.url + path, headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)
        assert basic.status_code == 401
        wrong = http.request(method, server.url + path, headers={"Authorization": "Bearer " + "x" * 30}, timeout=10)
        assert wrong.status_code == 403 and "wrong admin token" in wrong.json()["error"]
    assert _ready(http, server) == 200 and _predict_ok(http, server), "a refused unload unloads nothing"


@pytest.mark.tf
@pytest.mark.slow
def test_admin_routes_work_with_the_token(server, http):
    admin = server.admin_headers()
    activated = http.post(f"{server}/v1/models/recsys/versions/1:activate", headers=admin, timeout=30)
    assert activated.status_code == 200 and activated.json()["active"] == 1
    rolled = http.post(f"{server}/v1/models/recsys:rollback", headers=admin, timeout=30)
    assert rolled.status_code == 200 and rolled.json()["active"] == 2
    assert http.post(f"{server}/v2/repository/models/recsys/load", headers=admin, timeout=30).status_code == 200
    other = http.post(f"{server}/v2/repository/models/other/unload", headers=admin, timeout=30)
    assert other.status_code == 404
    assert _predict_ok(http, server)


@pytest.mark.tf
@pytest.mark.slow
def test_unload_with_the_token_fails_the_ready_probe_until_load(server, http):
    admin = server.admin_headers()
    assert _ready(http, server) == 200
    assert http.post(f"{server}/v2/repository/models/recsys/unload", headers=admin, timeout=30).status_code == 200
    try:
        assert not 200 <= _ready(http, server) < 300, "the probe path fails while no model is loaded"
        assert not _predict_ok(http, server)
    finally:
        loaded = http.post(f"{server}/v2/repository/models/recsys/load", headers=admin, timeout=30)
    assert loaded.status_code == 200 and loaded.json() == {"name": "recsys", "load": True}
    assert _ready(http, server) == 200 and _predict_ok(http, server), "loaded again, it serves again"


@pytest.mark.tf
@pytest.mark.slow
def test_grpc_repository_methods_need_the_token(server, http):
    import grpc

    from recsys_workshop.serving import GrpcClient

    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), ("y" * 30, grpc.StatusCode.PERMISSION_DENIED)):
        with GrpcClient(server.grpc_target, token=token) as client:
            for call in (client.unload, client.load):
                with pytest.raises(grpc.RpcError) as error:
                    call()
                assert error.value.code() == code
            assert client.predict([196], k=3)["item_ids"].shape == (1, 3), "predict needs no token"
    assert _ready(http, server) == 200
    with GrpcClient(server.grpc_target, token=TOKEN) as client:
        assert client.load() is True
        assert client.unload() is True
        try:
            with pytest.raises(grpc.RpcError) as error:
                client.ready()
            assert error.value.code() == grpc.StatusCode.NOT_FOUND, "unloaded: the model is gone"
        finally:
            assert client.load() is True
        assert client.ready() and client.predict([196], k=3)["item_ids"].shape == (1, 3)


def _user(value, shape=(1,), datatype="INT64"):
    return {"inputs": [{"name": "user_id", "shape": list(shape), "datatype": datatype, "data": value}]}


BIG_KEY = "x" * (MAX_BYTES // 2)
MALFORMED = [
    ("v2", _user([196], shape=[5]), "needs 5 values"),
    ("v2", _user([196], shape=[1_000_000_000]), "at most 1000"),
    ("v2", _user([2**64]), "64-bit"),
    ("v2", _user([-(2**63) - 1]), "64-bit"),
    ("v2", _user(["abc"]), "must be an integer"),
    ("v2", _user([1.5]), "must be an integer"),
    ("v2", _user([196], shape=[-1]), "non-negative"),
    ("v2", _user([196], datatype="BYTES"), "integer tensor"),
    ("v2", {**_user([196]), BIG_KEY: 1}, "unknown top-level field"),
    ("v2", {"inputs": [{**_user([196])["inputs"][0], BIG_KEY: 1}]}, "unknown field"),
    ("v2", {"inputs": [{"name": BIG_KEY, "shape": [1], "datatype": "INT64", "data": [1]}]}, "unknown input"),
    ("v2", {"inputs": "x" * 1000}, "'inputs' must be a list"),
    ("v2", [1, 2], "JSON object"),
    ("v2", {}, "'inputs' must be a list"),
    ("v1", {"instances": [{"user_id": 2**64}]}, "64-bit"),
    ("v1", {"instances": [{"user_id": 1}], BIG_KEY: 1}, "unknown top-level field"),
    ("v1", {"instances": [{"user_id": 1, BIG_KEY: 1}]}, "unknown field"),
    ("v1", {"instances": [{"user_id": BIG_KEY}]}, "must be an integer"),
    ("v1", {"instances": [{"user_id": 1}], "version": BIG_KEY}, "must be an integer"),
]


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "body", "reason"), MALFORMED, ids=[f"{p}-{r}" for p, _, r in MALFORMED])
def test_malformed_requests_get_a_small_4xx(server, http, protocol, body, reason):
    url = server.predict_url if protocol == "v1" else f"{server}/v2/models/recsys/infer"
    before = len(server.log())
    response = http.post(url, json=body, timeout=10)
    assert response.status_code == 400, response.text[:SMALL]
    assert len(response.content) < SMALL and reason in response.json()["error"]
    assert "Traceback" not in server.log()[before:], "a client error is no server fault"


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "status", "data"),
    [
        ("POST", "/v2/models/recsys/versions/99/infer", 404, json.dumps(_user([196]))),
        ("POST", "/v2/models/recsys/versions/x/infer", 400, json.dumps(_user([196]))),
        ("POST", "/v2/models/other/infer", 404, json.dumps(_user([196]))),
        ("POST", "/v2/models/recsys/infer", 400, "{not json" + "x" * 5000),
        ("POST", "/v1/models/recsys:predict?version=" + "9" * 5000, 400, '{"instances": [{"user_id": 1}]}'),
        ("POST", "/v1/models/recsys:explain", 404, '{"instances": [{"user_id": 1}]}'),
        ("GET", "/v2/models/recsys/versions/1", 404, None),
        ("GET", "/v1/models/" + "m" * 5000, 404, None),
    ],
)
def test_odd_routes_get_a_small_4xx(server, http, method, path, status, data):
    before = len(server.log())
    response = http.request(method, server.url + path, data=data, timeout=10)
    assert response.status_code == status and len(response.content) < SMALL, response.text[:SMALL]
    assert "Traceback" not in server.log()[before:]


@pytest.mark.tf
@pytest.mark.slow
def test_pinned_version_in_the_v2_url(server, http):
    url = f"{server}/v2/models/recsys/versions/1/infer"
    answer = http.post(url, json=_user([196]), timeout=10)
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"
    clash = http.post(url, json=_user([196]), headers={"X-Model-Version": "2"}, timeout=10)
    assert clash.status_code == 400 and "pins version 1" in clash.json()["error"]


@pytest.mark.tf
@pytest.mark.slow
def test_malformed_grpc_requests_get_invalid_argument(server):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    tensor, contents = pb.ModelInferRequest.InferInputTensor, pb.InferTensorContents
    cases = [
        ([tensor(name="user_id", datatype="INT64", shape=[5], contents=contents(int64_contents=[196]))], []),
        ([tensor(name="user_id", datatype="INT64", shape=[10**9], contents=contents(int64_contents=[1]))], []),
        ([tensor(name="user_id", datatype="UINT64", shape=[1], contents=contents(uint64_contents=[2**64 - 1]))], []),
        ([tensor(name="user_id", datatype="FP32", shape=[1], contents=contents(fp32_contents=[1.5]))], []),
        ([tensor(name="user_id", datatype="INT64", shape=[2])], [b"abc"]),
        ([tensor(name="x" * 10_000, datatype="INT64", shape=[1], contents=contents(int64_contents=[1]))], []),
    ]
    before = len(server.log())
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for inputs, raw in cases:
            request = pb.ModelInferRequest(model_name="recsys", inputs=inputs, raw_input_contents=raw)
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(request, timeout=10)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
            assert len(error.value.details()) < 300
        huge = [tensor(name="user_id", datatype="INT64", shape=[1], contents=contents(int64_contents=[2**40] * 60_000))]
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(pb.ModelInferRequest(model_name="recsys", inputs=huge), timeout=10)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "over --max-body-bytes"
    assert "Traceback" not in server.log()[before:]


@pytest.mark.tf
@pytest.mark.slow
def test_too_large_bodies_get_413(server, http):
    body = b'{"instances": [{"user_id": 1, "exclude": [' + b"1," * MAX_BYTES + b"1]}]}"
    declared = http.post(server.predict_url, data=body, headers={"content-type": "application/json"}, timeout=30)
    assert declared.status_code == 413 and "larger than" in declared.json()["error"]
    chunked = http.post(server.predict_url, data=iter([body[:1000], body[1000:]]), timeout=30)
    assert chunked.status_code == 413, "a chunked body is measured as it arrives"
    assert _predict_ok(http, server)


HALF_BODY = b'{"instances": [{"user_id": 196, "k": 3}]}'


def _half_sent(port: int) -> socket.socket:
    """A connection that sent the headers and half the body of a predict request (the rest: ``_rest()``)."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = b"POST /v1/models/recsys:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(HALF_BODY) + HALF_BODY[: len(HALF_BODY) // 2])
    return sock


def _rest() -> bytes:
    return HALF_BODY[len(HALF_BODY) // 2 :]


@pytest.mark.tf
@pytest.mark.slow
def test_half_sent_bodies_are_closed_after_the_body_timeout(server, http):
    started = time.monotonic()
    sockets = [_half_sent(server.http_port) for _ in range(50)]
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    answers = {sock: b"" for sock in sockets}
    closed = 0
    try:
        while closed < len(sockets) and time.monotonic() - started < BODY_TIMEOUT + 10:
            for key, _ in selector.select(timeout=0.5):
                chunk = key.fileobj.recv(65536)
                answers[key.fileobj] += chunk
                if not chunk:
                    selector.unregister(key.fileobj)
                    closed += 1
    finally:
        for sock in sockets:
            sock.close()
    assert closed == len(sockets), "the server closes every stalled connection"
    assert time.monotonic() - started < BODY_TIMEOUT + 10
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers.values())
    assert _predict_ok(http, server), "the server still answers others"


@pytest.mark.tf
@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_and_exits_0(model_dir, tmp_path):
    import subprocess
    import sys

    http_port, grpc_port = procs.free_ports(2)
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "recsys_workshop.serving", "--model-dir", str(model_dir), "--no-access-log",
               "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--grace-period", "10"]  # fmt: skip
    env = {**os.environ, security.ADMIN_TOKEN_ENV: TOKEN, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{http_port}/v2/models/recsys/ready"
        procs.wait_ready(url, timeout=180, process=process, log_path=log_path)
        sock = _half_sent(http_port)
        time.sleep(0.5)  # the request is in flight: its headers have reached the application
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while procs.http_status(url) is not None:  # the server stops accepting new connections
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.1)
        sock.sendall(_rest())
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert process.wait(timeout=30) == 0, procs.tail(log_path)
    finally:
        procs.stop_process(process)
