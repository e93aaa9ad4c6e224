"""recsys_workshop.synthetic.interactions: MovieLens-shaped ratings at any size, from a seed (no download)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import data, synthetic

pytestmark = pytest.mark.unit

N_ROWS = 200_000


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return synthetic.interactions(N_ROWS, seed=3)


def test_the_schema_is_movielens(ratings):
    assert list(ratings.columns) == list(data.INTERACTION_COLUMNS)
    assert ratings.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "rating": "float32",
        "timestamp": "int64",
    }
    assert len(ratings) == N_ROWS
    assert data.check_ratings(ratings) == []  # ids from 1, ratings in 0.5..5, timestamps 1995..now, no duplicate
    assert set(np.unique(ratings["rating"])) <= set(np.arange(1, 11) / 2)  # half stars
    assert ratings["rating"].mean() == pytest.approx(3.5, abs=0.15)  # MovieLens: 3.5, spread about one star
    assert 0.8 < ratings["rating"].std() < 1.2
    years = pd.to_datetime(ratings["timestamp"], unit="s").dt.year
    assert years.min() == 1996 and years.max() == 2023


def test_rows_are_sorted_by_user_then_item_without_duplicates(ratings):
    keys = ratings["user_id"].to_numpy() * (ratings["item_id"].max() + 1) + ratings["item_id"].to_numpy()
    assert (np.diff(keys) > 0).all()  # strictly increasing: sorted, and no (user, item) pair twice
    assert not ratings.duplicated(["user_id", "item_id"]).any()


def test_a_seed_gives_the_same_table_and_another_seed_another(ratings):
    pd.testing.assert_frame_equal(synthetic.interactions(N_ROWS, seed=3), ratings)
    other = synthetic.interactions(N_ROWS, seed=4)
    assert len(other) == N_ROWS
    assert not other[["user_id", "item_id"]].equals(ratings[["user_id", "item_id"]])


def test_default_sizes_follow_movielens_ratios(ratings):
    # a user per 160 rows (ml-32m), and at least enough items that at most 5% of the grid is filled
    assert ratings["user_id"].nunique() == ratings["user_id"].max() == N_ROWS // 160
    assert ratings["item_id"].max() == 3_200  # 200,000 / (0.05 * 1,250)
    assert ratings["item_id"].nunique() > 0.95 * 3_200
    assert len(ratings) / (1_250 * 3_200) == pytest.approx(0.05)


def test_given_sizes_are_kept():
    small = synthetic.interactions(5_000, n_users=50, n_items=400, seed=1)
    assert len(small) == 5_000
    assert sorted(small["user_id"].unique()) == list(range(1, 51))  # every user has rows
    assert small["item_id"].between(1, 400).all()
    assert small.groupby("user_id").size().max() <= 200  # no user rates more than half of the films


def test_item_popularity_has_a_long_tail(ratings):
    counts = np.sort(ratings.groupby("item_id").size().to_numpy())[::-1]
    n_items = ratings["item_id"].max()
    top_1 = counts[: n_items // 100].sum() / len(ratings)
    top_10 = counts[: n_items // 10].sum() / len(ratings)
    assert top_1 > 0.08  # the top 1% of films hold 8 times their uniform share (ml-latest-small: 16%)
    assert top_10 > 0.4  # and the top 10% nearly half the rows (ml-latest-small: 60%)
    bottom_half = counts[n_items // 2 :].sum() / len(ratings)
    assert bottom_half < 0.2
    # the most popular film is seen by many users but not by all (MovieLens' most rated: about half)
    assert 0.3 < counts[0] / ratings["user_id"].nunique() < 0.85


def test_user_activity_has_a_long_tail(ratings):
    per_user = ratings.groupby("user_id").size()
    assert per_user.min() == 20  # MovieLens keeps users with 20 ratings or more
    assert per_user.mean() == pytest.approx(160)
    assert per_user.median() < 100  # most users rate few films ...
    assert per_user.max() > 8 * per_user.median()  # ... a few rate very many


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="every user needs a row"):
        synthetic.interactions(10, n_users=20, n_items=100)
    with pytest.raises(ValueError, match="half of the items"):
        synthetic.interactions(600, n_users=10, n_items=100)
    with pytest.raises(ValueError, match="positive"):
        synthetic.interactions(0)


def test_temporary_memory_is_bounded_by_a_block_of_users(monkeypatch):
    """Users are drawn in blocks: beyond the returned frame, the memory a call needs does not grow with the
    rows (20M rows are 534 MB of frame; a single block would need several times more)."""
    synthetic.interactions(1_000)  # imports done outside the measure
    monkeypatch.setattr(synthetic, "_BLOCK_ROWS", 1 << 14)
    tracemalloc.start()
    try:
        frame = synthetic.interactions(400_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = frame.memory_usage(index=False).sum()
    assert frame_bytes == 400_000 * 28
    assert peak - frame_bytes < 0.25 * frame_bytes  # one block at a time (one 400k-row block: +150%)
