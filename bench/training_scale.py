"""Training and evaluation at scale: the two-tower model on 1M, 5M and 20M synthetic ratings (issue #16).

Protocol ``training-scale``, datasets ``synthetic-1m``, ``synthetic-5m`` and ``synthetic-20m`` (``--sizes``: the
number of rows), model ``two-tower-<optimizer>``: ``two-tower-lazy-adam`` at every size, ``two-tower-adam``
(Keras' own Adam) at ``--compare-sizes`` (1m and 5m, to compare the two where both are cheap to run). For
each size and optimizer a child process (so that its peak memory is that run's alone):

1. generates the ratings with :func:`recsys_workshop.synthetic.interactions` (the MovieLens schema, seed 0,
   a long-tail film popularity and user activity, a user per 160 rows and an item per 365 rows as in
   ml-32m: 20M rows are 125,000 users x 54,795 films; no download);
2. trains ``TwoTower(64)`` with :meth:`~recsys_workshop.models.two_tower.TwoTower.fit`, the same call the
   labs and the training job make (in-batch softmax, ``--batch-size`` 1,024, learning rate 2e-3), on every
   row, no validation split, no early stopping, for ``--warmup-epochs`` (1) then ``--epochs`` (1) epochs:
   only the latter are measured. The warm-up epoch holds TensorFlow's one-off costs (tracing and optimising
   the training step, and the first touches of memory: 3 to 6 s measured on 2 shared cores, a fifth of a
   1M-row epoch); ``--warmup-epochs 0`` halves the run and counts them in;
3. evaluates: top-10 of ``--eval-users`` (10,000) users drawn with a fixed seed, seen films excluded
   (``recommend``, which scores users in blocks: never users x items at once).

Metrics per size: ``epoch_seconds`` (mean wall time of a measured epoch, Keras' own loop), ``rows_per_second``
(rows / ``epoch_seconds``), ``peak_mb`` (peak resident memory of the child during training and evaluation,
sampled every 20 ms by :func:`bench.common.measure`; also the record's ``peak_mb`` field), ``data_mb`` (its
resident memory just before training: Python, TensorFlow and the ratings table) and
``eval_users_per_second``. The record's ``train_seconds`` is the whole measured block (training and
evaluation); ``n`` the measured epochs; ``setup`` the run's settings.

The goal: time linear in the rows (the same work per row at every size), and memory bounded by the data,
the model and one batch pipeline: the examples are built once per fit and only reshuffled each epoch, and
nothing is sized users x items. The chart ``bench/results/training-scale.png`` draws both against the rows
with a straight line through the origin and the smallest size: points above the line grow faster than
linearly. Keras' Adam updates every row of the embedding tables and of both moments at every step (dense
moments), so its step grows with the catalogue; the lazy Adam (:mod:`recsys_workshop.train.optimizers`)
updates only the rows of the batch. On 2 CPU cores, at these catalogue sizes, the two measured within 20% of
each other (Adam faster at 1M rows, lazy Adam at 5M): the towers' work dominates a step.

What the lazy rule costs in quality is measured on real data, not on the synthetic ratings (which have no
taste to learn beyond popularity): protocol ``msr-stratified-75`` (ml-100k, the split of ``bench/deep.py``,
its two-tower settings: early stopping, 40 epochs at most), each optimizer, ``--quality-seeds`` (0 1 2):
``ndcg@10``, ``precision@10``, ``recall@10`` and ``map`` (``--quality-seeds`` with no value skips it).

    python -m bench.training_scale                          # everything: about 45 minutes on 2 quiet cores
    python -m bench.training_scale --sizes 1m --optimizers lazy_adam --quality-seeds   # one run: about a minute
    python -m bench.training_scale --sizes 1m 5m --threads 2 --out /tmp/scale

Writes ``bench/results/training-scale.json`` (records of other sizes and models already there are kept) and
the chart, after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, Measurement, Results, merge_records, parse_size, read_records, size_label

PROTOCOL, BENCHMARK = "training-scale", "training-scale"
QUALITY_PROTOCOL, QUALITY_DATASET = "msr-stratified-75", "ml-100k"
SIZES, COMPARE_SIZES = ("1m", "5m", "20m"), ("1m", "5m")
OPTIMIZERS = ("lazy_adam", "adam")
METRICS = ("epoch_seconds", "rows_per_second", "peak_mb", "data_mb", "eval_users_per_second")
QUALITY_METRICS = ("map", "ndcg@10", "precision@10", "recall@10")


def model_name(optimizer: str) -> str:
    """The record's model: ``two-tower-lazy-adam``, ``two-tower-adam``, ..."""
    return "two-tower-" + optimizer.replace("_", "-")


# ------------------------------------------------------------------------------------ one size (child)


def _limit_threads(threads: int | None) -> None:
    """Starts TensorFlow, its intra- and inter-op pools (and OpenMP/BLAS) limited to ``threads`` if given."""
    if threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def measure_size(n_rows: int, args: argparse.Namespace) -> dict:
    """Generate, warm up, train and evaluate one size with ``args.optimizer`` in this process; the values and
    the settings."""
    _limit_threads(args.threads)
    import numpy as np
    import psutil

    from bench.common import measure
    from recsys_workshop import synthetic
    from recsys_workshop.models.two_tower import TwoTower
    from recsys_workshop.train import TrainConfig

    config = TrainConfig(
        epochs=args.warmup_epochs + args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        seed=args.seed,
        patience=0,
        validation_fraction=0.0,
        verbose=0,
    )
    started = time.perf_counter()
    ratings = synthetic.interactions(n_rows, seed=args.seed)
    generate_seconds = time.perf_counter() - started
    data_mb = psutil.Process().memory_info().rss / 2**20
    model = TwoTower(args.factors, seed=args.seed)
    with measure() as measurement:
        history = model.fit(ratings, config=config).history_
        users = np.random.default_rng(args.seed).permutation(model.user_ids_)[: args.eval_users]
        started = time.perf_counter()
        recs = model.recommend(users, k=10)
        eval_seconds = time.perf_counter() - started
    if recs.groupby("user_id").size().min() != 10:
        raise RuntimeError("a user got fewer than 10 recommendations")
    epoch_seconds = float(history["seconds"].iloc[args.warmup_epochs :].mean())
    return {
        "values": {
            "epoch_seconds": epoch_seconds,
            "rows_per_second": n_rows / epoch_seconds,
            "peak_mb": measurement.peak_mb,
            "data_mb": data_mb,
            "eval_users_per_second": len(users) / eval_seconds,
        },
        "seconds": measurement.seconds,
        "peak_mb": measurement.peak_mb,
        "setup": {
            "rows": n_rows,
            "users": len(model.user_ids_),
            "items": len(model.item_ids_),
            "epochs": args.epochs,
            "warmup_epochs": args.warmup_epochs,
            "epoch_seconds_each": [round(float(s), 2) for s in history["seconds"]],  # warm-up ones first
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "learning_rate": args.learning_rate,
            "factors": args.factors,
            "threads": args.threads or os.cpu_count(),
            "eval_users": len(users),
            "generate_seconds": round(generate_seconds, 2),
        },
    }


# ------------------------------------------------------------------------------------ quality (real data)


def measure_quality(optimizer: str, seeds: list[int], results: Results) -> None:
    """Two-tower on ml-100k's ``msr-stratified-75`` split with ``optimizer``, one fit per seed, into
    ``results`` (the settings of ``bench/deep.py``: the same model, split and training configuration)."""
    import dataclasses

    from bench import deep
    from bench.common import measure
    from recsys_workshop import data, metrics

    ml = data.load(QUALITY_DATASET)
    train, test = data.stratified_split(ml.ratings, 0.75, filter_by="item", seed=42)
    for seed in seeds:
        make, train_config = deep.implicit_models(ml, seed)["two-tower"]
        with measure() as measurement:
            model = deep.fit(make, dataclasses.replace(train_config, optimizer=optimizer), train)
        row = metrics.evaluate(model, train, test, k=10, name=model_name(optimizer)).iloc[0]
        values = {metric: row[metric] for metric in QUALITY_METRICS}
        results.add(
            QUALITY_PROTOCOL,
            QUALITY_DATASET,
            model_name(optimizer),
            values,
            seed=seed,
            n=test.user_id.nunique(),
            measurement=measurement,
        )
        print(f"  {model_name(optimizer)} seed {seed}: NDCG@10 {values['ndcg@10']:.4f}", flush=True)


# ------------------------------------------------------------------------------------ records and chart


def merged_records(path: Path, fresh: list[dict]) -> list[dict]:
    """The records of ``path`` for other (protocol, dataset, model), then ``fresh``; the scale records first,
    by model, rows and metric."""
    kept = merge_records(read_records(path), fresh, key=lambda r: (r["protocol"], r["dataset"], r["model"]))

    def order(record: dict) -> tuple:
        if record["protocol"] != PROTOCOL:
            return (1, record["model"], 0, record["metric"])
        return (0, record["model"], parse_size(record["dataset"].removeprefix("synthetic-")), record["metric"])

    return sorted(kept, key=order)


def _curve(records: list[dict], model: str, metric: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (parse_size(r["dataset"].removeprefix("synthetic-")), r["value"])
        for r in records
        if r["protocol"] == PROTOCOL and r["model"] == model and r["metric"] == metric
    )
    return [n for n, _ in points], [v for _, v in points]


def chart(records: list[dict], path: Path) -> Path:
    """Seconds per epoch and peak memory against the rows, one line per optimizer, with the straight line
    through the origin and the lazy Adam's smallest size (what linear growth would give)."""
    from matplotlib.figure import Figure

    models = sorted(
        {r["model"] for r in records if r["protocol"] == PROTOCOL}, key=lambda m: m != model_name(OPTIMIZERS[0])
    )
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric, label in zip(
        figure.subplots(1, 2),
        ("epoch_seconds", "peak_mb"),
        ("seconds per epoch", "peak resident memory (MB)"),
        strict=True,
    ):
        ticks: set[int] = set()
        for number, model in enumerate(models):
            x, y = _curve(records, model, metric)
            if not x:
                continue
            ticks.update(x)
            axes.plot(x, y, "o-", color=f"C{number}", label=model)
            if number == 0:
                reference = f"linear from {size_label(x[0])}"
                axes.plot([0, x[-1]], [0, y[0] * x[-1] / x[0]], "--", color="grey", label=reference)
            for n, v in zip(x, y, strict=True):  # the first model's values below its points, the others' above
                text = f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
                axes.annotate(text, (n, v), textcoords="offset points", xytext=(6, -14 if number == 0 else 6),
                              fontsize="small", color=f"C{number}")  # fmt: skip
            if metric == "peak_mb" and number == 0:
                data_x, data_y = _curve(records, model, "data_mb")
                axes.plot(data_x, data_y, "s:", color="dimgrey", label=f"before training (data + TensorFlow, {model})")
        if ticks:
            axes.set_xticks(sorted(ticks), [size_label(n) for n in sorted(ticks)])
        axes.set(xlim=(0, None), ylim=(0, None), xlabel="rows of ratings", ylabel=label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle("Training the two-tower model at scale (synthetic MovieLens-shaped ratings)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def record_size(label: str, optimizer: str, outcome: dict, args: argparse.Namespace) -> list[dict]:
    """The records of one run (through :class:`bench.common.Results`), each with the run's settings."""
    results = Results(BENCHMARK)
    measurement = Measurement()
    measurement.seconds, measurement.peak_mb = outcome["seconds"], outcome["peak_mb"]
    dataset, model = f"synthetic-{label}", model_name(optimizer)
    results.add(PROTOCOL, dataset, model, outcome["values"], seed=args.seed, n=args.epochs, measurement=measurement)
    return [record | {"setup": outcome["setup"]} for record in results.records()]


def run_child(label: str, optimizer: str, args: argparse.Namespace, work: Path) -> dict:
    """``measure_size`` in a fresh Python process: the values of one size with one optimizer."""
    out = work / f"{label}-{optimizer}.json"
    command = [sys.executable, "-m", "bench.training_scale", "--child", label, "--child-out", str(out)]
    command += ["--optimizer", optimizer, *_shared_options(args)]
    subprocess.run(command, check=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.read_text())


def _shared_options(args: argparse.Namespace) -> list[str]:
    options = [
        "--epochs",
        args.epochs,
        "--batch-size",
        args.batch_size,
        "--learning-rate",
        args.learning_rate,
        "--factors",
        args.factors,
        "--eval-users",
        args.eval_users,
        "--warmup-epochs",
        args.warmup_epochs,
        "--seed",
        args.seed,
    ]
    if args.threads:
        options += ["--threads", args.threads]
    return [str(option) for option in options]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from recsys_workshop.train.optimizers import NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="rows of each run, e.g. 1m 5m 20m")
    parser.add_argument(
        "--optimizers", nargs="+", choices=NAMES, default=list(OPTIMIZERS), help="the first runs every size"
    )
    parser.add_argument(
        "--compare-sizes", nargs="*", default=list(COMPARE_SIZES), help="the sizes the other optimizers run at"
    )
    parser.add_argument("--quality-seeds", nargs="*", type=int, default=[0, 1, 2], help="none: no quality runs")
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs (after the warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow and BLAS threads (default: all)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--eval-users", type=int, default=10_000, help="users whose top-10 is computed")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="unmeasured epochs first (tracing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the records and the chart")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", choices=NAMES, help=argparse.SUPPRESS)  # a child's one optimizer
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({parse_size(s) for s in args.sizes})
        args.compare_sizes = {parse_size(s) for s in args.compare_sizes}
    except ValueError as error:
        parser.error(str(error))
    return args


def runs(args: argparse.Namespace) -> list[tuple[int, str]]:
    """(rows, optimizer) in the order they run: each size with the first optimizer, then the others at the
    sizes of ``--compare-sizes``."""
    first, *others = args.optimizers
    chosen = [(n, first) for n in args.sizes]
    return chosen + [(n, o) for o in others for n in args.sizes if n in args.compare_sizes]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        args.child_out.write_text(json.dumps(measure_size(parse_size(args.child), args)))
        return
    path = args.out / f"{BENCHMARK}.json"

    def save(fresh: list[dict]) -> None:
        records = merged_records(path, fresh)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1) + "\n")
        chart(records, args.out / f"{BENCHMARK}.png")

    with tempfile.TemporaryDirectory(prefix="bench-training-scale-") as work:
        for n_rows, optimizer in runs(args):
            label = size_label(n_rows)
            print(f"{PROTOCOL}: {n_rows:,} rows ({label}), {optimizer} ...", flush=True)
            outcome = run_child(label, optimizer, args, Path(work))
            save(record_size(label, optimizer, outcome, args))
            print("  " + ", ".join(f"{k} {v:,.1f}" for k, v in outcome["values"].items()), flush=True)
    if args.quality_seeds:
        _limit_threads(args.threads)
        results = Results(BENCHMARK)
        for optimizer in args.optimizers:
            print(f"{QUALITY_PROTOCOL} on {QUALITY_DATASET}: {optimizer}, seeds {args.quality_seeds} ...", flush=True)
            measure_quality(optimizer, args.quality_seeds, results)
        save(results.records())
    print("wrote", path, "and", args.out / f"{BENCHMARK}.png")


if __name__ == "__main__":
    main()
