"""One paper table's numbers: per (model, column) the seed statistics, the paper's number and the
difference to it, the marks; per column the paired test of MGMVAE against the best baseline.

Statistics, per cell, over the seeds of the study, in the spec's unit (percent by default):
mean; sample std (ddof=1); 95% interval mean ± t_{0.975, n-1} · std / √n, "—" with one seed;
difference to the paper = our mean − the paper's number ("—" for a model the paper does not list).
Per column: a paired t-test (``scipy.stats.ttest_rel``, paired by seed) of MGMVAE against the
best baseline of this study (the other model with the best mean in that column), on the seeds
both have; "n/a" with fewer than two common seeds. Marks, per column among the models of this
study (as in the paper): best in bold, second underlined, ranked on the mean as printed. The best
mean is the highest, or the lowest in a column whose smaller numbers are better (``Column.lower``).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mgmvae import paper
from mgmvae.tables.spec import OURS, TableSpec
from mgmvae.tables.statistics import isnan, paired_test, rank_marks, seed_stats

SUMMARY_COLUMNS = [
    "model",
    "name",
    "column",
    "key",
    "paper_column",
    "n",
    "mean",
    "std",
    "ci95",
    "low",
    "high",
    "paper",
    "diff",
    "seeds",
    "values",
    "mark",
    "lower",
]


def modalities(df: pd.DataFrame, spec: TableSpec, dataset: str) -> tuple[str, str] | None:
    """The (m0, m1) of the dataset's runs of this table, or None without runs."""
    metrics = {c.metric for c in spec.columns}
    pairs = df[(df["dataset"] == dataset) & df["metric"].isin(metrics)][["m0", "m1"]].drop_duplicates()
    if len(pairs) > 1:
        raise ValueError(
            f"{spec.name}: runs on dataset {dataset!r} disagree on the modality order: {pairs.values.tolist()}"
        )
    return None if pairs.empty else (str(pairs.iloc[0]["m0"]), str(pairs.iloc[0]["m1"]))


def paper_number(spec: TableSpec, model: str, column: str | None) -> float:
    value = paper.REPORTED.get(spec.name, {}).get(model, {}).get(column) if column else None
    return math.nan if value is None else float(value)


def table_summary(df: pd.DataFrame, spec: TableSpec, dataset: str) -> pd.DataFrame:
    """One row per (model, column) of a paper table: ``SUMMARY_COLUMNS``; empty when no run."""
    pair = modalities(df, spec, dataset)
    if pair is None:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    sub = df[df["dataset"] == dataset]
    models = paper.model_order(sub[sub["metric"].isin({c.metric for c in spec.columns})]["model"].unique())
    rows = []
    for column in spec.columns:
        label, key = column.resolve(*pair)
        cell = sub[(sub["metric"] == column.metric) & (sub["key"] == key)]
        for model in models:
            runs = cell[cell["model"] == model].sort_values("seed")
            values = runs["value"] * spec.scale
            st = seed_stats(values)
            reported = paper_number(spec, model, column.paper)
            rows.append(
                {"model": model, "name": paper.display_name(model), "column": label, "key": key}
                | {"paper_column": column.paper, **st, "paper": reported, "diff": st["mean"] - reported}
                | {"seeds": runs["seed"].astype(int).tolist(), "values": values.tolist(), "mark": ""}
                | {"lower": column.lower}
            )
    frame = pd.DataFrame(rows)
    for label, group in frame.groupby("column", sort=False):
        means = dict(zip(group["model"], group["mean"] * _sign(group), strict=True))
        for model, mark in rank_marks(means, spec.decimals).items():
            frame.loc[(frame["column"] == label) & (frame["model"] == model), "mark"] = mark
    return frame[SUMMARY_COLUMNS]


def _sign(group: pd.DataFrame) -> int:
    """-1 for a column whose smaller numbers are better, else 1: ranking sign * mean ranks either."""
    return -1 if group["lower"].iloc[0] else 1


def _test_text(test: dict[str, Any] | None, ours: str, best: str | None, n_ours: int, n_best: int) -> str:
    if best is None:
        return "n/a (no baseline in this study)"
    name = f"{paper.display_name(ours)} vs {paper.display_name(best)}"
    if test is None:
        return f"{name}: n/a (fewer than 2 common seeds: {n_ours} and {n_best})"
    if isnan(test["p"]):
        return f"{name}: n/a (identical on all {test['n']} common seeds)"
    constant = " — the same difference on every seed" if math.isinf(test["t"]) else ""
    return f"{name}: t = {test['t']:.3f}, p = {test['p']:.3g} ({test['n']} paired seeds{constant})"


def column_tests(summary: pd.DataFrame, ours: str = OURS) -> dict[str, dict[str, Any]]:
    """Per column: {"best": best baseline or None, "test": paired_test(...) or None, "text": str}."""
    out: dict[str, dict[str, Any]] = {}
    for label, group in summary.groupby("column", sort=False):
        by_model = {r.model: r for r in group.itertuples()}
        if ours not in by_model:
            out[str(label)] = {
                "best": None,
                "test": None,
                "text": f"n/a ({paper.display_name(ours)} not in this study)",
            }
            continue
        baselines = {m: r for m, r in by_model.items() if m != ours and not isnan(r.mean)}
        best = max(baselines, key=lambda m: (_sign(group) * baselines[m].mean, m), default=None)
        test = None
        if best is not None:
            a, b = by_model[ours], baselines[best]
            test = paired_test(dict(zip(a.seeds, a.values, strict=True)), dict(zip(b.seeds, b.values, strict=True)))
        text = _test_text(test, ours, best, int(by_model[ours].n), int(baselines[best].n) if best else 0)
        out[str(label)] = {"best": best, "test": test, "text": text}
    return out
