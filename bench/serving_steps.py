"""Step-load run of the local stack: the chart of the deck's "Load test results" slide.

Protocol ``serving-steps``: the model of ``bench/serving.py`` (MF, 32 factors, ml-100k, exported as version 1)
behind the local stack as lab 12 runs it (``recsys_workshop.api.local_stack``: the API, then the KServe model
server, each its own process; a fresh SQLite database; the per-client write limits off, since Locust is one
client). The load is the workshop's own: the simulated visitors of ``recsys_workshop/loadtest/locustfile.py``
(home page, recommendations, clicks, sign-ups; users drawn by activity) with their default think time of
0.5-2 s between two tasks (``--wait``, ``RECSYS_LOCUST_WAIT``), driven by the step shape of
``recsys_workshop/loadtest/stepload.py`` (``loadtest.run_steps``): ``--step-users`` more users every
``--step-seconds`` up to ``--max-users``. With think time Z, N users send about N / (R + Z) requests a second
(R: the response time): throughput grows with the users while the stack keeps up, then stays flat while R
grows. Locust runs on the same machine as the stack and competes with it for the CPU, as in lab 12.

Per step (``loadtest.read_steps``): requests, failures, requests/s, p50/p95/p99 of the requests answered
during the step; and ``fallbacks``, the recommendation answers the API took from its popularity fallback
because of model-server trouble during the step (its ``"fallback"`` log lines, placed in the steps by
Locust's history, to a second): a model-server call slower than the API's timeout (0.5 s) is answered from
the fallback, a degraded answer that Locust counts as a success. ``find_knee`` judges the steps against the
deck's example SLO (p95 < 100 ms, errors < 0.1%).

    python -m bench.serving_steps                  # ~5 minutes: 50 more users every 20 s, up to 600
    python -m bench.serving_steps --step-users 2 --max-users 4 --step-seconds 5 --no-write   # a quick look

Writes ``bench/results/serving-steps_steps.csv`` (one row per step, with a ``fallbacks`` column),
``serving-steps_failures.csv`` (Locust's failures by request and error) and ``serving-steps.json`` (the run's
parameters, the load average before it, the knee, the peak throughput, failures and fallbacks; commit and
date). The deck's chart (``slides/deck_loadtest.py``) is drawn from the first and the last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import RESULTS, Results  # noqa: E402
from bench.serving import train_and_export  # noqa: E402
from recsys_workshop import loadtest  # noqa: E402

PROTOCOL = "serving-steps"
NAME = "serving-steps"
SLO = loadtest.SLO(p95_ms=100.0, max_error_rate=0.001)  # the example SLO of the deck's load-testing slide
EXPECTED_FALLBACKS = {"new_user", "unknown_to_model"}  # the fallback's normal job, not model-server trouble


def degraded_fallbacks(api_log: Path) -> list[tuple[float, str]]:
    """(unix time, reason) of every answer the API took from the fallback because of model-server trouble
    (timeout, error, circuit open): its ``"fallback"`` warnings, one JSON line each in its log."""
    import datetime as dt
    import json

    found = []
    for line in api_log.read_text(errors="replace").splitlines():
        if '"fallback"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "fallback" and entry.get("reason") not in EXPECTED_FALLBACKS:
            when = dt.datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
            found.append((when.timestamp(), str(entry.get("reason"))))
    return found


def step_windows(history, steps, settle: float) -> list[tuple[float, float]]:
    """For each step's user count, the unix times it was measured: from its first row in Locust's history
    (``User Count`` reached) plus ``settle`` seconds, to its last row (Locust writes one a second)."""
    rows = history[history["Name"] == "Aggregated"]
    windows = []
    for users in steps["users"]:
        times = rows.loc[rows["User Count"] == users, "Timestamp"]
        windows.append((float(times.min()) + settle, float(times.max())) if len(times) else (float("nan"),) * 2)
    return windows


def summary(steps, knee: loadtest.Knee, args) -> dict[str, float]:
    """The run's figures for ``serving-steps.json``, with its parameters (the step, the think time)."""
    peak = steps.loc[steps["rps"].idxmax()]
    think = [float(x) for x in args.wait.split(",")] * 2
    values = {
        "load_average_before": round(args.load_before, 2),  # other work on the machine, 1-minute average
        "step_users": float(args.step_users),
        "step_seconds": float(args.step_seconds),
        "think_min_s": think[0],
        "think_max_s": think[1],
        "knee_users": knee.users if knee.users is not None else 0,
        "knee_rps": knee.rps,
        "knee_p95_ms": knee.p95_ms,
        "peak_rps": float(peak["rps"]),
        "peak_rps_users": float(peak["users"]),
        "max_users": float(steps["users"].max()),
        "p95_ms_at_max_users": float(steps["p95_ms"].iloc[-1]),
        "failures": float(steps["failures"].sum()),
        "requests": float(steps["requests"].sum()),
    }
    if "fallbacks" in steps:
        values["fallbacks"] = float(steps["fallbacks"].sum())
    return values


def run(args, work: Path):
    """Train, start the stack, run the steps; returns the Run, the steps (with fallbacks) and the history."""
    import pandas as pd

    from recsys_workshop.api import local_stack

    model_dir = work / "models"
    print(f"training the served model; then {args.max_users // args.step_users} steps of {args.step_seconds:g} s",
          flush=True)  # fmt: skip
    train_and_export(model_dir)
    env = {"RECSYS_DATABASE_URL": f"sqlite:///{work / 'api.db'}", "RECSYS_FEEDBACK_RATE": "off",
           "RECSYS_USERS_RATE": "off"}  # fmt: skip
    settle = min(5.0, args.step_seconds / 4)  # stepload's default: the new users arrive meanwhile
    with local_stack(model_dir, timeout=180, env=env) as stack:
        result = loadtest.run_steps(stack.api_url, prefix=work / NAME, step_users=args.step_users,
                                    max_users=args.max_users, step_seconds=args.step_seconds,
                                    settle_seconds=settle, env={"RECSYS_LOCUST_WAIT": args.wait})  # fmt: skip
        fallbacks = degraded_fallbacks(Path(stack.api.log_path))
        logs = [Path(stack.api.log_path), Path(stack.model_server.log_path)]
    for log in logs:  # the API logs every request: tens of MB after a run
        log.unlink(missing_ok=True)
    steps = loadtest.read_steps(result)
    history = pd.read_csv(result.file("stats_history"))
    times = [t for t, _ in fallbacks]
    steps["fallbacks"] = [sum(start <= t <= end for t in times) for start, end in step_windows(history, steps, settle)]
    return result, steps, history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step-users", type=int, default=50)
    parser.add_argument("--max-users", type=int, default=600)
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--wait", default="0.5,2", help="think time 'min,max' s of each user; '0': a closed loop")
    parser.add_argument("--no-write", action="store_true", help="print only, keep bench/results as it is")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-steps-"))
    results = Results(NAME)  # the commit now: the files written below would make the tree look dirty
    started = time.perf_counter()
    args.load_before = os.getloadavg()[0]
    print(f"load average before the run: {args.load_before:.2f} on {os.cpu_count()} CPUs", flush=True)
    try:
        import pandas as pd

        result, steps, _ = run(args, work)
        judged = loadtest.step_verdicts(steps, SLO)
        knee = loadtest.find_knee(steps, SLO)
        print(judged.drop(columns=["reason"]).to_string(index=False))
        print(knee)
        failures = pd.read_csv(result.file("failures"))
        if len(failures):
            print(failures.to_string(index=False, max_colwidth=80))
        print(f"{time.perf_counter() - started:.0f} s in all")
        values = summary(steps, knee, args)
        if not args.no_write:
            RESULTS.mkdir(parents=True, exist_ok=True)
            steps.to_csv(RESULTS / f"{NAME}_steps.csv", index=False)
            shutil.copyfile(result.file("failures"), RESULTS / f"{NAME}_failures.csv")
            results.add(PROTOCOL, "ml-100k", "api", values, seed=0, n=int(values["requests"]))
            print(f"wrote {results.write()} and {RESULTS / f'{NAME}_steps.csv'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
