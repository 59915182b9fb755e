"""The ablation study's aggregation: one table over variants × datasets and one plot per dataset.

Each ablation run (``python -m mgmvae evaluate --variant V``) writes a metrics file like any other
run, with a ``variant`` key. ``write_ablation`` reads them all and writes, under
``results/<study>/ablation/``:

- ``ablation_table.csv``: one row per (dataset, variant, metric, key) with the mean, std and number
  of seeds (values are fractions) and the difference to the reference variant ``full``;
- ``ablation_table.md``: per dataset, one row per variant (its overrides, then every metric as
  mean ± std in %);
- ``ablation_plot_<dataset>.{png,pdf}``: the headline metrics against variant
  (``mgmvae.figures.ablation_plot``, seaborn: mean bars, 95% t-intervals, one dot per seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mgmvae.config import variant_overrides
from mgmvae.io import save_text
from mgmvae.tables.render import markdown as table_markdown

REFERENCE = "full"
COLUMNS = ["dataset", "variant", "seed", "metric", "key", "value"]
# The metric sections the table prints, all fractions (shown in %). The rest of a run's metrics
# (the probe's chosen C, the joint-coherence sample count, log-likelihoods in nats) are settings
# or other units: they stay in each run's metrics.json and MLflow run.
METRIC_ORDER = (
    "cross_generation",
    "cross_generation_balanced",
    "joint_coherence",
    "probe",
    "retrieval_top1",
    "clustering",
)
METRIC_NAMES = {
    "cross_generation": "coherence",
    "cross_generation_balanced": "balanced coherence",
    "joint_coherence": "coherence",
    "probe": "probe",
    "retrieval_top1": "retrieval top-1",
    "clustering": "clustering",
}
NOT_FRACTIONS = {("joint_coherence", "samples")}


def load_ablation_metrics(files: Iterable[str | Path]) -> pd.DataFrame:
    """Long frame, one row per (run, metric, key): ``COLUMNS``; values are fractions."""
    rows = []
    for path in files:
        try:
            run = json.loads(Path(path).read_text())
            base = {"dataset": run["dataset"], "variant": run["variant"], "seed": int(run["seed"])}
            for metric, values in run["metrics"].items():
                if metric not in METRIC_ORDER:
                    continue
                for key, value in values.items():
                    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                    if numeric and key != "k" and (metric, key) not in NOT_FRACTIONS:
                        rows.append(base | {"metric": metric, "key": key, "value": float(value)})
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not an ablation run's metrics file ({error!r})") from error
    return pd.DataFrame(rows, columns=COLUMNS)


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


def _order(frame: pd.DataFrame, variants: list[str]) -> list[str]:
    present = list(dict.fromkeys(frame["variant"]))
    return [v for v in variants if v in present] + [v for v in present if v not in variants]


def _metric_keys(frame: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = list(dict.fromkeys(zip(frame["metric"], frame["key"], strict=True)))
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    return sorted(pairs, key=lambda p: (rank.get(p[0], len(rank)), pairs.index(p)))


def summary(frame: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1) and seed count per (dataset, variant, metric, key), and the difference
    of the mean to the reference variant ``full`` of the same dataset (NaN without one)."""
    grouped = frame.groupby(["dataset", "variant", "metric", "key"], sort=False)["value"]
    out = grouped.agg(
        mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else math.nan, n_seeds="count"
    ).reset_index()
    ref = out[out["variant"] == REFERENCE].set_index(["dataset", "metric", "key"])["mean"]
    out["delta_vs_full"] = [
        ref.get((d, m, k), math.nan) for d, m, k in zip(out["dataset"], out["metric"], out["key"], strict=True)
    ]
    out["delta_vs_full"] = out["mean"] - out["delta_vs_full"]
    order = {v: i for i, v in enumerate(_order(frame, variants))}
    return out.sort_values(
        ["dataset", "variant"], key=lambda s: s.map(order) if s.name == "variant" else s, kind="stable"
    ).reset_index(drop=True)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}" if math.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown(stats: pd.DataFrame, frame: pd.DataFrame, config: Mapping, variants: list[str]) -> str:
    model = config["ablation"]["model"]
    lines = [
        f"Ablation of {model} (study {config['study']}): mean ± std over seeds, in %. "
        f"Each variant applies its overrides on top of the model's resolved settings.",
        "",
    ]
    for dataset in dict.fromkeys(stats["dataset"]):
        sub = stats[stats["dataset"] == dataset]
        keys = _metric_keys(frame[frame["dataset"] == dataset])
        header = ["variant", "overrides", "seeds"] + [
            f"{METRIC_NAMES.get(m, m)} {k}".replace("->", "→") for m, k in keys
        ]
        rows = []
        for variant in _order(frame[frame["dataset"] == dataset], variants):
            cells = sub[sub["variant"] == variant].set_index(["metric", "key"])
            try:
                overrides = describe_overrides(variant_overrides(config, variant))
            except ValueError:
                overrides = "?"
            seeds = int(cells["n_seeds"].max()) if len(cells) else 0
            values = [_cell(*cells.loc[(m, k), ["mean", "std"]]) if (m, k) in cells.index else "-" for m, k in keys]
            rows.append([variant, overrides, str(seeds)] + values)
        lines += [f"### {dataset}", "", table_markdown(pd.DataFrame(rows, columns=header), None, lead=4)]
    return "\n".join(lines)


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: coherence and retrieval averaged over both directions, the joint probe and the
    clustering accuracy (in %): the ``variant, metric, value, seed`` frame of the plots."""
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


def plot_files(outdir: str | Path, datasets: Iterable[str]) -> list[Path]:
    return [Path(outdir) / f"ablation_plot_{d}.{ext}" for d in datasets for ext in ("png", "pdf")]


def write_ablation(metric_files: Iterable[str | Path], config: Mapping, outdir: str | Path) -> list[Path]:
    """The ablation table (csv, md) and plots; returns the written paths."""
    from mgmvae.figures import ablation_plot

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    frame = load_ablation_metrics(metric_files)
    if frame.empty:
        raise ValueError("no ablation metrics to aggregate")
    # Variants in the order of the metric files (Snakemake passes them in declaration order; the
    # study's merged config.yaml has its keys sorted).
    variants = list(dict.fromkeys(frame["variant"]))
    stats = summary(frame, variants)
    csv, md = outdir / "ablation_table.csv", outdir / "ablation_table.md"
    save_text(stats.to_csv(index=False, float_format="%.4f"), csv)
    save_text(markdown(stats, frame, config, variants), md)
    written = [csv, md]
    heads = headline(frame)
    model = config["ablation"]["model"]
    for dataset in dict.fromkeys(frame["dataset"]):
        sub = heads[heads["dataset"] == dataset].drop(columns="dataset")
        order = {v: i for i, v in enumerate(_order(sub, variants))}
        sub = sub.sort_values("variant", key=lambda s: s.map(order), kind="stable")
        title = f"Ablation of {model} on {dataset} (study {config['study']}), in %"
        written += ablation_plot(sub, outdir / f"ablation_plot_{dataset}", title=title)
    return written
