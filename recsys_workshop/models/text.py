"""A learned text encoder for films: what a brand-new film is about, read from its words.

Metadata such as genres is a fixed, coarse vocabulary (19 flags). The words people use for a film, its
title and its tags (ml-latest-small: "dark comedy", "time travel", "pixar"), say much more, and they exist
before anybody has rated the film. This module turns them into something the hybrid model
(:mod:`recsys_workshop.models.hybrid`) can learn from:

- :func:`item_text`: one string per film, title (without the year) + genres + its most used tags;
- :class:`TextTokens`: Keras' ``TextVectorization``, its vocabulary adapted on the *training* films'
  text only (a word only a new film has maps to the out-of-vocabulary token: nothing about the films
  held out leaks into the vocabulary); every film becomes ``length`` token ids, 0-padded;
- :func:`text_tower`: an embedding per word, averaged over the film's words (padding masked), then a
  dense layer: a bag-of-words encoder (fastText-style), trained inside the hybrid model with everything
  else, so the words that predict who watches a film get vectors that say so. Nothing is downloaded.

A caveat the labs state: tags are written by people who watched the film, so in MovieLens a film's tags
come after its first ratings; a real catalogue would use its editorial keywords or synopsis instead.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def item_text(items: pd.DataFrame, tags: pd.DataFrame | None = None, *, max_tags: int = 20) -> pd.Series:
    """``item_id -> text``: the title without its trailing ``(year)``, the genres, and the film's
    ``max_tags`` most used tags (ties by first use) when ``tags`` (``item_id, tag``) is given."""
    if max_tags < 0:
        raise ValueError("max_tags must be >= 0")
    genres = items["genres"].map(lambda g: " ".join(g) if isinstance(g, list | tuple | np.ndarray) else str(g or ""))
    text = items["title"].astype(str).str.replace(YEAR, "", regex=True) + " " + genres
    text.index = items["item_id"].to_numpy()
    if tags is not None and len(tags) and max_tags:
        counted = tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower(), _order=np.arange(len(tags)))
        counted = counted.groupby(["item_id", "tag"], sort=False).agg(n=("tag", "size"), first=("_order", "min"))
        counted = counted.reset_index().sort_values(["item_id", "n", "first"], ascending=[True, False, True])
        top = counted.groupby("item_id").head(max_tags).groupby("item_id")["tag"].agg(" ".join)
        text = text + " " + top.reindex(text.index).fillna("")
    return text.str.strip().rename("text")


class TextTokens:
    """Token ids for film texts, the vocabulary taken from ``known`` texts only (Keras ``TextVectorization``:
    lower case, punctuation stripped, split on white space; id 0 = padding, 1 = out of vocabulary).

    A word enters the vocabulary only if at least ``min_films`` known films use it (at most ``vocabulary``
    words, the most widely used first): a word of one title alone would act as that film's ID, which the
    network would learn to read instead of the meaning that carries over to a new film."""

    def __init__(self, known: pd.Series | list[str], *, vocabulary: int = 5000, length: int = 32, min_films: int = 20):
        if vocabulary < 3 or length < 1 or min_films < 1:
            raise ValueError("vocabulary must be >= 3, length and min_films >= 1")
        from keras import layers

        self.length = length
        splitter = layers.TextVectorization(output_mode="multi_hot")  # the same standardisation and split
        splitter.adapt(np.asarray(list(known), dtype=object))
        counts = np.asarray(splitter(np.asarray(list(known), dtype=object))).sum(axis=0)
        words = np.asarray(splitter.get_vocabulary())
        keep = [i for i in np.argsort(-counts, kind="stable") if counts[i] >= min_films and words[i] != "[UNK]"]
        chosen = words[keep[: vocabulary - 2]].tolist()
        self.layer = layers.TextVectorization(output_sequence_length=length, vocabulary=chosen)
        self.vocabulary = self.layer.get_vocabulary()

    def __call__(self, texts: pd.Series | list[str]) -> np.ndarray:
        """``(len(texts), length)`` token ids; an empty text is one out-of-vocabulary token (never all
        padding, so the masked mean of :func:`text_tower` is always defined)."""
        tokens = np.asarray(self.layer(np.asarray(list(texts), dtype=object))).astype("int32")
        tokens[(tokens == 0).all(axis=1), 0] = 1
        return tokens


def text_tower(tokens, vocabulary: int, dim: int, *, seed: int | None = None):
    """Keras: ``(batch, length)`` token ids -> ``(batch, dim)``: the mean of the words' embeddings (0s
    masked), then a ReLU layer."""
    import keras
    from keras import layers

    init = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
    words = layers.Embedding(vocabulary, dim, mask_zero=True, embeddings_initializer=init, name="word_embedding")(
        tokens
    )
    mean = layers.GlobalAveragePooling1D(name="text_mean")(words)
    return layers.Dense(dim, activation="relu", name="text_dense")(mean)
