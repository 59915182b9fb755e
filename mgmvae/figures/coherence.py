"""Coherence against the number of given modalities, one line per model: the figure MoPoE and
MMVAE+ draw for PolyMNIST. The line is the mean over seeds of each run's conditional coherence with
k given modalities (``conditional_coherence``: the mean over the subsets of k modalities and their
targets), the band the 95% Student-t interval over seeds (none with one seed); a model's published
PolyMNIST number (``mgmvae.paper.POLYMNIST``) is a × in its colour, beside targets left out only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mgmvae import paper
from mgmvae.figures.palette import model_palette
from mgmvae.figures.save import caption, pyplot, save_figure
from mgmvae.tables import t_interval
from mgmvae.tables.polymnist import given_included

LEGEND = "lines: mean over seeds, bands: 95% t-interval, ×: published"


def coherence_frame(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per (model, seed, k given): ``model``, ``name``, ``seed``, ``given``, ``value`` (%)."""
    rows = df[(df["dataset"] == dataset) & (df["metric"] == "conditional_coherence")]
    frame = rows.assign(given=rows["key"].astype(int), value=rows["value"] * 100.0)
    frame = frame.assign(name=frame["model"].map(paper.display_name))
    return frame[["model", "name", "seed", "given", "value"]].reset_index(drop=True)


def published_frame(models: list[str]) -> pd.DataFrame:
    """The published coherence by k given modalities of ``models`` (``name``, ``given``, ``value``)."""
    rows = [
        {"name": paper.display_name(m), "given": int(column.split()[-1]), "value": value}
        for m in models
        for column, value in paper.POLYMNIST.get(m, {}).items()
        if column.startswith("coherence ")
    ]
    return pd.DataFrame(rows, columns=["name", "given", "value"])


def coherence_figure(df: pd.DataFrame, dataset: str, study: str | None = None) -> Figure:
    frame = coherence_frame(df, dataset)
    fig, ax = pyplot().subplots(figsize=(6.4, 3.8))
    if frame.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, f"no runs on {dataset}", ha="center", va="center")
    else:
        models = paper.model_order(frame["model"].unique())
        names = [paper.display_name(m) for m in models]
        palette = model_palette(models)
        sns.lineplot(
            frame, x="given", y="value", hue="name", hue_order=names, palette=palette, errorbar=t_interval,
            marker="o", ax=ax,
        )  # fmt: skip
        published = published_frame([] if given_included(df, dataset) else models)
        handles, labels = ax.get_legend_handles_labels()
        if not published.empty:
            sns.scatterplot(
                published, x="given", y="value", hue="name", hue_order=names, palette=palette, marker="X", s=70,
                legend=False, zorder=4, ax=ax,
            )  # fmt: skip
            handles.append(Line2D([], [], marker="X", ls="", color="black", markersize=7))
            labels.append("published")
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_xticks(sorted(frame["given"].unique()))
        ax.set(xlabel="number of given modalities", ylabel="conditional coherence (%)", ylim=(0, 105))
        ax.grid(alpha=0.3)
    where = f"{dataset}{', study ' + study if study else ''}"
    caption(fig, f"Conditional coherence against the number of given modalities ({where})\n{LEGEND}")
    fig.tight_layout()
    return fig


def coherence_plot(df: pd.DataFrame, dataset: str, out: str | Path, study: str | None = None) -> list[Path]:
    """The figure as PNG and PDF (``df`` is ``mgmvae.tables.load_run_metrics`` output)."""
    return save_figure(coherence_figure(df, dataset, study), out)
