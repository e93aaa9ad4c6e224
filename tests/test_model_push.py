"""Pushing a model through the model server's admin API: the version archives and the pipeline's use of them.

Unit tests for the admin predicates, the per-route body limit and the checked unpacking (no server), then a
real model server (:func:`recsys_workshop.serving.local_server`, as in ``test_serving_security.py``): the
archive download needs the token; a downloaded version uploaded again becomes a new version that predicts the
same; every malicious or broken archive gets its own 4xx and leaves no folder behind; the upload's large limit
holds only on the upload route. Last, the pipeline's compare and push steps against a real local server
(``deployed_dir`` as a URL, as on a cluster): nothing deployed, push, activate, served.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile

import pytest

from recsys_workshop import asgi_limits, security
from recsys_workshop.serving import archive

TOKEN = "model-push-test-token-0123456789"
MAX_BYTES = 256 * 1024  # every route but the upload
MAX_UPLOAD = 4 * 2**20  # the upload; it may unpack to 4 times that (routes.UPLOAD_FACTOR)
GZIP = {"Content-Type": "application/gzip"}


# ------------------------------------------------------------------------------------------ archives


def targz(members, compress: bool = True) -> bytes:
    """A .tar(.gz) of ``members``: (name, bytes) for a regular file, (TarInfo, None) for anything else."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if compress else "w") as tar:
        for name, content in members:
            if isinstance(name, tarfile.TarInfo):
                tar.addfile(name)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


FORMAT_2 = json.dumps({"format": 2, "retrieval": {"index": "exact"}}).encode()
COMPLETE_BUT_BROKEN = [("saved_model.pb", b"not a protobuf"), ("variables/variables.index", b"x"),
                       ("metadata.json", FORMAT_2)]  # fmt: skip
# name -> (body, Content-Type, status, words of the reason)
MALICIOUS = {
    "path traversal": (targz([("../escaped", b"x")]), GZIP, 400, "leaving its folder"),
    "nested traversal": (targz([("variables/../../escaped", b"x")]), GZIP, 400, "leaving its folder"),
    "absolute path": (targz([("/tmp/absolute", b"x")]), GZIP, 400, "absolute path"),
    "symlink": (targz([special("saved_model.pb", tarfile.SYMTYPE, "/etc/passwd")]), GZIP, 400, "links"),
    "hard link": (targz([("a", b"x"), special("saved_model.pb", tarfile.LNKTYPE, "a")]), GZIP, 400, "links"),
    "device": (targz([special("dev", tarfile.CHRTYPE)]), GZIP, 400, "devices"),
    "fifo": (targz([special("fifo", tarfile.FIFOTYPE)]), GZIP, 400, "FIFOs"),
    "unpacks too large": (targz([("metadata.json", b"{}"), ("variables/variables.data-00000-of-00001",
                                                             b"\0" * (4 * MAX_UPLOAD + 1))]),
                          GZIP, 413, "unpacks to more than"),  # fmt: skip
    "too many members": (targz([(f"f{i}", b"") for i in range(archive.MAX_MEMBERS + 1)]), GZIP, 413, "members"),
    "incomplete version": (targz([("metadata.json", b"{}")]), GZIP, 422, "saved_model.pb"),
    "metadata not an object": (targz([*COMPLETE_BUT_BROKEN[:2], ("metadata.json", b"[1]")]), GZIP, 422, "JSON object"),
    "does not load": (targz(COMPLETE_BUT_BROKEN), GZIP, 422, "failed to load"),
    "old export format": (targz([*COMPLETE_BUT_BROKEN[:2], ("metadata.json", b"{}")]), GZIP, 422, "format 1"),
    "garbage bytes": (bytes(range(256)) * 8, GZIP, 400, "not a valid gzip-compressed tar"),
    "gzip of garbage": (gzip.compress(b"garbage" * 100), GZIP, 400, "not a valid gzip-compressed tar"),
    "plain tar, not gzip": (targz([("metadata.json", b"{}")], compress=False), GZIP, 400, "not a valid gzip"),
    "truncated": (targz(COMPLETE_BUT_BROKEN)[:60], GZIP, 400, "not a valid gzip-compressed tar"),
    "empty body": (b"", GZIP, 400, "empty"),
    "wrong content type": (targz(COMPLETE_BUT_BROKEN), {"Content-Type": "application/json"}, 415, "application/gzip"),
}
UNPACK_ONLY = {name: case for name, case in MALICIOUS.items() if case[2] in (400, 413) and case[0]}


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(UNPACK_ONLY))
def test_unpacking_refuses_unsafe_archives_and_writes_nothing_outside(name, tmp_path):
    body, _, status, reason = UNPACK_ONLY[name]
    source, target = tmp_path / "upload.tar.gz", tmp_path / "target"
    source.write_bytes(body)
    target.mkdir()
    with pytest.raises(archive.ArchiveError, match=reason) as refused:
        archive.unpack_checked(source, target, max_unpacked=4 * MAX_UPLOAD)
    assert refused.value.status == status
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target", "upload.tar.gz"], "nothing beside target"
    assert not any(p.is_symlink() for p in target.rglob("*"))


@pytest.mark.unit
def test_pack_and_unpack_round_trip_with_new_metadata(tmp_path):
    folder = tmp_path / "7"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "metadata.json").write_text('{"version": 7}')
    (folder / "link").symlink_to(folder / "saved_model.pb")
    buffer = io.BytesIO()
    archive.pack_version(folder, buffer, metadata={"version": 7, "metrics": {"ndcg@10": 0.3}})
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        names = tar.getnames()
    assert sorted(names) == ["metadata.json", "saved_model.pb", "variables", "variables/variables.index"]
    (tmp_path / "a.tar.gz").write_bytes(buffer.getvalue())
    (tmp_path / "out").mkdir()
    archive.unpack_checked(tmp_path / "a.tar.gz", tmp_path / "out")
    assert (tmp_path / "out" / "variables" / "variables.index").read_bytes() == b"index"
    assert json.loads((tmp_path / "out" / "metadata.json").read_text())["metrics"] == {"ndcg@10": 0.3}


@pytest.mark.unit
def test_the_archive_routes_are_admin_routes_and_only_the_upload_is_large():
    from recsys_workshop.serving.routes import is_admin_route, is_upload_route

    for method in ("GET", "POST", "HEAD"):
        assert is_admin_route(method, "/v1/models/recsys/versions/2/archive")
        assert is_admin_route(method, "//v1/models/recsys/versions/latest/archive/")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert is_admin_route(method, "/v1/models/recsys/versions"), method
        assert is_admin_route(method, "/v1/models/recsys/versions/"), method
    assert not is_admin_route("GET", "/v1/models/recsys/versions"), "the list stays public"
    for path in ("/v1/models/recsys:predict", "/v2/models/recsys/versions/2/infer", "/v1/models/versions"):
        assert not is_admin_route("POST", path), path
    assert is_upload_route("POST", "/v1/models/recsys/versions") and is_upload_route("POST", "/v1/models/x/versions/")
    for method, path in (("GET", "/v1/models/recsys/versions"), ("POST", "/v1/models/recsys:predict"),
                         ("POST", "/v1/models/recsys/versions/1:activate"),
                         ("POST", "/v2/models/recsys/versions/1/infer")):  # fmt: skip
        assert not is_upload_route(method, path), (method, path)


async def _send(app, path: str, size: int, method: str = "POST"):
    """Status of ``app``'s answer to a body of ``size`` bytes declared in Content-Length."""
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(b"content-length", str(size).encode())]}  # fmt: skip
    chunks = [{"type": "http.request", "body": b"x" * size, "more_body": False}]
    sent = []

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def echo(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = asgi_limits.BodyLimits(echo, max_bytes=100, read_timeout=1,
                                     limit_for=lambda m, p: 1000 if p == "/upload" else None)  # fmt: skip
    await limited(scope, receive, send)
    return sent[0]["status"]


@pytest.mark.unit
def test_body_limits_take_a_per_route_limit():
    assert asyncio.run(_send(None, "/upload", 1000)) == 200
    assert asyncio.run(_send(None, "/upload", 1001)) == 413
    assert asyncio.run(_send(None, "/predict", 101)) == 413, "every other route keeps the small limit"
    assert asyncio.run(_send(None, "/predict", 100)) == 200


# ------------------------------------------------------------------------------------------ the real server


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from model_fixtures import exported_versions

    return exported_versions(tmp_path_factory.mktemp("pushed"), 2)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    from recsys_workshop import serving

    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    with serving.local_server(model_dir, timeout=180, log_path=log_path, admin_token=TOKEN, enable_grpc=False,
                              max_body_bytes=MAX_BYTES, max_upload_bytes=MAX_UPLOAD) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def http():
    import requests

    with requests.Session() as session:
        yield session


def _folders(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def _predict(http, server, version: int) -> dict:
    body = {"instances": [{"user_id": 196, "k": 10}, {"user_id": 1, "k": 5}, {"user_id": 999_999, "k": 3}]}
    response = http.post(server.predict_url, json=body, headers={"X-Model-Version": str(version)}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


@pytest.mark.tf
@pytest.mark.slow
def test_the_archive_download_needs_the_token(server, http):
    url = f"{server}/v1/models/recsys/versions/latest/archive"
    missing = http.get(url, timeout=30)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert http.get(url, headers={"Authorization": "Bearer " + "x" * 30}, timeout=30).status_code == 403
    upload = http.post(f"{server}/v1/models/recsys/versions", data=b"x", headers=GZIP, timeout=30)
    assert upload.status_code == 401
    listed = http.get(f"{server}/v1/models/recsys/versions", timeout=30)
    assert listed.status_code == 200, "the version list stays public"
    admin = server.admin_headers()
    assert http.get(f"{server}/v1/models/recsys/versions/99/archive", headers=admin, timeout=30).status_code == 404
    assert http.get(f"{server}/v1/models/recsys/versions/x/archive", headers=admin, timeout=30).status_code == 400
    assert http.get(f"{server}/v1/models/other/versions/1/archive", headers=admin, timeout=30).status_code == 404


@pytest.mark.tf
@pytest.mark.slow
def test_a_downloaded_version_uploaded_again_predicts_the_same(server, http, model_dir):
    admin = server.admin_headers()
    download = http.get(f"{server}/v1/models/recsys/versions/1/archive", headers=admin, timeout=60)
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    assert download.headers["x-model-version"] == "1"
    latest = http.get(f"{server}/v1/models/recsys/versions/latest/archive", headers=admin, timeout=60)
    assert latest.headers["x-model-version"] == str(max(int(p) for p in _folders(model_dir) if p.isdigit()))
    before = [p for p in _folders(model_dir) if p.isdigit()]
    uploaded = http.post(f"{server}/v1/models/recsys/versions", data=download.content, headers={**admin, **GZIP},
                         timeout=120)  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    version = uploaded.json()["version"]
    assert version == int(max(before, key=int)) + 1
    assert _folders(model_dir) == sorted([*before, str(version)]), "the new folder, and no staging folder left"
    metadata = json.loads((model_dir / str(version) / "metadata.json").read_text())
    assert metadata["version"] == version and metadata["metrics"] == json.loads(
        (model_dir / "1" / "metadata.json").read_text())["metrics"]  # fmt: skip
    listed = {v["version"]: v["status"] for v in http.get(f"{server}/v1/models/recsys/versions", timeout=30)
              .json()["versions"]}  # fmt: skip
    assert listed[version] == "loaded", "published, checked by loading, not active until :activate"
    same = [{k: v for k, v in p.items() if k != "version"} for p in _predict(http, server, version)]
    assert same == [{k: v for k, v in p.items() if k != "version"} for p in _predict(http, server, 1)]
    activated = http.post(f"{server}/v1/models/recsys/versions/{version}:activate", headers=admin, timeout=60)
    assert activated.status_code == 200 and activated.json()["active"] == version
    assert http.post(f"{server}/v1/models/recsys:rollback", headers=admin, timeout=60).status_code == 200


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_bad_archives_get_a_specific_4xx_and_leave_no_folder(server, http, model_dir, name):
    body, headers, status, reason = MALICIOUS[name]
    before = _folders(model_dir)
    response = http.post(f"{server}/v1/models/recsys/versions", data=body,
                         headers={**server.admin_headers(), **headers}, timeout=120)  # fmt: skip
    assert response.status_code == status, response.text
    assert reason in response.json()["error"] and "/" + str(model_dir).strip("/") not in response.text
    assert _folders(model_dir) == before, "no version folder and no staging folder left behind"
    assert "Traceback" not in server.log()


@pytest.mark.tf
@pytest.mark.slow
def test_the_upload_limit_holds_on_the_upload_route_only(server, http, model_dir):
    admin = {**server.admin_headers(), **GZIP}
    before = _folders(model_dir)
    over = http.post(f"{server}/v1/models/recsys/versions", data=b"\0" * (MAX_UPLOAD + 1), headers=admin, timeout=60)
    assert over.status_code == 413 and f"larger than {MAX_UPLOAD} bytes" in over.json()["error"]
    chunked = http.post(f"{server}/v1/models/recsys/versions", data=iter([b"\0" * MAX_UPLOAD, b"\0"]), headers=admin,
                        timeout=60)  # fmt: skip
    assert chunked.status_code == 413, "a chunked upload is measured as it arrives"
    assert _folders(model_dir) == before
    body = b'{"instances": [{"user_id": 1, "exclude": [' + b"1," * MAX_BYTES + b"1]}]}"
    assert len(body) < MAX_UPLOAD
    predict = http.post(server.predict_url, data=body, headers={"content-type": "application/json"}, timeout=30)
    assert predict.status_code == 413 and f"larger than {MAX_BYTES} bytes" in predict.json()["error"]
    activate = http.post(f"{server}/v1/models/recsys/versions/1:activate", data=b"x" * (MAX_BYTES + 1),
                         headers=server.admin_headers(), timeout=30)  # fmt: skip
    assert activate.status_code == 413, "the admin routes other than the upload keep the small limit"


# ------------------------------------------------------------------------------------------ the pipeline


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from model_fixtures import split

    folder = tmp_path_factory.mktemp("splits")
    train, test = split()
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


@pytest.mark.tf
@pytest.mark.slow
def test_the_pipeline_compares_with_and_pushes_to_a_real_model_server(tmp_path, splits, monkeypatch):
    """deployed_dir as the model server's URL, as on a cluster: the compare step finds nothing deployed (the
    server waits for its first model), the push step uploads and activates, and the server serves it; the
    next compare downloads the deployed version and evaluates it like a local one."""
    from model_fixtures import exported_versions

    from recsys_workshop import serving
    from recsys_workshop.pipelines import steps

    candidates = exported_versions(tmp_path / "candidates", 2)
    store = tmp_path / "store"
    store.mkdir()
    train, test = (str(p) for p in splits)
    monkeypatch.setenv(security.ADMIN_TOKEN_ENV, TOKEN)
    monkeypatch.delenv(security.ADMIN_TOKEN_FILE_ENV, raising=False)
    with serving.local_server(store, timeout=180, admin_token=TOKEN, enable_grpc=False, wait_for_model=True,
                              poll_interval=3600) as server:  # fmt: skip
        first = steps.step_compare(str(candidates / "1"), train, test, server.url, 10, 0.0)
        assert first["better"] and first["deployed"] is None and first["reason"] == "nothing deployed yet"
        pushed = steps.step_push(str(candidates / "1"), server.url, {"ndcg@10": first["candidate"]})
        assert pushed == f"version 1 on {server.url}"
        import requests

        assert requests.get(f"{server}/v2/models/recsys/ready", timeout=30).status_code == 200, "activated"
        served = requests.post(server.predict_url, json={"instances": [{"user_id": 196, "k": 10}]}, timeout=30)
        local = serving.LoadedVersion.load(candidates / "1")
        assert served.json()["predictions"][0]["version"] == 1
        assert served.json()["predictions"][0]["item_ids"] == local.top_k([196], 10)[0][0].tolist()
        assert json.loads((store / "1" / "metadata.json").read_text())["metrics"]["ndcg@10"] == first["candidate"]

        again = steps.step_compare(str(candidates / "1"), train, test, server.url + "/v1/models/recsys", 10, 0.0)
        assert again["deployed"] == pytest.approx(first["candidate"]) and not again["better"], "a tie is no rollout"
        assert "deployed v1" in again["reason"]
        second = steps.step_compare(str(candidates / "2"), train, test, server.url, 10, 0.0)
        if second["better"]:
            assert steps.step_push(str(candidates / "2"), server.url, {}) == f"version 2 on {server.url}"
            versions = requests.get(f"{server}/v1/models/recsys/versions", timeout=30).json()
            assert versions["active"] == 2
        assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []

        monkeypatch.setenv(security.ADMIN_TOKEN_ENV, "w" * 32)
        with pytest.raises(Exception, match="HTTP 403"):
            steps.step_compare(str(candidates / "1"), train, test, server.url, 10, 0.0)
