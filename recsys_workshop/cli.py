"""The workshop's main job, end to end in local mode.

``python -m recsys_workshop run`` checks the environment, fetches and verifies the data, trains the
reference models, runs the continuous-training pipeline with the KFP local runner (its model goes to
``artifacts/models/recsys``), starts the serving stack on it (model server + API on loopback),
queries it and stops it, then executes every solution notebook in order (at the scale chosen by
``--scale``) and prints a summary.
``python -m recsys_workshop html`` executes the solution notebooks (CI size by default) and renders each
as an HTML page, with an index, to read a lab's results ahead (``make html``).
``python -m recsys_workshop data`` only fetches and verifies the data sets and the Kubeflow CRDs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from recsys_workshop import paths

REPO = paths.REPO_ROOT
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow: warnings and errors only
DEFAULT_DATASETS = ("ml-100k", "ml-latest-small")


def fetch_data(names: list[str]) -> list[dict[str, object]]:
    from recsys_workshop import data

    rows = []
    for name in names:
        started = time.perf_counter()
        summary = data.load(name).summary()
        rows.append({"dataset": name, **summary, "seconds": round(time.perf_counter() - started, 2)})
    return rows


def model_summary(scale: str) -> pd.DataFrame:  # noqa: F821 - pandas imported lazily
    """The reference models so far, trained and evaluated on one split (Microsoft Recommenders'
    protocol on ml-100k: stratified per item, 75/25, seed 42, top-10, seen items removed)."""
    import pandas as pd

    from recsys_workshop import data, metrics, models
    from recsys_workshop.models.mf import MatrixFactorization
    from recsys_workshop.train import TrainConfig

    ml = data.load("ml-100k", progress=False)
    train, test = data.stratified_split(ml.ratings, 0.75, filter_by="item", seed=42)
    config = TrainConfig(epochs=40 if scale == "full" else 2, batch_size=64 if scale == "full" else 1024, verbose=0)
    candidates = {
        "most-popular": lambda: models.MostPopular().fit(train),
        "content-based": lambda: models.ContentBased(ml.items).fit(train),
        "item-knn": lambda: models.ItemKNN().fit(train),
        "mf+bias": lambda: MatrixFactorization(64, l2=0.1).fit(train, config=config),
    }
    rows = []
    for name, make in candidates.items():
        print(f"  training {name} ...", flush=True)
        started = time.perf_counter()
        model = make()
        row = metrics.evaluate(model, train, test, k=10, name=name)
        row["train_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
    columns = ["model", "precision@10", "recall@10", "ndcg@10", "map", "coverage", "novelty", "train_s"]
    return pd.concat(rows, ignore_index=True)[columns]


def pipeline_and_stack(scale: str, out_dir: Path) -> dict:
    """Run the continuous-training pipeline locally (pushing to ``out_dir/models/recsys`` if better),
    then serve the deployed model and ask the API for a user's recommendations. Returns what it saw."""
    import json

    from recsys_workshop import pipelines
    from recsys_workshop.api import local_stack
    from recsys_workshop.export import list_versions, load_metadata
    from recsys_workshop.train.job import merge_config

    config = json.loads(paths.TRAIN_CONFIG.read_text())
    config = merge_config(config, ["train.verbose=0"] + ([] if scale == "full" else ["train.epochs=2"]))
    models = out_dir / "models" / "recsys"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        "  running the pipeline: validate, split, train, evaluate, push "
        f"(a few minutes at full size; task logs in {out_dir / 'pipeline.log'}) ...",
        flush=True,
    )
    started = time.perf_counter()
    run = pipelines.run_local(out_dir / "pipeline-root", models, job_config=config, log_path=out_dir / "pipeline.log")
    versions = list_versions(models)
    metrics_ = load_metadata(models / str(versions[-1]))["metrics"]
    print(
        f"  run {run.name}: {time.perf_counter() - started:.0f} s; deployed versions {versions}; "
        f"latest ndcg@10 {metrics_.get('ndcg@10', float('nan')):.4f}"
    )
    print("  starting the model server and the API on 127.0.0.1 ...", flush=True)
    with local_stack(models) as stack:
        answer = stack.get("/recommendations/196?k=5")
        print(
            f"  model server {stack.model_url}, API {stack.api_url}: user 196 gets (source {answer['source']}, "
            f"arm {answer['arm']})"
        )
        for item in answer["items"]:
            print(f"    {item['item_id']:>5}  {item['title'][:50]:<50} {item.get('reason', '')[:40]}")
    print("  stack stopped")
    return {"versions": versions, "answer": answer}


@contextlib.contextmanager
def _native_stderr_to(log: Path):
    """Send what native code writes to file descriptor 2 (TensorFlow's absl and oneDNN start-up lines) to
    ``log`` while the block runs; Python's own errors still reach the terminal once it ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log, "a", encoding="utf-8") as out:
            os.dup2(out.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _announce(text: str) -> None:
    print(text, flush=True)


def _lab_notebooks(folder: Path, only: list[str] | None) -> list[Path]:
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    if not notebooks:
        raise SystemExit(f"no notebooks to run in {folder} (only={only})")
    return notebooks


def _summary(results: list, started: float, args: argparse.Namespace) -> int:
    failed = [r for r in results if r.status != "ok"]
    print("\n== Summary ==")
    for r in results:
        print(f"  {r.notebook:<40} {r.status:<7} {r.seconds:7.0f} s")
    print(
        f"  {len(results) - len(failed)}/{len(results)} labs ran in {sum(r.seconds for r in results):.0f} s "
        f"(the whole job: {time.perf_counter() - started:.0f} s)"
    )
    for r in failed:
        print(f"  FAILED {r.notebook}\n    reason: {r.reason}\n    fix:    {r.fix}\n    kernel log: {r.log}")
    print(
        f"  deployed models: {Path(args.artifacts) / 'models' / 'recsys'}\n"
        f"  executed notebooks: {args.output}/ (kernel logs in {Path(args.output) / 'logs'}/)\n"
        f"  TensorFlow's own messages: {Path(args.artifacts) / 'workshop.log'}\n"
        "  next: `make lab` opens JupyterLab on labs/ (exercises) and solutions/ (completed)"
    )
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> int:
    from recsys_workshop import environment, notebook_runner

    started = time.perf_counter()
    print("== Environment ==")
    machine = environment.machine()
    print(f"  Python {machine['python']} on {machine['cpus']} CPUs, {machine['memory_gb']} GB")
    missing = [name for name, version in environment.package_versions().items() if version == "missing"]
    if missing:
        print(f"  missing packages: {missing} (run `make install`)")
        return 1
    print("\n== Data ==")
    for row in fetch_data(args.datasets):
        print(
            f"  {row['dataset']:<16} {row['ratings']:>9,} ratings {row['users']:>6,} users "
            f"{row['items']:>6,} items  verified in {row['seconds']} s"
        )
    print(f"  Kubeflow CRDs    verified in {_crds()}")
    log = Path(args.artifacts) / "workshop.log"
    print(f"\n== Reference models (ml-100k, stratified 75/25, top-10, WORKSHOP_SCALE={args.scale}) ==")
    with _native_stderr_to(log):
        summary = model_summary(args.scale)
    print(summary.round(4).to_string(index=False))
    print(f"\n== Continuous training (KFP local runner) and the serving stack, WORKSHOP_SCALE={args.scale} ==")
    with _native_stderr_to(log):
        pipeline_and_stack(args.scale, Path(args.artifacts))
    print(f"\n== Labs (solutions, WORKSHOP_SCALE={args.scale}) ==")
    notebooks = _lab_notebooks(REPO / "solutions", args.only)
    results = notebook_runner.run_notebooks(
        notebooks, Path(args.output), scale=args.scale, timeout=args.timeout, say=_announce
    )
    return _summary(results, started, args)


def _html(args: argparse.Namespace) -> int:
    """Execute the solutions (CI size by default) and write one HTML page per lab and an index."""
    from recsys_workshop import notebook_runner

    out = Path(args.output)
    print(f"== Solutions, executed at WORKSHOP_SCALE={args.scale} and rendered as HTML in {out}/ ==")
    notebooks = _lab_notebooks(REPO / "solutions", args.only)
    results = notebook_runner.run_notebooks(
        notebooks, out / "notebooks", scale=args.scale, timeout=args.timeout, say=_announce
    )
    for result in results:  # a failed lab is rendered too: executed up to its error, which the page shows
        notebook_runner.render_html(out / "notebooks" / result.notebook, out / f"{Path(result.notebook).stem}.html")
    index = notebook_runner.write_index(results, out, scale=args.scale)
    failed = [r.notebook for r in results if r.status != "ok"]
    print(f"  open {index}")
    if failed:
        print(f"  FAILED: {', '.join(failed)} (see {out / 'notebooks' / 'logs'}/)")
    return 1 if failed else 0


def _crds() -> Path:
    """The Kubeflow CRDs labs 06-13 validate against ($KUBEFLOW_CRDS_DIR, or downloaded and verified)."""
    from recsys_workshop.kube import crds

    return crds.crds_dir(progress=True)


def _data(args: argparse.Namespace) -> int:
    for row in fetch_data(args.names):
        print(f"{row['dataset']}: {row['ratings']:,} ratings, verified")
    print(f"Kubeflow CRDs: verified in {_crds()}")
    return 0


def _prog() -> str:
    """``recsys-workshop`` when started through the installed command, else ``python -m recsys_workshop``."""
    return "recsys-workshop" if Path(sys.argv[0]).name == "recsys-workshop" else "python -m recsys_workshop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_prog(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the main job: data, every lab, a summary")
    run.add_argument("--scale", choices=("full", "ci"), default=os.environ.get("WORKSHOP_SCALE", "full"))
    run.add_argument("--only", nargs="*", help="lab number prefixes to run, e.g. 00 02")
    run.add_argument("--datasets", nargs="*", default=list(DEFAULT_DATASETS))
    run.add_argument("--output", default=str(paths.ARTIFACTS_DIR / "notebooks"))
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    run.add_argument(
        "--artifacts", default=str(paths.ARTIFACTS_DIR), help="pipeline runs and the deployed models/recsys go here"
    )
    run.set_defaults(func=_run)
    render = sub.add_parser("html", help="the solutions executed and rendered as HTML, to read ahead (make html)")
    render.add_argument("--scale", choices=("full", "ci"), default="ci")
    render.add_argument("--only", nargs="*", help="lab number prefixes to render, e.g. 00 02")
    render.add_argument("--output", default=str(paths.ARTIFACTS_DIR / "html"))
    render.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    render.set_defaults(func=_html)
    fetch = sub.add_parser("data", help="download (or find) and verify the data sets and the Kubeflow CRDs")
    fetch.add_argument("names", nargs="*", default=list(DEFAULT_DATASETS))
    fetch.set_defaults(func=_data)
    args = parser.parse_args(argv)
    from recsys_workshop.data import MovieLensError
    from recsys_workshop.kube.crds import CRDError

    try:
        return args.func(args)
    except (MovieLensError, CRDError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
