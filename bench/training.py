"""Training at scale and tuning benchmark: the training job itself, as the TFJob and Katib trials run it.

Two parts (the ``protocol`` field of the records):

- ``workers-<n>`` (``--part throughput``): the training job (``python -m recsys_workshop.train``) as 1
  and 2 local worker processes under ``MultiWorkerMirroredStrategy`` (the local launcher, with the
  TF_CONFIG a TFJob would give), on the job's split of ml-100k (Microsoft Recommenders' stratified
  75/25). Records the training examples per second (mean over epochs after the first), the wall time
  of the whole job, and NDCG@10 (the same for 1 and 2 workers when data parallelism is right).
- ``msr-stratified-75`` (``--part tuning``): the default job config (``cluster-setup/manifests/base/
  train.json``, NeuMF) against the config tuned by ``recsys_workshop.tune.tune_local`` (Bayesian/TPE,
  ``--trials`` trials, objective NDCG@10 on a validation split carved from the training part). Both are
  then trained on the whole training part and evaluated once on the test split, for each seed.

Both parts run on whatever else the machine is doing: on a shared 2-core machine the throughput is a
lower bound.

    python -m bench.training                      # both parts
    python -m bench.training --part throughput --epochs 5
    python -m bench.training --part tuning --trials 12 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import RESULTS, Measurement, Results, merge_records, read_records  # noqa: E402
from recsys_workshop import tune  # noqa: E402
from recsys_workshop.paths import TRAIN_CONFIG  # noqa: E402
from recsys_workshop.train.job import JobConfig, merge_config  # noqa: E402
from recsys_workshop.train.launcher import LocalJob  # noqa: E402

DATASET = "ml-100k"


def base_config(*overrides: str) -> dict:
    config = json.loads(TRAIN_CONFIG.read_text())
    return merge_config(config, ["train.verbose=0", "model_dir=null", "checkpoint_dir=null", *overrides])


def run_job(config: dict, workers: int, workdir: Path):
    result = LocalJob(JobConfig.from_dict(config), workers, workdir=workdir, max_restarts=0).run(timeout=7200)
    measurement = Measurement()
    measurement.seconds, measurement.peak_mb = result.seconds, result.peak_mb
    return result, measurement


def throughput(results: Results, epochs: int, workdir: Path) -> None:
    for model, overrides in (
        ("mf", ['model={"name": "mf", "n_factors": 32}', "train.batch_size=1024", "train.learning_rate=0.005"]),
        ("neumf", ["train.batch_size=1024", "train.learning_rate=0.002"]),
    ):
        config = base_config(*overrides, f"train.epochs={epochs}", "train.patience=0")
        for workers in (1, 2):
            result, measurement = run_job(config, workers, workdir / f"{model}-{workers}")
            values = {
                "examples_per_second": result.metrics["examples_per_second"],
                "ndcg@10": result.metrics["ndcg_at_10"],
            }
            results.add(f"workers-{workers}", DATASET, model, values, seed=42, n=epochs, measurement=measurement)
            print(f"{model} {workers} worker(s): {values} in {result.seconds:.0f} s", flush=True)


def tuning(results: Results, trials: int, seeds: list[int], workdir: Path) -> dict:
    default = base_config()
    study = tune.tune_local(
        JobConfig.from_dict(default), workdir=workdir / "study", algorithm="bayesian", n_trials=trials
    )
    record = json.loads((workdir / "study" / "best_params.json").read_text())
    baseline = study.trials[0]
    record |= {"baseline_validation_ndcg@10": baseline.value, "baseline_params": baseline.params}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training-best-params.json").write_text(json.dumps(record, indent=1) + "\n")  # kept even if later fails
    tuned = merge_config(default, tune.best_overrides(workdir / "study" / "best_params.json"))
    for name, config in (("neumf-default", default), ("neumf-tuned", tuned)):
        for seed in seeds:
            seeded = merge_config(config, [f"train.seed={seed}", f"model.seed={seed}"])
            result, measurement = run_job(seeded, 1, workdir / f"{name}-{seed}")
            values = {
                "ndcg@10": result.metrics["ndcg_at_10"],
                "precision@10": result.metrics["precision_at_10"],
                "recall@10": result.metrics["recall_at_10"],
                "map@10": result.metrics["map_at_10"],
            }
            results.add("msr-stratified-75", DATASET, name, values, seed=seed, n=len(seeds), measurement=measurement)
            print(f"{name} seed {seed}: {values}", flush=True)
    return {"best_validation_ndcg@10": study.best_value, **record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["throughput", "tuning", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the throughput runs")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    results = Results("training")
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        if args.part in ("throughput", "both"):
            throughput(results, args.epochs, Path(tmp))
        if args.part in ("tuning", "both"):
            best = tuning(results, args.trials, [42, 43, 44][: args.seeds], Path(tmp))
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "training-best-params.json").write_text(json.dumps(best, indent=1) + "\n")
            print("best trial:", best)
    print(results.table())
    path = RESULTS / "training.json"
    fresh = results.records()
    merged = merge_records(read_records(path), fresh, key=lambda r: r["protocol"])  # a part run alone keeps the rest
    path.write_text(json.dumps(merged, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
