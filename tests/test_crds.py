"""recsys_workshop.kube.crds: the Kubeflow CRDs found or downloaded (from a real HTTP server on 127.0.0.1) and
verified like the MovieLens archives.

The upstream files served here are the genuine CRDs of the pinned kubeflow/manifests commit, read from
``$KUBEFLOW_CRDS_DIR`` (three of them byte for byte as upstream publishes them; KServe's three CRDs are
joined into one multi-document ``kserve.yaml`` with a non-CRD document between them, like upstream's).
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from loopback_http import serve

from recsys_workshop import downloads
from recsys_workshop.kube import crds

pytestmark = [pytest.mark.unit, pytest.mark.cluster]

KSERVE = "applications/kserve/kserve/kserve.yaml"


@pytest.fixture(scope="module")
def genuine_dir() -> Path:
    folder = os.environ.get(crds.CRDS_DIR_ENV)
    if folder:
        return Path(folder)
    return crds.crds_dir()  # a learner's machine: the loader's own download


@pytest.fixture(scope="module")
def upstream(genuine_dir) -> dict[str, bytes]:
    """Upstream path -> the bytes the server sends for it."""
    lock = crds.load_lock()
    files = {}
    for source in lock["sources"]:
        if source["path"] == KSERVE:
            parts = [(genuine_dir / crd["file"]).read_text() for crd in source["crds"]]
            namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kserve\n"
            files[source["path"]] = "---\n".join([namespace, *parts]).encode()
        else:
            (crd,) = source["crds"]
            files[source["path"]] = (genuine_dir / crd["file"]).read_bytes()
    return files


@pytest.fixture(scope="module")
def served_lock(upstream) -> dict:
    """The real lock, with the digest of the joined kserve.yaml the test server sends instead of upstream's."""
    lock = copy.deepcopy(crds.load_lock())
    for source in lock["sources"]:
        if source["path"] == KSERVE:
            source["sha256"] = hashlib.sha256(upstream[KSERVE]).hexdigest()
            source["size"] = len(upstream[KSERVE])
    return lock


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    mode = "good"
    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server API)
        self.requests.append(self.path)
        body = self.files.get(self.path.removeprefix("/manifests/"))
        if body is None:
            self.send_error(404)
            return
        if self.mode == "corrupt":
            body = body.replace(b"kubeflow.org", b"kubeflow.orG", 1)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(upstream):
    handler = type("Handler", (_Handler,), {"files": upstream, "mode": "good", "requests": []})
    with serve(handler, "manifests/") as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty download cache and no offline copy."""
    monkeypatch.setenv("RECSYS_WORKSHOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(crds.CRDS_DIR_ENV, raising=False)
    crds._VERIFIED.clear()
    return tmp_path / "cache"


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_download_writes_every_verified_crd_and_nothing_else(server, served_lock, cache, genuine_dir):
    folder = crds.fetch(lock=served_lock, base_url=server.url)
    assert folder == crds.cache_folder(served_lock)
    assert folder.is_relative_to(cache)
    expected = sorted(crd["file"] for source in served_lock["sources"] for crd in source["crds"])
    assert _all_files(folder) == expected  # the upstream kserve.yaml and every .part file are gone
    for name in expected:
        assert crds.content_sha256(crds._yaml_documents((folder / name).read_text())[0]) == \
            crds.content_sha256(crds._yaml_documents((genuine_dir / name).read_text())[0])
    # The KServe CRDs were cut out of the multi-document file exactly: no Namespace, one document each.
    inference = (folder / "inferenceservices.serving.kserve.io.yaml").read_text()
    assert "kind: Namespace" not in inference and inference.count("kind: CustomResourceDefinition") == 1
    # A second call downloads nothing: every file is present and verified.
    count = len(server.handler.requests)
    crds.fetch(lock=served_lock, base_url=server.url)
    assert len(server.handler.requests) == count == 4


def test_a_tampered_download_names_the_url_both_digests_and_leaves_nothing(server, served_lock, cache):
    server.handler.mode = "corrupt"
    with pytest.raises(crds.CRDChecksumError) as err:
        crds.fetch(lock=served_lock, base_url=server.url)
    message = str(err.value)
    first = served_lock["sources"][0]
    assert first["path"] in message and first["sha256"] in message
    tampered = hashlib.sha256(server.handler.files[first["path"]].replace(b"kubeflow.org", b"kubeflow.orG", 1))
    assert tampered.hexdigest() in message
    assert "discarded" in message
    assert _all_files(cache) == []


def test_a_dropped_connection_leaves_no_partial_file(server, served_lock, cache):
    server.handler.mode = "drop"
    with pytest.raises(crds.CRDUnavailableError, match=crds.CRDS_DIR_ENV):
        crds.fetch(lock=served_lock, base_url=server.url)
    assert _all_files(cache) == []


def test_offline_machine_gets_a_message_naming_the_variable(served_lock, cache):
    # a loopback port nobody listens on: refused at once, as on an offline machine
    with pytest.raises(crds.CRDUnavailableError) as err:
        crds.fetch(lock=served_lock, base_url="http://127.0.0.1:9/", timeout=2)
    assert f"set {crds.CRDS_DIR_ENV}" in str(err.value)
    assert "crds fetch --to" in str(err.value)
    assert _all_files(cache) == []


def test_http_error_is_a_clear_error(server, served_lock, cache):
    with pytest.raises(crds.CRDUnavailableError, match="404"):
        crds.fetch(lock=served_lock, base_url=server.url + "missing/")


def test_a_corrupted_cache_file_is_downloaded_again(server, served_lock, cache):
    folder = crds.fetch(lock=served_lock, base_url=server.url)
    target = folder / "kubeflow.org_tfjobs.yaml"
    target.write_text(target.read_text().replace("TFJob", "TFJobX"))
    crds._VERIFIED.clear()
    before = len(server.handler.requests)
    crds.fetch(lock=served_lock, base_url=server.url)
    assert server.handler.requests[before:] == ["/manifests/" + served_lock["sources"][0]["path"]]
    assert "TFJobX" not in target.read_text()


def test_the_offline_copy_variable_is_read_first_and_never_written(genuine_dir, tmp_path, monkeypatch):
    copy_dir = tmp_path / "crds"
    shutil.copytree(genuine_dir, copy_dir)
    before = {p.name: p.stat().st_mtime_ns for p in copy_dir.iterdir()}
    monkeypatch.setenv(crds.CRDS_DIR_ENV, str(copy_dir))
    monkeypatch.setenv("RECSYS_WORKSHOP_CACHE", str(tmp_path / "cache"))
    assert crds.crds_dir(download=False) == copy_dir
    assert {p.name: p.stat().st_mtime_ns for p in copy_dir.iterdir()} == before
    assert not (tmp_path / "cache").exists()


def test_an_edited_crd_in_the_offline_copy_is_refused_with_both_digests(genuine_dir, tmp_path, monkeypatch):
    copy_dir = tmp_path / "crds"
    shutil.copytree(genuine_dir, copy_dir)
    edited = copy_dir / "kubeflow.org_tfjobs.yaml"
    edited.write_text(edited.read_text().replace("type: integer", "type: string", 1))
    monkeypatch.setenv(crds.CRDS_DIR_ENV, str(copy_dir))
    crds._VERIFIED.clear()
    with pytest.raises(crds.CRDChecksumError) as err:
        crds.crds_dir()
    message = str(err.value)
    tfjob = next(c for s in crds.load_lock()["sources"] for c in s["crds"] if c["file"] == edited.name)
    assert str(edited) in message and tfjob["content_sha256"] in message
    assert "actual   content sha256 " in message and "crds fetch --to" in message


def test_an_incomplete_offline_copy_names_the_missing_file(genuine_dir, tmp_path, monkeypatch):
    copy_dir = tmp_path / "crds"
    shutil.copytree(genuine_dir, copy_dir)
    (copy_dir / "kubeflow.org_trials.yaml").unlink()
    monkeypatch.setenv(crds.CRDS_DIR_ENV, str(copy_dir))
    with pytest.raises(crds.CRDUnavailableError, match="lacks kubeflow.org_trials.yaml"):
        crds.crds_dir()
    monkeypatch.setenv(crds.CRDS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(crds.CRDUnavailableError, match=f"{crds.CRDS_DIR_ENV}=.*nowhere is not a folder"):
        crds.crds_dir()


def test_no_copy_and_no_download_says_what_to_set(cache):
    with pytest.raises(crds.CRDUnavailableError, match=crds.CRDS_DIR_ENV):
        crds.crds_dir(download=False)


def test_the_lock_pins_the_commit_versions_env_pins():
    from recsys_workshop import kube

    assert crds.load_lock()["ref"] == kube.versions()["KUBEFLOW_MANIFESTS_REF"]
    files = [crd["file"] for source in crds.load_lock()["sources"] for crd in source["crds"]]
    # every kind the workshop's custom resources use: TFJob, Katib, KServe
    assert sorted(files) == sorted([
        "kubeflow.org_tfjobs.yaml", "kubeflow.org_experiments.yaml", "kubeflow.org_trials.yaml",
        "inferenceservices.serving.kserve.io.yaml", "servingruntimes.serving.kserve.io.yaml",
        "clusterservingruntimes.serving.kserve.io.yaml",
    ])


def test_make_lock_reads_a_manifests_checkout(upstream, served_lock, tmp_path):
    checkout = tmp_path / "manifests"
    for path, body in upstream.items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_bytes(body)
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "pin"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    lock = crds.make_lock(checkout, previous=crds.load_lock())
    assert lock["ref"] == head
    assert json.dumps(lock["sources"], sort_keys=True) == json.dumps(served_lock["sources"], sort_keys=True)
    (checkout / KSERVE).write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kserve\n")
    with pytest.raises(crds.CRDError, match="no CRD named inferenceservices"):
        crds.make_lock(checkout)


def test_downloads_fetch_checks_size_and_digest(server, tmp_path, upstream):
    path = served = next(iter(upstream))
    body = upstream[served]
    target = tmp_path / "x.yaml"
    with pytest.raises(downloads.DownloadFailed, match="stopped after"):
        downloads.fetch(server.url + path, target, sha256=hashlib.sha256(body).hexdigest(), size=len(body) + 1,
                        progress=False)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    downloads.fetch(server.url + path, target, sha256=hashlib.sha256(body).hexdigest(), progress=False)
    assert target.read_bytes() == body
