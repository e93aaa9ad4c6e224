"""The deck's load-test chart: a step-load run of the local stack, one point per step, users on the x axis.

Drawn from what ``python -m bench.serving_steps`` writes (a real run of the API and the model server on the
machine that ran it, loaded by the workshop's Locust users and step shape): ``bench/results/
serving-steps_steps.csv``, one row per step (``loadtest.read_steps``'s columns plus ``fallbacks``), and
``serving-steps.json`` for the date of the run. The knee is :func:`recsys_workshop.loadtest.find_knee`
against the SLO of the deck's load-testing slide. Nothing is drawn without a run: :class:`Pending` says how
to make one.
"""

from __future__ import annotations

import json
from pathlib import Path

from deck_figures import BENCH_RESULTS, Context, Figure, Pending, Result, _pyplot, _save
from deck_tables import short_commit

RUN = "serving-steps"
SLO_P95_MS = 100.0  # the deck's example SLO: p95 under 100 ms, errors under 0.1%
SLO_MAX_ERROR_RATE = 0.001
PERCENTILES = (("p50_ms", "o-", "#2ca02c"), ("p95_ms", "s-", "#ff7f0e"), ("p99_ms", "d-", "#d62728"))


def read_run(results: Path | None = None):
    """(steps with per-second rates and each step's SLO verdict, the knee, the run's parameters and date from
    ``serving-steps.json``), or None without a run."""
    results = BENCH_RESULTS if results is None else results
    path = results / f"{RUN}_steps.csv"
    if not path.is_file():
        return None
    import pandas as pd

    from recsys_workshop import loadtest

    slo = loadtest.SLO(SLO_P95_MS, SLO_MAX_ERROR_RATE)
    steps = loadtest.step_verdicts(pd.read_csv(path), slo)
    steps["failures_per_s"] = steps["failures"] / steps["seconds"]
    steps["fallbacks_per_s"] = steps.get("fallbacks", 0) / steps["seconds"]
    record = results / f"{RUN}.json"
    records = json.loads(record.read_text()) if record.is_file() else []
    meta = {r["metric"]: r["value"] for r in records} | {
        "date": records[0]["date"][:10] if records else "?",
        "commit": short_commit(records[0].get("commit", "?")) if records else "?",
    }
    return steps, loadtest.find_knee(steps, slo), meta


def _think_time(meta: dict) -> str:
    low, high = meta.get("think_min_s"), meta.get("think_max_s")
    if low is None or high is None:
        return "think time not recorded"
    return "no think time" if high == 0 else f"think time {low:g}-{high:g} s"


def _outside_legend(ax) -> None:
    """A legend beside the plot, never over a line (issue #15: the old legend covered the curves)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, handlelength=1.6)


def load_test(ctx: Context) -> Result:
    """Throughput, failures and fallbacks (top) and latency percentiles (bottom, log scale) against users."""
    run = read_run()
    if run is None:
        return Pending(
            "This chart is drawn from a step-load run of the local stack: throughput, failures and latency "
            f"percentiles as users are added. It appears here when bench/results/{RUN}_steps.csv exists "
            "(python -m bench.serving_steps, about 5 minutes), the next time the deck is built."
        )
    steps, knee, meta = run
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.5, 5.4), sharex=True, height_ratios=(1, 1.1))
    users = steps["users"]
    per_user = steps["rps"].iloc[0] / users.iloc[0]
    top.plot(users, users * per_user, ":", color="#777777", lw=2, label="sent if answered at once")
    top.plot(users, steps["rps"], "o-", color="#1f77b4", lw=2.5, label="requests/s")
    top.plot(users, steps["fallbacks_per_s"], "^-", color="#ff7f0e", lw=2, label="of which from the fallback")
    top.plot(users, steps["failures_per_s"], "x-", color="#d62728", lw=2, ms=9, mew=2, label="of which failed")
    top.set(ylabel="requests/s", ylim=(0, max(steps["rps"].max(), 1) * 1.25))
    for column, style, colour in PERCENTILES:
        bottom.plot(users, steps[column].clip(lower=1), style, color=colour, lw=2, label=f"p{column[1:3]}")
    bottom.axhline(SLO_P95_MS, color="#555555", ls="--", lw=1.5, label=f"SLO: p95 < {SLO_P95_MS:g} ms")
    bottom.set(yscale="log", ylabel="latency (ms)", xlabel=f"simulated users ({_think_time(meta)})")
    if knee.users is not None:
        for ax in (top, bottom):
            ax.axvline(knee.users, color="#2ca02c", lw=2, alpha=0.5)
        bottom.annotate(f"knee: {knee.users} users, {knee.rps:.0f} req/s, p95 {knee.p95_ms:g} ms", (knee.users, 0.04),
                        xycoords=("data", "axes fraction"), xytext=(8, 0), textcoords="offset points",
                        ha="left", va="bottom", fontsize=13)  # fmt: skip
    _outside_legend(top)
    _outside_legend(bottom)
    top.set_title(f"Step load on the local stack: {users.iloc[0]} more users per step", loc="left")
    fig.tight_layout()
    return Figure(
        _save(fig, ctx, "load_test"),
        f"bench/serving_steps.py, a step-load run of the API and model server on one 2-core machine ({meta['date']}, "
        f"commit {meta['commit']}); "
        f"bench/results/{RUN}_steps.csv",
    )
