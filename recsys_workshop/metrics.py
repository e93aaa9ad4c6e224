"""Evaluation metrics shared by every lab and benchmark.

Pure numpy/pandas (``scipy.sparse`` is imported lazily by :func:`serendipity` when no item features
are given). Nothing here imports TensorFlow or Keras.

Three families:

* **Rating error** -- :func:`rmse`, :func:`mae` on explicit rating predictions.
* **Top-k ranking accuracy** -- :func:`precision_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k`,
  :func:`map`, :func:`map_at_k`, :func:`hit_rate_at_k`, :func:`mrr` (all at once:
  :func:`ranking_metrics`) and :func:`auc`.
* **Beyond accuracy** -- :func:`catalogue_coverage`, :func:`novelty`, :func:`intra_list_diversity`,
  :func:`serendipity`, :func:`popularity_bias` (and :func:`average_recommendation_popularity`).

:func:`evaluate` runs a model's ``recommend`` for every test user and returns one tidy row with the
columns every lab and benchmark reports.

Conventions
-----------
DataFrames are read by column name, never by position:

* ``truth`` (held-out interactions): ``user_id``, ``item_id`` and, where a metric needs it, ``rating``.
  Every row of ``truth`` counts as a relevant item (filter it, e.g. ``rating >= 4``, beforehand if
  you want a threshold).
* ``recs`` (recommendations): ``user_id``, ``item_id`` and the order of each user's list, taken from
  ``rank`` (ascending, 1 = best) when that column exists, otherwise from ``score`` (or, for
  Microsoft Recommenders-style frames, ``prediction``), descending.

The ranking metrics reproduce ``recommenders.evaluation.python_evaluation`` of Microsoft
Recommenders (recommenders-team/recommenders; ``merge_ranking_true_pred``, ``get_top_k_items``,
``precision_at_k``, ``recall_at_k``, ``ndcg_at_k``, ``map``, ``map_at_k``) with its defaults
(``relevancy_method="top_k"``, ``score_type="binary"``, ``discfun_type="loge"``), computed with
vectorised merges/groupbys instead of per-user loops, so numbers are comparable with their
benchmark tables. In particular:

* **Top-k and ties.** Each user's list is sorted by the order column with a *stable* sort and cut
  after ``k`` rows; positions are then 1, 2, ..., k with no shared ranks. Items with equal scores
  therefore keep the order in which they appear in ``recs`` (earlier row = better position), which
  is what Microsoft Recommenders' ``sort_values([user, prediction]).groupby(user).head(k)`` +
  ``cumcount() + 1`` does. Pass a ``rank`` column (or pre-sort ``recs``) to control tie order.
* **Which users are averaged.** Precision, recall, MAP, MAP@k, hit rate and MRR average over the
  users present in *both* ``truth`` and ``recs`` ("common users"): a test user without
  recommendations is left out, not counted as 0. NDCG averages over *all* users of ``truth``: a
  test user without recommendations counts as 0. Users who appear only in ``recs`` (no test items)
  are ignored by every accuracy metric.
* **Short lists.** Precision divides by ``k`` even when a user received fewer than ``k`` items
  (Spark's definition), so it may not reach 1.

Bad input raises ``ValueError`` naming the problem: a missing column, ``k < 1``, an empty ``truth``
or ``recs`` (no value is returned for "nothing to evaluate"), no user in common (often an id dtype
mismatch), NaN ids or scores, duplicated ``(user_id, item_id)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import pandas as pd

__all__ = [
    "USER",
    "ITEM",
    "RATING",
    "SCORE",
    "RANK",
    "PREDICTION",
    "Recommender",
    "rmse",
    "mae",
    "top_k",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map",
    "map_at_k",
    "hit_rate_at_k",
    "mrr",
    "ranking_metrics",
    "auc",
    "catalogue_coverage",
    "novelty",
    "intra_list_diversity",
    "serendipity",
    "popularity_bias",
    "average_recommendation_popularity",
    "evaluate",
]

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
SCORE = "score"
RANK = "rank"
PREDICTION = "prediction"

# Columns that may hold the order of a recommendation list, in order of preference.
_ORDER_COLUMNS = (RANK, SCORE, PREDICTION)


class Recommender(Protocol):
    """What :func:`evaluate` needs from a model."""

    def recommend(self, user_ids: Any, k: int, exclude_seen: bool = True) -> pd.DataFrame: ...


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def _require_frame(df: Any, name: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    return df


def _require_columns(df: Any, columns: Iterable[str], name: str) -> pd.DataFrame:
    df = _require_frame(df, name)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; it has columns {[str(c) for c in df.columns]}"
        )
    return df


def _require_non_empty(df: pd.DataFrame, name: str) -> None:
    if len(df) == 0:
        raise ValueError(f"{name} is empty: there is nothing to evaluate")


def _check_no_nan(df: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    for col in columns:
        values = df[col]
        if values.isna().any():
            n = int(values.isna().sum())
            raise ValueError(f"{name}[{col!r}] contains {n} NaN value(s)")
        if pd.api.types.is_float_dtype(values) and not np.isfinite(values.to_numpy(dtype=float)).all():
            raise ValueError(f"{name}[{col!r}] contains infinite value(s)")


def _check_unique_pairs(df: pd.DataFrame, name: str) -> None:
    dup = df.duplicated([USER, ITEM])
    if dup.any():
        first = df.loc[dup, [USER, ITEM]].iloc[0]
        raise ValueError(
            f"{name} has {int(dup.sum())} duplicated ({USER}, {ITEM}) pair(s), e.g. "
            f"({first[USER]!r}, {first[ITEM]!r}); drop duplicates first"
        )


def _id_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "text"


def _check_id_dtypes(a: pd.DataFrame, a_name: str, b: pd.DataFrame, b_name: str) -> None:
    for col in (USER, ITEM):
        if _id_kind(a[col]) != _id_kind(b[col]):
            raise ValueError(
                f"{a_name}[{col!r}] has dtype {a[col].dtype} but {b_name}[{col!r}] has dtype "
                f"{b[col].dtype}; ids must have the same type to be matched"
            )


def _check_interactions(df: Any, name: str, extra: Iterable[str] = ()) -> pd.DataFrame:
    """Columns present, non-empty, no NaN ids, no duplicated pairs."""
    df = _require_columns(df, [USER, ITEM, *extra], name)
    _require_non_empty(df, name)
    _check_no_nan(df, [USER, ITEM, *extra], name)
    _check_unique_pairs(df, name)
    return df


def _order_column(recs: pd.DataFrame, name: str = "recs") -> str:
    for col in _ORDER_COLUMNS:
        if col in recs.columns:
            return col
    raise ValueError(
        f"{name} needs a column giving the order of each list: one of {list(_ORDER_COLUMNS)}; "
        f"it has columns {[str(c) for c in recs.columns]}"
    )


def _check_recs(recs: Any, name: str = "recs") -> tuple[pd.DataFrame, str]:
    recs = _require_columns(recs, [USER, ITEM], name)
    order = _order_column(recs, name)
    _check_interactions(recs, name, extra=[order])
    if not pd.api.types.is_numeric_dtype(recs[order]):
        raise ValueError(f"{name}[{order!r}] must be numeric, got dtype {recs[order].dtype}")
    return recs, order


# --------------------------------------------------------------------------------------------------
# Rating metrics
# --------------------------------------------------------------------------------------------------


def _prediction_column(df: pd.DataFrame, col_prediction: str | None, name: str) -> str:
    if col_prediction is not None:
        _require_columns(df, [col_prediction], name)
        return col_prediction
    for col in (PREDICTION, SCORE):
        if col in df.columns:
            return col
    raise ValueError(
        f"{name} needs a prediction column ({PREDICTION!r} or {SCORE!r}); "
        f"it has columns {[str(c) for c in df.columns]}"
    )


def _rating_pairs(
    truth: Any, pred: Any, col_rating: str, col_prediction: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (y_true, y_pred) arrays from two frames (inner join on ids) or two array-likes."""
    if isinstance(truth, pd.DataFrame) != isinstance(pred, pd.DataFrame):
        raise TypeError("pass either two DataFrames (joined on user_id, item_id) or two aligned arrays")
    if isinstance(truth, pd.DataFrame):
        truth = _check_interactions(truth, "truth", extra=[col_rating])
        col_pred = _prediction_column(pred, col_prediction, "pred")
        pred = _check_interactions(pred, "pred", extra=[col_pred])
        _check_id_dtypes(truth, "truth", pred, "pred")
        merged = pd.merge(
            truth[[USER, ITEM, col_rating]].rename(columns={col_rating: "_true"}),
            pred[[USER, ITEM, col_pred]].rename(columns={col_pred: "_pred"}),
            on=[USER, ITEM],
            how="inner",
        )
        if merged.empty:
            raise ValueError("truth and pred have no (user_id, item_id) pair in common")
        return merged["_true"].to_numpy(dtype=float), merged["_pred"].to_numpy(dtype=float)
    y_true = np.asarray(truth, dtype=float).ravel()
    y_pred = np.asarray(pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("y_true is empty: there is nothing to evaluate")
    for arr, label in ((y_true, "y_true"), (y_pred, "y_pred")):
        if not np.isfinite(arr).all():
            raise ValueError(f"{label} contains NaN or infinite value(s)")
    return y_true, y_pred


def rmse(truth: Any, pred: Any, *, col_rating: str = RATING, col_prediction: str | None = None) -> float:
    r"""Root mean squared error :math:`\sqrt{\frac{1}{n}\sum_j (r_j - \hat r_j)^2}`.

    ``truth`` and ``pred`` are either two aligned array-likes, or two DataFrames joined on
    (``user_id``, ``item_id``) with an inner join (pairs missing from either side are ignored, as in
    Microsoft Recommenders' ``rmse``). The prediction column is ``col_prediction``, by default
    ``prediction`` or else ``score``.
    """
    y_true, y_pred = _rating_pairs(truth, pred, col_rating, col_prediction)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(truth: Any, pred: Any, *, col_rating: str = RATING, col_prediction: str | None = None) -> float:
    r"""Mean absolute error :math:`\frac{1}{n}\sum_j |r_j - \hat r_j|`; inputs as for :func:`rmse`."""
    y_true, y_pred = _rating_pairs(truth, pred, col_rating, col_prediction)
    return float(np.mean(np.abs(y_true - y_pred)))


# --------------------------------------------------------------------------------------------------
# Top-k ranking metrics
# --------------------------------------------------------------------------------------------------


def _top_k_checked(recs: pd.DataFrame, order: str, k: int | None) -> pd.DataFrame:
    ascending = order == RANK
    ranked = recs[[USER, ITEM, order]].sort_values([USER, order], ascending=[True, ascending], kind="stable")
    ranked = ranked.assign(**{RANK: ranked.groupby(USER, sort=False).cumcount().to_numpy() + 1})
    if k is not None:
        ranked = ranked[ranked[RANK] <= k]
    return ranked[[USER, ITEM, RANK]].reset_index(drop=True)


def top_k(recs: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Each user's best ``k`` recommendations with positions ``rank`` = 1..k (``k=None``: all).

    Order: ``rank`` ascending if ``recs`` has it, else ``score`` (or ``prediction``) descending.
    The sort is stable, so ties keep the order of their rows in ``recs`` (the earlier row gets the
    better position) and every position is used once, as in Microsoft Recommenders'
    ``get_top_k_items``. Returns columns ``user_id``, ``item_id``, ``rank`` sorted by user and rank.
    """
    if k is not None:
        k = _check_k(k)
    recs, order = _check_recs(recs)
    return _top_k_checked(recs, order, k)


class _Hits:
    """The shared merge of every top-k metric (Microsoft Recommenders' ``merge_ranking_true_pred``).

    Attributes:
        k: the cut-off.
        n_common: number of users in both truth and recs.
        n_truth_users: number of users in truth.
        hits: one row per relevant item found in a common user's top k, sorted by user and rank,
            with columns ``user_id``, ``item_id``, ``rank`` (position 1..k), ``nth`` (this is the
            user's nth hit) and ``actual`` (the user's number of relevant items in truth).
        truth_counts: number of relevant items of every truth user (index ``user_id``).
    """

    def __init__(self, truth: Any, recs: Any, k: int, truth_extra: Iterable[str] = ()) -> None:
        self.k = _check_k(k)
        truth = _check_interactions(truth, "truth", extra=truth_extra)
        recs, order = _check_recs(recs)
        _check_id_dtypes(truth, "truth", recs, "recs")
        recs_common = recs[recs[USER].isin(truth[USER].unique())]
        if recs_common.empty:
            raise ValueError(
                "no user appears in both truth and recs (check that user_id has the same meaning "
                f"and dtype: truth {truth[USER].dtype}, recs {recs[USER].dtype})"
            )
        self.truth = truth
        self.n_common = int(recs_common[USER].nunique())
        self.truth_counts = truth.groupby(USER, sort=False).size()
        self.n_truth_users = len(self.truth_counts)
        topk = _top_k_checked(recs_common, order, self.k)
        hits = topk.merge(truth[[USER, ITEM]], on=[USER, ITEM], how="inner")
        hits = hits.sort_values([USER, RANK], kind="stable").reset_index(drop=True)
        hits["nth"] = hits.groupby(USER, sort=False).cumcount().to_numpy() + 1
        hits["actual"] = hits[USER].map(self.truth_counts).to_numpy()
        self.hits = hits

    # Sums over hits divided by the number of common users (MS: ``.sum() / n_users``).
    def precision(self) -> float:
        return len(self.hits) / (self.k * self.n_common)

    def recall(self) -> float:
        return float((1.0 / self.hits["actual"]).sum() / self.n_common)

    def map(self) -> float:
        return float((self.hits["nth"] / self.hits[RANK] / self.hits["actual"]).sum() / self.n_common)

    def map_at_k(self) -> float:
        denom = np.minimum(self.hits["actual"], self.k)
        return float((self.hits["nth"] / self.hits[RANK] / denom).sum() / self.n_common)

    def hit_rate(self) -> float:
        return self.hits[USER].nunique() / self.n_common

    def mrr(self) -> float:
        first = self.hits[self.hits["nth"] == 1]
        return float((1.0 / first[RANK]).sum() / self.n_common)

    def ndcg(self, score_type: str = "binary", discfun_type: str = "loge") -> float:
        if discfun_type == "loge":
            log = np.log
        elif discfun_type == "log2":
            log = np.log2
        else:
            raise ValueError(f"discfun_type must be 'loge' or 'log2', got {discfun_type!r}")
        k = self.k
        if score_type == "binary":
            hits = self.hits
            dcg = (1.0 / log(1.0 + hits[RANK])).groupby(hits[USER], sort=False).sum()
            # IDCG of a user with n relevant items: sum_{i=1}^{min(n,k)} 1/log(1+i).
            ideal = np.concatenate([[0.0], np.cumsum(1.0 / log(1.0 + np.arange(1, k + 1)))])
            idcg = pd.Series(
                ideal[np.minimum(self.truth_counts.to_numpy(), k)], index=self.truth_counts.index
            )
        elif score_type in ("raw", "exp"):
            if RATING not in self.truth.columns:
                raise ValueError(f"ndcg_at_k(score_type={score_type!r}) needs a {RATING!r} column in truth")
            ratings = self.truth[[USER, ITEM, RATING]]
            gain = ratings[RATING].astype(float)
            if score_type == "exp":
                gain = 2.0**gain - 1.0
            ratings = ratings.assign(_gain=gain.to_numpy())
            hits = self.hits.merge(ratings, on=[USER, ITEM], how="left")
            dcg = (hits["_gain"] / log(1.0 + hits[RANK])).groupby(hits[USER], sort=False).sum()
            ideal = ratings.sort_values([USER, "_gain"], ascending=[True, False], kind="stable")
            irank = ideal.groupby(USER, sort=False).cumcount().to_numpy() + 1
            ideal = ideal.assign(_irank=irank)
            ideal = ideal[ideal["_irank"] <= k]
            idcg = (ideal["_gain"] / log(1.0 + ideal["_irank"])).groupby(ideal[USER], sort=False).sum()
        else:
            raise ValueError(f"score_type must be 'binary', 'raw' or 'exp', got {score_type!r}")
        dcg = dcg.reindex(idcg.index, fill_value=0.0)
        # Users whose ideal DCG is 0 (only possible with all-zero ratings and score_type raw/exp)
        # give 0/0 and are left out of the mean, as in Microsoft Recommenders (pandas skips NaN).
        valid = idcg.to_numpy() > 0
        if not valid.any():
            return 0.0
        return float(np.mean(dcg.to_numpy()[valid] / idcg.to_numpy()[valid]))


def precision_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    r"""Precision@k (Microsoft Recommenders ``precision_at_k``, Spark's definition).

    .. math:: P@k = \frac{1}{|U|} \sum_{u \in U} \frac{|\mathrm{top}_k(u) \cap T_u|}{k}

    ``U`` = users in both ``truth`` and ``recs``; ``T_u`` = the user's rows in ``truth``;
    ``top_k(u)`` = the user's first ``k`` recommendations (ties: see :func:`top_k`). The divisor is
    ``k`` even if the list is shorter or the user has fewer than ``k`` relevant items.
    """
    return _Hits(truth, recs, k).precision()


def recall_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    r"""Recall@k (Microsoft Recommenders ``recall_at_k``).

    .. math:: R@k = \frac{1}{|U|} \sum_{u \in U} \frac{|\mathrm{top}_k(u) \cap T_u|}{|T_u|}

    Averaged over ``U`` = users in both ``truth`` and ``recs``; a user with more than ``k``
    relevant items cannot reach 1.
    """
    return _Hits(truth, recs, k).recall()


def ndcg_at_k(
    truth: pd.DataFrame,
    recs: pd.DataFrame,
    k: int = 10,
    *,
    score_type: str = "binary",
    discfun_type: str = "loge",
) -> float:
    r"""Normalised discounted cumulative gain (Microsoft Recommenders ``ndcg_at_k``).

    .. math::
        \mathrm{DCG}_u = \sum_{i \in \mathrm{top}_k(u) \cap T_u} \frac{g_{ui}}{\log(1 + r_u(i))},
        \quad
        \mathrm{IDCG}_u = \sum_{j=1}^{\min(|T_u|, k)} \frac{g_u^{(j)}}{\log(1 + j)},
        \quad
        \mathrm{NDCG@k} = \frac{1}{|U_T|} \sum_{u \in U_T} \frac{\mathrm{DCG}_u}{\mathrm{IDCG}_u}

    Gain ``g``: ``score_type="binary"`` (default) 1 for every relevant item; ``"raw"`` the
    ``rating``; ``"exp"`` ``2**rating - 1``. ``g_u^(j)`` is the user's j-th largest gain.
    ``discfun_type`` is ``"loge"`` (default, natural log) or ``"log2"``; the base cancels in the
    ratio, so binary NDCG equals the textbook ``1/log2(1 + rank)`` version.

    Unlike precision/recall/MAP, the mean runs over **all** users ``U_T`` of ``truth``: a test
    user without recommendations has DCG 0 and counts as 0.
    """
    extra = [RATING] if score_type in ("raw", "exp") else []
    return _Hits(truth, recs, k, truth_extra=extra).ndcg(score_type, discfun_type)


# Named like Microsoft Recommenders' function; it shadows the builtin ``map`` in this module, so the
# builtin is never used here.
def map(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:  # noqa: A001
    r"""Mean average precision over each user's relevant items (Microsoft Recommenders ``map``).

    .. math::
        \mathrm{MAP} = \frac{1}{|U|} \sum_{u \in U} \frac{1}{|T_u|}
        \sum_{i \in \mathrm{top}_k(u) \cap T_u} \frac{\mathrm{hits}_u(\le r_u(i))}{r_u(i)}

    where ``r_u(i)`` is the position of ``i`` in the user's list and ``hits_u(<= r)`` the number of
    relevant items in the first ``r`` positions: the precision at every hit, summed, divided by the
    number of relevant items ``|T_u|`` (Spark's ``meanAveragePrecision`` applied to the top-k list).
    ``U`` = users in both ``truth`` and ``recs``; a user without a hit contributes 0.

    Older Microsoft Recommenders releases (before their PR #2004) called this function
    ``map_at_k``, and the "MAP" column of their benchmark tables was this number until 2026, when
    their benchmark switched to :func:`map_at_k` (their issue #2309): check which one a published
    figure uses.
    """
    return _Hits(truth, recs, k).map()


def map_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    r"""Mean average precision at k (Microsoft Recommenders ``map_at_k``, Spark's ``meanAveragePrecisionAt``).

    Same sum as :func:`map`, divided by :math:`\min(|T_u|, k)` instead of :math:`|T_u|`:

    .. math::
        \mathrm{MAP@k} = \frac{1}{|U|} \sum_{u \in U} \frac{1}{\min(|T_u|, k)}
        \sum_{i \in \mathrm{top}_k(u) \cap T_u} \frac{\mathrm{hits}_u(\le r_u(i))}{r_u(i)}

    So ``map_at_k >= map``, equal when no user has more than ``k`` relevant items. On MovieLens
    test sets users hold far more than 10 items, so ``map@10`` comes out roughly 2-3x ``map`` (about
    2.5x for both a most-popular and a random recommender on MovieLens-100k with a 75/25 per-user
    split): never compare a ``map`` with a ``map@k`` from another table.
    """
    return _Hits(truth, recs, k).map_at_k()


def hit_rate_at_k(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    r"""Hit rate@k: share of users with at least one relevant item in their top k.

    .. math:: HR@k = \frac{1}{|U|} \sum_{u \in U} \mathbb{1}[\mathrm{top}_k(u) \cap T_u \ne \emptyset]

    Not in Microsoft Recommenders' python_evaluation; averaged over the same users ``U`` (in both
    ``truth`` and ``recs``) as their precision, recall and MAP.
    """
    return _Hits(truth, recs, k).hit_rate()


def mrr(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> float:
    r"""Mean reciprocal rank of the first relevant item within the top k (MRR@k).

    .. math::
        MRR = \frac{1}{|U|} \sum_{u \in U} \frac{1}{\min\{r_u(i) : i \in \mathrm{top}_k(u) \cap T_u\}}

    A user with no hit in the top ``k`` contributes 0. Averaged over the users ``U`` in both
    ``truth`` and ``recs`` (as precision). Equals ``keras_rs.metrics.MeanReciprocalRank(k=k)``.
    """
    return _Hits(truth, recs, k).mrr()


def ranking_metrics(truth: pd.DataFrame, recs: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """All top-k accuracy metrics from one merge.

    Returns ``{"precision@k", "recall@k", "ndcg@k", "map", "map@k", "hr@k", "mrr"}`` (with the
    actual ``k`` in the names), each defined as in the function of the same name (binary NDCG).
    """
    h = _Hits(truth, recs, k)
    return {
        f"precision@{h.k}": h.precision(),
        f"recall@{h.k}": h.recall(),
        f"ndcg@{h.k}": h.ndcg(),
        "map": h.map(),
        f"map@{h.k}": h.map_at_k(),
        f"hr@{h.k}": h.hit_rate(),
        "mrr": h.mrr(),
    }


def _auc_from_ranks(labels: np.ndarray, scores: np.ndarray) -> float:
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    col_label: str | None = None,
    per_user: bool = False,
) -> float:
    r"""Area under the ROC curve for implicit feedback.

    .. math:: AUC = \frac{1}{|P|\,|N|} \sum_{p \in P} \sum_{n \in N}
              \left(\mathbb{1}[s_p > s_n] + \tfrac12 \mathbb{1}[s_p = s_n]\right)

    (the Mann-Whitney statistic; tied scores count one half, as in ``sklearn.metrics.roc_auc_score``).

    ``scores`` has ``user_id``, ``item_id`` and ``prediction`` or ``score``: the model's score for
    each candidate pair, positives and negatives alike (e.g. every held-out item plus sampled
    unseen items). Labels:

    * ``col_label=None`` (default, implicit feedback): a row of ``scores`` is positive if its pair
      is in ``truth``, negative otherwise.
    * ``col_label="rating"`` (Microsoft Recommenders ``auc``): ``truth`` carries explicit 0/1
      labels in that column and is inner-joined with ``scores``.

    ``per_user=False`` (default, as Microsoft Recommenders) pools all pairs regardless of user;
    ``per_user=True`` averages the AUC of each user who has both a positive and a negative (group
    AUC). Raises ``ValueError`` if there are no positives or no negatives.
    """
    truth = _check_interactions(truth, "truth", extra=[col_label] if col_label else [])
    col_score = _prediction_column(scores, None, "scores")
    scores = _check_interactions(scores, "scores", extra=[col_score])
    _check_id_dtypes(truth, "truth", scores, "scores")
    if col_label is None:
        marked = truth[[USER, ITEM]].assign(_label=1)
        merged = scores[[USER, ITEM, col_score]].merge(marked, on=[USER, ITEM], how="left")
        merged["_label"] = merged["_label"].fillna(0)
    else:
        merged = scores[[USER, ITEM, col_score]].merge(
            truth[[USER, ITEM, col_label]].rename(columns={col_label: "_label"}),
            on=[USER, ITEM],
            how="inner",
        )
        if merged.empty:
            raise ValueError("truth and scores have no (user_id, item_id) pair in common")
        bad = ~merged["_label"].isin([0, 1])
        if bad.any():
            raise ValueError(
                f"truth[{col_label!r}] must hold binary 0/1 labels, found e.g. "
                f"{merged.loc[bad, '_label'].iloc[0]!r}; threshold it first"
            )
    labels = merged["_label"].to_numpy(dtype=int)
    values = merged[col_score].to_numpy(dtype=float)
    if labels.min() == labels.max():
        kind = "positives" if labels.min() == 0 else "negatives"
        raise ValueError(f"AUC needs both positive and negative pairs; there are no {kind}")
    if not per_user:
        return _auc_from_ranks(labels, values)
    frame = pd.DataFrame({USER: merged[USER].to_numpy(), "y": labels, "s": values})
    frame["r"] = frame.groupby(USER, sort=False)["s"].rank(method="average")
    g = frame.groupby(USER, sort=False)
    n = g.size()
    n_pos = g["y"].sum()
    rank_pos = (frame["r"] * frame["y"]).groupby(frame[USER], sort=False).sum()
    n_neg = n - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        raise ValueError("per_user AUC needs a user with both a positive and a negative pair")
    per = (rank_pos[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return float(per.mean())


# --------------------------------------------------------------------------------------------------
# Beyond accuracy
# --------------------------------------------------------------------------------------------------


def catalogue_coverage(recs: pd.DataFrame, catalogue: pd.DataFrame | int | Iterable[Any]) -> float:
    r"""Catalogue coverage: share of the catalogue that appears in at least one list.

    .. math:: \mathrm{coverage} = \frac{|\bigcup_u L_u|}{|I|}

    ``catalogue`` is the training DataFrame (its distinct ``item_id`` values form ``I``, as
    Microsoft Recommenders' ``catalog_coverage``), a collection of item ids, or the catalogue size.
    Every distinct recommended item counts, including items outside ``I`` (as Microsoft
    Recommenders); a model that only recommends catalogue items scores in [0, 1].
    """
    recs = _check_interactions(recs, "recs")
    if isinstance(catalogue, pd.DataFrame):
        n_items = _require_columns(catalogue, [ITEM], "catalogue")[ITEM].nunique()
    elif isinstance(catalogue, int | np.integer) and not isinstance(catalogue, bool):
        n_items = int(catalogue)
    else:
        n_items = pd.Series(list(catalogue)).nunique()
    if n_items < 1:
        raise ValueError("the catalogue is empty")
    return recs[ITEM].nunique() / n_items


def _item_counts(train: pd.DataFrame) -> pd.Series:
    return train.groupby(ITEM, sort=False).size()


def novelty(train: pd.DataFrame, recs: pd.DataFrame) -> float:
    r"""Mean self-information of the recommended items (Microsoft Recommenders ``novelty``).

    .. math:: \mathrm{novelty} = \frac{1}{|R|} \sum_{(u,i) \in R} -\log_2 p(i),
              \qquad p(i) = \frac{|\{(v,i) \in \mathrm{train}\}|}{|\mathrm{train}|}

    over all recommendation rows ``R`` (Castells et al., ECIR 2011, item choice model). High
    values mean long-tail items. As in Microsoft Recommenders, an item absent from ``train`` has
    no defined p(i): it adds 0 to the sum but still counts in ``|R|``.
    """
    train = _check_interactions(train, "train")
    recs = _check_interactions(recs, "recs")
    _check_id_dtypes(train, "train", recs, "recs")
    counts = _item_counts(train)
    info = -np.log2(counts / len(train))
    return float(recs[ITEM].map(info).fillna(0.0).sum() / len(recs))


def _feature_matrix(item_features: Any) -> tuple[np.ndarray, pd.Index]:
    """Row-normalised feature matrix and the item ids of its rows.

    ``item_features``: a DataFrame indexed by item id (one column per feature), a Series of
    vectors indexed by item id, or a 2-D array whose row ``i`` belongs to item id ``i``.
    """
    if isinstance(item_features, pd.DataFrame):
        index = item_features.index
        matrix = item_features.to_numpy(dtype=float)
    elif isinstance(item_features, pd.Series):
        index = item_features.index
        matrix = np.stack([np.asarray(v, dtype=float).ravel() for v in item_features.to_numpy()])
    else:
        matrix = np.asarray(item_features, dtype=float)
        index = pd.RangeIndex(len(matrix))
    if matrix.ndim != 2:
        raise ValueError(f"item_features must be 2-D (items x features), got shape {matrix.shape}")
    if not index.is_unique:
        raise ValueError("item_features has duplicated item ids in its index")
    if not np.isfinite(matrix).all():
        raise ValueError("item_features contains NaN or infinite value(s)")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return normalised, index


def _rows_for(index: pd.Index, items: pd.Series, what: str) -> np.ndarray:
    rows = index.get_indexer(items.to_numpy())
    if (rows < 0).any():
        missing = pd.unique(items.to_numpy()[rows < 0])
        raise ValueError(
            f"item_features has no row for {len(missing)} {what} item(s), e.g. {missing[:5].tolist()}"
        )
    return rows


def _group_sum(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the rows of ``values`` per group code (0..n_groups-1), vectorised."""
    out = np.zeros((n_groups, *values.shape[1:]))
    if len(codes) == 0:
        return out
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    out[sorted_codes[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out


def intra_list_diversity(recs: pd.DataFrame, item_features: Any) -> float:
    r"""Mean intra-list diversity: 1 - mean pairwise cosine similarity within each list.

    .. math:: \mathrm{div}(L_u) = 1 - \frac{2}{|L_u|(|L_u|-1)} \sum_{i<j \in L_u} \cos(f_i, f_j),
              \qquad \mathrm{diversity} = \frac{1}{|U_2|} \sum_{u \in U_2} \mathrm{div}(L_u)

    (Microsoft Recommenders ``diversity`` with ``item_sim_measure="item_feature_vector"``; Ziegler
    et al. 2005.) ``L_u`` is the user's whole list in ``recs`` (cut it to k first); ``U_2`` are the
    users with at least two items (a single item has no pair and is skipped). ``item_features`` is a
    DataFrame indexed by item id, a Series of vectors, or an array whose row i is item i
    (multi-hot genres, embeddings, ...). An all-zero vector has similarity 0 to everything.
    Computed per user as :math:`(\lVert\sum_i \hat f_i\rVert^2 - \sum_i \lVert\hat f_i\rVert^2)/2`
    with unit vectors :math:`\hat f`, without enumerating pairs.
    """
    recs = _check_interactions(recs, "recs")
    normalised, index = _feature_matrix(item_features)
    vectors = normalised[_rows_for(index, recs[ITEM], "recommended")]
    codes, _ = pd.factorize(recs[USER])
    n_users = codes.max() + 1
    summed = _group_sum(vectors, codes, n_users)
    self_sim = _group_sum((vectors**2).sum(axis=1), codes, n_users)
    sizes = np.bincount(codes, minlength=n_users).astype(float)
    keep = sizes >= 2
    if not keep.any():
        raise ValueError("intra-list diversity needs at least one list with two or more items")
    pair_sum = ((summed**2).sum(axis=1) - self_sim)[keep] / 2.0
    n_pairs = sizes[keep] * (sizes[keep] - 1) / 2.0
    return float(np.mean(1.0 - pair_sum / n_pairs))


def _mean_sim_features(history: pd.DataFrame, pairs: pd.DataFrame, item_features: Any) -> np.ndarray:
    normalised, index = _feature_matrix(item_features)
    user_index = pd.Index(pd.unique(history[USER]))
    h_codes = user_index.get_indexer(history[USER])
    summed = _group_sum(normalised[_rows_for(index, history[ITEM], "training")], h_codes, len(user_index))
    sizes = np.bincount(h_codes, minlength=len(user_index))
    p_codes = user_index.get_indexer(pairs[USER])
    rec_vectors = normalised[_rows_for(index, pairs[ITEM], "recommended")]
    return np.einsum("ij,ij->i", rec_vectors, summed[p_codes]) / sizes[p_codes]


def _mean_sim_cooccurrence(history: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Mean over the user's history h of |U_r & U_h| / sqrt(|U_r| |U_h|) for each pair (u, r)."""
    import scipy.sparse as sp  # lazy: only this metric needs sparse algebra

    u_codes, users = pd.factorize(history[USER])
    i_codes, items = pd.factorize(history[ITEM])
    x = sp.csr_matrix(
        (np.ones(len(history)), (u_codes, i_codes)), shape=(len(users), len(items))
    )  # train users x items, binary
    weight = 1.0 / np.sqrt(np.asarray(x.sum(axis=0)).ravel())  # 1/sqrt(|U_i|)
    xw = (x @ sp.diags(weight)).tocsr()
    xt = x.T.tocsr()  # items x users
    hist_len = np.diff(x.indptr)

    pu = pd.Index(users).get_indexer(pairs[USER])
    pi = pd.Index(items).get_indexer(pairs[ITEM])  # -1: item never in train, similarity 0
    out = np.zeros(len(pairs))
    known = np.flatnonzero(pi >= 0)
    if known.size == 0:
        return out
    chunk = max(1, 4_000_000 // max(1, len(users)))
    chunk_users = np.unique(pu[known])
    for start in range(0, len(chunk_users), chunk):
        block = chunk_users[start : start + chunk]
        # s[v, j] = sum over h in H_u(j) & H_v of 1/sqrt(|U_h|)   (train users x block users)
        s = (x @ xw[block].T).toarray()
        sel = known[np.isin(pu[known], block)]
        local = np.searchsorted(block, pu[sel])
        rec_items, item_local = np.unique(pi[sel], return_inverse=True)
        # t[r, j] = sum over v in U_r of s[v, j] = sum_h |U_r & U_h| / sqrt(|U_h|)
        t = np.asarray(xt[rec_items] @ s)
        out[sel] = t[item_local, local] * weight[pi[sel]]
    return out / hist_len[pu]


def serendipity(
    train: pd.DataFrame,
    recs: pd.DataFrame,
    *,
    truth: pd.DataFrame | None = None,
    item_features: Any = None,
) -> float:
    r"""Serendipity: how unexpected and relevant the lists are (Microsoft Recommenders ``serendipity``).

    .. math::
        \mathrm{ser}(u, i) = \Bigl(1 - \frac{1}{|H_u|} \sum_{h \in H_u} \mathrm{sim}(i, h)\Bigr)
        \cdot \mathrm{rel}(u, i),
        \qquad
        \mathrm{serendipity} = \frac{1}{|U_H|} \sum_{u \in U_H} \frac{1}{|L_u|}
        \sum_{i \in L_u} \mathrm{ser}(u, i)

    (Zhang et al., Auralist, WSDM 2012.) ``H_u`` = the user's items in ``train``; ``U_H`` = users of
    ``recs`` with a training history (others are left out, as in Microsoft Recommenders).
    ``sim``: cosine of ``item_features`` when given (``item_sim_measure="item_feature_vector"``);
    otherwise Microsoft Recommenders' default ``item_cooccurrence_count``,
    :math:`|U_i \cap U_h| / \sqrt{|U_i|\,|U_h|}` over the users of ``train`` (distinct pairs; an item
    absent from ``train`` has similarity 0). ``rel(u, i)`` = 1 if ``(u, i)`` is in ``truth``, else
    0; without ``truth`` it is 1 for every item, Microsoft Recommenders' default, which measures
    unexpectedness alone. Recommending a training item is allowed (its self-similarity 1 counts).
    """
    train = _check_interactions(train, "train")
    recs = _check_interactions(recs, "recs")
    _check_id_dtypes(train, "train", recs, "recs")
    pairs = recs.loc[recs[USER].isin(train[USER].unique()), [USER, ITEM]].reset_index(drop=True)
    if pairs.empty:
        raise ValueError("no user in recs has a training history, serendipity is undefined")
    history = train[[USER, ITEM]]
    if item_features is not None:
        mean_sim = _mean_sim_features(history, pairs, item_features)
    else:
        mean_sim = _mean_sim_cooccurrence(history, pairs)
    if truth is None:
        relevance = np.ones(len(pairs))
    else:
        truth = _check_interactions(truth, "truth")
        _check_id_dtypes(truth, "truth", recs, "recs")
        relevant = pd.MultiIndex.from_frame(truth[[USER, ITEM]])
        relevance = pd.MultiIndex.from_frame(pairs).isin(relevant).astype(float)
    per_pair = pd.Series((1.0 - mean_sim) * relevance)
    return float(per_pair.groupby(pairs[USER].to_numpy(), sort=False).mean().mean())


def _popularity_percentile(train: pd.DataFrame, items: pd.Series) -> np.ndarray:
    counts = _item_counts(train)
    reference = np.sort(counts.to_numpy())
    values = items.map(counts).fillna(0).to_numpy()
    below = np.searchsorted(reference, values, side="left")
    not_above = np.searchsorted(reference, values, side="right")
    return (below + 0.5 * (not_above - below)) / len(reference)


def popularity_bias(train: pd.DataFrame, recs: pd.DataFrame) -> float:
    r"""Mean popularity percentile of the recommended items (0.5 = an average catalogue item).

    .. math::
        \mathrm{pct}(i) = \frac{|\{j \in I : c_j < c_i\}| + \tfrac12 |\{j \in I : c_j = c_i\}|}{|I|},
        \qquad
        \mathrm{popularity\_bias} = \frac{1}{|U|} \sum_u \frac{1}{|L_u|} \sum_{i \in L_u} \mathrm{pct}(i)

    ``c_i`` = interactions of item ``i`` in ``train``, ``I`` = the items of ``train`` (an item absent
    from ``train`` has ``c = 0`` and percentile 0). Over the catalogue the percentile averages exactly
    0.5, so recommending uniformly at random gives about 0.5, a most-popular list close to 1.
    Scale-free, so comparable across data sets; for the raw counts see
    :func:`average_recommendation_popularity`. (Not in Microsoft Recommenders.)
    """
    train = _check_interactions(train, "train")
    recs = _check_interactions(recs, "recs")
    _check_id_dtypes(train, "train", recs, "recs")
    pct = pd.Series(_popularity_percentile(train, recs[ITEM]))
    return float(pct.groupby(recs[USER].to_numpy(), sort=False).mean().mean())


def average_recommendation_popularity(train: pd.DataFrame, recs: pd.DataFrame) -> float:
    r"""ARP (Abdollahpouri et al. 2019): mean over users of the mean training count of their items.

    .. math:: \mathrm{ARP} = \frac{1}{|U|} \sum_u \frac{1}{|L_u|} \sum_{i \in L_u} c_i
    """
    train = _check_interactions(train, "train")
    recs = _check_interactions(recs, "recs")
    _check_id_dtypes(train, "train", recs, "recs")
    counts = recs[ITEM].map(_item_counts(train)).fillna(0).astype(float)
    return float(counts.groupby(recs[USER].to_numpy(), sort=False).mean().mean())


# --------------------------------------------------------------------------------------------------
# One call for labs and benchmarks
# --------------------------------------------------------------------------------------------------


def _check_model_recs(recs: Any, user_ids: np.ndarray, k: int) -> pd.DataFrame:
    if not isinstance(recs, pd.DataFrame):
        raise ValueError(f"model.recommend must return a pandas DataFrame, got {type(recs).__name__}")
    recs, _ = _check_recs(recs, "model.recommend(...) output")
    requested = pd.Index(user_ids)
    extra = pd.unique(recs.loc[~recs[USER].isin(requested), USER])
    if len(extra):
        raise ValueError(
            f"model.recommend returned lists for {len(extra)} user(s) not asked for, "
            f"e.g. {extra[:5].tolist()}"
        )
    missing = requested[~requested.isin(recs[USER])]
    if len(missing):
        raise ValueError(
            f"model.recommend returned no recommendations for {len(missing)} of {len(requested)} test "
            f"user(s), e.g. {missing[:5].tolist()}; every test user needs a list (use a fallback)"
        )
    longest = recs.groupby(USER).size().max()
    if longest > k:
        raise ValueError(f"model.recommend returned up to {longest} items per user, more than k={k}")
    return recs


def evaluate(
    model: Recommender,
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    *,
    item_features: Any = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Evaluate ``model`` on ``test`` and return one tidy row of every metric.

    Calls ``model.recommend(user_ids, k, exclude_seen=True)`` once for every user of ``test``
    (sorted ids); it must return a DataFrame with ``user_id``, ``item_id`` and ``rank`` (and/or
    ``score``), at most ``k`` rows per user. Raises ``ValueError`` if a test user gets no list, a
    list has more than ``k`` items, a ``(user_id, item_id)`` pair repeats, or scores are NaN.

    Columns (k = 10 shown): ``model``, ``precision@10``, ``recall@10``, ``ndcg@10``, ``map``,
    ``map@10``, ``hr@10``, ``mrr`` (see :func:`ranking_metrics`; every row of ``test`` is relevant),
    ``coverage`` (:func:`catalogue_coverage` against the items of ``train``), ``novelty``,
    ``diversity`` (:func:`intra_list_diversity`; only when ``item_features`` is given),
    ``serendipity`` (relevance = in ``test``; similarity from ``item_features`` if given, else
    training co-occurrence) and ``popularity_bias``. ``model`` is ``name``, else the model's
    ``name`` attribute, else its class name. ``item_features`` (see :func:`intra_list_diversity`)
    needs a row for every item of ``train`` and every recommended item.
    """
    k = _check_k(k)
    train = _check_interactions(train, "train")
    test = _check_interactions(test, "test")
    _check_id_dtypes(train, "train", test, "test")
    user_ids = np.sort(pd.unique(test[USER]))
    recs = _check_model_recs(model.recommend(user_ids, k, exclude_seen=True), user_ids, k)
    label = name or getattr(model, "name", None) or type(model).__name__
    row: dict[str, Any] = {"model": str(label)}
    row.update(ranking_metrics(test, recs, k))
    row["coverage"] = catalogue_coverage(recs, train)
    row["novelty"] = novelty(train, recs)
    if item_features is not None:
        row["diversity"] = intra_list_diversity(recs, item_features)
    # serendipity compares a list with the user's history: undefined for cold users (NaN)
    has_history = recs[USER].isin(train[USER]).any()
    row["serendipity"] = serendipity(train, recs, truth=test, item_features=item_features) if has_history else np.nan
    row["popularity_bias"] = popularity_bias(train, recs)
    return pd.DataFrame([row])


def evaluate_candidates(
    model: Any,
    truth: pd.DataFrame,
    candidates: Iterable[Any],
    k: int = 10,
    *,
    name: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Rank a fixed candidate set for every user of ``truth`` with ``model.score`` and report
    :func:`ranking_metrics`: how well does the model order items it may never have seen?

    Used for cold-start *items*: the candidates are films held out of training entirely. Each user's
    candidates are sorted by score (NaN last, ties in a random order fixed by ``seed``: never by item
    id, which in MovieLens correlates with popularity); the top ``k`` form their list. A model that
    cannot tell unknown items apart (constant or NaN scores) therefore scores like a random ranking.
    Returns one row like :func:`evaluate` (accuracy columns only).
    """
    k = _check_k(k)
    truth = _check_interactions(truth, "truth")
    items = np.sort(np.asarray(pd.unique(np.asarray(list(candidates)))))
    if len(items) == 0:
        raise ValueError("candidates is empty")
    users = np.sort(pd.unique(truth[USER]))
    scores = np.asarray(model.score(np.repeat(users, len(items)), np.tile(items, len(users))), dtype=float)
    scores = np.where(np.isnan(scores), -np.inf, scores).reshape(len(users), len(items))
    tie_break = np.random.default_rng(seed).random(scores.shape)
    top = np.lexsort((tie_break, -scores), axis=1)[:, : min(k, len(items))]
    recs = pd.DataFrame(
        {
            USER: np.repeat(users, top.shape[1]),
            ITEM: items[top].ravel(),
            RANK: np.tile(np.arange(1, top.shape[1] + 1), len(users)),
        }
    )
    label = name or getattr(model, "name", None) or type(model).__name__
    return pd.DataFrame([{"model": str(label), **ranking_metrics(truth, recs, k)}])
