"""The self-checks written inside the labs (not in ``recsys_workshop.labchecks``), run as the solution
notebooks define them, on the usual wrong answers: each must fail with a message that names the case and
what is wrong (issue 15: "a wrong answer of each common kind gets a specific message"), and pass on the
solution. The check functions are taken from the notebooks' own cells (function definitions only, so
nothing else of the cell runs) and given the globals they read.

Not covered here, because they call what the lab has running (a model server, a Locust run, manifests the
lab rendered) and are exercised by nbval on the solutions instead: 6.1, 6.2, 9.1, 10.2, 12.1 and 12.2."""

from __future__ import annotations

import copy
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml
from check_helpers import fails, solution_functions

from recsys_workshop import selfcheck

pytestmark = pytest.mark.unit

def definitions(notebook: str, *names: str, **namespace) -> dict:
    """The solution's definitions of ``names``, with ``selfcheck`` and ``np`` as their globals unless given."""
    namespace.setdefault("selfcheck", selfcheck)
    namespace.setdefault("np", np)
    return solution_functions(notebook, *names, **namespace)


# --- 3.2, NeuMF's fusion layer (lab 03) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_layers():
    import keras
    from keras import layers

    return keras, layers


def _fusion_check(fuse):
    from recsys_workshop.models import ncf

    namespace = definitions("03_deep_recommenders.ipynb", "_check_fusion", ncf=ncf, mock=mock, fuse=fuse)
    return namespace["_check_fusion"]


@pytest.mark.tf
def test_fusion_check_passes_the_solution_and_names_each_mistake(keras_layers):
    _, layers = keras_layers
    solution = definitions("03_deep_recommenders.ipynb", "fuse", layers=layers)["fuse"]
    _fusion_check(solution)()

    def with_sigmoid(gmf, mlp):
        fused = layers.Concatenate(name="fusion")([gmf, mlp])
        return layers.Dense(1, activation="sigmoid", name="prediction")(fused)

    def unnamed(gmf, mlp):
        return layers.Dense(1)(layers.Concatenate()([gmf, mlp]))

    def mlp_first(gmf, mlp):
        return layers.Dense(1, name="prediction")(layers.Concatenate(name="fusion")([mlp, gmf]))

    fails(_fusion_check(with_sigmoid), match="the sigmoid of the expected logits")
    fails(_fusion_check(unnamed), match="layers named 'fusion' and 'prediction' expected")
    fails(_fusion_check(mlp_first), match="NeuMF logits (same weights in both networks)")


# --- 4.1, the margin loss (lab 04) ------------------------------------------------------------------------------


def _margin_check(margin_loss):
    import keras
    from keras import ops

    from recsys_workshop.models import triplet

    namespace = definitions("04_implicit_feedback_and_retrieval.ipynb", "_check_margin_loss", keras=keras, ops=ops,
                            triplet=triplet, margin_loss=margin_loss)  # fmt: skip
    return namespace["_check_margin_loss"]


@pytest.mark.tf
def test_margin_check_passes_the_solution_and_names_each_mistake():
    from keras import ops

    solution = definitions("04_implicit_feedback_and_retrieval.ipynb", "margin_loss", ops=ops)["margin_loss"]
    _margin_check(solution)()
    fails(_margin_check(lambda p, n, m=1.0: m - p + n), match="a triplet ahead by more than the margin")
    fails(_margin_check(lambda p, n, m=1.0: ops.maximum(m + p - n, 0.0)), match="s+ = 0.9, s- = 0.2, margin 1")
    fails(_margin_check(lambda p, n, m=1.0: ops.maximum(1.0 - p + n, 0.0)), match="random similarities, margin 0.5")
    numpy_version = _margin_check(lambda p, n, m=1.0: np.maximum(m - np.asarray(p) + np.asarray(n), 0.0))
    with pytest.raises(selfcheck.ExerciseIncorrect, match="your code raised ValueError: A KerasTensor is symbolic"):
        selfcheck.check("4.1", numpy_version)  # right numbers, but not inside a Keras model


# --- 10.1, the V1 request body (lab 10) -------------------------------------------------------------------------


def _body_check(v1_request_body):
    import json

    namespace = definitions("10_serving.ipynb", "_check_body", json=json, pd=pd, v1_request_body=v1_request_body)
    return namespace["_check_body"]


def test_request_body_check_names_each_mistake():
    """The check's first case shows the whole expected body and what came back, so each mistake is visible in
    it (the solution itself is checked by nbval: the rest of the check posts to the lab's running server)."""
    solution = definitions("10_serving.ipynb", "v1_request_body", pd=pd)["v1_request_body"]

    def unsorted(user_ids, k, history):
        seen = history.groupby("user_id")["item_id"].apply(lambda s: [int(i) for i in s.unique()])
        return {"instances": [{"user_id": int(u), "k": k, "exclude": seen.get(u, [])} for u in user_ids]}

    def with_duplicates(user_ids, k, history):
        seen = history.groupby("user_id")["item_id"].apply(lambda s: sorted(int(i) for i in s))
        return {"instances": [{"user_id": int(u), "k": k, "exclude": seen.get(u, [])} for u in user_ids]}

    def known_users_only(user_ids, k, history):
        body = solution(user_ids, k, history)
        return {"instances": [i for i in body["instances"] if i["exclude"]]}

    shown = {unsorted: "'exclude': [30, 10]", with_duplicates: "'exclude': [10, 10, 30]",
             known_users_only: "{'user_id': 3, 'k': 4, 'exclude': [5]}]}"}  # fmt: skip
    for wrong, got in shown.items():
        message = fails(_body_check(wrong), match="the body: expected {'instances': [{'user_id': 7")
        returned = message.split(", got ", 1)[1]
        assert returned.startswith("{'instances'") and got in returned, message
    assert "'user_id': 11" not in fails(_body_check(known_users_only), match="expected").split(", got ", 1)[1]


# --- 11.1 and 11.2, the seen filter and MMR (lab 11) ------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_11():
    from recsys_workshop.api import logic

    return {"logic": logic}


def _filter_check(filter_seen, logic):
    namespace = definitions("11_api_and_ui.ipynb", "_check_filter", logic=logic, filter_seen=filter_seen,
                            raw_items=[5, 3, 9], raw_scores=[0.9, 0.5, 0.1], histories=mock.Mock(seen={1: {3}}),
                            USER=1, K=2)  # fmt: skip
    return namespace["_check_filter"]


def test_seen_filter_check_passes_the_solution_and_names_each_mistake(lab_11):
    logic = lab_11["logic"]
    _filter_check(logic.filter_seen, logic)()

    def keeps_duplicates(item_ids, scores, seen, k):
        kept = [(int(i), float(s)) for i, s in zip(item_ids, scores, strict=True) if i not in set(seen)][:k]
        return [i for i, _ in kept], [s for _, s in kept]

    def changes_the_list(item_ids, scores, seen, k):
        kept = logic.filter_seen(item_ids, scores, seen, k)
        item_ids[:] = kept[0]  # "cleans" the caller's list
        return kept

    def no_cut_at_k(item_ids, scores, seen, k):
        return logic.filter_seen(item_ids, scores, seen, len(item_ids))

    fails(_filter_check(keeps_duplicates, logic), match="a duplicate is kept once")
    fails(_filter_check(changes_the_list, logic), match="the argument item_ids after the call (do not change it)")
    fails(_filter_check(no_cut_at_k, logic), match="filter_seen([5, 3, 9, 1, 7], ..., seen={3, 1}, k=2)")


def _mmr_check(mmr_rerank, logic):
    catalogue = mock.Mock()
    catalogue.rows = lambda items: np.arange(len(items))
    catalogue.genre_unit = np.eye(40)[np.arange(40) % 5]
    namespace = definitions("11_api_and_ui.ipynb", "_check_mmr", logic=logic, mmr_rerank=mmr_rerank,
                            filter_seen=logic.filter_seen, raw_items=list(range(1, 31)),
                            raw_scores=list(np.linspace(1, 0, 30)), seen=set(), catalogue=catalogue, USER=1,
                            K=10)  # fmt: skip
    return namespace["_check_mmr"]


def test_mmr_check_passes_the_package_and_names_each_mistake(lab_11):
    logic = lab_11["logic"]
    _mmr_check(logic.mmr_rerank, logic)()

    def model_order(item_ids, scores, features, k, lam):
        return list(item_ids[:k]), list(scores[:k])

    def lam_reversed(item_ids, scores, features, k, lam):
        return logic.mmr_rerank(item_ids, scores, features, k, 1.0 - lam)

    fails(_mmr_check(model_order, logic), match="lam = 0.5 on two Sci-Fi films (1, 2) and a comedy (3)")
    fails(_mmr_check(lam_reversed, logic), match="lam = 1: the model's order")


# --- 13.1 and 13.2, the version bump and the sync policy (lab 13) ----------------------------------------------


@pytest.fixture(scope="module")
def lab_13():
    from recsys_workshop import kube

    return {"kube": kube, "VERSIONS": kube.versions(), "yaml": yaml, "copy": copy}


def test_version_bump_check_passes_the_package_and_names_each_mistake(lab_13):
    kube = lab_13["kube"]

    def check(bump_version):
        return definitions("13_gitops_cicd.ipynb", "_check_bump", **lab_13, bump_version=bump_version)["_check_bump"]

    check(kube.set_image_tag)()

    def in_place(kustomization, tag):
        for image in kustomization.get("images", []):
            image["newTag"] = tag
        return kustomization

    def drops_new_name(kustomization, tag):
        bumped = kube.set_image_tag(kustomization, tag)
        for image in bumped.get("images", []):
            image.pop("newName", None)
        return bumped

    def accepts_anything(kustomization, tag):
        bumped = copy.deepcopy(kustomization)
        for image in bumped.get("images", []):
            image["newTag"] = tag
        return bumped

    fails(check(in_place), match="change a copy (copy.deepcopy)")
    fails(check(drops_new_name), match="the rest of the images entry (keep newName)")
    fails(check(accepts_anything), match="should raise ValueError: that is not a version tag")


def test_sync_policy_check_passes_the_package_and_names_each_mistake(lab_13):
    kube = lab_13["kube"]
    application = kube.load_application()
    right = application["spec"]["syncPolicy"]

    def check(policy):
        return definitions("13_gitops_cicd.ipynb", "_check_sync_policy", **lab_13, application=application,
                           sync_policy=lambda: copy.deepcopy(policy))["_check_sync_policy"]  # fmt: skip

    check(right)()
    no_retry = {k: v for k, v in right.items() if k != "retry"}
    fails(check(no_retry), match="retry.limit: expected 5, got None")
    misspelt = {**right, "syncOption": right.get("syncOptions")}
    fails(check({k: v for k, v in misspelt.items() if k != "syncOptions"}), match="the check finds:")
