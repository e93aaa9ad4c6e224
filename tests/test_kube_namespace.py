"""recsys_workshop.kube.namespace: which namespace the labs use, moving manifests into it, and why a cluster cell
runs locally. No cluster here: the API server's answers come from stub clients."""

from __future__ import annotations

import stat
import sys
from types import SimpleNamespace

import pytest
import yaml

from recsys_workshop import kube
from recsys_workshop.kube import namespace as ns_module

pytestmark = pytest.mark.cluster

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: mine
contexts:
  - name: mine
    context: {cluster: c, user: u, namespace: team-a}
  - name: plain
    context: {cluster: c, user: u}
clusters:
  - name: c
    cluster: {server: "https://127.0.0.1:1"}
users:
  - name: u
    user: {token: t}
"""


@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv(kube.NAMESPACE_ENV, raising=False)


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def test_default_namespace_is_the_one_of_versions_env():
    assert ns_module.DEFAULT_NAMESPACE == kube.versions()["WORKSHOP_NAMESPACE"]


def test_environment_overrides_everything(monkeypatch, tmp_path, kubeconfig):
    sa = tmp_path / "namespace"
    sa.write_text("recsys-alice\n")
    monkeypatch.setenv(kube.NAMESPACE_ENV, "mine-for-today")
    choice = kube.namespace_choice(kubeconfig=kubeconfig, service_account_file=sa)
    assert choice == kube.NamespaceChoice("mine-for-today", f"${kube.NAMESPACE_ENV}")


def test_inside_a_pod_the_service_accounts_namespace(no_override, tmp_path, kubeconfig):
    sa = tmp_path / "namespace"
    sa.write_text("recsys-alice\n")
    choice = kube.namespace_choice(kubeconfig=kubeconfig, service_account_file=sa)
    assert choice.name == "recsys-alice" and "service account" in choice.source
    assert kube.workshop_namespace(kubeconfig=kubeconfig, service_account_file=sa) == "recsys-alice"


def test_else_the_kubeconfig_contexts_namespace(no_override, tmp_path, kubeconfig):
    absent = tmp_path / "no-such-file"
    assert kube.namespace_choice(kubeconfig=kubeconfig, service_account_file=absent) == kube.NamespaceChoice(
        "team-a", "kubeconfig context 'mine'")
    # a context without a namespace falls through to versions.env
    plain = kube.namespace_choice(kubeconfig=kubeconfig, context="plain", service_account_file=absent)
    assert plain.name == kube.versions()["WORKSHOP_NAMESPACE"] and "versions.env" in plain.source


def test_else_versions_env(no_override, tmp_path):
    choice = kube.namespace_choice(kubeconfig=str(tmp_path / "none"), service_account_file=tmp_path / "none")
    assert str(choice) == "recsys (WORKSHOP_NAMESPACE in cluster-setup/versions.env)"


def test_in_namespace_moves_documents_and_leaves_the_input_alone():
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "recsys"}},
        {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "t", "namespace": "recsys"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "p", "namespace": "recsys"},
         "spec": {"ingress": [{"from": [
             {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "recsys"}}},
             {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}}]}]}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "b", "namespace": "recsys"},
         "subjects": [{"kind": "ServiceAccount", "name": "s", "namespace": "recsys"}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}},
    ]
    before = yaml.safe_dump_all(docs)
    moved = kube.in_namespace(docs, "recsys-alice")
    assert yaml.safe_dump_all(docs) == before
    assert [d["kind"] for d in moved] == ["TFJob", "ConfigMap", "NetworkPolicy", "RoleBinding", "ClusterRole"]
    assert all(d["metadata"]["namespace"] == "recsys-alice" for d in moved[:4])
    assert "namespace" not in moved[4]["metadata"], "cluster-scoped kinds stay outside namespaces"
    selectors = [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                 for f in moved[2]["spec"]["ingress"][0]["from"]]
    assert selectors == ["recsys-alice", "kubeflow"]
    assert moved[3]["subjects"][0]["namespace"] == "recsys-alice"


def test_the_kind_overlay_moves_into_an_attendees_namespace():
    moved = kube.in_namespace(kube.kustomize_build(kube.overlay_dir("kind")), "recsys-alice")
    assert moved and all(d["metadata"]["namespace"] == "recsys-alice" for d in moved)
    assert not kube.validate_core(moved)
    assert "recsys\n" not in yaml.safe_dump_all([d["metadata"] for d in moved])


@pytest.mark.parametrize(("kind", "plural"), [
    ("TFJob", "tfjobs"), ("NetworkPolicy", "networkpolicies"), ("InferenceService", "inferenceservices"),
    ("Ingress", "ingresses"), ("StatefulSet", "statefulsets"), ("PersistentVolumeClaim", "persistentvolumeclaims"),
])
def test_resource_names(kind, plural):
    assert ns_module.resource_name(kind) == plural


def test_apply_needs_are_what_kubectl_apply_asks_for():
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}},
        {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "e"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]
    assert kube.apply_needs(docs) == [
        "get deployments.apps", "create deployments.apps", "patch deployments.apps",
        "get experiments.kubeflow.org", "create experiments.kubeflow.org", "patch experiments.kubeflow.org",
        "get configmaps", "create configmaps", "patch configmaps",
    ]


@pytest.mark.parametrize("text", ["create tfjobs.kubeflow.org", "get pods/log", "list deployments.apps", "get pods"])
def test_need_round_trip(text):
    assert str(kube.Need.parse(text)) == text


def test_need_parts_and_errors():
    assert kube.Need.parse("create pods/portforward") == kube.Need("create", "pods", "", "portforward")
    assert kube.Need.parse("get tfjobs.kubeflow.org") == kube.Need("get", "tfjobs", "kubeflow.org")
    for bad in ("create", "create two words", ""):
        with pytest.raises(ValueError):
            kube.Need.parse(bad)


# --- why_local, against stub clusters ---------------------------------------------------------------------------


def test_why_local_without_a_cluster(monkeypatch):
    monkeypatch.setattr(ns_module, "cluster_context", lambda **kwargs: None)
    reason = kube.why_local(["create tfjobs.kubeflow.org"])
    assert reason.startswith("there is no Kubernetes cluster") and reason.count(".") == 1


def test_why_local_when_the_api_server_does_not_answer(monkeypatch):
    info = kube.ClusterInfo("kind-x", "https://127.0.0.1:6443", False, error="MaxRetryError: refused")
    monkeypatch.setattr(ns_module, "cluster_context", lambda **kwargs: info)
    reason = kube.why_local(["create tfjobs.kubeflow.org"], timeout=2)
    assert "'kind-x'" in reason and "did not answer within 2 s" in reason and "refused" in reason


class StubApi:
    def close(self):
        self.closed = True


@pytest.fixture
def reachable(monkeypatch):
    """A reachable in-cluster API whose groups and RBAC answers the test sets."""
    from kubernetes import client

    state = SimpleNamespace(groups={"kubeflow.org", "apps"}, allowed=set(), reviews=[], api=StubApi(), fail=None)
    info = kube.ClusterInfo("in-cluster", "https://10.96.0.1:443", True, kubernetes_version="v1.35.0")
    monkeypatch.setattr(ns_module, "cluster_context", lambda **kwargs: info)
    monkeypatch.setattr(ns_module, "connect", lambda info: state.api)

    class Apis:
        def __init__(self, api):
            assert api is state.api

        def get_api_versions(self, _request_timeout=None):
            if state.fail:
                raise state.fail
            return SimpleNamespace(groups=[SimpleNamespace(name=g) for g in state.groups])

    class Authorization:
        def __init__(self, api):
            assert api is state.api

        def create_self_subject_access_review(self, review, _request_timeout=None):
            attrs = review.spec.resource_attributes
            state.reviews.append(attrs)
            text = str(kube.Need(attrs.verb, attrs.resource, attrs.group or "", attrs.subresource or ""))
            return SimpleNamespace(status=SimpleNamespace(allowed=text in state.allowed))

    monkeypatch.setattr(client, "ApisApi", Apis)
    monkeypatch.setattr(client, "AuthorizationV1Api", Authorization)
    return state


def test_why_local_is_none_when_everything_is_allowed(reachable):
    needs = ["create tfjobs.kubeflow.org", "get pods/log"]
    reachable.allowed = set(needs)
    assert kube.why_local(needs, namespace="recsys-alice") is None
    assert [(a.namespace, a.verb, a.group, a.resource, a.subresource) for a in reachable.reviews] == [
        ("recsys-alice", "create", "kubeflow.org", "tfjobs", None), ("recsys-alice", "get", "", "pods", "log")]
    assert reachable.api.closed


def test_why_local_names_what_rbac_refuses(reachable):
    reachable.allowed = {"get pods/log"}
    reason = kube.why_local(["create tfjobs.kubeflow.org", "get pods/log"], namespace="recsys-alice")
    assert reason == ("this pod's service account may not create tfjobs.kubeflow.org in namespace "
                      "'recsys-alice' (RBAC).")


def test_why_local_when_the_profile_is_missing(reachable):
    reachable.groups = {"apps"}
    reason = kube.why_local(["create tfjobs.kubeflow.org", "create deployments.apps"], namespace="n")
    assert "does not serve kubeflow.org" in reason and "cluster-setup/kind/up" in reason
    assert not reachable.reviews, "no point asking RBAC about a kind the cluster does not know"


def test_why_local_when_the_question_fails(reachable):
    reachable.fail = RuntimeError("Unauthorized\nmore detail")
    reason = kube.why_local(["create tfjobs.kubeflow.org"], namespace="n")
    assert reason.startswith("could not ask https://10.96.0.1:443") and "Unauthorized" in reason
    assert "more detail" not in reason


def test_why_local_uses_the_workshop_namespace_by_default(reachable, monkeypatch):
    monkeypatch.setenv(kube.NAMESPACE_ENV, "recsys-bob")
    reachable.allowed = {"create tfjobs.kubeflow.org"}
    assert kube.why_local(["create tfjobs.kubeflow.org"]) is None
    assert reachable.reviews[0].namespace == "recsys-bob"


def test_apply_in_namespace_pipes_the_moved_documents_to_kubectl(tmp_path):
    log = tmp_path / "argv"
    stdin = tmp_path / "stdin"
    fake = tmp_path / "kubectl"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                    f"open({str(stdin)!r}, 'w').write(sys.stdin.read())\nprint('configmap/c created')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "recsys"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "recsys"}}]
    done = kube.apply_in_namespace(docs, "recsys-alice", context="kind-x", kubectl=str(fake))
    assert done.returncode == 0 and done.stdout.strip() == "configmap/c created"
    assert log.read_text() == "--context kind-x apply -f -"
    assert list(yaml.safe_load_all(stdin.read_text())) == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "recsys-alice"}}]
    kube.apply_in_namespace(docs, "recsys-alice", context="in-cluster", kubectl=str(fake))
    assert log.read_text() == "apply -f -", "in a pod kubectl uses the service account, not a context"
