"""The test log-likelihood against K (the sweep of ``mgmvae.likelihood_sweep``) as a figure: per
estimate (joint, each modality), log p̂ less the model's estimate at the largest K (first proposal
scale), and the effective sample size, against K on a log axis; one line per model (one dash style
per proposal scale). Where a line flattens, its estimate has stopped climbing; models whose
likelihoods lie hundreds of nats apart share one axis this way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from mgmvae import paper
from mgmvae.figures.palette import model_palette
from mgmvae.figures.save import caption, pyplot, save_figure

ROWS = {"below_largest_k": "log p̂ − log p̂ at the largest K (nats)", "ess_mean": "mean ESS (draws)"}


def below_largest_k(frame: pd.DataFrame) -> pd.Series:
    """Each estimate less the same model's and estimate's at the largest K, under the first proposal scale."""
    last = frame[
        (frame["samples"] == frame["samples"].max()) & (frame["proposal_scale"] == frame["proposal_scale"].iloc[0])
    ]
    reference = last.set_index(["model", "estimate"])["log_likelihood"]
    return frame["log_likelihood"] - [reference[(m, e)] for m, e in zip(frame["model"], frame["estimate"], strict=True)]


def sweep_figure(frame: pd.DataFrame, title: str, floor: float | None = None):
    """``frame``: one row per (model, proposal_scale, K, estimate) with ``log_likelihood`` and ``ess_mean``."""
    frame = frame.assign(
        name=frame["model"].map(paper.display_name),
        scale=frame["proposal_scale"].map("×{:g}".format),
        below_largest_k=below_largest_k(frame),
    )
    style = "scale" if frame["scale"].nunique() > 1 else None
    estimates = list(dict.fromkeys(frame["estimate"]))
    fig, axes = pyplot().subplots(
        len(ROWS), len(estimates), figsize=(3.6 * len(estimates), 5.6), squeeze=False, sharex=True
    )
    palette = model_palette(frame["model"].unique())
    for col, estimate in enumerate(estimates):
        part = frame[frame["estimate"] == estimate]
        for row, (quantity, label) in enumerate(ROWS.items()):
            ax = axes[row][col]
            on = row == 0 and col == len(estimates) - 1  # one legend: beside the first row's last panel
            sns.lineplot(
                part, x="samples", y=quantity, hue="name", style=style, palette=palette, marker="o", ax=ax, legend=on
            )
            ax.set_xscale("log")
            ax.set(xlabel="K (importance draws per pair)", ylabel=label if col == 0 else "")
            if row == 0:
                ax.set_title(estimate)
            if quantity == "ess_mean":
                ax.set_yscale("log")
                if floor is not None:
                    ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
    legend = axes[0][-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title=None)
    caption(fig, title)
    fig.tight_layout()
    return fig


def save_sweep_figure(frame: pd.DataFrame, out: str | Path, title: str, floor: float | None = None) -> list[Path]:
    return save_figure(sweep_figure(frame, title, floor), out)
