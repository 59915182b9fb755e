"""The ablation plot: per dataset, the headline metrics against variant, one panel per metric
(bars of the mean over seeds, the 95% t-interval, one dot per seed), from ``load_run_metrics``
output of the ablation runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from mgmvae.figures.bars import LEGEND, bars_and_dots
from mgmvae.figures.save import caption, pyplot, save_figure

PLOT = "ablation_plot_{dataset}"  # file stem, under the study's ablation/


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: coherence and retrieval averaged over both directions, the joint probe and the
    clustering accuracy (in %): the ``dataset, variant, metric, value, seed`` frame of the plots."""
    picks = [
        ("coherence (mean of directions)", frame["metric"] == "cross_generation"),
        ("linear probe (joint)", (frame["metric"] == "probe") & (frame["key"] == "joint")),
        ("retrieval top-1 (mean of directions)", frame["metric"] == "retrieval_top1"),
        ("clustering accuracy", (frame["metric"] == "clustering") & (frame["key"] == "accuracy")),
    ]
    parts = []
    for name, mask in picks:
        sub = frame[mask].groupby(["dataset", "variant", "seed"], sort=False)["value"].mean().reset_index()
        parts.append(sub.assign(metric=name, value=100 * sub["value"]))
    return pd.concat(parts, ignore_index=True)[["dataset", "variant", "metric", "value", "seed"]]


def ablation_figure(frame: pd.DataFrame, title: str = "Ablation") -> Figure:
    missing = {"variant", "metric", "value", "seed"} - set(frame.columns)
    if missing:
        raise ValueError(f"ablation_plot needs columns variant, metric, value, seed; missing {sorted(missing)}")
    metrics = list(dict.fromkeys(frame["metric"]))
    variants = list(dict.fromkeys(frame["variant"]))
    # Panels wrap onto rows so that a study with many variants stays within a page's width (~16 in).
    panel_width = max(3.5, 0.4 * len(variants) + 1.5)
    ncols = max(1, min(len(metrics), int(16 // panel_width)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = pyplot().subplots(nrows, ncols, figsize=(panel_width * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, metrics, strict=False):
        bars_and_dots(ax, frame[frame["metric"] == metric], "variant", None, order=variants)
        ax.set_title(str(metric), fontsize=10)
        ax.set(xlabel="", ylabel="")
        ax.tick_params(axis="x", rotation=30)
        for label in ax.get_xticklabels():
            label.set_ha("right")
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no ablation results", ha="center", va="center")
    caption(fig, f"{title}\n{LEGEND}")
    fig.tight_layout()
    return fig


def ablation_plot(frame: pd.DataFrame, out: str | Path, title: str = "Ablation") -> list[Path]:
    """A metric against variant: one panel per metric. ``frame`` has columns variant, metric, value,
    seed; variants appear in their order of first appearance."""
    return save_figure(ablation_figure(frame, title), out)


def ablation_plots(frame: pd.DataFrame, outdir: str | Path, model: str, study: str) -> list[Path]:
    """``ablation_plot_<dataset>.{png,pdf}`` under ``outdir`` per dataset of ``frame``, the variants
    in their order of first appearance in ``frame``."""
    order = {v: i for i, v in enumerate(dict.fromkeys(frame["variant"]))}
    heads = headline(frame)
    written = []
    for dataset in dict.fromkeys(frame["dataset"]):
        sub = heads[heads["dataset"] == dataset].drop(columns="dataset")
        sub = sub.sort_values("variant", key=lambda s: s.map(order), kind="stable")
        title = f"Ablation of {model} on {dataset} (study {study}), in %"
        written += ablation_plot(sub, Path(outdir) / PLOT.format(dataset=dataset), title=title)
    return written
