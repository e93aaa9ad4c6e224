"""The knee of a step-load run: the highest user count whose step still meets the SLO, and its chart.

A step-load run (:func:`recsys_workshop.loadtest.run_steps`, with the Locust shape of
:mod:`recsys_workshop.loadtest.stepload`) writes one row per step to ``P_steps.csv``: users, requests,
failures, requests/s and latency percentiles of the requests answered during that step. This module
judges each step against an :class:`~recsys_workshop.loadtest.report.SLO` and finds where adding users
stops adding throughput.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from recsys_workshop.loadtest.report import SLO, _prefix, _pyplot

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class Knee:
    users: int | None  # None: even the first step missed the SLO
    rps: float  # throughput at the knee (nan without one)
    p95_ms: float
    first_miss_users: int | None  # the first step that missed (None: every step met it)
    reason: str  # why the first missing step missed

    def __str__(self) -> str:
        if self.users is None:
            return f"no knee: the first step ({self.first_miss_users} users) already misses the SLO ({self.reason})"
        tail = (
            f"; at {self.first_miss_users} users: {self.reason}"
            if self.first_miss_users is not None
            else "; every step met the SLO (add steps to find where it breaks)"
        )
        return f"knee at {self.users} users: {self.rps:.1f} req/s, p95 {self.p95_ms:g} ms{tail}"


def read_steps(prefix) -> pd.DataFrame:
    """``P_steps.csv`` written by the step-load shape: one row per step."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_steps.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no step statistics at {path}: was the run a step-load run (run_steps)?")
    return pd.read_csv(path)


def step_verdicts(steps: pd.DataFrame, slo: SLO) -> pd.DataFrame:
    """``steps`` with ``error_rate``, ``meets_slo`` and ``reason`` columns, sorted by users."""
    missing = {"users", "requests", "failures", "rps", "p95_ms"} - set(steps.columns)
    if missing:
        raise ValueError(f"step statistics lack columns {sorted(missing)}")
    out = steps.sort_values("users").reset_index(drop=True).copy()
    reasons = [
        "; ".join(slo.problems(int(r.requests), int(r.failures), float(r.p95_ms))) for r in out.itertuples()
    ]
    out["error_rate"] = out["failures"] / out["requests"].where(out["requests"] > 0)
    out["meets_slo"] = [not r for r in reasons]
    out["reason"] = reasons
    return out


def find_knee(steps: pd.DataFrame, slo: SLO) -> Knee:
    """The highest user count such that its step and every lighter step meet ``slo``.

    Past the knee, adding users adds latency, not throughput. Steps are judged on the requests answered
    during each step (see ``stepload.py``), in order of users; the first miss ends the search, since a
    lucky heavier step after a miss is noise, not capacity.
    """
    judged = step_verdicts(steps, slo)
    if judged.empty:
        raise ValueError("no steps to judge: the step-load run recorded nothing")
    misses = judged.index[~judged["meets_slo"]]
    first_miss = int(misses[0]) if len(misses) else None
    good = judged.iloc[: first_miss if first_miss is not None else len(judged)]
    miss = judged.iloc[first_miss] if first_miss is not None else None
    if good.empty:
        return Knee(None, math.nan, math.nan, int(miss.users), miss.reason)
    best = good.iloc[-1]
    return Knee(
        users=int(best.users),
        rps=float(best.rps),
        p95_ms=float(best.p95_ms),
        first_miss_users=int(miss.users) if miss is not None else None,
        reason=miss.reason if miss is not None else "",
    )


def plot_knee(prefix_or_steps, slo: SLO, out: str | os.PathLike | None = None, *, show: bool = False) -> Path:
    """Throughput and p95 against users, one point per step, the SLO line and the knee marked."""
    if hasattr(prefix_or_steps, "columns"):
        steps, default_out = prefix_or_steps, None
    else:
        steps, default_out = read_steps(prefix_or_steps), Path(f"{_prefix(prefix_or_steps)}_knee.png")
    if out is None and default_out is None:
        raise ValueError("give out= when plotting a steps DataFrame")
    judged = step_verdicts(steps, slo)
    knee = find_knee(steps, slo)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(judged["users"], judged["rps"], "o-", color="#1f77b4", label="requests/s")
    ax.set(xlabel="users", ylabel="requests/s", title=f"Step load: {knee}")
    ax.title.set_fontsize(9)
    lat = ax.twinx()
    lat.plot(judged["users"], judged["p95_ms"], "s-", color="#ff7f0e", label="p95 (ms)")
    lat.axhline(slo.p95_ms, color="#ff7f0e", ls="--", lw=1, label=f"SLO p95 < {slo.p95_ms:g} ms")
    missed = judged[~judged["meets_slo"]]
    lat.plot(missed["users"], missed["p95_ms"], "x", color="#d62728", ms=10, mew=2, label="misses the SLO")
    lat.set_ylabel("p95 (ms)")
    lat.set_ylim(bottom=0)
    if knee.users is not None:
        ax.axvline(knee.users, color="#2ca02c", lw=2, alpha=0.6, label=f"knee: {knee.users} users")
    lines = ax.get_lines() + lat.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(out) if out is not None else default_out
    fig.savefig(path, dpi=90)
    if show:
        plt.show()
    plt.close(fig)
    return path
