"""How long each lab's solution takes to run top to bottom: the run times the labs' "Before you start" boxes
quote.

Protocol ``run-all``: each ``solutions/NN_*.ipynb`` executed in a fresh kernel by the main job's runner
(``recsys_workshop.notebook_runner``, as ``python -m recsys_workshop html`` runs them), one after another, at
``WORKSHOP_SCALE=ci`` and ``full``; dataset ``ci`` or ``full`` (the scale), model ``lab-NN``, metric
``run_seconds`` (the wall time of Run All, kernel start included; ``train_seconds`` is left empty). The time
a learner needs is longer (reading, writing the exercises): that is each lab's **Time** line.

The labs run in order, as a learner runs them, with an empty folder of saved models per scale
(``$RECSYS_SAVED_MODELS``, :mod:`recsys_workshop.train.saved`): lab 03 trains its models, labs 04 and 05
load the ones they share with it. Measure 03, 04 and 05 together (``--only 03 04 05``), or the later ones
train them too.

    python -m bench.lab_times                       # both scales, about an hour on 2 cores
    python -m bench.lab_times --scales ci --only 00 01 --no-write    # a quick look

Writes ``bench/results/lab-times.json``, merged with the records already there (a lab measured again
replaces its old record, a lab that fails loses it; the others stay). ``tests/test_lab_boxes.py`` checks
every box against it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.common import RESULTS, Results, merge_records, read_records, record_key
from recsys_workshop import notebook_runner, paths
from recsys_workshop.train import saved

NAME = "lab-times"
PROTOCOL = "run-all"
SCALES = ("ci", "full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", choices=SCALES, default=list(SCALES))
    parser.add_argument("--only", nargs="*", help="lab number prefixes, e.g. 00 03")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    return parser.parse_args(argv)


def solutions(only: list[str] | None = None) -> list[Path]:
    notebooks = sorted((paths.REPO_ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return [nb for nb in notebooks if not only or any(nb.name.startswith(prefix) for prefix in only)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notebooks = solutions(args.only)
    if not notebooks:
        print(f"no solution notebooks match {args.only}", file=sys.stderr)
        return 2
    results = Results(NAME)
    failed: list[str] = []
    stale: set[tuple[str, str, str, str]] = set()  # a lab that fails now keeps no old time
    for scale in args.scales:
        print(f"lab-times: {len(notebooks)} solution(s) at WORKSHOP_SCALE={scale}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"lab-times-{scale}-") as out:
            os.environ[saved.ENV_DIR] = str(Path(out) / "saved-models")  # the kernels inherit it
            runs = notebook_runner.run_notebooks(notebooks, Path(out), scale=scale, timeout=args.timeout,
                                                 say=lambda line: print(line, flush=True))  # fmt: skip
        for run in runs:
            if run.status != "ok":
                failed.append(f"{run.notebook} at {scale}: {run.reason}")
                stale.add((PROTOCOL, scale, f"lab-{run.notebook[:2]}", "run_seconds"))
                continue
            results.add(PROTOCOL, scale, f"lab-{run.notebook[:2]}", {"run_seconds": run.seconds}, seed=0, n=1)
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    records = results.records()
    for record in records:
        print(f"  {record['model']:<8} {record['dataset']:<5} {record['value']:8.0f} s")
    if not args.no_write and records:
        path = RESULTS / f"{NAME}.json"
        old = [r for r in read_records(path) if record_key(r) not in stale]
        merged = sorted(merge_records(old, records), key=lambda r: (r["dataset"], r["model"]))
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=1) + "\n")
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
