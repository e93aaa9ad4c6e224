"""Learning curves: a trained model's per-epoch history (``model.history_``, recorded by
:func:`recsys_workshop.train.fit`), training against validation, several models on one plot."""

from __future__ import annotations


def plot_learning_curves(models: dict, metric: str = "loss", heading: str = "", *, show: bool = True):
    """Plots ``metric`` per epoch for each ``{name: model}``: training dashed, validation solid, one
    colour per model. Shows the figure, or with ``show=False`` returns its Axes to draw on."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for name, model in models.items():
        history = model.history_
        if metric not in history or f"val_{metric}" not in history:
            raise ValueError(f"{name}: no {metric!r} and 'val_{metric}' in its history "
                             f"(it has {', '.join(map(str, history.columns))})")
        (line,) = ax.plot(history.index, history[metric], ls="--", marker=".", label=f"{name}, train")
        ax.plot(history.index, history[f"val_{metric}"], color=line.get_color(), marker="o",
                label=f"{name}, validation")
    ax.set(xlabel="epoch", ylabel=metric, title=heading)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, ncol=2)
    if not show:
        return ax
    plt.show()
    return None
