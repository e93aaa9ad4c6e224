"""Synthetic data with MovieLens' shape, generated from a fixed seed (no download), for the scale benchmarks.

- :func:`catalogue`: user and item embeddings as a trained factor model would export them, for catalogues far
  larger than MovieLens (``bench/serving_scale.py``). Random isotropic vectors would be the worst case of any
  nearest-neighbour index and nothing like a trained model, so the vectors have the structure trained ones
  show: items gather around topics (think genres), each user leans to a few topics, and item popularity has a
  long tail (a Zipf law over a random order of the items) that shows in the length of the item vectors (as in
  a two-tower model, which has no bias terms) and, with ``bias_scale`` > 0, in an item bias as well.
- :func:`interactions`: ratings with the MovieLens schema (``user_id``, ``item_id``, ``rating``,
  ``timestamp``) and its long tails (film popularity, user activity) at any number of rows, for the training
  scale benchmark (``bench/training_scale.py``).

numpy and pandas only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["catalogue", "interactions"]


def catalogue(
    n_items: int,
    n_users: int,
    dim: int = 64,
    *,
    seed: int = 0,
    n_topics: int | None = None,
    zipf: float = 1.0,
    bias_scale: float = 0.0,
) -> dict[str, np.ndarray]:
    """Arrays of a factor-model export for ``n_users`` x ``n_items``: ``user_ids``, ``item_ids`` (1..n, int64),
    ``user_vectors`` [n_users, dim], ``item_vectors`` [n_items, dim], ``item_bias`` and ``popularity``
    [n_items] (float32). ``n_topics`` defaults to one per 500 items (at least 8)."""
    if n_items < 1 or n_users < 1 or dim < 1:
        raise ValueError(f"n_items, n_users and dim must be positive, got {n_items}, {n_users}, {dim}")
    rng = np.random.default_rng(seed)
    n_topics = n_topics or max(8, n_items // 500)
    centres = rng.standard_normal((n_topics, dim), dtype=np.float32) / np.sqrt(dim)
    item_topic = rng.integers(0, n_topics, n_items)
    item_vectors = _rows_around(centres, item_topic, 0.6, rng)
    rank = rng.permutation(n_items) + 1  # the popularity rank of each item, in a random order of the ids
    popularity = (n_items / rank**zipf).astype(np.float32)
    item_vectors *= (0.75 + 0.5 * (1.0 - (rank - 1) / max(n_items - 1, 1)))[:, None].astype(np.float32)
    item_bias = (bias_scale * np.log(popularity / popularity.max())).astype(np.float32)
    user_vectors = np.empty((n_users, dim), np.float32)
    for start in range(0, n_users, 100_000):  # bounded temporary memory at a million users
        stop = min(start + 100_000, n_users)
        topics = rng.integers(0, n_topics, (stop - start, 3))
        weights = rng.dirichlet(np.full(3, 0.5), stop - start).astype(np.float32)
        mixed = np.einsum("uk,ukd->ud", weights, centres[topics])
        user_vectors[start:stop] = mixed + 0.5 * rng.standard_normal(mixed.shape, dtype=np.float32) / np.sqrt(dim)
    return {
        "user_ids": np.arange(1, n_users + 1, dtype=np.int64),
        "item_ids": np.arange(1, n_items + 1, dtype=np.int64),
        "user_vectors": user_vectors,
        "item_vectors": item_vectors,
        "item_bias": item_bias,
        "popularity": popularity,
    }


def _rows_around(centres: np.ndarray, topic: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    dim = centres.shape[1]
    out = np.empty((len(topic), dim), np.float32)
    for start in range(0, len(topic), 100_000):
        part = topic[start : start + 100_000]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32) * (spread / np.sqrt(dim))
        out[start : start + len(part)] = centres[part] + noise
    return out


# ---------------------------------------------------------------------------------------------- interactions

ROWS_PER_USER = 160  # ml-32m: 32.0M ratings by 200,948 users ...
ROWS_PER_ITEM = 365  # ... of 87,585 films
MAX_DENSITY = 0.05  # default sizes fill at most 5% of the users x items grid (ml-1m: 4.5%, ml-32m: 0.2%)
MIN_PER_USER = 20  # MovieLens keeps users with at least 20 ratings
_FIRST, _LAST = 822_873_600, 1_697_155_200  # 1996-01-29 and 2023-10-13: MovieLens' first and last ratings
_BLOCK_ROWS = 1 << 20  # users are generated in blocks of about this many rows: bounded temporary memory
ZIPF_EXPONENT, ZIPF_OFFSET = 1.3, 40.0  # popularity of the film of rank r: (r + 40) ** -1.3
_ZIPF_ROUNDS = 8  # redraws of a user's duplicates from the popularity law before the rest is drawn uniformly


def interactions(n_rows: int, *, n_users: int | None = None, n_items: int | None = None, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` ratings with MovieLens' schema: ``user_id`` and ``item_id`` (int64, from 1), ``rating``
    (float32, half stars 0.5..5) and ``timestamp`` (int64 seconds, 1996..2023), sorted by user then item, with
    no duplicate (user, item) pair.

    Sizes default to ml-32m's ratios (a user per 160 rows, an item per 365 rows), with at least enough items
    that the grid is at most 5% full (so ``interactions(1_000_000)`` has 6,250 users and 3,200 items, close to
    ml-1m). Film popularity is a Zipf-Mandelbrot law, ``(rank + 40) ** -1.3`` over a random order of the ids,
    and each user draws films without replacement in proportion to it: the most popular film is seen by about
    half of the users (as in MovieLens), the top 1% of films hold 10% of the rows at 1M rows and 47% at 20M.
    User activity has a long tail: at least 20 ratings each (fewer only when there are not enough rows) plus a
    log-normal excess (median about 70 ratings, mean 160). A rating is a user bias + an item quality (higher
    for popular films) + noise, about 3.5 on average. Generated in blocks of users: beyond the returned frame
    (28 bytes a row), temporary memory stays around 100 MB at any size (20M rows: about 10 s, 675 MB peak)."""
    import pandas as pd

    n_rows = int(n_rows)
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    n_users = int(n_users or -(-n_rows // ROWS_PER_USER))
    n_items = int(n_items or max(-(-n_rows // ROWS_PER_ITEM), int(np.ceil(n_rows / (MAX_DENSITY * n_users)))))
    if n_users < 1 or n_items < 2 or not n_users <= n_rows <= n_users * (n_items // 2):
        raise ValueError(
            f"{n_rows:,} rows do not fit {n_users:,} users x {n_items:,} items: every user needs a row and "
            "no user may rate more than half of the items"
        )
    rng = np.random.default_rng(seed)
    counts = _user_counts(n_rows, n_users, n_items // 2, rng)
    log_popularity = -ZIPF_EXPONENT * np.log(rng.permutation(n_items) + 1.0 + ZIPF_OFFSET)
    cdf = np.cumsum(np.exp(log_popularity - log_popularity.max()))
    cdf /= cdf[-1]
    spread = max(float(log_popularity.std()), 1e-9)
    quality = rng.normal(0.0, 0.4, n_items) + 0.25 * (log_popularity - log_popularity.mean()) / spread
    quality = (quality - np.dot(np.diff(cdf, prepend=0.0), quality)).astype(np.float32)  # 0 on average per row
    bias = rng.normal(0.0, 0.4, n_users).astype(np.float32)
    first = rng.uniform(_FIRST, _LAST - 86_400, n_users)
    span = np.minimum(rng.exponential(365 * 86_400.0, n_users), _LAST - first)

    out = {
        "user_id": np.empty(n_rows, np.int64),
        "item_id": np.empty(n_rows, np.int64),
        "rating": np.empty(n_rows, np.float32),
        "timestamp": np.empty(n_rows, np.int64),
    }
    ends = np.cumsum(counts)
    start = done = 0
    while start < n_users:
        stop = max(start + 1, int(np.searchsorted(ends, done + _BLOCK_ROWS, side="right")))
        users, items = _draw_block(counts[start:stop], cdf, rng)
        users += start
        rows = slice(done, done + len(users))
        out["user_id"][rows] = users + 1
        out["item_id"][rows] = items + 1
        noise = rng.normal(0.0, 0.8, len(users)).astype(np.float32)
        out["rating"][rows] = np.clip(np.round((3.65 + bias[users] + quality[items] + noise) * 2) / 2, 0.5, 5.0)
        out["timestamp"][rows] = first[users] + span[users] * rng.random(len(users))
        start, done = stop, done + len(users)
    return pd.DataFrame(out, copy=False)


def _user_counts(n_rows: int, n_users: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Rows per user: ``MIN_PER_USER`` (or fewer when rows are short) plus a log-normal share of the rest,
    none above ``cap`` (the excess goes to the other users)."""
    base = min(MIN_PER_USER, n_rows // n_users, cap)
    weights = rng.lognormal(0.0, 1.4, n_users)
    counts = base + rng.multinomial(n_rows - base * n_users, weights / weights.sum())
    while (counts > cap).any():
        excess = int((counts - cap).clip(0).sum())
        np.minimum(counts, cap, out=counts)
        room = np.where(counts < cap, weights, 0.0)
        counts += rng.multinomial(excess, room / room.sum())
    return counts


def _draw_block(counts: np.ndarray, cdf: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``counts[u]`` distinct items for each user ``u`` of a block, drawn without replacement in proportion to
    the popularity (``cdf``): draw, drop the duplicates, redraw the shortfall. After ``_ZIPF_ROUNDS`` rounds the
    few still missing (heavy users who already hold most popular films) come uniformly from the catalogue.
    Users who have all their items leave the working set, so late rounds cost only the heavy users' rows.
    Returns (user, item) arrays (0-based, the user relative to the block) sorted by user then item."""
    n_items = len(cdf)
    keys = np.empty(0, np.int64)  # user * n_items + item of the users still drawing, sorted and unique
    complete, need = [], counts.astype(np.int64)
    for round_ in range(10_000):
        if not need.any():
            break
        users = np.repeat(np.arange(len(counts), dtype=np.int64), need)
        if round_ < _ZIPF_ROUNDS:
            items = np.minimum(np.searchsorted(cdf, rng.random(len(users)), side="right"), n_items - 1)
        else:
            items = rng.integers(0, n_items, len(users))
        keys = np.sort(np.concatenate([keys, np.sort(users * n_items + items)]), kind="stable")  # 2 sorted runs
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # np.unique, without its slower hash table
        owner = keys // n_items
        need = np.where(need > 0, counts - np.bincount(owner, minlength=len(counts)), 0)
        done = need[owner] == 0
        complete.append(keys[done])
        keys = keys[~done]
    else:  # pragma: no cover - each uniform round fills at least half of what is missing, on average
        raise RuntimeError("could not draw distinct items")
    keys = np.sort(np.concatenate(complete))
    return keys // n_items, keys % n_items
