"""Training curves: one panel per loss term logged in a model's history, against epoch (seaborn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mgmvae.figures.save import caption, pyplot, save_figure


def history_frame(history: Sequence[Mapping[str, float]]) -> pd.DataFrame:
    """Long form: one row per (epoch, term) with its value; ``loss`` first, then the terms by name."""
    rows = [
        {"epoch": h.get("epoch", i + 1), "term": k, "value": float(v)}
        for i, h in enumerate(history)
        for k, v in h.items()
        if k != "epoch" and isinstance(v, (int, float))
    ]
    frame = pd.DataFrame(rows, columns=["epoch", "term", "value"])
    terms = sorted(frame["term"].unique(), key=lambda k: (k != "loss", k))
    frame["term"] = pd.Categorical(frame["term"], categories=terms, ordered=True)
    return frame.sort_values(["term", "epoch"], kind="stable").reset_index(drop=True)


def curves_figure(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    frame = history_frame(history)
    if frame.empty:
        fig, ax = pyplot().subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no history logged", ha="center", va="center")
        caption(fig, title)
        return fig
    terms = list(frame["term"].cat.categories)
    ncols = min(4, len(terms))
    grid = sns.relplot(
        frame,
        x="epoch",
        y="value",
        col="term",
        col_wrap=ncols,
        col_order=terms,
        kind="line",
        errorbar=None,
        marker="o",
        markersize=4,
        markeredgewidth=0,
        linewidth=1.2,
        height=2.4,
        aspect=3.2 / 2.4,
        facet_kws={"sharey": False, "sharex": False},
    )
    grid.set_titles("{col_name}", size=9)
    grid.set_axis_labels("epoch", "", fontsize=8)
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    grid.figure.set_size_inches(3.2 * ncols, grid.figure.get_figheight() + 0.4)  # room for the caption
    caption(grid.figure, title)
    grid.figure.tight_layout()
    return grid.figure


def training_curves(history: Sequence[Mapping[str, float]], out: str | Path, title: str = "") -> list[Path]:
    """One panel per loss term logged in ``history`` (a list of per-epoch dicts), against epoch."""
    return save_figure(curves_figure(history, title), out)
