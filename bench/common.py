"""Shared plumbing of the benchmark scripts: measuring a training run, writing the results records,
printing the table.

Every benchmark writes ``bench/results/<benchmark>.json``: a list of flat records
``{benchmark, protocol, dataset, model, metric, value, std, seeds, n, train_seconds, peak_mb, commit, date}``
(one per model, protocol and metric; ``value`` is the mean over seeds, ``std`` their standard deviation).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from recsys_workshop.paths import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([km]?)$")


def parse_size(text: str) -> int:
    """A size label as a number: ``"1.7k"`` -> 1,700, ``"1m"`` -> 1,000,000, ``"500"`` -> 500."""
    match = _SIZE.match(text.strip().lower())
    value = float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)] if match else 0
    if value < 1 or value != int(value):
        raise ValueError(f"size {text!r}: expected a positive whole number with an optional k or m, e.g. 1.7k or 1m")
    return int(value)


def size_label(n: int) -> str:
    """The inverse of :func:`parse_size`: 1,700 -> ``"1.7k"``, 1,000,000 -> ``"1m"``, 500 -> ``"500"``."""
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if n >= unit and n % (unit // 10) == 0:
            return f"{n / unit:g}{suffix}"
    return str(n)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Measurement:
    """Wall time and peak resident memory (MB, whole process, sampled every 20 ms) of a block."""

    seconds: float = 0.0
    peak_mb: float = 0.0


@contextlib.contextmanager
def measure() -> Iterator[Measurement]:
    import psutil

    process = psutil.Process()
    result = Measurement()
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        stop.set()
        thread.join()
        result.peak_mb = max(peak[0], process.memory_info().rss) / 2**20


def record_key(record: dict) -> tuple:
    """What a record measures: a newer record with the same key replaces it."""
    return record.get("protocol"), record.get("dataset"), record.get("model"), record.get("metric")


def read_records(path: Path) -> list[dict]:
    """The records of a results file, or none if there is no file yet."""
    return json.loads(path.read_text()) if path.is_file() else []


def merge_records(old: list[dict], fresh: list[dict], key=record_key) -> list[dict]:
    """``old`` without the records ``fresh`` replaces (the same ``key``), then ``fresh``: a partial run refreshes
    its part of a results file and keeps the rest."""
    replaced = {key(record) for record in fresh}
    return [record for record in old if key(record) not in replaced] + fresh


class Results:
    """Collects per-seed values and writes the aggregated records."""

    def __init__(self, benchmark: str):
        self.benchmark = benchmark
        self._runs: dict[tuple[str, str, str, str], dict] = {}
        self.commit = git_commit()
        self.date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def add(
        self,
        protocol: str,
        dataset: str,
        model: str,
        values: dict[str, float],
        *,
        seed: int,
        n: int,
        measurement: Measurement | None = None,
    ) -> None:
        for metric, value in values.items():
            run = self._runs.setdefault(
                (protocol, dataset, model, metric), {"values": [], "seeds": [], "seconds": [], "peak": [], "n": n}
            )
            run["values"].append(float(value))
            run["seeds"].append(seed)
            if measurement is not None:
                run["seconds"].append(measurement.seconds)
                run["peak"].append(measurement.peak_mb)

    def records(self) -> list[dict]:
        out = []
        for (protocol, dataset, model, metric), run in self._runs.items():
            values = np.asarray(run["values"])
            record = {
                "benchmark": self.benchmark,
                "protocol": protocol,
                "dataset": dataset,
                "model": model,
                "metric": metric,
                "value": round(float(values.mean()), 6),
                "seeds": run["seeds"],
                "n": run["n"],
                "train_seconds": round(float(np.mean(run["seconds"])), 2) if run["seconds"] else None,
                "peak_mb": round(float(np.max(run["peak"])), 1) if run["peak"] else None,
                "commit": self.commit,
                "date": self.date,
            }
            if len(values) > 1:
                record["std"] = round(float(values.std(ddof=1)), 6)
            out.append(record)
        return out

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.benchmark}.json"
        path.write_text(json.dumps(self.records(), indent=1) + "\n")
        return path

    def table(self, anchors: dict[tuple[str, str, str], float] | None = None) -> str:
        """A plain-text table, one line per record, with the published anchor where there is one."""
        anchors = anchors or {}
        lines = [
            f"{'protocol':<22}{'dataset':<10}{'model':<18}{'metric':<14}{'value':>9}{'std':>9}"
            f"{'anchor':>9}{'train s':>9}{'peak MB':>9}"
        ]
        for r in sorted(self.records(), key=lambda r: (r["protocol"], r["metric"], r["model"])):
            anchor = anchors.get((r["protocol"], r["model"], r["metric"]))
            lines.append(
                f"{r['protocol']:<22}{r['dataset']:<10}{r['model']:<18}{r['metric']:<14}{r['value']:>9.4f}"
                f"{r.get('std', float('nan')):>9.4f}{anchor if anchor is not None else float('nan'):>9.4f}"
                f"{(r['train_seconds'] or 0):>9.1f}{(r['peak_mb'] or 0):>9.0f}"
            )
        return "\n".join(lines)
