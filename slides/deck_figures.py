"""The deck's figures and tables, generated from the workshop's own code by ``slides/build.py``.

Every figure is computed here, at build time, from ``recsys_workshop`` (the same functions the labs call)
or from the results files the benchmarks and labs write; nothing is a pasted screenshot. A figure whose
input does not exist yet (the load-test curves before ``bench/serving_steps.py`` has been run, the benchmark
table before ``bench/recsys101.py`` has been run) is not drawn: :class:`Pending` says where it will come from, and the
slide shows that sentence instead of a chart.

Each generator takes the shared :class:`Context` and returns a :class:`Figure` (an SVG file it wrote, or the
PNG screenshots that ``deck_ui.py`` and ``deck_locust.py`` take of the running UI and of Locust's web UI),
a :class:`Table` (HTML) or a :class:`Pending`. ``FIGURES`` and ``TABLES`` map the names the deck uses
(``![...](figures/<name>.svg)`` and ``{{table:<name>}}``) to the generators.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import os
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_RESULTS = REPO / "bench" / "results"
SEED = 42
K = 10
DATASET = "ml-100k"

# Films labelled on the factor map: well known, and spread over genres and decades (as in lab 02).
LABELLED_FILMS = (
    "Star Wars (1977)", "Return of the Jedi (1983)", "Toy Story (1995)", "Fargo (1996)",
    "Pulp Fiction (1994)", "Schindler's List (1993)", "Independence Day (ID4) (1996)",
    "Titanic (1997)", "Scream (1996)", "Aladdin (1992)", "Casablanca (1942)", "Liar Liar (1997)",
)  # fmt: skip

# A short MF training for the figures: converges in about 10 epochs at this batch size (early stopping on
# a random 10% of the training split). Lab 02 trains the same model longer, with a smaller batch.
MF_PARAMS = {"n_factors": 64, "l2": 0.1}
MF_TRAIN = {"epochs": 20, "batch_size": 256, "learning_rate": 2e-3, "patience": 3}

COLOURS = {"most-popular": "#9e9e9e", "item-knn": "#1f77b4", "content-based": "#2ca02c", "mf+bias": "#d62728"}


@dataclasses.dataclass
class Figure:
    path: Path
    source: str  # where the numbers come from (shown as the figure's caption)


@dataclasses.dataclass
class Table:
    html: str
    source: str


@dataclasses.dataclass
class Pending:
    message: str  # what will produce this figure, and how


Result = Figure | Table | Pending


class Context:
    """What the generators share, each computed once, lazily: the data, the split, the trained models."""

    def __init__(self, out_dir: Path, log: Callable[[str], None] = print):
        self.out_dir = out_dir
        self.log = log
        out_dir.mkdir(parents=True, exist_ok=True)

    @functools.cached_property
    def movielens(self):
        from recsys_workshop import data

        return data.load(DATASET, progress=False)

    @functools.cached_property
    def title(self):
        return self.movielens.items.set_index("item_id")["title"]

    @functools.cached_property
    def split(self):
        """Microsoft Recommenders' protocol, as in lab 02 and ``bench/recsys101.py``: per-item stratified 75/25."""
        from recsys_workshop import data

        return data.stratified_split(self.movielens.ratings, 0.75, filter_by="item", seed=SEED)

    @functools.cached_property
    def mf(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from recsys_workshop.models.mf import MatrixFactorization
        from recsys_workshop.train import TrainConfig

        train, _ = self.split
        started = time.perf_counter()
        model = MatrixFactorization(MF_PARAMS["n_factors"], use_bias=True, l2=MF_PARAMS["l2"], seed=SEED)
        model.fit(train, config=TrainConfig(seed=SEED, verbose=0, **MF_TRAIN))
        best = model.history_["val_rmse"].min()
        self.log(
            f"  trained MF: {len(model.history_)} epochs, best validation RMSE {best:.3f} "
            f"({time.perf_counter() - started:.0f} s)"
        )
        return model

    @functools.cached_property
    def comparison(self):
        """One row of :func:`recsys_workshop.metrics.evaluate` per model, on the held-out 25%."""
        import pandas as pd

        from recsys_workshop import data, metrics, models

        train, test = self.split
        items = self.movielens.items
        genres = data.genre_matrix(items)
        candidates = {
            "most-popular": lambda: models.MostPopular().fit(train),
            "content-based": lambda: models.ContentBased(items).fit(train),
            "item-knn": lambda: models.ItemKNN(n_neighbors=100).fit(train),
            "mf+bias": lambda: self.mf,
        }
        rows = [
            metrics.evaluate(make(), train, test, K, item_features=genres, name=name)
            for name, make in candidates.items()
        ]
        return pd.concat(rows, ignore_index=True).set_index("model")


# --------------------------------------------------------------------------------------------------
# Plot helpers
# --------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 15,
            "axes.titlesize": 17,
            "axes.labelsize": 15,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "svg.fonttype": "path",  # text as outlines: the SVG needs no font
            "svg.hashsalt": "recsys-workshop-slides",  # stable element ids: the same data gives the same file
        }
    )
    return plt


def _save(fig, ctx: Context, name: str) -> Path:
    path = ctx.out_dir / f"{name}.svg"
    fig.savefig(path, format="svg", bbox_inches="tight", dpi=150, metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def rating_distribution(ctx: Context) -> Result:
    plt = _pyplot()
    ratings = ctx.movielens.ratings
    counts = ratings["rating"].value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(counts.index.astype(int).astype(str), counts.to_numpy(), color="#1f77b4")
    ax.set(xlabel="stars", ylabel="number of ratings", title=f"How people rate ({DATASET})")
    mean = ratings["rating"].mean()
    ax.text(0.02, 0.95, f"mean {mean:.2f}", transform=ax.transAxes, va="top")
    return Figure(_save(fig, ctx, "rating_distribution"), "recsys_workshop.data.load('ml-100k'), as in lab 00")


def long_tail(ctx: Context) -> Result:
    import numpy as np

    from recsys_workshop import data

    plt = _pyplot()
    ratings = ctx.movielens.ratings
    popularity = data.item_popularity(ratings)
    share = popularity.cumsum() / popularity.sum()
    head = data.head_share(ratings, 0.1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    rank = np.arange(1, len(popularity) + 1)
    left.plot(rank, popularity.to_numpy(), color="#1f77b4", lw=2)
    n_head = int(np.ceil(0.1 * len(popularity)))
    left.axvspan(1, n_head, color="#ff7f0e", alpha=0.15, lw=0)
    left.text(n_head * 1.15, popularity.iloc[0] * 0.85, "head: top 10% of films", color="#c15c00")
    left.set(xlabel="film rank by popularity", ylabel="number of ratings", title="The long tail")
    right.plot(rank / len(rank), share.to_numpy(), color="#1f77b4", lw=2)
    right.axvline(0.1, color="#ff7f0e", lw=1.5, ls="--")
    right.annotate(
        f"top 10% of films\nget {head:.0%} of ratings",
        (0.1, head),
        xytext=(0.3, head - 0.25),
        arrowprops={"arrowstyle": "->", "color": "#333333"},
    )
    right.set(xlabel="fraction of films (most popular first)", ylabel="share of all ratings", title="Cumulative share")
    fig.tight_layout()
    return Figure(
        _save(fig, ctx, "long_tail"), "recsys_workshop.data.item_popularity and head_share on ml-100k (lab 00)"
    )


def sparsity(ctx: Context) -> Result:
    from recsys_workshop import data

    plt = _pyplot()
    ratings = ctx.movielens.ratings
    popularity = data.item_popularity(ratings)
    users = ratings["user_id"].value_counts().index
    film_order = {item: rank for rank, item in enumerate(popularity.index)}
    user_order = {user: rank for rank, user in enumerate(users)}
    density = ctx.movielens.summary()["density"]
    fig, ax = plt.subplots(figsize=(11, 4.6))
    # 100,000 dots: rasterised inside the SVG (axes and text stay vector), else the file is 7 MB
    ax.scatter(
        ratings["item_id"].map(film_order),
        ratings["user_id"].map(user_order),
        s=0.3,
        color="black",
        lw=0,
        rasterized=True,
    )
    ax.set(
        xlabel="films (most popular left)",
        ylabel="users (most active top)",
        title=f"Who rated what: {density:.1%} of the matrix is filled",
        xlim=(0, len(film_order)),
        ylim=(len(user_order), 0),
    )
    return Figure(_save(fig, ctx, "sparsity"), "every rating of ml-100k, one dot each (lab 00)")


def mf_learning_curve(ctx: Context) -> Result:
    plt = _pyplot()
    history = ctx.mf.history_
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history.index, history["rmse"], "--o", color="#1f77b4", label="train")
    ax.plot(history.index, history["val_rmse"], "-o", color="#d62728", label="validation")
    best = int(history["val_rmse"].idxmin())
    ax.axvline(best, color="#777777", lw=1, ls=":")
    ax.text(best + 0.2, history["rmse"].max(), "best weights\nkept", va="top", color="#555555", fontsize=13)
    ax.set(xlabel="epoch", ylabel="RMSE", title="MF + biases: learning curves")
    ax.legend()
    return Figure(
        _save(fig, ctx, "mf_learning_curve"),
        "recsys_workshop.models.mf.MatrixFactorization trained by recsys_workshop.train.fit (early stopping)",
    )


def _place_labels(fig, ax, points: list[tuple[float, float, str]]) -> None:
    """Label points without overlaps: try positions on growing rings around each point (with a leader line
    when far), keep the first one that is free and inside the axes."""
    import math

    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    taken = []
    candidates = [(6, 6)]
    for radius in (10, 22, 36, 52, 70, 95, 120):
        for step in range(12):
            angle = math.pi / 4 - step * math.pi / 6
            candidates.append((radius * math.cos(angle), radius * math.sin(angle)))
    style = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75}
    for x, y, text in points:
        for dx, dy in candidates:
            ha = "left" if dx > 1 else ("right" if dx < -1 else "center")
            va = "bottom" if dy > 1 else ("top" if dy < -1 else "center")
            arrow = {"arrowstyle": "-", "color": "#555555", "lw": 0.8} if math.hypot(dx, dy) > 20 else None
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                fontsize=12, bbox=style, arrowprops=arrow)  # fmt: skip
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the text alone, without its leader line
            inside = axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                break
            label.remove()
        else:  # nowhere free: accept the first position
            ax.annotate(text, (x, y), xytext=candidates[0], textcoords="offset points", fontsize=12, bbox=style)


def item_factors(ctx: Context) -> Result:
    from sklearn.decomposition import PCA

    from recsys_workshop import data

    plt = _pyplot()
    model = ctx.mf
    train, _ = ctx.split
    popular = data.item_popularity(train).index[:400]
    xy = PCA(n_components=2, random_state=SEED).fit_transform(model.item_factors_[model.item_columns(popular)])
    mean_rating = train.groupby("item_id")["rating"].mean()[popular].to_numpy()
    titles = ctx.title[popular].to_numpy()
    fig, ax = plt.subplots(figsize=(12, 6.2))
    dots = ax.scatter(xy[:, 0], xy[:, 1], s=16, c=mean_rating, cmap="viridis", alpha=0.55, lw=0)
    fig.colorbar(dots, ax=ax, label="mean rating in the training data", fraction=0.04, pad=0.02)
    labelled = [(x, y, name) for (x, y), name in zip(xy, titles, strict=True) if name in LABELLED_FILMS]
    ax.scatter([p[0] for p in labelled], [p[1] for p in labelled], s=40, color="#d62728", zorder=3)
    ax.set(
        title="Film factors learned by MF (PCA of the 400 most rated films)",
        xlabel="component 1",
        ylabel="component 2",
    )
    _place_labels(fig, ax, labelled)
    return Figure(
        _save(fig, ctx, "item_factors"),
        "PCA of MatrixFactorization.item_factors_, trained on the ml-100k training split (lab 02); colour: mean rating",
    )


def model_comparison(ctx: Context) -> Result:
    import numpy as np

    plt = _pyplot()
    table = ctx.comparison
    names = list(table.index)
    colours = [COLOURS.get(name, "#555555") for name in names]
    panels = [
        ("ndcg@10", "NDCG@10 (relevance)"),
        ("coverage", "catalogue coverage"),
        ("novelty", "novelty (bits)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 4.6))
    y = np.arange(len(names))
    for ax, (column, label) in zip(axes, panels, strict=True):
        values = table[column].to_numpy()
        ax.barh(y, values, color=colours)
        ax.set_yticks(y, names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(label)
        for yi, value in zip(y, values, strict=True):
            ax.text(value, yi, f" {value:.2f}", va="center", fontsize=13)
        ax.set_xlim(0, values.max() * 1.3)
    fig.suptitle(f"Top-{K} on held-out ml-100k ratings: what each model is good at", y=1.02)
    fig.tight_layout()
    return Figure(
        _save(fig, ctx, "model_comparison"),
        "recsys_workshop.metrics.evaluate on a per-item stratified 75/25 split of ml-100k, seed 42 (lab 02)",
    )


def load_test(ctx: Context) -> Result:
    """The step-load chart, drawn by ``deck_loadtest.py`` (beside this file) from ``bench/serving_steps.py``'s run."""
    from deck_loadtest import load_test as draw

    return draw(ctx)


def ui(ctx: Context) -> Result:
    """A screenshot of the workshop's UI, taken by ``deck_ui.py`` from the running local stack."""
    from deck_ui import ui_screenshot

    return ui_screenshot(ctx)


def locust(ctx: Context) -> Result:
    """A screenshot of Locust's web UI during a short load test of the local stack, taken by ``deck_locust.py``."""
    from deck_locust import locust_screenshot

    return locust_screenshot(ctx)


def serving_scale(ctx: Context) -> Result:
    """The cost curve of serving at catalogue scale, drawn by ``deck_scale.py`` from ``bench/serving_scale.py``."""
    from deck_scale import serving_scale as draw

    return draw(ctx)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _html_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """An HTML table; a header cell may hold a line break ("NDCG@10\nMSR 75/25": metric over protocol)."""
    head = "".join(f"<th>{'<br>'.join(html.escape(part) for part in h.split(chr(10)))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def comparison_table(ctx: Context) -> Result:
    columns = ["precision@10", "recall@10", "ndcg@10", "coverage", "novelty", "popularity_bias"]
    table = ctx.comparison
    rows = [[name] + [f"{table.loc[name, c]:.3f}" for c in columns] for name in table.index]
    return Table(
        _html_table(["model", *columns], rows),
        "recsys_workshop.metrics.evaluate, per-item stratified 75/25 split of ml-100k, seed 42",
    )


def _bench(name: str) -> Callable[[Context], Result]:
    """A benchmark table, drawn by ``deck_tables.py`` (beside this file) from ``bench/results``."""

    def table(ctx: Context) -> Result:
        import deck_tables

        return getattr(deck_tables, name)(ctx)

    return table


FIGURES: dict[str, Callable[[Context], Result]] = {
    "rating_distribution": rating_distribution,
    "long_tail": long_tail,
    "sparsity": sparsity,
    "mf_learning_curve": mf_learning_curve,
    "item_factors": item_factors,
    "model_comparison": model_comparison,
    "load_test": load_test,
    "serving_scale": serving_scale,
    "ui": ui,
    "locust": locust,
}

TABLES: dict[str, Callable[[Context], Result]] = {
    "model_comparison": comparison_table,
    **{name: _bench(name) for name in ("bench_recsys101", "bench_deep", "bench_beyond_ids", "bench_serving")},
}
