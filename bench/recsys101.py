"""RecSys 101 benchmark on ml-100k: the classical models and matrix factorisation.

Protocols (the ``protocol`` field of the records):

- ``strata2018-explicit``: random 64/16/20 train/validation/test split with seed 0 (our reading of
  the 2018 Strata RecSys tutorial's protocol). Hyper-parameters and the number of epochs are chosen
  on the validation split (``--tune``); the chosen model is then refitted on train + validation (80%)
  for that many epochs and its test RMSE reported (predictions clipped to the 1-5 scale).
  Published anchors: MF 0.9642, MF + biases 0.9624.
- ``msr-stratified-75``: Microsoft Recommenders' benchmark protocol: ``stratified_split(ratio=0.75,
  min_rating=1, filter_by="item", seed=42)`` (75,066 / 24,934 rows), top-10 with seen items removed:
  MAP (their ``map``), NDCG@10, precision@10, recall@10.

Hyper-parameters of MF were chosen on the validation split only (``--tune`` reruns that search and
writes ``bench/results/recsys101-tuning.json``); the test split is touched once per model and seed.

    python -m bench.recsys101            # full run, about 5-10 minutes on 2 cores
    python -m bench.recsys101 --tune     # the validation grid search behind MF_CONFIGS
    python -m bench.recsys101 --seeds 1  # quicker
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import RESULTS, Results, measure  # noqa: E402
from recsys_workshop import data, metrics, models  # noqa: E402

DATASET = "ml-100k"
ANCHORS = {
    ("strata2018-explicit", "mf", "rmse"): 0.9642,
    ("strata2018-explicit", "mf+bias", "rmse"): 0.9624,
}
# Chosen by `--tune` on the strata2018 validation split (see bench/results/recsys101-tuning.json):
# the configuration with the lowest validation RMSE, and its best epoch.
MF_CONFIGS = {
    "mf": {"n_factors": 64, "l2": 0.05, "learning_rate": 1e-3, "batch_size": 64, "epochs": 10},
    "mf+bias": {"n_factors": 64, "l2": 0.1, "learning_rate": 1e-3, "batch_size": 64, "epochs": 8},
}
TUNING_GRID = {"n_factors": [32, 64, 128], "l2": [0.05, 0.1, 0.2], "learning_rate": [1e-3], "batch_size": [64]}


def train_mf(name: str, train: pd.DataFrame, valid: pd.DataFrame | str | None, seed: int, **params):
    """Early-stopped on ``valid`` when given (``"carve"``: on 10% of ``train``, the model still indexing
    all of ``train`` so that every training item counts as seen), else trained for ``params["epochs"]``."""
    from recsys_workshop.models.mf import MatrixFactorization
    from recsys_workshop.train import TrainConfig

    config = TrainConfig(
        epochs=200 if valid is not None else params["epochs"],
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        seed=seed,
        patience=3 if valid is not None else 0,
        validation_fraction=0.1 if isinstance(valid, str) else 0.0,
        verbose=0,
    )
    model = MatrixFactorization(params["n_factors"], use_bias=name == "mf+bias", l2=params["l2"], seed=seed)
    return model.fit(train, validation=None if isinstance(valid, str) else valid, config=config)


def strata_explicit(results: Results, ratings: pd.DataFrame, seeds: list[int]) -> None:
    train, valid, test = data.random_split(ratings, [0.64, 0.16, 0.2], seed=0)
    train_valid = pd.concat([train, valid])
    protocol = "strata2018-explicit"
    for seed in seeds:
        for model in (models.GlobalMean(), models.BiasBaseline()):
            with measure() as m:
                model.fit(train_valid)
            rmse = metrics.rmse(test["rating"], model.score(test.user_id, test.item_id))
            results.add(protocol, DATASET, model.name, {"rmse": rmse}, seed=seed, n=len(test), measurement=m)
        for name, params in MF_CONFIGS.items():
            with measure() as m:
                model = train_mf(name, train_valid, None, seed, **params)
            prediction = np.clip(model.score(test.user_id, test.item_id), 1.0, 5.0)
            values = {"rmse": metrics.rmse(test["rating"], prediction), "mae": metrics.mae(test["rating"], prediction)}
            results.add(protocol, DATASET, name, values, seed=seed, n=len(test), measurement=m)
            print(f"  {protocol} seed {seed} {name}: test RMSE {values['rmse']:.4f} ({m.seconds:.0f} s)", flush=True)


def msr_stratified(results: Results, ratings: pd.DataFrame, seeds: list[int]) -> None:
    train, test = data.stratified_split(ratings, 0.75, min_rating=1, filter_by="item", seed=42)
    assert (len(train), len(test)) == (75066, 24934), "the split must match Microsoft Recommenders' benchmark"
    protocol = "msr-stratified-75"
    wanted = {"map": "map", "ndcg@10": "ndcg@10", "precision@10": "precision@10", "recall@10": "recall@10"}
    for seed in seeds:
        candidates = {
            "most-popular": lambda: models.MostPopular().fit(train),
            "item-knn": lambda: models.ItemKNN(n_neighbors=100).fit(train),
            "mf+bias": lambda s=seed: train_mf("mf+bias", train, "carve", s, **MF_CONFIGS["mf+bias"]),
        }
        for name, make in candidates.items():
            with measure() as m:
                model = make()
            row = metrics.evaluate(model, train, test, k=10, name=name).iloc[0]
            values = {metric: row[column] for metric, column in wanted.items()}
            results.add(protocol, DATASET, name, values, seed=seed, n=test.user_id.nunique(), measurement=m)
            print(f"  {protocol} seed {seed} {name}: NDCG@10 {values['ndcg@10']:.4f} ({m.seconds:.0f} s)", flush=True)


def tune(ratings: pd.DataFrame) -> None:
    """Grid search of MF hyper-parameters on the strata2018 *validation* split (test untouched)."""
    train, valid, _ = data.random_split(ratings, [0.64, 0.16, 0.2], seed=0)
    trials = []
    for name in MF_CONFIGS:
        for values in itertools.product(*TUNING_GRID.values()):
            params = dict(zip(TUNING_GRID, values, strict=True))
            model = train_mf(name, train, valid, seed=0, **params)
            best = float(model.history_["val_rmse"].min())
            trials.append(
                {"model": name, **params, "val_rmse": best, "epochs": int(model.history_["val_rmse"].idxmin())}
            )
            print(f"  tune {name} {params}: validation RMSE {best:.4f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recsys101-tuning.json").write_text(json.dumps(trials, indent=1) + "\n")
    best = pd.DataFrame(trials).sort_values("val_rmse").groupby("model").head(1)
    print(best.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="model seeds per configuration")
    parser.add_argument("--tune", action="store_true", help="run the validation grid search instead")
    args = parser.parse_args()
    ratings = data.load_ratings(DATASET)
    if args.tune:
        tune(ratings)
        return
    results = Results("recsys101")
    seeds = list(range(args.seeds))
    strata_explicit(results, ratings, seeds)
    msr_stratified(results, ratings, seeds)
    path = results.write()
    print(results.table(ANCHORS))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
