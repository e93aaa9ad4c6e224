"""Two protocols of ``bench.deep`` for what IDs alone cannot use: the order of a user's films, and a new
film's words. ``python -m bench.deep --protocols global-time-split cold-item-text`` runs just these.

- ``global-time-split``: ml-100k, one cut-off date for everybody (``data.global_time_split``, 80% of the
  ratings by time train, test users and films known in training), top-10 with seen films removed:
  NDCG@10, precision@10, recall@10, MAP. The sequence model (GRU4Rec-style, ``gru4rec``) against
  popularity, item-kNN, EASE and Mult-DAE on the same split. GRU settings chosen on the training part cut
  again at its 87.5% time quantile (validation; test never looked at), NDCG@10 there: embedding 32,
  GRU 64, dropout 0.5, last 200 films 0.112 (64/128/0.2/50 films: 0.089; predicting the next 5 or 10
  films instead of 1: 0.088 / 0.089; 100 films: 0.092-0.102); the baselines there: EASE 0.139, item-kNN
  0.114, most-popular 0.110.
- ``cold-item-text``: ml-latest-small (it has tags), 10% of the films held out entirely
  (``data.cold_start_split(by="item")``, seed 42); every test user's held-out films ranked
  (``metrics.evaluate_candidates``): NDCG@10, precision@10, recall@10, MAP. The hybrid model with the
  learned text encoder (title, genres, tags: ``models.text``; ``hybrid-text``) against the same hybrid
  on genres, year and popularity alone (``hybrid-genres``) and popularity (``most-popular``, which
  cannot tell new films apart: a random order). Both hybrids hide a film's popularity whenever its ID
  is dropped in training (``new_film_dropout``: a dropped film looks new in every way). Settings chosen
  on the training part split again the same way (seed 1), NDCG@10 there (one seed, so noisy):

  ======================================================  =========================  ======================
  text encoder                                            without new_film_dropout   with new_film_dropout
  ======================================================  =========================  ======================
  none (genres, year, popularity)                         0.063                      0.183
  every word, 32 numbers per word                         0.050
  words of >= 5 films, 32 / 8 / 16 numbers                0.040 / 0.042 / -          - / 0.190 / 0.110
  words of >= 20 films, 32 / 8 numbers (the choice: 8)   0.042 / -                  - / **0.305**
  ======================================================  =========================  ======================

  Popularity there: 0.021 (a random order of the new films).
"""

from __future__ import annotations

from bench.common import Results, measure
from recsys_workshop import data, metrics, models

METRICS = ("ndcg@10", "precision@10", "recall@10", "map")
GRU = {"embedding_dim": 32, "hidden": 64, "dropout": 0.5, "max_len": 200}
HYBRID = {"task": "ranking", "new_film_dropout": True}  # both hybrids; the text one adds TEXT
TEXT = {"text_min_films": 20, "text_dim": 8}  # chosen on validation (module docstring)


def _record(results: Results, protocol: str, dataset: str, name: str, row, seed: int, n: int, m) -> None:
    values = {key: float(row[key]) for key in METRICS}
    results.add(protocol, dataset, name, values, seed=seed, n=n, measurement=m)
    print(f"  {protocol} seed {seed} {name}: NDCG@10 {values['ndcg@10']:.4f} ({m.seconds:.0f} s)", flush=True)


def global_time_split(results: Results, ml: data.MovieLens, seeds: list[int], config) -> None:
    """``config(seed, **overrides)``: the benchmark's training settings (``bench.deep.config``)."""
    from recsys_workshop.models.sequence import SequenceRecommender
    from recsys_workshop.models.vae import MultVAE

    train, test = data.global_time_split(ml.ratings, 0.8)
    n = test.user_id.nunique()
    for seed in seeds:
        candidates = {
            "most-popular": (models.MostPopular, None),
            "item-knn": (lambda: models.ItemKNN(n_neighbors=100), None),
            "ease": (lambda: models.EASE(l2=500.0), None),
            "mult-dae": (
                lambda seed=seed: MultVAE(hidden=(), latent=200, variational=False, dropout=0.7, l2=1e-5, seed=seed),
                config(seed, epochs=100, batch_size=64, patience=5),
            ),
            "gru4rec": (lambda seed=seed: SequenceRecommender(**GRU, seed=seed), config(seed, batch_size=64)),
        }
        for name, (make, train_config) in candidates.items():
            with measure() as m:
                model = make()
                model = model.fit(train) if train_config is None else model.fit(train, config=train_config)
            row = metrics.evaluate(model, train, test, k=10, name=name).iloc[0]
            _record(results, "global-time-split", "ml-100k", name, row, seed, n, m)


def cold_item_text(results: Results, seeds: list[int], config) -> None:
    from recsys_workshop.models.hybrid import HybridModel
    from recsys_workshop.models.text import item_text

    ml = data.load("ml-latest-small")
    train, test = data.cold_start_split(ml.ratings, 0.1, by="item", seed=42)
    new_films = test.item_id.unique()
    text = item_text(ml.items, ml.tags)
    n = test.user_id.nunique()
    for seed in seeds:
        settings = {"genres": HYBRID, "text": {**HYBRID, "text": text, **TEXT}}
        for name in ("most-popular", "hybrid-genres", "hybrid-text"):
            with measure() as m:
                if name == "most-popular":
                    model = models.MostPopular().fit(train)
                else:
                    model = HybridModel(None, ml.items, seed=seed, **settings[name.split("-")[1]])
                    model.fit(train, config=config(seed, epochs=30, patience=2))
            row = metrics.evaluate_candidates(model, test, new_films, 10, name=name, seed=seed).iloc[0]
            _record(results, "cold-item-text", "ml-latest-small", name, row, seed, n, m)
