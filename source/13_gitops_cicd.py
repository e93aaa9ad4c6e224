# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 13: GitOps and CI/CD, the cluster follows Git
#
# **Time:** about 40 minutes (plus about 10 minutes for `cluster-setup/argocd/up` and a first sync if you have a cluster).
#
# > **Before you start**
# > - **You need:** lab 06 (the overlays); a GitHub fork of the repository for section 7.
# > - **A cluster:** optional. Every check runs offline; with one, `cluster-setup/argocd/up` installs Argo CD
# >   and it syncs your fork.
# > - **Run All** (2 CPU cores): under a minute at CI size, under a minute at full size
# >   (`bench/results/lab-times.json`).
# > - **Cost on GKE:** nothing of its own: what it starts runs on the cluster's nodes (the class cluster costs
# >   about $0.28 per hour while it exists, see `cluster-setup/README.md`).
#
# **You will**
# - see the workshop's desired state where it lives: the kustomize overlays, in Git;
# - release a version as a one-line commit (Exercise 13.1) and read the diff it makes to the cluster;
# - check the Argo CD `Application` for your fork and write its sync policy: automated sync, prune and
#   self-heal (Exercise 13.2);
# - follow a version to users: sync, canary, promote or roll back, and what KServe's
#   `canaryTrafficPercent` does in the workshop's profile;
# - read your fork's CI workflow: the tests on every push, the image pushed on a version tag;
# - with a cluster: install Argo CD (pinned) and watch it sync; without one, work offline.
#
# Labs 06-12 deployed with `kubectl apply -k`: a person (or a notebook) pushed each change into the
# cluster. In production nobody does that. Changes go to Git, through review and CI, and a controller in
# the cluster pulls them. This lab needs no cluster: everything Argo CD would do starts from files in
# this repository, which we can build and check here.

# %% tags=["parameters"]
import os

WORKSHOP_SCALE = os.environ.get("WORKSHOP_SCALE", "full")  # "full" or "ci"; this lab does the same work at both
REPO_URL = "https://github.com/YOUR-GITHUB-USER/recsys-workshop.git"  # your fork's Git URL: set it before section 7
REVISION = "main"  # the branch (or tag) Argo CD follows
OVERLAY = "kind"  # "kind" or "gke": the overlay the Application syncs
NEW_VERSION = "0.2.0"  # the version released in section 3
REQUEST_TIMEOUT_SECONDS = 5  # how long to wait for each answer from a cluster

# %%
import copy
import difflib
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from IPython.display import display

from recsys_workshop import kube, selfcheck

pd.set_option("display.max_colwidth", 100)
VERSIONS = kube.versions()  # cluster-setup/versions.env: every version, image and price, in one file
print(f"Argo CD {VERSIONS['ARGOCD_VERSION']}, KServe {VERSIONS['KSERVE_VERSION']} "
      f"(default mode {VERSIONS['KSERVE_DEFAULT_DEPLOYMENT_MODE']}), workshop image tag {VERSIONS['WORKSHOP_IMAGE_TAG']}")

# %% [markdown]
# ## 1. GitOps in four principles
#
# [OpenGitOps](https://opengitops.dev) defines GitOps by four principles; the workshop follows each:
#
# | principle | what it means | here |
# |---|---|---|
# | **declarative** | the system is described as the state wanted, not as steps to get there | kustomize overlays: Deployments, an InferenceService, a TFJob, ... |
# | **versioned and immutable** | that description is stored so every version is kept and never rewritten | Git: every change is a commit, every release a tag |
# | **pulled automatically** | software agents fetch the description from the store | Argo CD clones your fork; CI needs no cluster credentials |
# | **continuously reconciled** | the agents keep comparing and correct any difference | automated sync, `prune`, `selfHeal` |
#
# How a new version reaches users, end to end (each arrow is a lab):
#
# ```
#  training pipeline (08) ── gate passes ──> a release: CI builds ghcr.io/<you>/recsys-workshop:0.2.0 on tag v0.2.0
#                                                   │
#  pull request: overlay `images: newTag: 0.2.0` ── review + CI ──> merged on main            (section 3)
#                                                   │
#  Argo CD: main differs from the cluster ── automated sync ──> pods roll to 0.2.0            (section 4)
#                                                   │
#  canary: a share of traffic first (09, 10) ── metrics hold (11) ──> promote: a commit       (section 5)
#                                            └─ metrics drop ──────> roll back: git revert, Argo CD syncs again
# ```
#
# The rollback is the point: it is the same mechanism as a release, it takes seconds, and Git records who
# changed what and why.
#
# ## 2. The desired state, in Git
#
# Everything Argo CD will apply is one folder of this repository: an overlay, which pulls in the base.
# The kind overlay is short: it loads the image from the local machine and makes the workloads smaller.

# %%
overlay_dir = kube.overlay_dir(OVERLAY)
print(f"# {overlay_dir.relative_to(kube.REPO_ROOT)}/kustomization.yaml")
print((overlay_dir / "kustomization.yaml").read_text())

# %% [markdown]
# Which version runs? Every container of the workshop runs one image, and the version is its tag, set
# once with kustomize `images:` (in the base, `newTag: "0.1.0-9c3061316e92"`: the package version and a hash of the
# pinned dependencies, see cluster-setup/image). A checkpoint: every container in the
# built overlay, wherever its pod spec sits (a Deployment, a TFJob replica, the Experiment's trial
# template, the InferenceService's predictor).

# %%
def container_images(node):
    """(container name, image) of every container in a document, however deep its pod spec is."""
    if isinstance(node, dict):
        for key in ("initContainers", "containers"):
            if isinstance(node.get(key), list):
                for container in node[key]:
                    yield container.get("name"), container.get("image")
        for value in node.values():
            yield from container_images(value)
    elif isinstance(node, list):
        for item in node:
            yield from container_images(item)


def image_table(docs: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(doc["kind"], doc["metadata"]["name"], name, image)
            for doc in sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))
            for name, image in container_images(doc)]


before = kube.kustomize_build(overlay_dir)

# %%
# NBVAL_CHECK_OUTPUT
for kind, name, container, image in image_table(before):
    print(f"{kind:<17} {name:<21} {container:<17} {image}")
# Expected output:
# Deployment        recsys-api            api               localhost/recsys-workshop:0.1.0-9c3061316e92
# Deployment        recsys-locust-master  locust            localhost/recsys-workshop:0.1.0-9c3061316e92
# Deployment        recsys-locust-worker  locust            localhost/recsys-workshop:0.1.0-9c3061316e92
# Experiment        recsys-tune           trial-config      localhost/recsys-workshop:0.1.0-9c3061316e92
# Experiment        recsys-tune           tensorflow        localhost/recsys-workshop:0.1.0-9c3061316e92
# InferenceService  recsys-model          kserve-container  localhost/recsys-workshop:0.1.0-9c3061316e92
# StatefulSet       recsys-postgres       postgres          postgres:17.11-trixie@sha256:f4c66b820c6f974249089d3d16d86a3698eae11e8746eb6644b2271031e91232
# TFJob             recsys-train          tensorflow        localhost/recsys-workshop:0.1.0-9c3061316e92

# %% [markdown]
# One container is not ours: the API's database, PostgreSQL, runs the official image, pinned by tag *and*
# digest (a tag can be moved; a digest cannot). It has its own version and its own release cycle, so a
# workshop release leaves it alone: the `images:` entry you change below names only the workshop image.
#
# ## 3. A release is a commit
#
# CI built and published `recsys-workshop:0.2.0` (section 6 shows how). Releasing it to the cluster is
# one change in the overlay: the image's `newTag`. With the standalone kustomize CLI that is
# `kustomize edit set image ghcr.io/recsys-workshop/recsys-workshop=localhost/recsys-workshop:0.2.0`; here
# you write it as a function on the kustomization, read as a dict.
#
# ### Exercise 13.1: bump the version
#
# Write `bump_version(kustomization, version)`. It returns a **copy** of `kustomization` (leave the
# argument unchanged: `copy.deepcopy`) in which the `images:` entry named
# `VERSIONS["WORKSHOP_IMAGE"]` (`ghcr.io/recsys-workshop/recsys-workshop`, the name every container
# carries once the base's `images:` has run) has `newTag: version`:
#
# - if the entry exists (kind: it also has a `newName`), set its `newTag` and keep everything else;
# - if it does not (the GKE overlay has no `images:` at all), append
#   `{"name": VERSIONS["WORKSHOP_IMAGE"], "newTag": version}`, creating the list if needed;
# - raise `ValueError` if `version` is not a valid image tag (up to 128 letters, digits, `_`, `.` and
#   `-`, not starting with `.` or `-`) or is `"latest"`, which names no version at all.
#
# Nothing else in the kustomization may change: that is what makes the commit easy to review.

# %%
def bump_version(kustomization: dict, version: str) -> dict:
    ### BEGIN SOLUTION
    if not isinstance(version, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", version):
        raise ValueError(f"{version!r} is not an image tag")
    if version == "latest":
        raise ValueError("'latest' is not a version: pin an exact tag")
    bumped = copy.deepcopy(kustomization)
    images = bumped.setdefault("images", [])
    for image in images:
        if image.get("name") == VERSIONS["WORKSHOP_IMAGE"]:
            image["newTag"] = version
            break
    else:
        images.append({"name": VERSIONS["WORKSHOP_IMAGE"], "newTag": version})
    return bumped
    ### END SOLUTION


# %%
# Self-check
def _check_bump():
    kustomizations = {name: yaml.safe_load((kube.overlay_dir(name) / "kustomization.yaml").read_text())
                      for name in ("kind", "gke")}
    for name, kustomization in kustomizations.items():
        original = copy.deepcopy(kustomization)
        bumped = bump_version(kustomization, "0.2.0")
        assert kustomization == original, "change a copy (copy.deepcopy), not the kustomization you are given"
        assert isinstance(bumped, dict), f"return the kustomization as a dict, not {type(bumped).__name__}"
        entries = [i for i in bumped.get("images", []) if i.get("name") == VERSIONS["WORKSHOP_IMAGE"]]
        selfcheck.equal(len(entries), 1, f"{name}: the number of images entries named {VERSIONS['WORKSHOP_IMAGE']}")
        selfcheck.equal(entries[0].get("newTag"), "0.2.0", f"{name}: newTag")
        before_entry = next((i for i in original.get("images", []) if i.get("name") == VERSIONS["WORKSHOP_IMAGE"]), {})
        selfcheck.equal({k: v for k, v in entries[0].items() if k != "newTag"},
                        {"name": VERSIONS["WORKSHOP_IMAGE"], **{k: v for k, v in before_entry.items() if k != "newTag"}},
                        f"{name}: the rest of the images entry (keep newName)")
        selfcheck.equal({k: v for k, v in bumped.items() if k != "images"},
                        {k: v for k, v in original.items() if k != "images"}, f"{name}: everything but images")
        selfcheck.equal(bumped, kube.set_image_tag(kustomization, "0.2.0"), f"{name}: the bumped kustomization")
    for bad in ("latest", "", "0.2.0 beta", ".hidden", "v" * 129):
        try:
            bump_version(kustomizations["kind"], bad)
        except ValueError:
            continue
        raise AssertionError(f"bump_version(..., {bad!r}) should raise ValueError: that is not a version tag")


selfcheck.check(
    "13.1",
    _check_bump,
    hint="A release is a one-line diff: change the newTag of the one images entry for the workshop's image "
    "(matched by its name), add that entry only when the overlay has none, and leave every other key alone. "
    "Work on a deep copy: a shallow copy shares the images list with the caller. Validate the tag first, "
    "against the whole string (a match at the start only lets '0.2.0 beta' through), and refuse 'latest'.",
    code_hint="if not re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', version) or version == 'latest':\n"
    "    raise ValueError(...)\n"
    "bumped = copy.deepcopy(kustomization); images = bumped.setdefault('images', [])\n"
    "for image in images:\n"
    "    if image.get('name') == VERSIONS['WORKSHOP_IMAGE']: image['newTag'] = version; break\n"
    "else:\n"
    "    images.append({'name': VERSIONS['WORKSHOP_IMAGE'], 'newTag': version})\n"
    "return bumped",
)

# %% [markdown]
# Now the commit, for real but in a scratch copy: copy `cluster-setup/manifests` (the overlay refers to
# `../../base`, so both must move together), bump the version in the copy's overlay and write it back.
# `kube.set_image_tag` is the library's version of your function (the rest of the lab uses it, so it runs
# even before you finish the exercise). A YAML dumper that keeps multi-line strings as blocks makes the
# rewritten file readable, so the change reads like the one line a reviewer would see in a pull request.

# %%
class BlockDumper(yaml.SafeDumper):
    """safe_dump, with multi-line strings (the inline JSON patches) written as | blocks."""


BlockDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)
)


def dump(document: dict) -> str:
    return yaml.dump(document, Dumper=BlockDumper, sort_keys=False)


scratch = tempfile.TemporaryDirectory(prefix="lab13-")
manifests = Path(scratch.name) / "manifests"
shutil.copytree(kube.MANIFESTS_DIR, manifests)
kustomization_file = manifests / "overlays" / OVERLAY / "kustomization.yaml"
current = yaml.safe_load(kustomization_file.read_text())
released = kube.set_image_tag(current, NEW_VERSION)
kustomization_file.write_text(dump(released))
print("".join(difflib.unified_diff(dump(current).splitlines(keepends=True), dump(released).splitlines(keepends=True),
                                   f"a/overlays/{OVERLAY}/kustomization.yaml", f"b/overlays/{OVERLAY}/kustomization.yaml")))

# %% [markdown]
# What does that line change in the cluster? Build both and compare, exactly as Argo CD will when the
# commit lands: it renders the overlay at the new revision and diffs it against what runs.

# %%
after = kube.kustomize_build(kustomization_file.parent)
print(kube.diff_overlays(before, after, context=1, labels=(OVERLAY, f"{OVERLAY} + {NEW_VERSION}")))

# %% [markdown]
# A checkpoint: the same as rows, one per changed field. Every workload of the stack moves to the new
# version in one commit: the model server, the API, the load generator, and the training and tuning jobs.

# %%
# NBVAL_CHECK_OUTPUT
for difference in kube.overlay_differences(before, after):
    container = re.search(r"ontainers\[([^\]]+)\]\.image$", difference.path).group(1)
    print(f"{difference.resource:<39} {container:<17} {difference.left.rsplit(':', 1)[1]} -> "
          f"{difference.right.rsplit(':', 1)[1]}")
# Expected output:
# Deployment/recsys/recsys-api            api               0.1.0-9c3061316e92 -> 0.2.0
# Deployment/recsys/recsys-locust-master  locust            0.1.0-9c3061316e92 -> 0.2.0
# Deployment/recsys/recsys-locust-worker  locust            0.1.0-9c3061316e92 -> 0.2.0
# Experiment/recsys/recsys-tune           tensorflow        0.1.0-9c3061316e92 -> 0.2.0
# Experiment/recsys/recsys-tune           trial-config      0.1.0-9c3061316e92 -> 0.2.0
# InferenceService/recsys/recsys-model    kserve-container  0.1.0-9c3061316e92 -> 0.2.0
# TFJob/recsys/recsys-train               tensorflow        0.1.0-9c3061316e92 -> 0.2.0

# %% [markdown]
# The new build still passes every check of lab 06: CI runs these on the pull request, before anything
# is merged (`tests/test_manifests.py`), so a broken manifest never reaches `main`, and so never the cluster.

# %%
# NBVAL_CHECK_OUTPUT
results = kube.validate_all(after)
print(", ".join(f"{check} {len(found)} finding(s)" for check, found in results.items()))
# Expected output:
# core 0 finding(s), custom 0 finding(s), policy 0 finding(s)

# %% [markdown]
# Two things GitOps changes for the jobs in this overlay, worth knowing before you hand it to Argo CD:
#
# - **A finished job is still desired state.** The TFJob sets `ttlSecondsAfterFinished: 86400`: a day
#   after training ends, the Training Operator deletes it. With `selfHeal`, Argo CD sees a resource of
#   Git missing from the cluster and creates it again, so training runs again every day. Fine for a
#   workshop; in production, runs belong to the pipeline (lab 09), and Git holds only what should keep
#   running (the model server, the API, their configuration).
# - **Some fields cannot change.** Katib refuses most changes to an existing Experiment's spec, so a
#   commit that edits `recsys-tune` fails to sync; give a changed experiment a new name instead.
#
# ## 4. Argo CD: who applies the commit
#
# [Argo CD](https://argo-cd.readthedocs.io) runs in the cluster. An **Application** tells it what to
# watch (a repository, a revision, a path), where to apply it (a cluster and a namespace) and how
# (`syncPolicy`). The workshop's is `cluster-setup/argocd/application.yaml`; it points at the kind overlay
# of a placeholder repository, which you replace with your fork:

# %%
print(kube.APPLICATION_FILE.read_text())

# %% [markdown]
# The fields that matter:
#
# - `source`: `repoURL` (your fork: Argo CD must be able to clone it, so make it public or give Argo CD
#   credentials), `targetRevision` (the branch it follows) and `path` (the overlay). Argo CD sees a
#   `kustomization.yaml` there and runs kustomize, as `kubectl apply -k` did.
# - `destination`: the cluster (`https://kubernetes.default.svc` is the one Argo CD runs in) and the
#   default namespace.
# - `syncPolicy.automated`: sync as soon as Git and the cluster differ. Without it Argo CD only *reports*
#   the difference (status `OutOfSync`) and waits for someone to press Sync. `prune: true` deletes what
#   was removed from Git (otherwise it stays, orphaned); `selfHeal: true` undoes changes made to the
#   cluster directly (`kubectl scale`, `kubectl edit`): the cluster returns to what Git says.
# - the finalizer: deleting the Application deletes what it deployed (`cluster-setup/argocd/down`).
#
# `kube.render_application` fills in your fork, the revision and the overlay; it refuses the
# placeholder. On GKE your fork's overlay names the `PROJECT_ID` placeholder (Git never carries your
# project id), so the Application also gets the image `cluster-setup/image --target gke` recorded, as a
# kustomize override (`spec.source.kustomize.images`, name only: a tag bumped in Git still applies). The Argo CD CRD is not among the schemas this repository validates against offline, so
# `kube.validate_application` checks what the workshop relies on, explicitly: required fields, no
# unknown fields, automated sync with prune and self-heal, and a source path that exists in this repository
# and builds with kustomize. What a typo does is decided by the API server, not by Argo CD (as lab 06 showed
# for every custom resource): the Application CRD has a schema, so `kubectl apply`, which validates fields
# strictly by default, rejects it; a client that skips strict validation has it pruned in silence, and
# Argo CD never sees it. Checking before you push catches it in either case.

# %%
uses_placeholder = REPO_URL == kube.REPO_URL_PLACEHOLDER
if uses_placeholder:
    print("REPO_URL is still the placeholder: the checks below run on application.yaml as it is.")
    print("Set REPO_URL (parameter cell) to your fork, https://github.com/<you>/<your-fork>.git, before section 7.")
    application = kube.load_application()
else:
    application = kube.render_application(REPO_URL, revision=REVISION, overlay=OVERLAY)
    print(f"Application rendered for {REPO_URL} at {REVISION}, overlay {OVERLAY}")

# %%
# NBVAL_CHECK_OUTPUT
findings = kube.validate_application(application, allow_placeholder=True)
print(f"Application {application['metadata']['name']}: {len(findings)} finding(s)")
for finding in findings:
    print("   ", finding)
# Expected output:
# Application recsys: 0 finding(s)

# %% [markdown]
# Three broken copies, to see what the check catches: a lower-case `selfheal` (rejected by a strict
# `kubectl apply`, or dropped by the API server, so nothing would ever heal), a misspelt overlay path, and
# automated sync switched off.

# %%
# NBVAL_CHECK_OUTPUT
typo = copy.deepcopy(application)
typo["spec"]["syncPolicy"]["automated"] = {"prune": True, "selfheal": True}
wrong_path = copy.deepcopy(application)
wrong_path["spec"]["source"]["path"] = "cluster-setup/manifests/overlay/kind"
switched_off = copy.deepcopy(application)
switched_off["spec"]["syncPolicy"]["automated"]["enabled"] = False
for label, broken in [("typo", typo), ("wrong path", wrong_path), ("switched off", switched_off)]:
    print(f"{label}:")
    for finding in kube.validate_application(broken, allow_placeholder=True):
        print("   ", finding.message)
# Expected output:
# typo:
#     spec.syncPolicy.automated.selfheal: unknown field (a typo? the API server rejects or drops it)
#     spec.syncPolicy.automated.selfHeal is not true: changes made behind Git's back would stay
# wrong path:
#     spec.source.path: cluster-setup/manifests/overlay/kind does not exist in the repository
# switched off:
#     spec.syncPolicy.automated.enabled is false: automated sync is switched off

# %% [markdown]
# ### Exercise 13.2: the sync policy
#
# Write `sync_policy()`: it returns the `syncPolicy` dict of the workshop's Application, with
#
# - automated sync that **prunes** and **self-heals**;
# - one sync option, `PruneLast=true` (delete removed resources only after everything else is synced);
# - retries for a failed sync: at most `5`, the first after `"10s"`, each wait twice (`2`) the previous
#   one, never more than `"3m"` (fields `limit`, and `backoff` with `duration`, `factor`, `maxDuration`).
#
# Field names are camelCase, exactly as in the Argo CD documentation: a misspelt one is rejected by
# `kubectl apply` or silently dropped by the API server, never applied. The self-check puts your policy into the Application and runs `kube.validate_application`.

# %%
def sync_policy() -> dict:
    ### BEGIN SOLUTION
    return {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["PruneLast=true"],
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    }
    ### END SOLUTION


# %%
# Self-check
def _check_sync_policy():
    policy = sync_policy()
    assert isinstance(policy, dict), f"return a dict, not {type(policy).__name__}"
    candidate = copy.deepcopy(application)
    candidate["spec"]["syncPolicy"] = policy
    found = kube.validate_application(candidate, allow_placeholder=True, build=False)
    assert not found, "the check finds:\n  " + "\n  ".join(f.message for f in found)
    selfcheck.equal(policy.get("syncOptions"), ["PruneLast=true"], "syncOptions")
    retry = policy.get("retry") or {}
    selfcheck.equal(retry.get("limit"), 5, "retry.limit")
    selfcheck.equal(retry.get("backoff"), {"duration": "10s", "factor": 2, "maxDuration": "3m"}, "retry.backoff")
    selfcheck.equal(policy, kube.load_application()["spec"]["syncPolicy"], "the whole syncPolicy")


selfcheck.check(
    "13.2",
    _check_sync_policy,
    hint="The sync policy says when Argo CD syncs (automated), what it may do on its own (prune what left git, "
    "heal what drifted from it), how (sync options are 'Name=value' strings) and how it retries a failed sync "
    "(a limit and an exponential backoff whose durations are strings like '10s'). Field names are camelCase, "
    "exactly as Argo CD documents them; the syncPolicy printed in section 4 is a model.",
    code_hint="return {'automated': {'prune': True, 'selfHeal': True}, 'syncOptions': ['PruneLast=true'], "
    "'retry': {'limit': 5, 'backoff': {'duration': '10s', 'factor': 2, 'maxDuration': '3m'}}}",
)

# %% [markdown]
# ## 5. Canary, promote, roll back
#
# A sync rolls the new version out to every pod. A **canary** first gives it a small share of the
# traffic, watches the metrics (errors, latency, and here the recommendations' quality), then promotes
# it or rolls it back. KServe has a field for that on every component, `canaryTrafficPercent`: the
# CRD accepts it (lab 06's schema check), and a misspelt one is caught.

# %%
isvc = next(d for d in after if d["kind"] == "InferenceService")
canary = copy.deepcopy(isvc)
canary["spec"]["predictor"]["canaryTrafficPercent"] = 10
misspelt = copy.deepcopy(isvc)
misspelt["spec"]["predictor"]["canaryTrafficPercentage"] = 10
print("canaryTrafficPercent: 10 ->", kube.validate_custom([canary]) or "accepted by the CRD")
for finding in kube.validate_custom([misspelt]):
    print("canaryTrafficPercentage ->", finding.message)

# %% [markdown]
# What KServe does with it depends on the deployment mode. In **Serverless** mode (Knative), it keeps
# the last revision that had all the traffic, sends `canaryTrafficPercent` of the requests to the new
# one, promotes the new one when the field goes (or reaches 100) and can pin traffic back to the old one.
# The KServe 0.16 documentation says it plainly: *the canary rollout strategy is only supported in
# serverless deployment mode*. The workshop's profile runs **Standard** (raw deployment) mode, with
# no Knative: there a change to the predictor is a rolling update of a plain Deployment, each new pod
# gated by its readiness probe, and the field splits no traffic.

# %%
print("cluster default mode:", VERSIONS["KSERVE_DEFAULT_DEPLOYMENT_MODE"])
print("recsys-model asks for:", isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
      "(KServe 0.16's older name for Standard)")

# %% [markdown]
# So in this profile the canary lives one level up, where lab 11 already splits users: a second
# InferenceService runs the candidate, and the API sends a share of users to it (a stable hash of the
# user id, so each user sees one model). In Git that is one more file in the overlay. The whole cycle is
# commits, and Argo CD does every step:
#
# | step | the commit | what Argo CD does | undo |
# |---|---|---|---|
# | canary | add `recsys-model-canary` (version 0.2.0) and the API's split, e.g. 10% | creates the canary, rolls the API | `git revert` |
# | promote | bump `recsys-model` to 0.2.0, delete the canary's file | rolls the model server, **prunes** the canary | `git revert` |
# | roll back | `git revert` the canary (or the promotion) | prunes the canary (rolls back the server) | revert the revert |
#
# `prune` is what makes "delete a file" remove a resource; without it the canary would keep running,
# unseen. Here is the canary's InferenceService, built from the released one: it passes the same checks.

# %%
def canary_inference_service(model: dict, version: str) -> dict:
    """A second InferenceService running ``version`` next to ``model``: the canary the API routes a share to."""
    candidate = copy.deepcopy(model)
    candidate["metadata"]["name"] = f"{model['metadata']['name']}-canary"
    candidate["metadata"]["labels"]["app.kubernetes.io/name"] = candidate["metadata"]["name"]
    for container in candidate["spec"]["predictor"]["containers"]:
        container["image"] = f"{container['image'].rsplit(':', 1)[0]}:{version}"
    return candidate


canary_isvc = canary_inference_service(next(d for d in before if d["kind"] == "InferenceService"), NEW_VERSION)
print(yaml.safe_dump({k: canary_isvc[k] for k in ("apiVersion", "kind", "metadata")}, sort_keys=False))
print("image:", canary_isvc["spec"]["predictor"]["containers"][0]["image"])
print("findings:", kube.validate_custom([canary_isvc]) + kube.policy_violations([canary_isvc]))

# %% [markdown]
# One catch in this stack: the model volume is ReadWriteOnce (lab 06), so on a multi-node cluster the
# canary must run on the same node as the model server, or read its models from elsewhere (object
# storage: what KServe's `storageUri` is for). On kind, one node, it just works.
#
# ## 6. CI: what runs before anything is merged
#
# Argo CD deploys what is on `main`; CI decides what may get there. `.github/workflows/ci.yml` runs on
# your fork's every push and pull request (GitHub Actions). Its `test` job runs the README's test command
# through `.ci/run`, exactly as the workshop's own CI does: lint, notebooks built from `source/`, the
# tests (including the manifest checks of lab 06 and this lab's Application check) and every solution
# notebook. Its `image` job builds the workshop image and, for a tag `v0.2.0`, pushes
# `ghcr.io/<you>/recsys-workshop:0.2.0` with the workflow's own `GITHUB_TOKEN` (no secret to create).

# %%
workflow = yaml.safe_load((kube.REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as the boolean True
print("runs on:", ", ".join(triggers))
rows = [(job_name, step.get("name", ""), step.get("uses") or step.get("run", "").strip().splitlines()[0])
        for job_name, job in workflow["jobs"].items() for step in job["steps"]]
display(pd.DataFrame(rows, columns=["job", "step", "uses / runs"]))

# %% [markdown]
# Three habits in that file that matter for a pipeline with write access to a registry:
#
# - every action is pinned to an exact release (`actions/checkout@v6.0.2`), never a branch such as
#   `@main`, which its owner can move: what ran yesterday runs today (a commit SHA is stronger still);
# - the token's permissions are the minimum: `contents: read` for everything, `packages: write` only for
#   the job that pushes, and it pushes only for version tags;
# - the image job `needs` the tests: a version that fails them is never published.
#
# With both in place, a release is: tag `v0.2.0` (CI publishes the image), open a pull request that
# bumps the overlay (CI checks it), merge it (Argo CD syncs). Nobody needs cluster credentials.
#
# ## 7. With a cluster: Argo CD syncs
#
# Install Argo CD and the Application from a terminal (about 5 minutes; idempotent, `--dry-run` shows
# every command first):
#
# ```sh
# cluster-setup/argocd/up --dry-run --repo-url https://github.com/<you>/<your-fork>.git
# cluster-setup/argocd/up --repo-url https://github.com/<you>/<your-fork>.git
# kubectl -n recsys scale deployment recsys-api --replicas=3   # drift: watch Argo CD scale it back to 1
# cluster-setup/argocd/down                                     # the Application (and its resources), then Argo CD
# ```
#
# This section talks to the cluster only if one answers: it checks that Argo CD is installed, applies
# the Application rendered for your fork (`REPO_URL`) and shows its sync and health status.

# %%
context = kube.cluster_context(timeout=REQUEST_TIMEOUT_SECONDS)
if context is None:
    print("No Kubernetes context is configured: there is no cluster here. Sections 1-6 are the offline part.")
elif not context.reachable:
    print(f"Context {context.context!r} points at {context.server}, which did not answer: {context.error}")
else:
    print(f"Connected to context {context.context!r}: Kubernetes {context.kubernetes_version} at {context.server}")

# %%
def connect(info: kube.ClusterInfo):
    """An ApiClient for the context that kube.cluster_context() found."""
    from kubernetes import client, config

    if info.context == "in-cluster":
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(context=info.context)


def apply_application(api, app: dict) -> dict:
    """Create the Application, or replace the spec of the one that exists; return it as the cluster has it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects = client.CustomObjectsApi(api)
    where = dict(group="argoproj.io", version="v1alpha1", namespace=app["metadata"]["namespace"],
                 plural="applications", _request_timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        objects.create_namespaced_custom_object(body=app, **where)
    except ApiException as error:
        if error.status != 409:  # 409: it exists already
            raise
        objects.patch_namespaced_custom_object(name=app["metadata"]["name"], body={"spec": app["spec"]},
                                               **where)
    return objects.get_namespaced_custom_object(name=app["metadata"]["name"], **where)


if context is not None and context.reachable:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = connect(context)
    try:
        crds = {crd.metadata.name for crd in client.ApiextensionsV1Api(api).list_custom_resource_definition(
            _request_timeout=REQUEST_TIMEOUT_SECONDS).items}
        if "applications.argoproj.io" not in crds:
            print("Argo CD is not installed in this cluster. In a terminal:")
            print(f"  cluster-setup/argocd/up --repo-url {REPO_URL if not uses_placeholder else '<your fork>'}")
        elif uses_placeholder:
            print("Argo CD is installed. Set REPO_URL to your fork in the parameter cell and run this again:")
            print("Argo CD cannot sync from the placeholder repository.")
        else:
            live = apply_application(api, application)
            status = live.get("status") or {}
            print(f"Application {live['metadata']['name']}: sync {status.get('sync', {}).get('status', 'not yet')}, "
                  f"health {status.get('health', {}).get('status', 'not yet')}")
            print("Watch it: kubectl -n argocd get application recsys -w (a first sync takes a minute or two)")
    except ApiException as error:
        print(f"The cluster refused a request: {error.status} {error.reason}. "
              "Use your own cluster (cluster-setup/kind/up) or ask your instructor.")
    finally:
        api.close()
else:
    print("No reachable cluster: nothing is installed or synced, and nothing is pretended.")
    print("To see it live: cluster-setup/kind/up, then cluster-setup/argocd/up --repo-url <your fork>.")

# %%
scratch.cleanup()  # the scratch copy of the manifests from section 3

# %% [markdown]
# ## What you saw
# - GitOps: the desired state is declared, versioned in Git, pulled by an agent in the cluster and
#   continuously reconciled. A release and a rollback are both commits; Git records who did what, and why.
# - A release of the workshop is one line of an overlay, the image's `newTag` (Exercise 13.1); building
#   the overlay before and after shows exactly what will change, and the same checks as lab 06 run on it.
# - The Argo CD `Application` for the workshop stack: source (your fork, a branch, an overlay),
#   destination, and a `syncPolicy` with automated sync, `prune` and `selfHeal` (Exercise 13.2), checked
#   offline with `kube.validate_application`; installed with a pinned `cluster-setup/argocd/up`.
# - Canary, promote, roll back as commits; KServe's `canaryTrafficPercent` splits traffic only in
#   Serverless mode, so in the workshop's Standard mode the canary is a second InferenceService behind
#   the API's split, and `prune` removes it when its file goes.
# - CI on your fork: the same tests on every push and pull request, the image pushed to GHCR on a
#   version tag, actions pinned to exact releases, least-privilege tokens.
#
# **That is the workshop.** Everything here runs from one repository: `make workshop` replays every lab,
# `make test` checks all of it, as CI does on your fork.
