"""The clustering table: per dataset and model, Hungarian accuracy (%), NMI and ARI (×100) of the
joint shared latent, mean ± std with the 95% interval; best bold and second underlined per dataset."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

import mgmvae.tables.protocols as protocols
from mgmvae import paper
from mgmvae.tables.paper_table import interval, pm
from mgmvae.tables.render import TableDoc, write_empty
from mgmvae.tables.spec import CLUSTER_KEYS, DASH
from mgmvae.tables.statistics import ci95_halfwidth, rank_marks

LEAD = ["Dataset", "Model", "Method", "k", "Seeds"]
WHAT = "Hungarian accuracy (%), NMI and ARI (×100)"


def _stats(sub: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and 95% half-width per (dataset, model, key), ×100."""
    g = sub.groupby(["dataset", "model", "key"])["value"]
    return pd.DataFrame({"mean": g.mean() * 100, "std": g.std(ddof=1) * 100, "ci95": g.apply(ci95_halfwidth) * 100})


def _joined(values: pd.Series) -> str:
    return "/".join(sorted(values.dropna().astype(str).unique()))


def clustering_table(df: pd.DataFrame, study: str | None, outdir: Path) -> None:
    """``clustering.{csv,md,tex,html}``: one table per protocol setting of the study."""
    sub = df[(df["metric"] == "clustering") & df["key"].isin(list(CLUSTER_KEYS))]
    frames = protocols.by_setting(sub)
    datasets = ", ".join(f"`{d}`" for d in sorted(sub["dataset"].unique()))
    what = f"Clustering of the joint shared latent of test pairs — {WHAT}, study `{study}`, datasets {datasets}"
    if sub.empty:
        write_empty(outdir, "clustering", what, "No clustering results in this study.", ["dataset", "model"])
        return
    several = len(frames) > 1
    docs = {
        setting: _table_doc(frame, f"{what}, {protocols.describe(setting, frame)}", study, setting if several else "")
        for setting, frame in frames.items()
    }
    protocols.write_docs(outdir, "clustering", f"{what}, protocols " + ", ".join(f"`{s}`" for s in frames), docs)


def _table_doc(sub: pd.DataFrame, caption: str, study: str | None, suffix: str) -> TableDoc:
    """The table of one protocol setting's clustering rows."""
    stats = _stats(sub)
    numbers, cells = [], []
    for dataset in sorted(sub["dataset"].unique()):
        ds = sub[sub["dataset"] == dataset]
        order = paper.model_order(ds["model"].unique())
        marks = {key: rank_marks(stats.loc[dataset].xs(key, level="key")["mean"].to_dict()) for key in CLUSTER_KEYS}
        for model in order:
            runs = ds[ds["model"] == model]
            k = "/".join(str(int(v)) for v in sorted(runs["k"].dropna().unique()))
            lead = [dataset, paper.display_name(model), _joined(runs["method"]), k, str(runs["seed"].nunique())]
            numbers.append({"dataset": dataset, "model": model, "name": lead[1]})
            numbers[-1] |= {"protocol": protocols.resolved(runs, model), "method": lead[2], "k": k}
            numbers[-1]["n_seeds"] = int(lead[4])
            cells.append({("", h): (v, "") for h, v in zip(LEAD, lead, strict=True)})
            for key, name in CLUSTER_KEYS.items():
                mean, std, half = (
                    stats.loc[(dataset, model, key)] if (dataset, model, key) in stats.index else [math.nan] * 3
                )
                numbers[-1] |= {f"{key} mean": mean, f"{key} std": std, f"{key} ci95": half}
                cells[-1] |= {
                    (name, "Mean ± std"): (pm(mean, std), marks[key].get(model, "")),
                    (name, "95% CI"): (interval(mean - half, mean + half), ""),
                }
    frame = pd.DataFrame(cells)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    notes = [
        f"Mean ± sample std (ddof=1) over seeds; 95% CI: mean ± t(0.975, n−1)·std/√n; {DASH} with one seed. "
        "Per dataset, best in bold, second underlined."
    ]
    return TableDoc(
        caption=caption,
        label=f"{study}-clustering" + (f"-{suffix}" if suffix else ""),
        numbers=pd.DataFrame(numbers),
        cells=frame.map(lambda v: v[0]),
        marks=frame.map(lambda v: v[1]),
        lead=len(LEAD),
        notes=notes,
    )
