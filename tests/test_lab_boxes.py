"""Each lab opens with a "Before you start" box, and its numbers are measured, not guessed (issue 15).

The box says what the lab needs, whether it needs a cluster, how long Run All takes at CI and at full size
(quoted from ``bench/results/lab-times.json``, which ``python -m bench.lab_times`` measures), and what it
costs on GKE (from the prices pinned in ``cluster-setup/versions.env``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gke_cost
import pytest

from recsys_workshop import kube

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "source").glob("[0-9][0-9]_*.py"))
LAB_TIMES = REPO / "bench" / "results" / "lab-times.json"
FIELDS = ["You need", "A cluster", "Run All", "Cost on GKE"]


def box(source: Path) -> dict[str, str]:
    """{field: text} of the box, read from the source's first markdown cell (line breaks joined)."""
    text = source.read_text(encoding="utf-8")
    intro = text.split("# %%", 2)[1]  # the first cell after the jupytext header
    lines = [line[2:] if line.startswith("# ") else "" for line in intro.splitlines()]
    start = next((i for i, line in enumerate(lines) if line == "> **Before you start**"), None)
    assert start is not None, f"{source.name}: no '> **Before you start**' box in the first cell"
    fields: dict[str, str] = {}
    current = None
    for line in lines[start + 1:]:
        if not line.startswith(">"):
            break
        match = re.match(r"> - \*\*(.+?):?\*\*:? ?(.*)", line)
        if match:
            current = match.group(1).rstrip(":")
            fields[current] = match.group(2)
        elif current is not None:
            fields[current] += " " + line[1:].strip()
    return fields


def minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60)} min"


def measured() -> dict[tuple[str, str], float]:
    records = json.loads(LAB_TIMES.read_text())
    return {(r["dataset"], r["model"]): r["value"] for r in records
            if r["protocol"] == "run-all" and r["metric"] == "run_seconds"}  # fmt: skip


def hourly_cost() -> float:
    return gke_cost.cluster_hourly(kube.versions())


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name[:2])
def test_each_lab_opens_with_the_box_in_order(source):
    fields = box(source)
    assert list(fields) == FIELDS, f"{source.name}: the box has {list(fields)}"
    assert all(len(text) > 10 for text in fields.values()), fields
    text = source.read_text(encoding="utf-8")
    assert text.index("**Time:**") < text.index("> **Before you start**") < text.index("**You will**")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name[:2])
def test_the_run_times_are_the_measured_ones(source):
    times = measured()
    number = source.name[:2]
    quoted = box(source)["Run All"]
    for scale, label in (("ci", "CI size"), ("full", "full size")):
        assert (scale, f"lab-{number}") in times, f"lab {number} at {scale}: run python -m bench.lab_times"
        expected = f"{minutes(times[(scale, f'lab-{number}')])} at {label}"
        assert expected in quoted, f"{source.name}: the box says {quoted!r}, the measurement {expected!r}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name[:2])
def test_the_cluster_line_matches_what_the_lab_does(source):
    """A lab with cluster cells (it looks for a reachable cluster) says a cluster is optional and what it
    adds, and quotes the class cluster's hourly cost; the others need none and cost nothing on GKE."""
    fields = box(source)
    text = source.read_text(encoding="utf-8")
    number = source.name[:2]
    uses_cluster = number != "00" and ("cluster_context" in text or ".reachable" in text)
    if uses_cluster:
        assert fields["A cluster"].startswith("optional."), fields["A cluster"]
        assert f"about ${hourly_cost():.2f} per hour" in fields["Cost on GKE"], fields["Cost on GKE"]
    else:
        assert fields["A cluster"].startswith("no"), fields["A cluster"]
        assert fields["Cost on GKE"].startswith("none"), fields["Cost on GKE"]


def test_the_measurement_covers_every_lab_at_both_scales_from_a_clean_tree():
    records = json.loads(LAB_TIMES.read_text())
    labs = {f"lab-{source.name[:2]}" for source in SOURCES}
    for scale in ("ci", "full"):
        assert {r["model"] for r in records if r["dataset"] == scale} == labs, scale
    assert all(not r["commit"].endswith("-dirty") for r in records), "measure from a clean checkout"
    assert all(r["value"] > 0 and r["benchmark"] == "lab-times" for r in records)
