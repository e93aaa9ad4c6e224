"""The deck's cost curve of serving at catalogue scale: the model server's p99 latency and memory against the
number of items, exact search against the HNSW index (issue #16).

Drawn from what ``python -m bench.serving_scale`` writes, ``bench/results/serving-scale.json`` (synthetic
catalogues with 64-dimensional embeddings, one request at a time). Nothing is drawn without a run:
:class:`Pending` says how to make one.
"""

from __future__ import annotations

import json

from deck_figures import BENCH_RESULTS, Context, Figure, Pending, Result, _pyplot, _save
from deck_tables import short_commit

RUN = "serving-scale"
MODELS = (("exact", "exact search", "o-", "#1f77b4"), ("ann", "HNSW index", "s-", "#ff7f0e"))
P99_BUDGET_MS = 10.0  # issue #16's target for one request at a million items


def _items(dataset: str) -> int:
    label = dataset.removeprefix("synthetic-").lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(label[-1:], 1)
    return round(float(label.rstrip("km")) * scale)


def read_curve() -> dict[tuple[str, str], list[tuple[int, float]]] | None:
    """``{(model, metric): [(items, value), ...]}`` sorted by items, or None without a run."""
    path = BENCH_RESULTS / f"{RUN}.json"
    if not path.is_file():
        return None
    curve: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for record in json.loads(path.read_text()):
        curve.setdefault((record["model"], record["metric"]), []).append((_items(record["dataset"]), record["value"]))
    return {key: sorted(points) for key, points in curve.items()}


def serving_scale(ctx: Context) -> Result:
    """p99 of one request (log scale) and the server's memory, exact vs HNSW, against the catalogue size."""
    curve = read_curve()
    if curve is None:
        return Pending(
            "This chart is drawn from the catalogue-scale serving benchmark. It appears here when "
            f"bench/results/{RUN}.json exists (python -m bench.serving_scale, about 15 minutes), the next time "
            "the deck is built."
        )
    plt = _pyplot()
    fig, (latency, memory) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for model, label, style, colour in MODELS:
        for axes, metric, scale in ((latency, "p99_ms", 1.0), (memory, "rss_mb", 1 / 1024)):
            points = curve.get((model, metric), [])
            if points:
                items, values = zip(*points, strict=True)
                axes.plot(items, [v * scale for v in values], style, color=colour, lw=2.5, ms=8, label=label)
    latency.axhline(P99_BUDGET_MS, color="#555555", ls="--", lw=1.5, label=f"budget: {P99_BUDGET_MS:g} ms")
    latency.set(xscale="log", yscale="log", xlabel="items in the catalogue", ylabel="p99 of one request (ms)")
    memory.set(xscale="log", xlabel="items in the catalogue", ylabel="model server memory (GB)", ylim=(0, None))
    for axes in (latency, memory):
        if axes.get_legend_handles_labels()[0]:  # a run without one of the metrics draws no line there
            axes.legend(loc="upper left")
        axes.grid(alpha=0.3)
    fig.tight_layout()
    first = json.loads((BENCH_RESULTS / f"{RUN}.json").read_text())[0]
    return Figure(
        _save(fig, ctx, "serving_scale"),
        f"bench/serving_scale.py on one 2-core machine ({first['date'][:10]}, commit "
        f"{short_commit(first.get('commit', '?'))}): synthetic catalogues, 64-dim embeddings, 1M users; "
        f"bench/results/{RUN}.json",
    )
