"""Bar charts with seaborn from long-form frames: bars of the mean over seeds, the 95% Student-t
interval as error bar (none with one seed), one black dot per seed; Tables 1–3 add the paper's
number as a black ×. Models keep their colours (``palette.model_palette``). The ablation plot
(``figures.ablation``) draws its bars the same way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mgmvae.figures.palette import model_palette
from mgmvae.figures.save import caption, pyplot, save_figure
from mgmvae.tables import TABLE_SPECS, t_interval, table_summary

LEGEND = "bars: mean over seeds, error bars: 95% t-interval, dots: seeds"


def bars_and_dots(ax: Axes, frame: pd.DataFrame, x: str, hue: str | None, **bar_kws: object) -> None:
    """Mean bars with t-interval error bars and one dot per row of ``frame`` (one per seed)."""
    common = {"data": frame, "x": x, "y": "value", "hue": hue, "ax": ax}
    # saturation 1: the models' own colours, not seaborn's desaturated ones
    sns.barplot(
        **common, errorbar=t_interval, capsize=0.15, err_kws={"linewidth": 1}, alpha=0.85, saturation=1, **bar_kws
    )
    order = {k: bar_kws[k] for k in ("order", "hue_order") if k in bar_kws}
    dots = {"palette": dict.fromkeys(frame[hue], "black")} if hue else {"color": "black"}
    sns.stripplot(**common, **order, **dots, dodge=hue is not None, jitter=False, size=3, legend=False, zorder=3)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def seed_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """A table summary in long form: one row per (model, column, seed) with its value."""
    long = summary.explode(["seeds", "values"]).dropna(subset=["values"])
    return long.assign(value=long["values"].astype(float), seed=long["seeds"].astype(int))[
        ["name", "column", "seed", "value"]
    ]


def table_bars_figure(df: pd.DataFrame, table: str, dataset: str, study: str | None = None) -> Figure:
    spec = TABLE_SPECS[table]
    # "->" as an arrow, and a long label (e.g. "hand→street balanced") on two lines so neighbours do not overlap
    summary = table_summary(df, spec, dataset).assign(
        column=lambda s: s["column"].str.replace("->", "→").str.replace(" ", "\n", n=1)
    )
    columns = list(dict.fromkeys(summary["column"]))
    fig, ax = pyplot().subplots(figsize=(max(5.0, 1.2 + 1.6 * len(columns)), 3.6))
    if summary.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, f"no runs on {dataset}", ha="center", va="center")
    else:
        names = list(dict.fromkeys(summary["name"]))
        palette = model_palette(summary["model"])
        order = {"order": columns, "hue_order": names}
        bars_and_dots(ax, seed_frame(summary), "column", "name", palette=palette, **order)
        reported = summary.dropna(subset=["paper"])
        sns.stripplot(
            reported, x="column", y="paper", hue="name", **order, palette=dict.fromkeys(names, "black"),
            dodge=True, jitter=False, marker="X", size=7, legend=False, zorder=4, ax=ax,
        )  # fmt: skip
        handles, labels = ax.get_legend_handles_labels()
        if not reported.empty:
            handles.append(Line2D([], [], marker="X", ls="", color="black", markersize=7))
            labels.append("paper")
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set(xlabel="", ylabel=spec.unit)
        if spec.unit == "%":
            ax.set_ylim(0, 105)
    where = f"{dataset}{', study ' + study if study else ''}"
    caption(fig, f"{spec.number} ({where}): {spec.what}\n{LEGEND}, ×: paper")
    fig.tight_layout()
    return fig


def table_bars(df: pd.DataFrame, table: str, dataset: str, out: str | Path, study: str | None = None) -> list[Path]:
    """A paper table as grouped bars (``df`` is ``mgmvae.tables.load_run_metrics`` output)."""
    return save_figure(table_bars_figure(df, table, dataset, study), out)
