"""What a Locust run measured: its CSV files, the SLO verdict and the charts.

Files of a run with prefix ``P`` (Locust's own CSV files, plus two of ours):
``P_stats.csv`` (totals per request name and "Aggregated"), ``P_stats_history.csv`` (one row per
second and name: users, requests/s, failures/s, latency percentiles over Locust's sliding 10 s window),
``P_failures.csv``, ``P_exceptions.csv``, ``P_response_times.csv`` (the whole latency distribution, from
the locustfile), ``P_steps.csv`` (step runs: one row per step, from ``stepload.py``), ``P.log``
(Locust's output) and the charts ``P_charts.png`` / ``P_knee.png``.

Everything here reads files: pandas and matplotlib are imported by the functions that need them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from recsys_workshop.loadtest.runner import Run

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class SLO:
    """Met when p95 latency < ``p95_ms`` and failures / requests < ``max_error_rate``, over at least
    ``min_requests`` requests (a run that sent nothing proves nothing)."""

    p95_ms: float = 100.0
    max_error_rate: float = 0.001
    min_requests: int = 1

    def __post_init__(self):
        if not self.p95_ms > 0:
            raise ValueError(f"SLO p95_ms must be > 0, got {self.p95_ms}")
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"SLO max_error_rate must be in [0, 1], got {self.max_error_rate}")
        if self.min_requests < 1:
            raise ValueError("SLO min_requests must be >= 1")

    def __str__(self) -> str:
        return f"p95 < {self.p95_ms:g} ms and error rate < {self.max_error_rate:.2%}"

    def problems(self, requests: int, failures: int, p95_ms: float) -> list[str]:
        """Why these figures miss the objective ([] when they meet it)."""
        reasons = []
        if requests < self.min_requests:
            reasons.append(f"only {requests} requests (need at least {self.min_requests})")
            return reasons
        if not p95_ms < self.p95_ms:
            reasons.append(f"p95 {p95_ms:g} ms >= {self.p95_ms:g} ms")
        rate = failures / requests
        if not rate < self.max_error_rate:
            reasons.append(f"error rate {rate:.3%} ({failures}/{requests}) >= {self.max_error_rate:.3%}")
        return reasons


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    slo: SLO
    requests: int
    failures: int
    error_rate: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = "SLO met" if self.passed else "SLO MISSED"
        figures = (
            f"{self.requests} requests, {self.rps:.1f} req/s, p50 {self.p50_ms:g} ms, p95 {self.p95_ms:g} ms, "
            f"p99 {self.p99_ms:g} ms, {self.failures} failures ({self.error_rate:.3%})"
        )
        why = "" if self.passed else ": " + "; ".join(self.reasons)
        return f"{head} ({self.slo}){why}\n  {figures}"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["slo"] = dataclasses.asdict(self.slo)
        out["reasons"] = list(self.reasons)
        return out


def _prefix(prefix_or_run) -> Path:
    return Path(prefix_or_run.prefix if isinstance(prefix_or_run, Run) else prefix_or_run)


def read_stats(prefix) -> pd.DataFrame:
    """``P_stats.csv``: one row per request name, plus the "Aggregated" row."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_stats.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no Locust statistics at {path}: did the run write --csv {_prefix(prefix)}?")
    return pd.read_csv(path, na_values=["N/A"])


def read_history(prefix) -> pd.DataFrame:
    """``P_stats_history.csv`` with a ``seconds`` column (since the first row); "N/A" becomes NaN."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_stats_history.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no Locust history at {path}")
    history = pd.read_csv(path, na_values=["N/A"])
    history["seconds"] = history["Timestamp"] - (history["Timestamp"].min() if len(history) else 0)
    return history


def read_response_times(prefix, name: str = "Aggregated") -> pd.DataFrame:
    """``P_response_times.csv`` for one request name: response time (ms) and count, sorted."""
    import pandas as pd

    path = Path(f"{_prefix(prefix)}_response_times.csv")
    if not path.is_file():
        raise FileNotFoundError(f"no response-time distribution at {path} (written by the workshop locustfile)")
    table = pd.read_csv(path)
    return table[table["Name"] == name].sort_values("Response Time").reset_index(drop=True)


def verdict(prefix_or_stats, slo: SLO = SLO()) -> Verdict:
    """The SLO verdict of a run, from its "Aggregated" statistics (a run prefix or a stats DataFrame)."""
    stats = prefix_or_stats if hasattr(prefix_or_stats, "columns") else read_stats(prefix_or_stats)
    total = stats[stats["Name"] == "Aggregated"]
    if total.empty:
        raise ValueError("the statistics have no 'Aggregated' row: not a Locust --csv _stats.csv file")
    row = total.iloc[0]
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])

    def ms(column: str) -> float:
        value = row.get(column)
        return float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else math.nan

    p95 = ms("95%")
    reasons = slo.problems(requests, failures, p95)
    return Verdict(
        passed=not reasons,
        slo=slo,
        requests=requests,
        failures=failures,
        error_rate=failures / requests if requests else math.nan,
        rps=float(row["Requests/s"]),
        p50_ms=ms("50%"),
        p95_ms=p95,
        p99_ms=ms("99%"),
        reasons=tuple(reasons),
    )


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(prefix, out: str | os.PathLike | None = None, *, slo: SLO | None = None, show: bool = False) -> Path:
    """Four panels from a run's CSV files: throughput and users, p50/p95/p99, failures over time, and the
    latency histogram (when ``P_response_times.csv`` exists). Returns the PNG path (``P_charts.png``)."""
    import numpy as np

    prefix = _prefix(prefix)
    history = read_history(prefix)
    total = history[history["Name"] == "Aggregated"]
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 7.5))
    (ax_rps, ax_lat), (ax_fail, ax_hist) = axes

    ax_rps.plot(total["seconds"], total["Requests/s"], color="#1f77b4", label="requests/s")
    ax_rps.set(title="Throughput", xlabel="seconds", ylabel="requests/s")
    users = ax_rps.twinx()
    users.plot(total["seconds"], total["User Count"], color="#777777", ls=":", label="users")
    users.set_ylabel("users")
    lines = ax_rps.get_lines() + users.get_lines()
    ax_rps.legend(lines, [line.get_label() for line in lines], loc="lower right")

    for column, colour in (("50%", "#2ca02c"), ("95%", "#ff7f0e"), ("99%", "#d62728")):
        ax_lat.plot(total["seconds"], total[column], color=colour, label=f"p{column[:-1]}")
    if slo is not None:
        ax_lat.axhline(slo.p95_ms, color="#ff7f0e", ls="--", lw=1, label=f"SLO p95 < {slo.p95_ms:g} ms")
    ax_lat.set(title="Latency (sliding 10 s window)", xlabel="seconds", ylabel="ms")
    ax_lat.legend(loc="upper left")

    ax_fail.plot(total["seconds"], total["Failures/s"], color="#d62728", label="failures/s")
    requests = total["Total Request Count"].replace(0, np.nan)
    ax_fail.set(title="Failures", xlabel="seconds", ylabel="failures/s")
    share = ax_fail.twinx()
    share.plot(total["seconds"], 100 * total["Total Failure Count"] / requests, color="#9467bd", ls="--",
               label="failed so far (%)")
    share.set_ylabel("% of requests")
    share.set_ylim(bottom=0)
    ax_fail.set_ylim(bottom=0)
    lines = ax_fail.get_lines() + share.get_lines()
    ax_fail.legend(lines, [line.get_label() for line in lines], loc="upper left")

    _plot_histogram(ax_hist, prefix)
    fig.suptitle(prefix.name)
    fig.tight_layout()
    path = Path(out) if out is not None else Path(f"{prefix}_charts.png")
    fig.savefig(path, dpi=90)
    if show:
        plt.show()
    plt.close(fig)
    return path


def _plot_histogram(ax_hist, prefix: Path) -> None:
    """The latency histogram of the whole run with its p50/p95/p99 (from ``P_response_times.csv``)."""
    import numpy as np

    try:
        dist = read_response_times(prefix)
    except FileNotFoundError:
        dist = None
    if dist is not None and len(dist):
        times, counts = dist["Response Time"].to_numpy(float), dist["Count"].to_numpy(float)
        top = np.percentile(np.repeat(times, counts.astype(int)), 99.5) if counts.sum() < 5e6 else times.max()
        bins = np.linspace(0, max(top, 1.0), 50)
        ax_hist.hist(times, bins=bins, weights=counts, color="#1f77b4", alpha=0.8)
        cumulative = np.cumsum(counts) / counts.sum()
        for q, colour in ((0.5, "#2ca02c"), (0.95, "#ff7f0e"), (0.99, "#d62728")):
            value = times[np.searchsorted(cumulative, q)]
            ax_hist.axvline(value, color=colour, ls="--", lw=1, label=f"p{round(q * 100)} {value:g} ms")
        ax_hist.legend(loc="upper right")
        ax_hist.set(title="Latency histogram (whole run, up to p99.5)", xlabel="ms", ylabel="requests")
    else:
        ax_hist.text(0.5, 0.5, "no response-time distribution\n(P_response_times.csv)", ha="center", va="center")
        ax_hist.set_axis_off()
