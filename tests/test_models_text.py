"""The text encoder for films (recsys_workshop.models.text) and the hybrid model that learns with it: a
brand-new film scored from its words alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys_workshop import metrics
from recsys_workshop.models.hybrid import HybridModel
from recsys_workshop.models.text import TextTokens, item_text
from recsys_workshop.train import TrainConfig

FAST = {"patience": 0, "validation_fraction": 0.0, "verbose": 0, "seed": 0}


@pytest.mark.unit
def test_item_text_is_title_without_year_genres_and_most_used_tags():
    items = pd.DataFrame(
        {"item_id": [1, 2], "title": ["Toy Story (1995)", "Heat (1995)"], "genres": [["Animation", "Comedy"], []]}
    )
    tags = pd.DataFrame(
        {"item_id": [1, 1, 1, 1, 1], "tag": ["pixar", " Fun", "fun", "toys", "pixar "], "user_id": [1, 2, 3, 4, 5]}
    )
    text = item_text(items, tags, max_tags=2)
    # pixar and fun twice each (pixar used first), toys once: cut by max_tags; Heat has neither tags nor genres
    assert text.to_dict() == {1: "Toy Story Animation Comedy pixar fun", 2: "Heat"}
    assert item_text(items).to_dict() == {1: "Toy Story Animation Comedy", 2: "Heat"}
    with pytest.raises(ValueError, match="max_tags"):
        item_text(items, tags, max_tags=-1)


@pytest.mark.tf
def test_tokens_come_from_known_films_and_words_shared_by_enough_of_them():
    known = ["space war", "space love", "war story", "lonely planet"]
    tokens = TextTokens(known, min_films=2, length=4)
    assert tokens.vocabulary[:2] == ["", "[UNK]"]
    assert sorted(tokens.vocabulary[2:]) == ["space", "war"], "a word of one film alone is not a word here"
    ids = {word: i for i, word in enumerate(tokens.vocabulary)}
    got = tokens(["War in SPACE!", "alien planet", ""])
    # lower case, punctuation stripped; unknown words (a new film's own, or rare ones) are 1; 0 pads
    assert got.tolist() == [[ids["war"], 1, ids["space"], 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert got.dtype == np.int32
    with pytest.raises(ValueError, match="min_films"):
        TextTokens(known, min_films=0)


def word_world(seed: int = 0):
    """Two kinds of film that look alike in every metadata field (same genre, same year) and differ only
    in their words: "noir"/"heist" films and "musical"/"dance" films. Users 1-30 watch the first kind,
    31-60 the second. Films 41-48 are never rated (new): four of each kind."""
    rng = np.random.default_rng(seed)
    words = {0: ["noir heist", "heist city", "noir night"], 1: ["musical dance", "dance show", "musical stage"]}
    kind = {item: (item - 1) % 2 for item in range(1, 49)}
    items = pd.DataFrame(
        {
            "item_id": list(kind),
            "title": [f"{words[kind[i]][i % 3]} {i} (1990)" for i in kind],
            "year": 1990,
            "genres": [["Drama"]] * len(kind),
        }
    )
    rows = [
        (user, item, 5.0, 0)
        for user in range(1, 61)
        for item in range(1, 41)
        if kind[item] == (user > 30) and rng.random() < 0.6
    ]
    return items, pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.mark.tf
def test_text_tower_ranks_new_films_by_their_words_where_genres_cannot():
    items, train = word_world()
    new_films = np.arange(41, 49)
    test = pd.DataFrame({"user_id": np.repeat([1, 31], 4), "item_id": [41, 43, 45, 47, 42, 44, 46, 48]})
    test = test.assign(rating=5.0, timestamp=1)
    config = TrainConfig(epochs=15, batch_size=64, learning_rate=1e-2, **FAST)
    common = {"task": "ranking", "n_factors": 8, "hidden": (16,), "seed": 0}
    text = item_text(items)
    with_text = HybridModel(None, items, text=text, text_min_films=2, **common).fit(train, config=config)
    genres_only = HybridModel(None, items, **common).fit(train, config=config)
    assert with_text.item_known_[with_text.item_columns(new_films)].sum() == 0, "films 41-48 must be new"
    ndcg = {
        name: metrics.evaluate_candidates(model, test, new_films, 4).loc[0, "ndcg@4"]
        for name, model in (("text", with_text), ("genres", genres_only))
    }
    assert ndcg["text"] == pytest.approx(1.0), "each user's four new films of their kind come first"
    assert ndcg["genres"] < 0.8, "identical metadata: the genre-only model cannot tell the kinds apart"
    with pytest.raises(ValueError, match="without demographics"):
        genres_only.score_new_user(age=30, gender="F", occupation="other")


@pytest.mark.tf
def test_new_film_dropout_hides_popularity_exactly_where_the_id_is_dropped():
    items, train = word_world()
    common = {"task": "ranking", "n_factors": 4, "hidden": (4,), "id_dropout": 0.5, "seed": 0}
    config = TrainConfig(epochs=1, batch_size=256, **FAST)
    looks_new = HybridModel(None, items, new_film_dropout=True, **common).fit(train, config=config)
    plain = HybridModel(None, items, **common).fit(train, config=config)
    cols = looks_new.item_columns(train.item_id.to_numpy())
    rows = looks_new.user_rows(train.user_id.to_numpy())
    x = looks_new._inputs(rows, cols, np.random.default_rng(1))
    dropped = x["item"] == 0
    assert 0.4 < dropped.mean() < 0.6
    assert (x["popularity"][dropped] == 0).all() and (x["popularity"][~dropped] > 0).all()
    y = plain._inputs(rows, cols, np.random.default_rng(1))
    assert (y["item"] == 0).any() and (y["popularity"] > 0).all(), "off by default: popularity stays"
    scoring = looks_new._inputs(rows, cols)  # no rng: scoring, nothing dropped
    assert (scoring["item"] > 0).all() and (scoring["popularity"] > 0).all()
