"""The ablation table: per dataset, one row per variant (its overrides, then every metric in %).

Each ablation run (``python -m mgmvae evaluate --variant V``) writes a metrics file like any other
run, with a ``variant`` key (``runs.load_run_metrics`` reads it). ``ablation_table`` writes
``ablation_table.{csv,md,tex,html}``; the .csv has one row per (dataset, variant, metric, key): the
seed statistics of ``statistics.seed_stats`` (fractions) and the difference of the mean to the
reference variant ``full``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mgmvae.config import variant_overrides
from mgmvae.tables.render import TableDoc, write_sections
from mgmvae.tables.spec import EXTENSIONS
from mgmvae.tables.statistics import seed_stats

NAME = "ablation_table"
REFERENCE = "full"
# The metric sections the table prints, all fractions (shown in %), with their column group. The
# rest of a run's metrics (the probe's chosen C, the joint-coherence sample count, log-likelihoods
# in nats) are settings or other units: they stay in each run's metrics.json and MLflow run.
METRICS = {
    "cross_generation": "coherence",
    "cross_generation_balanced": "balanced coherence",
    "joint_coherence": "coherence",
    "probe": "probe",
    "retrieval_top1": "retrieval top-1",
    "clustering": "clustering",
}
NOT_FRACTIONS = {("joint_coherence", "samples")}
LEAD = ["variant", "overrides", "seeds"]


def fractions(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``load_run_metrics`` output that the table prints: ablation runs, ``METRICS``, fractions."""
    if frame["variant"].isna().any():
        run = frame[frame["variant"].isna()].iloc[0]
        raise ValueError(
            f"not an ablation run's metrics (no 'variant'): dataset {run['dataset']!r}, model {run['model']!r}, "
            f"seed {run['seed']}; pass the metrics.json files under results/<study>/ablation/"
        )
    other_units = pd.MultiIndex.from_frame(frame[["metric", "key"]]).isin(list(NOT_FRACTIONS))
    return frame[frame["metric"].isin(list(METRICS)) & ~other_units]


def describe_overrides(overrides: Mapping[str, Any], prefix: str = "") -> str:
    """``{"params": {"beta": 0.0}}`` -> ``beta=0.0`` (``params.`` dropped); ``-`` for none."""
    parts = []
    for key, value in overrides.items():
        name = key if (not prefix and key == "params") else f"{prefix}{key}"
        if isinstance(value, Mapping):
            parts.append(describe_overrides(value, "" if name == "params" else f"{name}."))
        else:
            parts.append(f"{name}={str(value).lower() if isinstance(value, bool) else value}")
    return ", ".join(p for p in parts if p and p != "-") or "-"


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, variant, metric, key): mean, std, ci95, n_seeds and ``delta_vs_full`` (the mean
    minus the reference variant's on that dataset; NaN without one). Datasets sorted, variants in
    their order of first appearance, metrics and keys in the order of the metrics files."""
    by = ["dataset", "variant", "metric", "key"]
    rows = []
    for group, values in frame.groupby(by, sort=False)["value"]:
        st = seed_stats(values)
        rows.append(
            dict(zip(by, group, strict=True)) | {k: st[k] for k in ("mean", "std", "ci95")} | {"n_seeds": st["n"]}
        )
    out = pd.DataFrame(rows)
    reference = out[out["variant"] == REFERENCE].set_index(["dataset", "metric", "key"])["mean"]
    cells = zip(out["dataset"], out["metric"], out["key"], strict=True)
    out["delta_vs_full"] = out["mean"] - [reference.get(c, math.nan) for c in cells]
    order = {v: i for i, v in enumerate(dict.fromkeys(frame["variant"]))}
    return out.sort_values(by[:2], key=lambda s: s.map(order) if s.name == "variant" else s, kind="stable")


def _cell(mean: float, std: float) -> str:
    return f"{100 * mean:.1f}" if math.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _overrides(config: Mapping, variant: str) -> str:
    try:
        return describe_overrides(variant_overrides(config, variant))
    except ValueError:  # a variant the config no longer declares
        return "?"


def _cells(stats: pd.DataFrame, config: Mapping) -> pd.DataFrame:
    """One dataset's rows: variant, overrides, seeds, then every metric in ``METRICS`` order (keys in
    the order of the metrics files) as mean ± std in %."""
    pairs = dict.fromkeys(zip(stats["metric"], stats["key"], strict=True))
    keys = sorted(pairs, key=lambda pair: list(METRICS).index(pair[0]))
    rows = []
    for variant in dict.fromkeys(stats["variant"]):
        runs = stats[stats["variant"] == variant].set_index(["metric", "key"])
        row = {("", "variant"): variant, ("", "overrides"): _overrides(config, variant)}
        row[("", "seeds")] = str(int(runs["n_seeds"].max()))
        for metric, key in keys:
            number = runs.loc[(metric, key)] if (metric, key) in runs.index else None
            row[(METRICS[metric], key.replace("->", "→"))] = "-" if number is None else _cell(*number[["mean", "std"]])
        rows.append(row)
    cells = pd.DataFrame(rows)
    cells.columns = pd.MultiIndex.from_tuples(cells.columns)
    return cells


def ablation_table(frame: pd.DataFrame, config: Mapping, outdir: str | Path) -> list[Path]:
    """``ablation_table.{csv,md,tex,html}`` under ``outdir`` from ``load_run_metrics`` output of ablation runs."""
    frame = fractions(frame)
    if frame.empty:
        raise ValueError("no ablation metrics to aggregate")
    stats = summary(frame)
    study = config["study"]
    caption = f"Ablation of `{config['ablation']['model']}`, study `{study}`, in %"
    notes = [
        "Mean ± sample std (ddof=1) over seeds; the mean alone with one seed. Each variant applies its overrides "
        "on top of the model's resolved settings. The CSV also holds, as fractions, the 95% t-interval "
        f"half-width (ci95) and the difference of the mean to the variant `{REFERENCE}`."
    ]
    sections = {}
    for dataset in dict.fromkeys(stats["dataset"]):
        mine = stats[stats["dataset"] == dataset]
        cells = _cells(mine, config)
        sections[dataset] = TableDoc(
            caption=f"{caption}, dataset `{dataset}`",
            label=f"{study}-ablation-{dataset}",
            numbers=mine,
            cells=cells,
            marks=pd.DataFrame("", index=cells.index, columns=cells.columns),
            lead=len(LEAD),
            notes=notes,
        )
    outdir = Path(outdir)
    write_sections(outdir, NAME, caption, sections)
    return [outdir / f"{NAME}.{ext}" for ext in EXTENSIONS]
