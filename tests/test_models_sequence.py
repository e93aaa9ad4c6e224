"""The sequence model (recsys_workshop.models.sequence): its windows, its loss, and that it learns an order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop.models.sequence import SequenceRecommender, sequences, windows


@pytest.mark.unit
def test_sequences_follow_time_and_keep_file_order_for_ties():
    frame = pd.DataFrame({"user_id": [2, 1, 1, 2, 1], "item_id": [9, 8, 7, 6, 5], "timestamp": [5, 3, 1, 5, 1]})
    rows = np.array([1, 0, 0, 1, 0])
    cols = np.array([4, 3, 2, 1, 0])
    got = sequences(frame, rows, cols, 2)
    assert [list(s) for s in got] == [[3, 1, 4], [5, 2]], "time order; equal times keep the file order; +1"


@pytest.mark.unit
@pytest.mark.parametrize("length", [2, 3, 7, 11, 12, 30])
def test_windows_cover_every_transition_once(length):
    history = np.arange(1, length + 1)
    pairs = windows(history, max_len=5)
    seen = [(int(a), int(b)) for x, y in pairs for a, b in zip(x, y, strict=True) if a and b]
    assert sorted(seen) == [(i, i + 1) for i in range(1, length)]
    assert pairs[0][0][-1] == length - 1 and pairs[0][1][-1] == length, "the latest films come first"
    assert all(len(x) == 5 and len(y) == 5 for x, y in pairs)
    assert windows(history[:1], 5) == []


@pytest.mark.unit
def test_windows_with_a_horizon_give_each_position_its_next_films():
    x, y = windows(np.arange(1, 5), max_len=4, horizon=3)[0]
    assert x.tolist() == [0, 1, 2, 3] and y.tolist() == [0, 2, 3, 4, 0, 0]
    # position t's targets are y[t : t + 3]: after film 1 come 2, 3, 4; after film 3 only 4
    assert y[1:4].tolist() == [2, 3, 4] and y[3:6].tolist() == [4, 0, 0]


@pytest.mark.tf
def test_next_films_loss_matches_numpy():
    from recsys_workshop.models.sequence import next_films_nll

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 5)).astype("float32")
    y = np.array([[0, 2, 3, 4], [1, 1, 0, 0]])  # horizon 2: position t sees y[t], y[t + 1]
    got = float(next_films_nll(2)(y, logits))
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    losses = []
    for b in range(2):
        for t in range(3):
            targets = [c for c in y[b, t : t + 2] if c]
            if targets:
                losses.append(-np.mean([log_softmax[b, t, c] for c in targets]))
    assert got == pytest.approx(np.mean(losses), rel=1e-5)


@pytest.mark.tf
@pytest.mark.slow
def test_it_learns_what_comes_next():
    from recsys_workshop.train import TrainConfig

    # every user watches a rotation of the same 12-film cycle: after film i comes film i + 1 (mod 12)
    rows = [(u, (u + t) % 12 + 1, t) for u in range(1, 61) for t in range(8)]
    train = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    model = SequenceRecommender(16, 32, max_len=8, dropout=0.0, seed=0).fit(
        train, config=TrainConfig(epochs=40, batch_size=32, learning_rate=1e-2, patience=0,
                                  validation_fraction=0.0, seed=0, verbose=0))  # fmt: skip
    recs = model.recommend(train.user_id.unique(), k=1, exclude_seen=False)
    last = train.sort_values("timestamp").groupby("user_id").item_id.last()
    expected = last % 12 + 1
    hits = (recs.set_index("user_id").item_id == expected.loc[recs.user_id].to_numpy()).mean()
    assert hits > 0.9, f"only {hits:.0%} of the next films predicted"
