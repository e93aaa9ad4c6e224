"""Load tests with Locust: bounded headless runs on this machine, charts, an SLO verdict and the knee.

The command line of :mod:`recsys_workshop.loadtest` (exit status 0 when the SLO is met, 1 when it is
missed, 2 on bad input; for a step run, 0 when there is a knee, i.e. at least the first step met the SLO)::

    python -m recsys_workshop.loadtest run --host http://127.0.0.1:8000 --users 20 --run-time 30 \\
        --out artifacts/loadtest/first --p95-ms 100 --max-error-rate 0.001 [--workers 2]
    python -m recsys_workshop.loadtest steps --host http://127.0.0.1:8000 --step-users 10 --max-users 100 \\
        --step-seconds 20 --out artifacts/loadtest/steps --p95-ms 100
    python -m recsys_workshop.loadtest report artifacts/loadtest/first --p95-ms 100

Besides the charts, each command writes ``P_verdict.json`` (the verdict, and the knee of a step run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from recsys_workshop.loadtest.knee import find_knee, plot_knee, read_steps
from recsys_workshop.loadtest.report import SLO, plot_run, verdict
from recsys_workshop.loadtest.runner import LoadTestError, run, run_steps


def _seconds(text: str) -> float:
    text = text.strip().lower()
    factor = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], None)
    try:
        return float(text[:-1]) * factor if factor else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 30 or 30s or 2m, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys_workshop.loadtest", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def slo_args(p):
        p.add_argument("--p95-ms", type=float, default=100.0, help="SLO: p95 latency below this (ms)")
        p.add_argument("--max-error-rate", type=float, default=0.001, help="SLO: failures / requests below this")

    def run_args(p):
        p.add_argument("--host", required=True, help="a loopback URL, e.g. http://127.0.0.1:8000")
        p.add_argument("--out", required=True, help="prefix of the CSV files and charts, e.g. artifacts/loadtest/run1")
        p.add_argument("--locustfile", default=None, help="default: recsys_workshop/loadtest/locustfile.py")
        p.add_argument("--workers", type=int, default=0, help="distributed: one master and this many workers")
        p.add_argument("--wait", default=None, help="think time 'min,max' s (RECSYS_LOCUST_WAIT), '0' for none")
        p.add_argument("--weights", default=None, help="task weights, e.g. home=1,recommend=10,new_user=1")
        slo_args(p)

    p_run = commands.add_parser("run", help="a headless run with a fixed number of users")
    run_args(p_run)
    p_run.add_argument("--users", type=int, default=10)
    p_run.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    p_run.add_argument("--run-time", type=_seconds, default=30.0, help="seconds (or 30s, 2m)")

    p_steps = commands.add_parser("steps", help="a step-load run and its knee")
    run_args(p_steps)
    p_steps.add_argument("--step-users", type=int, default=10)
    p_steps.add_argument("--max-users", type=int, default=100)
    p_steps.add_argument("--step-seconds", type=_seconds, default=30.0)

    p_report = commands.add_parser("report", help="charts and verdict of existing CSV files")
    p_report.add_argument("prefix")
    slo_args(p_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        slo = SLO(p95_ms=args.p95_ms, max_error_rate=args.max_error_rate)
        if args.command == "report":
            prefix = Path(args.prefix)
        else:
            env = {k: v for k, v in (("RECSYS_LOCUST_WAIT", args.wait), ("RECSYS_LOCUST_WEIGHTS", args.weights)) if v}
            common = dict(prefix=args.out, locustfile=args.locustfile, workers=args.workers, env=env)
            if args.command == "run":
                result = run(args.host, users=args.users, spawn_rate=args.spawn_rate, run_time=args.run_time, **common)
            else:
                result = run_steps(args.host, step_users=args.step_users, max_users=args.max_users,
                                   step_seconds=args.step_seconds, **common)  # fmt: skip
            prefix = result.prefix
        outcome = verdict(prefix, slo)
        charts = plot_run(prefix, slo=slo)
        print(outcome)
        print(f"charts: {charts}")
        summary = {"verdict": outcome.to_dict(), "charts": str(charts)}
        passed = outcome.passed
        if Path(f"{prefix}_steps.csv").is_file():  # a step run goes past the SLO on purpose: judge the knee
            knee = find_knee(read_steps(prefix), slo)
            print(knee)
            print(f"knee chart: {plot_knee(prefix, slo)}")
            summary["knee"] = dataclasses.asdict(knee)
            passed = knee.users is not None
        Path(f"{prefix}_verdict.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    except (ValueError, FileNotFoundError, LoadTestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0 if passed else 1
