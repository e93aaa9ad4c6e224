"""Training and evaluation at scale: the two-tower model on 1M, 5M and 20M synthetic ratings (issue #16).

Protocol ``training-scale``, model ``two-tower``, datasets ``synthetic-1m``, ``synthetic-5m`` and
``synthetic-20m`` (``--sizes``: the number of rows). For each size a child process (so that its peak memory
is that size's alone):

1. generates the ratings with :func:`recsys_workshop.synthetic.interactions` (the MovieLens schema, seed 0,
   a long-tail film popularity and user activity, a user per 160 rows and an item per 365 rows as in
   ml-32m: 20M rows are 125,000 users x 54,795 films; no download);
2. trains ``TwoTower(64)`` with :meth:`~recsys_workshop.models.two_tower.TwoTower.fit`, the same call the
   labs and the training job make (in-batch softmax, ``--batch-size`` 1,024, Adam at 2e-3: ``--optimizer``,
   ``--learning-rate``), on every row, no validation split, no early stopping, for ``--warmup-epochs`` (1)
   then ``--epochs`` (1) epochs: only the latter are measured. The warm-up epoch holds TensorFlow's one-off
   costs (tracing and optimising the training step, and the first touches of memory: 3 to 6 s measured on
   2 shared cores, a fifth of a 1M-row epoch); ``--warmup-epochs 0`` halves the run and counts them in;
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
linearly. One known cost grows with the model, not the rows: Keras' Adam updates every row of the embedding
tables at every step (dense moments), so a step costs more as users and films grow (``--optimizer sgd``
updates only the rows of the batch: compare).

    python -m bench.training_scale                          # 1m, 5m, 20m: about 45 minutes on 2 quiet cores
    python -m bench.training_scale --sizes 1m --epochs 2    # one size: about a minute and a half
    python -m bench.training_scale --sizes 1m 5m --threads 2 --out /tmp/scale

Writes ``bench/results/training-scale.json`` (records of other sizes already there are kept) and the chart,
after each size.
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

from bench.common import RESULTS, Measurement, Results, parse_size, size_label

PROTOCOL, MODEL, BENCHMARK = "training-scale", "two-tower", "training-scale"
SIZES = ("1m", "5m", "20m")
METRICS = ("epoch_seconds", "rows_per_second", "peak_mb", "data_mb", "eval_users_per_second")


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
    """Generate, warm up, train and evaluate one size in this process; the values and the settings."""
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


# ------------------------------------------------------------------------------------ records and chart


def merge_records(path: Path, fresh: list[dict]) -> list[dict]:
    """The records of ``path`` for other datasets, then ``fresh``, sorted by rows then metric."""
    datasets = {r["dataset"] for r in fresh}
    kept = [r for r in json.loads(path.read_text()) if r["dataset"] not in datasets] if path.exists() else []
    return sorted(kept + fresh, key=lambda r: (parse_size(r["dataset"].removeprefix("synthetic-")), r["metric"]))


def _curve(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (parse_size(r["dataset"].removeprefix("synthetic-")), r["value"])
        for r in records
        if r["protocol"] == PROTOCOL and r["model"] == MODEL and r["metric"] == metric
    )
    return [n for n, _ in points], [v for _, v in points]


def chart(records: list[dict], path: Path) -> Path:
    """Seconds per epoch and peak memory against the rows, each with the straight line through the origin
    and the smallest size (what linear growth would give)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric, label in zip(
        figure.subplots(1, 2),
        ("epoch_seconds", "peak_mb"),
        ("seconds per epoch", "peak resident memory (MB)"),
        strict=True,
    ):
        x, y = _curve(records, metric)
        if x:
            axes.plot(x, y, "o-", label="two-tower, measured")
            axes.plot([0, x[-1]], [0, y[0] * x[-1] / x[0]], "--", color="grey", label=f"linear from {size_label(x[0])}")
            for n, v in zip(x, y, strict=True):
                text = f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
                axes.annotate(text, (n, v), textcoords="offset points", xytext=(4, -12), fontsize="small")
            axes.set_xticks(x, [size_label(n) for n in x])
        if metric == "peak_mb":
            data_x, data_y = _curve(records, "data_mb")
            if data_x:
                axes.plot(data_x, data_y, "s:", label="before training (data + TensorFlow)")
        axes.set(xlim=(0, None), ylim=(0, None), xlabel="rows of ratings", ylabel=label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle("Training the two-tower model at scale (synthetic MovieLens-shaped ratings)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def record_size(label: str, outcome: dict, args: argparse.Namespace) -> list[dict]:
    """The records of one size (through :class:`bench.common.Results`), each with the run's settings."""
    results = Results(BENCHMARK)
    measurement = Measurement()
    measurement.seconds, measurement.peak_mb = outcome["seconds"], outcome["peak_mb"]
    results.add(
        PROTOCOL, f"synthetic-{label}", MODEL, outcome["values"], seed=args.seed, n=args.epochs, measurement=measurement
    )
    return [record | {"setup": outcome["setup"]} for record in results.records()]


def run_child(label: str, args: argparse.Namespace, work: Path) -> dict:
    """``measure_size`` in a fresh Python process: the values of one size."""
    out = work / f"{label}.json"
    command = [
        sys.executable,
        "-m",
        "bench.training_scale",
        "--child",
        label,
        "--child-out",
        str(out),
        *_shared_options(args),
    ]
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
        "--optimizer",
        args.optimizer,
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="rows of each run, e.g. 1m 5m 20m")
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs (after the warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow and BLAS threads (default: all)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--optimizer", choices=("adam", "adagrad", "sgd"), default="adam")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--eval-users", type=int, default=10_000, help="users whose top-10 is computed")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="unmeasured epochs first (tracing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the records and the chart")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        sizes = sorted({parse_size(s) for s in args.sizes})
    except ValueError as error:
        parser.error(str(error))
    if args.child:
        args.child_out.write_text(json.dumps(measure_size(parse_size(args.child), args)))
        return
    path = args.out / f"{BENCHMARK}.json"
    with tempfile.TemporaryDirectory(prefix="bench-training-scale-") as work:
        for n_rows in sizes:
            label = size_label(n_rows)
            print(f"{PROTOCOL}: {n_rows:,} rows ({label}) ...", flush=True)
            outcome = run_child(label, args, Path(work))
            records = merge_records(path, record_size(label, outcome, args))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(records, indent=1) + "\n")
            chart(records, args.out / f"{BENCHMARK}.png")
            print("  " + ", ".join(f"{k} {v:,.1f}" for k, v in outcome["values"].items()), flush=True)
    print("wrote", path, "and", args.out / f"{BENCHMARK}.png")


if __name__ == "__main__":
    main()
