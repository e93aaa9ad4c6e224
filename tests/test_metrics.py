"""Tests of recsys_workshop.metrics.

Three kinds of evidence:
* small cases computed by hand (ties, short lists, users without recommendations or test items);
* the Microsoft Recommenders formulas re-implemented naively, user by user with plain loops,
  compared with the vectorised metrics on random data (with ties and missing users);
* scikit-learn (ndcg_score, average_precision_score, roc_auc_score) and keras-rs ranking metrics,
  where their definitions coincide with ours (binary relevance, every relevant item scored).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import metrics

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def frame(rows, columns):
    df = pd.DataFrame(rows, columns=columns)
    for col in ("user_id", "item_id"):
        if col in df:
            df[col] = df[col].astype("int64")
    return df


def recs_frame(lists):
    """{user: [(item, score), ...]} -> recs DataFrame (rows in the given order)."""
    rows = [(u, i, s) for u, items in lists.items() for i, s in items]
    return frame(rows, ["user_id", "item_id", "score"])


def truth_frame(sets, ratings=None):
    rows = [(u, i, (ratings or {}).get((u, i), 1.0)) for u, items in sets.items() for i in items]
    return frame(rows, ["user_id", "item_id", "rating"])


# The running example (k = 3):
#   user 1: relevant {10, 11, 12}; list 10 (hit), 13, 11 (hit)          -> hits at positions 1 and 3
#   user 2: relevant {20} (fewer than k); list 21, 20 (hit), 22          -> hit at position 2
#   user 3: relevant {30, 31}; no recommendations                       -> only NDCG counts it (as 0)
#   user 4: no test items; list 10, 11, 12                             -> ignored everywhere
TRUTH = truth_frame({1: [10, 11, 12], 2: [20], 3: [30, 31]})
RECS = recs_frame(
    {
        1: [(10, 0.9), (13, 0.8), (11, 0.7)],
        2: [(21, 0.9), (20, 0.5), (22, 0.1)],
        4: [(10, 0.9), (11, 0.8), (12, 0.7)],
    }
)


def ln_ndcg(positions, n_relevant, k):
    dcg = sum(1 / math.log(1 + p) for p in positions)
    idcg = sum(1 / math.log(1 + j) for j in range(1, min(n_relevant, k) + 1))
    return dcg / idcg


# --------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------


def test_running_example_k3():
    got = metrics.ranking_metrics(TRUTH, RECS, k=3)
    assert set(got) == {"precision@3", "recall@3", "ndcg@3", "map", "map@3", "hr@3", "mrr"}
    # Common users are 1 and 2 (user 3 has no list, user 4 no test items).
    assert got["precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert got["recall@3"] == pytest.approx((2 / 3 + 1 / 1) / 2)
    assert got["map"] == pytest.approx(((1 / 1 + 2 / 3) / 3 + (1 / 2) / 1) / 2)  # 19/36
    assert got["map@3"] == pytest.approx(19 / 36)  # min(|T_u|, 3) = |T_u| here
    assert got["hr@3"] == pytest.approx(1.0)
    assert got["mrr"] == pytest.approx((1 / 1 + 1 / 2) / 2)
    # NDCG averages over all three test users; user 3 counts as 0.
    expected_ndcg = (ln_ndcg([1, 3], 3, 3) + ln_ndcg([2], 1, 3) + 0.0) / 3
    assert got["ndcg@3"] == pytest.approx(expected_ndcg)
    # Same numbers from the single-metric functions.
    assert metrics.precision_at_k(TRUTH, RECS, k=3) == pytest.approx(got["precision@3"])
    assert metrics.recall_at_k(TRUTH, RECS, k=3) == pytest.approx(got["recall@3"])
    assert metrics.ndcg_at_k(TRUTH, RECS, k=3) == pytest.approx(expected_ndcg)
    assert metrics.map(TRUTH, RECS, k=3) == pytest.approx(19 / 36)
    assert metrics.map_at_k(TRUTH, RECS, k=3) == pytest.approx(19 / 36)
    assert metrics.hit_rate_at_k(TRUTH, RECS, k=3) == pytest.approx(1.0)
    assert metrics.mrr(TRUTH, RECS, k=3) == pytest.approx(0.75)


def test_running_example_k2_map_differs_from_map_at_k():
    # Top 2: user 1 -> 10 (hit), 13; user 2 -> 21, 20 (hit).
    got = metrics.ranking_metrics(TRUTH, RECS, k=2)
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx((1 / 3 + 1) / 2)
    assert got["map"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # divides by |T_u| = 3 and 1
    assert got["map@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # divides by min(|T_u|, 2) = 2 and 1
    assert got["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert got["ndcg@2"] == pytest.approx((ln_ndcg([1], 3, 2) + ln_ndcg([2], 1, 2)) / 3)


def test_log_base_cancels_in_binary_ndcg():
    loge = metrics.ndcg_at_k(TRUTH, RECS, k=3)
    log2 = metrics.ndcg_at_k(TRUTH, RECS, k=3, discfun_type="log2")
    assert log2 == pytest.approx(loge)


def test_users_without_test_items_are_ignored():
    without_user4 = RECS[RECS["user_id"] != 4]
    assert metrics.ranking_metrics(TRUTH, without_user4, 3) == pytest.approx(
        metrics.ranking_metrics(TRUTH, RECS, 3)
    )


def test_test_user_without_recommendations_counts_only_in_ndcg():
    truth_12 = TRUTH[TRUTH["user_id"] != 3]
    with_3 = metrics.ranking_metrics(TRUTH, RECS, 3)
    without_3 = metrics.ranking_metrics(truth_12, RECS, 3)
    for name in ("precision@3", "recall@3", "map", "map@3", "hr@3", "mrr"):
        assert with_3[name] == pytest.approx(without_3[name]), name
    assert with_3["ndcg@3"] == pytest.approx(without_3["ndcg@3"] * 2 / 3)


def test_precision_divides_by_k_for_short_lists():
    truth = truth_frame({1: [1, 2]})
    recs = recs_frame({1: [(1, 1.0), (2, 0.5)]})  # perfect but only 2 items for k = 5
    assert metrics.precision_at_k(truth, recs, k=5) == pytest.approx(2 / 5)
    assert metrics.recall_at_k(truth, recs, k=5) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(truth, recs, k=5) == pytest.approx(1.0)
    assert metrics.map(truth, recs, k=5) == pytest.approx(1.0)


def test_user_with_more_relevant_items_than_k():
    truth = truth_frame({1: [1, 2, 3, 4, 5]})
    recs = recs_frame({1: [(1, 3.0), (2, 2.0), (9, 1.0)]})
    assert metrics.recall_at_k(truth, recs, k=2) == pytest.approx(2 / 5)
    assert metrics.map(truth, recs, k=2) == pytest.approx((1 + 1) / 5)
    assert metrics.map_at_k(truth, recs, k=2) == pytest.approx((1 + 1) / 2)
    assert metrics.ndcg_at_k(truth, recs, k=2) == pytest.approx(1.0)


def test_no_hit_gives_zero():
    truth = truth_frame({1: [1]})
    recs = recs_frame({1: [(2, 1.0), (3, 0.5)]})
    got = metrics.ranking_metrics(truth, recs, 2)
    assert all(v == 0.0 for v in got.values()), got


def test_ties_keep_row_order_and_rank_column_wins():
    truth = truth_frame({1: [6]})
    first_5 = recs_frame({1: [(5, 1.0), (6, 1.0)]})
    first_6 = recs_frame({1: [(6, 1.0), (5, 1.0)]})
    assert metrics.precision_at_k(truth, first_5, k=1) == 0.0
    assert metrics.precision_at_k(truth, first_6, k=1) == 1.0
    # Tied items still get distinct positions 1, 2 (no shared rank).
    assert metrics.mrr(truth, first_5, k=2) == pytest.approx(0.5)
    assert metrics.top_k(first_5)["rank"].tolist() == [1, 2]
    # An explicit rank column decides the order, whatever the scores say.
    ranked = first_5.assign(rank=[2, 1])
    assert metrics.precision_at_k(truth, ranked, k=1) == 1.0
    assert metrics.top_k(ranked, k=1)["item_id"].tolist() == [6]


def test_prediction_column_is_accepted_like_microsoft_recommenders():
    recs = RECS.rename(columns={"score": "prediction"})
    assert metrics.ranking_metrics(TRUTH, recs, 3) == pytest.approx(metrics.ranking_metrics(TRUTH, RECS, 3))


def test_graded_ndcg_raw_and_exp():
    truth = truth_frame({1: [1, 2, 3]}, ratings={(1, 1): 1.0, (1, 2): 3.0, (1, 3): 2.0})
    recs = recs_frame({1: [(1, 3.0), (9, 2.0), (2, 1.0)]})  # gains at positions 1 and 3: r=1, r=3
    k = 3
    disc = [1 / math.log(1 + j) for j in (1, 2, 3)]
    raw = (1 * disc[0] + 3 * disc[2]) / (3 * disc[0] + 2 * disc[1] + 1 * disc[2])
    exp = (1 * disc[0] + 7 * disc[2]) / (7 * disc[0] + 3 * disc[1] + 1 * disc[2])
    assert metrics.ndcg_at_k(truth, recs, k, score_type="raw") == pytest.approx(raw)
    assert metrics.ndcg_at_k(truth, recs, k, score_type="exp") == pytest.approx(exp)
    assert metrics.ndcg_at_k(truth, recs, k) == pytest.approx((disc[0] + disc[2]) / sum(disc))


def test_rmse_mae_on_frames_and_arrays():
    truth = frame([(1, 1, 4.0), (1, 2, 3.0), (2, 1, 5.0), (3, 3, 1.0)], ["user_id", "item_id", "rating"])
    pred = frame([(1, 1, 3.5), (1, 2, 3.0), (2, 1, 4.0), (9, 9, 2.0)], ["user_id", "item_id", "prediction"])
    expected_rmse = math.sqrt((0.25 + 0 + 1) / 3)  # only the three shared pairs count
    assert metrics.rmse(truth, pred) == pytest.approx(expected_rmse)
    assert metrics.mae(truth, pred) == pytest.approx(0.5)
    assert metrics.rmse(truth, pred.rename(columns={"prediction": "score"})) == pytest.approx(expected_rmse)
    assert metrics.rmse([4, 3, 5], np.array([3.5, 3, 4])) == pytest.approx(expected_rmse)
    assert metrics.mae(pd.Series([4, 3, 5]), [3.5, 3, 4]) == pytest.approx(0.5)
    # Same column name on both sides works.
    assert metrics.rmse(truth, pred.rename(columns={"prediction": "rating"}), col_prediction="rating") == (
        pytest.approx(expected_rmse)
    )


def test_auc_by_hand_with_ties():
    truth = truth_frame({1: [1, 2]})
    scores = frame([(1, 1, 0.9), (1, 2, 0.4), (1, 3, 0.5), (1, 4, 0.1)], ["user_id", "item_id", "score"])
    assert metrics.auc(truth, scores) == pytest.approx(3 / 4)
    tied = frame([(1, 1, 0.5), (1, 3, 0.5)], ["user_id", "item_id", "score"])
    assert metrics.auc(truth, tied) == pytest.approx(0.5)
    labelled = frame([(1, 1, 1), (1, 2, 1), (1, 3, 0), (1, 4, 0)], ["user_id", "item_id", "label"])
    assert metrics.auc(labelled, scores, col_label="label") == pytest.approx(3 / 4)


def test_catalogue_coverage_and_novelty_by_hand():
    train = frame([(1, 100), (2, 100), (1, 101), (3, 102)], ["user_id", "item_id"])
    recs = recs_frame({4: [(100, 1.0), (101, 0.5)], 5: [(103, 1.0)]})
    assert metrics.catalogue_coverage(recs, train) == pytest.approx(3 / 3)  # 103 is outside, still counted
    assert metrics.catalogue_coverage(recs, 10) == pytest.approx(3 / 10)
    assert metrics.catalogue_coverage(recs, [100, 101, 102, 103, 104, 105]) == pytest.approx(0.5)
    # p(100) = 2/4, p(101) = 1/4; 103 is unseen and adds 0 but counts in the denominator (as MS).
    assert metrics.novelty(train, recs) == pytest.approx((1 + 2 + 0) / 3)


def test_intra_list_diversity_by_hand():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    recs = recs_frame({1: [(0, 3.0), (1, 2.0), (2, 1.0)], 2: [(0, 1.0)]})
    # cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/sqrt(2); user 2 has one item and is skipped.
    assert metrics.intra_list_diversity(recs, features) == pytest.approx(1 - (2 / math.sqrt(2)) / 3)
    # Same with a DataFrame indexed by item id and with scaled vectors (cosine ignores length).
    as_frame = pd.DataFrame(features * 7.0, index=pd.Index([0, 1, 2, 3], name="item_id"))
    assert metrics.intra_list_diversity(recs, as_frame) == pytest.approx(1 - (2 / math.sqrt(2)) / 3)
    # A zero vector is similar to nothing.
    with_zero = recs_frame({1: [(0, 1.0), (3, 0.5)]})
    assert metrics.intra_list_diversity(with_zero, features) == pytest.approx(1.0)
    same = recs_frame({1: [(0, 1.0), (2, 0.5)]})
    assert metrics.intra_list_diversity(same, features) == pytest.approx(1 - 1 / math.sqrt(2))


def test_serendipity_by_hand_features_and_cooccurrence():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    train = frame([(1, 0)], ["user_id", "item_id"])
    recs = recs_frame({1: [(1, 2.0), (2, 1.0)], 7: [(0, 1.0)]})  # user 7 has no history: left out
    truth = truth_frame({1: [2]})
    unexp_1, unexp_2 = 1 - 0.0, 1 - 1 / math.sqrt(2)
    assert metrics.serendipity(train, recs, item_features=features) == pytest.approx((unexp_1 + unexp_2) / 2)
    assert metrics.serendipity(train, recs, truth=truth, item_features=features) == pytest.approx(unexp_2 / 2)

    # Co-occurrence: users 1 {a, b}, 2 {a, c}, 3 {b}; recommend a, c to user 3 (history {b}).
    a, b, c = 1, 2, 3
    train = frame([(1, a), (1, b), (2, a), (2, c), (3, b)], ["user_id", "item_id"])
    recs = recs_frame({3: [(a, 2.0), (c, 1.0)]})
    # sim(a, b) = |{1}| / sqrt(2 * 2) = 0.5; sim(c, b) = 0.
    assert metrics.serendipity(train, recs) == pytest.approx(((1 - 0.5) + (1 - 0.0)) / 2)


def test_popularity_bias_and_arp_by_hand():
    train = frame([(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (1, 3)], ["user_id", "item_id"])  # counts 3, 2, 1
    recs = recs_frame({1: [(1, 1.0), (2, 0.5)], 2: [(99, 1.0)]})  # 99 never seen: percentile 0
    # pct(1) = (2 + 0.5)/3, pct(2) = (1 + 0.5)/3
    assert metrics.popularity_bias(train, recs) == pytest.approx(((2.5 / 3 + 1.5 / 3) / 2 + 0.0) / 2)
    assert metrics.average_recommendation_popularity(train, recs) == pytest.approx(((3 + 2) / 2 + 0) / 2)


def test_popularity_percentile_averages_one_half_over_the_catalogue():
    rng = np.random.default_rng(3)
    train = frame(
        sorted(
            {(int(u), int(i)) for u, i in zip(rng.integers(0, 50, 400), rng.zipf(1.5, 400) % 60, strict=True)}
        ),
        ["user_id", "item_id"],
    )
    catalogue = np.sort(train["item_id"].unique())
    recs = frame([(0, int(i), 1.0) for i in catalogue], ["user_id", "item_id", "score"])
    assert metrics.popularity_bias(train, recs) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"truth is missing column\(s\) \['item_id'\]"):
        metrics.precision_at_k(TRUTH.drop(columns="item_id"), RECS, 3)
    with pytest.raises(ValueError, match="rank.*score.*prediction"):
        metrics.precision_at_k(TRUTH, RECS.drop(columns="score"), 3)
    with pytest.raises(ValueError, match="rating"):
        metrics.ndcg_at_k(TRUTH.drop(columns="rating"), RECS, 3, score_type="raw")
    with pytest.raises(ValueError, match="prediction"):
        metrics.rmse(TRUTH, RECS.drop(columns="score"))


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        metrics.ranking_metrics(TRUTH, RECS, k)


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="recs is empty"):
        metrics.ranking_metrics(TRUTH, RECS.iloc[0:0], 3)
    with pytest.raises(ValueError, match="truth is empty"):
        metrics.ranking_metrics(TRUTH.iloc[0:0], RECS, 3)
    only_user4 = RECS[RECS["user_id"] == 4]
    with pytest.raises(ValueError, match="no user appears in both"):
        metrics.precision_at_k(TRUTH, only_user4, 3)
    with pytest.raises(ValueError, match="empty"):
        metrics.rmse([], [])


def test_nan_scores_duplicates_and_dtype_mismatch_raise():
    nan_recs = RECS.copy()
    nan_recs.loc[1, "score"] = np.nan
    with pytest.raises(ValueError, match=r"recs\['score'\] contains 1 NaN"):
        metrics.ndcg_at_k(TRUTH, nan_recs, 3)
    dup = pd.concat([RECS, RECS.iloc[[0]]])
    with pytest.raises(ValueError, match="duplicated"):
        metrics.map(TRUTH, dup, 3)
    str_users = RECS.assign(user_id=RECS["user_id"].astype(str))
    with pytest.raises(ValueError, match="dtype"):
        metrics.recall_at_k(TRUTH, str_users, 3)
    with pytest.raises(ValueError, match="NaN"):
        metrics.mae([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="3 values"):
        metrics.rmse([1, 2, 3], [1, 2])
    with pytest.raises(TypeError):
        metrics.rmse(TRUTH, [1, 2, 3])


def test_auc_and_features_errors():
    truth = truth_frame({1: [1]})
    only_pos = frame([(1, 1, 0.3)], ["user_id", "item_id", "score"])
    with pytest.raises(ValueError, match="no negatives"):
        metrics.auc(truth, only_pos)
    graded = frame([(1, 1, 4.0)], ["user_id", "item_id", "rating"])
    with pytest.raises(ValueError, match="binary"):
        metrics.auc(graded, only_pos, col_label="rating")
    with pytest.raises(ValueError, match="no row for 1 recommended item"):
        metrics.intra_list_diversity(recs_frame({1: [(0, 1.0), (5, 0.5)]}), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        metrics.intra_list_diversity(recs_frame({1: [(0, 1.0), (1, 0.5)]}), np.array([[1.0, np.nan], [0, 1]]))


# --------------------------------------------------------------------------------------------------
# evaluate()
# --------------------------------------------------------------------------------------------------


class ListModel:
    """Recommends fixed lists; optionally misbehaves."""

    def __init__(self, lists, name=None):
        self.lists = lists
        if name:
            self.name = name
        self.calls = []

    def recommend(self, user_ids, k, exclude_seen=True):
        self.calls.append((list(user_ids), k, exclude_seen))
        rows = [
            (u, i, float(len(self.lists[u]) - r), r + 1)
            for u in user_ids
            if u in self.lists
            for r, i in enumerate(self.lists[u][:k])
        ]
        return frame(rows, ["user_id", "item_id", "score", "rank"])


EVAL_TRAIN = frame([(1, 1), (1, 2), (2, 2), (2, 3), (3, 1), (3, 4)], ["user_id", "item_id"])
EVAL_TEST = truth_frame({1: [3, 4], 2: [1]})


def test_evaluate_returns_the_shared_columns():
    model = ListModel({1: [3, 5, 4], 2: [4, 1, 5]}, name="fixed")
    row = metrics.evaluate(model, EVAL_TRAIN, EVAL_TEST, k=3)
    assert model.calls == [([1, 2], 3, True)]
    assert list(row.columns) == [
        "model",
        "precision@3",
        "recall@3",
        "ndcg@3",
        "map",
        "map@3",
        "hr@3",
        "mrr",
        "coverage",
        "novelty",
        "serendipity",
        "popularity_bias",
    ]
    assert len(row) == 1
    assert row.loc[0, "model"] == "fixed"
    recs = model.recommend([1, 2], 3)
    expected = metrics.ranking_metrics(EVAL_TEST, recs, 3)
    for name, value in expected.items():
        assert row.loc[0, name] == pytest.approx(value)
    assert row.loc[0, "precision@3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert row.loc[0, "coverage"] == pytest.approx(4 / 4)  # items 1, 3, 4, 5 over train items 1-4
    assert row.loc[0, "serendipity"] == pytest.approx(metrics.serendipity(EVAL_TRAIN, recs, truth=EVAL_TEST))


def test_evaluate_with_features_adds_diversity_and_defaults_name():
    features = pd.DataFrame(np.eye(6), index=range(6))
    row = metrics.evaluate(
        ListModel({1: [3, 5], 2: [4, 1]}), EVAL_TRAIN, EVAL_TEST, k=2, item_features=features
    )
    assert row.loc[0, "model"] == "ListModel"
    assert row.loc[0, "diversity"] == pytest.approx(1.0)  # orthogonal one-hot vectors
    assert "precision@2" in row.columns and "map@2" in row.columns


def test_evaluate_rejects_bad_model_output():
    with pytest.raises(ValueError, match=r"no recommendations for 1 of 2 test user\(s\), e.g. \[2\]"):
        metrics.evaluate(ListModel({1: [3, 5]}), EVAL_TRAIN, EVAL_TEST, k=2)

    class Duplicating(ListModel):
        def recommend(self, user_ids, k, exclude_seen=True):
            out = super().recommend(user_ids, k, exclude_seen)
            return pd.concat([out, out.iloc[[0]]], ignore_index=True)

    with pytest.raises(ValueError, match="duplicated"):
        metrics.evaluate(Duplicating({1: [3, 5], 2: [4, 1]}), EVAL_TRAIN, EVAL_TEST, k=2)

    class TooLong(ListModel):
        def recommend(self, user_ids, k, exclude_seen=True):
            return super().recommend(user_ids, k + 1, exclude_seen)

    with pytest.raises(ValueError, match="more than k=2"):
        metrics.evaluate(TooLong({1: [3, 5, 4], 2: [4, 1, 5]}), EVAL_TRAIN, EVAL_TEST, k=2)

    class NaNScores(ListModel):
        def recommend(self, user_ids, k, exclude_seen=True):
            return super().recommend(user_ids, k, exclude_seen).assign(score=np.nan).drop(columns="rank")

    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate(NaNScores({1: [3], 2: [4]}), EVAL_TRAIN, EVAL_TEST, k=2)
    with pytest.raises(ValueError, match="k must be"):
        metrics.evaluate(ListModel({1: [3], 2: [4]}), EVAL_TRAIN, EVAL_TEST, k=0)


# --------------------------------------------------------------------------------------------------
# Cross-check 1: Microsoft Recommenders' formulas, naively, one user at a time
# --------------------------------------------------------------------------------------------------


def random_case(seed, n_users=40, n_items=30, tie_levels=4):
    """Random truth/recs with ties, short lists, users missing on either side."""
    rng = np.random.default_rng(seed)
    truth_rows, rec_rows = [], []
    for u in range(n_users):
        if rng.random() < 0.85:  # ~15% of users have no test items
            for i in rng.choice(n_items, size=rng.integers(1, 9), replace=False):
                truth_rows.append((u, int(i), float(rng.integers(1, 6))))
        if rng.random() < 0.85:  # ~15% have no recommendations
            for i in rng.choice(n_items, size=rng.integers(1, 16), replace=False):
                rec_rows.append((u, int(i), float(rng.integers(0, tie_levels))))
    truth = frame(truth_rows, ["user_id", "item_id", "rating"])
    recs = frame(rec_rows, ["user_id", "item_id", "score"]).sample(frac=1.0, random_state=seed)
    return truth, recs.reset_index(drop=True)


def naive_ms(truth, recs, k, score_type="binary"):
    """The formulas of recommenders.evaluation.python_evaluation, user by user."""
    relevant, rating = defaultdict(set), {}
    for u, i, r in truth[["user_id", "item_id", "rating"]].itertuples(index=False):
        relevant[u].add(i)
        rating[u, i] = r
    lists = defaultdict(list)
    for u, i, s in recs[["user_id", "item_id", "score"]].itertuples(index=False):
        lists[u].append((i, s))  # row order kept: Python's sort is stable, like MS's lexsort
    top = {u: [i for i, _ in sorted(items, key=lambda x: -x[1])][:k] for u, items in lists.items()}
    common = [u for u in top if u in relevant]

    def gain(u, i):
        r = rating[u, i]
        return {"binary": 1.0, "raw": r, "exp": 2.0**r - 1}[score_type]

    prec = rec = ap = apk = hr = rr = 0.0
    for u in common:
        hits = [pos for pos, i in enumerate(top[u], start=1) if i in relevant[u]]
        prec += len(hits) / k
        rec += len(hits) / len(relevant[u])
        precisions = [n / pos for n, pos in enumerate(hits, start=1)]
        ap += sum(precisions) / len(relevant[u])
        apk += sum(precisions) / min(len(relevant[u]), k)
        hr += 1.0 if hits else 0.0
        rr += 1.0 / hits[0] if hits else 0.0
    ndcgs = []
    for u in relevant:  # every test user
        dcg = sum(
            gain(u, i) / math.log(1 + pos) for pos, i in enumerate(top.get(u, []), 1) if i in relevant[u]
        )
        ideal = sorted((gain(u, i) for i in relevant[u]), reverse=True)[:k]
        idcg = sum(g / math.log(1 + j) for j, g in enumerate(ideal, start=1))
        ndcgs.append(dcg / idcg)
    n = len(common)
    return {
        f"precision@{k}": prec / n,
        f"recall@{k}": rec / n,
        f"ndcg@{k}": sum(ndcgs) / len(ndcgs),
        "map": ap / n,
        f"map@{k}": apk / n,
        f"hr@{k}": hr / n,
        "mrr": rr / n,
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_ranking_metrics_match_naive_microsoft_formulas(seed, k):
    truth, recs = random_case(seed)
    got = metrics.ranking_metrics(truth, recs, k)
    want = naive_ms(truth, recs, k)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("score_type", ["raw", "exp"])
def test_graded_ndcg_matches_naive(score_type):
    truth, recs = random_case(11)
    got = metrics.ndcg_at_k(truth, recs, 5, score_type=score_type)
    assert got == pytest.approx(naive_ms(truth, recs, 5, score_type)["ndcg@5"], rel=1e-12)


def test_naive_reference_is_sensitive_to_tie_order():
    # Guards the cross-check itself: with many ties, reversing row order must change some metric,
    # so agreement above is evidence about tie handling, not luck.
    truth, recs = random_case(5, tie_levels=2)
    flipped = recs.iloc[::-1].reset_index(drop=True)
    a, b = metrics.ranking_metrics(truth, recs, 3), metrics.ranking_metrics(truth, flipped, 3)
    assert a != pytest.approx(b)
    assert b == pytest.approx(naive_ms(truth, flipped, 3))


def naive_serendipity(train, recs, truth=None, features=None):
    history = defaultdict(set)
    for u, i in train[["user_id", "item_id"]].itertuples(index=False):
        history[u].add(i)
    item_users = defaultdict(set)
    for u, items in history.items():
        for i in items:
            item_users[i].add(u)

    def sim(a, b):
        if features is not None:
            fa, fb = features[a], features[b]
            na, nb = np.linalg.norm(fa), np.linalg.norm(fb)
            return 0.0 if na == 0 or nb == 0 else float(fa @ fb / (na * nb))
        if not item_users[a] or not item_users[b]:
            return 0.0
        return len(item_users[a] & item_users[b]) / math.sqrt(len(item_users[a]) * len(item_users[b]))

    relevant = set(map(tuple, truth[["user_id", "item_id"]].to_numpy())) if truth is not None else None
    per_user = defaultdict(list)
    for u, i in recs[["user_id", "item_id"]].itertuples(index=False):
        if u not in history:
            continue
        unexp = 1 - sum(sim(i, h) for h in history[u]) / len(history[u])
        rel = 1.0 if relevant is None or (u, i) in relevant else 0.0
        per_user[u].append(unexp * rel)
    return float(np.mean([np.mean(v) for v in per_user.values()]))


def naive_diversity(recs, features):
    values = []
    for _, group in recs.groupby("user_id"):
        items = group["item_id"].tolist()
        sims = []
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                fa, fb = features[items[a]], features[items[b]]
                na, nb = np.linalg.norm(fa), np.linalg.norm(fb)
                sims.append(0.0 if na == 0 or nb == 0 else fa @ fb / (na * nb))
        if sims:
            values.append(1 - np.mean(sims))
    return float(np.mean(values))


@pytest.mark.parametrize("seed", range(3))
def test_beyond_accuracy_match_naive(seed):
    rng = np.random.default_rng(100 + seed)
    n_items = 25
    train = frame(
        sorted(
            {
                (int(u), int(i))
                for u, i in zip(rng.integers(0, 30, 300), rng.integers(0, n_items, 300), strict=True)
            }
        ),
        ["user_id", "item_id"],
    )
    truth, recs = random_case(seed, n_users=35, n_items=n_items)
    features = rng.integers(0, 2, size=(n_items, 6)).astype(float)  # multi-hot, some all-zero rows
    features[3] = 0.0
    assert metrics.serendipity(train, recs) == pytest.approx(naive_serendipity(train, recs), rel=1e-10)
    assert metrics.serendipity(train, recs, truth=truth) == pytest.approx(
        naive_serendipity(train, recs, truth), rel=1e-10
    )
    assert metrics.serendipity(train, recs, truth=truth, item_features=features) == pytest.approx(
        naive_serendipity(train, recs, truth, features), rel=1e-10
    )
    assert metrics.intra_list_diversity(recs, features) == pytest.approx(
        naive_diversity(recs, features), rel=1e-10
    )
    counts = train.groupby("item_id").size()
    want_novelty = np.mean(
        [-math.log2(counts[i] / len(train)) if i in counts else 0.0 for i in recs["item_id"]]
    )
    assert metrics.novelty(train, recs) == pytest.approx(want_novelty, rel=1e-12)
    want_cov = recs["item_id"].nunique() / train["item_id"].nunique()
    assert metrics.catalogue_coverage(recs, train) == pytest.approx(want_cov)
    sorted_counts = sorted(counts.tolist())
    n = len(sorted_counts)
    pct_by_user = defaultdict(list)
    for u, i in recs[["user_id", "item_id"]].itertuples(index=False):
        c = counts.get(i, 0)
        pct_by_user[u].append(
            (sum(x < c for x in sorted_counts) + 0.5 * sum(x == c for x in sorted_counts)) / n
        )
    want_pb = np.mean([np.mean(v) for v in pct_by_user.values()])
    assert metrics.popularity_bias(train, recs) == pytest.approx(want_pb, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# Cross-check 2: scikit-learn and keras-rs, where the definitions coincide
# --------------------------------------------------------------------------------------------------


def dense_case(seed, n_users=25, n_items=20, graded=False):
    """Every user scores every item (distinct scores) and has at least one relevant item.

    Then every relevant item is in the ranked list, as sklearn/keras-rs assume, and the top-k cut is
    never filled by unscored items.
    """
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_users, n_items)) < 0.25).astype(float)
    labels[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    if graded:
        labels *= rng.integers(1, 6, size=labels.shape)
    scores = rng.permuted(np.tile(np.arange(n_items, dtype=float), (n_users, 1)), axis=1) + rng.random(
        (n_users, n_items)
    )
    users, items = np.nonzero(labels)
    truth = frame(
        {"user_id": users, "item_id": items, "rating": labels[users, items]}, ["user_id", "item_id", "rating"]
    )
    uu, ii = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    recs = frame(
        {"user_id": uu.ravel(), "item_id": ii.ravel(), "score": scores.ravel()},
        ["user_id", "item_id", "score"],
    )
    return labels, scores, truth, recs.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_ndcg_matches_sklearn(k):
    from sklearn.metrics import ndcg_score

    labels, scores, truth, recs = dense_case(1)
    assert metrics.ndcg_at_k(truth, recs, k) == pytest.approx(ndcg_score(labels, scores, k=k), rel=1e-10)
    graded, scores, truth, recs = dense_case(2, graded=True)
    assert metrics.ndcg_at_k(truth, recs, k, score_type="raw") == pytest.approx(
        ndcg_score(graded, scores, k=k), rel=1e-10
    )
    assert metrics.ndcg_at_k(truth, recs, k, score_type="exp") == pytest.approx(
        ndcg_score(2.0**graded - 1.0, scores, k=k), rel=1e-10
    )


def test_untruncated_map_matches_sklearn_average_precision():
    from sklearn.metrics import average_precision_score

    labels, scores, truth, recs = dense_case(3)
    n_items = labels.shape[1]
    expected = np.mean([average_precision_score(y, s) for y, s in zip(labels, scores, strict=True)])
    assert metrics.map(truth, recs, k=n_items) == pytest.approx(expected, rel=1e-10)


def test_auc_matches_sklearn_roc_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    labels, scores, truth, recs = dense_case(4)
    scores = np.round(scores / 4)  # coarse scores: many ties
    recs = recs.assign(score=scores[recs["user_id"], recs["item_id"]])
    assert metrics.auc(truth, recs) == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()), rel=1e-12)
    per_user = np.mean(
        [roc_auc_score(y, s) for y, s in zip(labels, scores, strict=True) if 0 < y.sum() < y.size]
    )
    assert metrics.auc(truth, recs, per_user=True) == pytest.approx(per_user, rel=1e-12)
    # Explicit 0/1 labels (MS auc): the same numbers on a random subset of pairs.
    subset = recs.sample(frac=0.5, random_state=1)
    subset_labels = labels[subset["user_id"], subset["item_id"]]
    labelled = subset[["user_id", "item_id"]].assign(label=subset_labels.astype(int))
    got = metrics.auc(labelled, subset.sample(frac=1.0, random_state=rng.integers(1000)), col_label="label")
    assert got == pytest.approx(roc_auc_score(subset_labels, subset["score"]), rel=1e-12)


@pytest.mark.tf
def test_ranking_metrics_match_keras_rs():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras_rs = pytest.importorskip("keras_rs")

    labels, scores, truth, recs = dense_case(5, n_users=30, n_items=25)
    for k in (1, 5, 10):
        ours = metrics.ranking_metrics(truth, recs, k)
        # keras-rs: per list, binary relevance (gain 2**y - 1 = y for y in {0, 1}), log2 discount,
        # AP divided by all relevant items of the list (= MS `map`), mean over lists.
        pairs = {
            f"ndcg@{k}": keras_rs.metrics.NDCG(k=k),
            "map": keras_rs.metrics.MeanAveragePrecision(k=k),
            "mrr": keras_rs.metrics.MeanReciprocalRank(k=k),
            f"precision@{k}": keras_rs.metrics.PrecisionAtK(k=k),
            f"recall@{k}": keras_rs.metrics.RecallAtK(k=k),
        }
        for name, metric in pairs.items():
            metric.update_state(labels.astype("float32"), scores.astype("float32"))
            theirs = float(metric.result())
            assert ours[name] == pytest.approx(theirs, rel=1e-5, abs=1e-6), (name, k)
        assert ours[f"map@{k}"] >= ours["map"]


# --------------------------------------------------------------------------------------------------
# Layering
# --------------------------------------------------------------------------------------------------


def test_importing_metrics_pulls_in_no_deep_learning_framework():
    code = (
        "import sys, recsys_workshop.metrics\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'tensorflow', 'keras', 'keras_rs', 'torch', 'jax', 'sklearn', 'scipy'})\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
