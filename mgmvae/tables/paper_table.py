"""Tables 1–3 (and any ``TableSpec``): ours beside the paper's numbers, per column of the spec.

Per column: ours as mean ± std with its 95% interval, then — where the spec names a paper column —
the paper's number and our difference to it; the paired test line per column under the table; the
paper's rows for models not run here in a second table. One table per evaluation protocol of the
study (``protocols``); a spec with ``quality`` shows each estimate's estimator quality (``quality``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

import mgmvae.tables.protocols as protocols
import mgmvae.tables.quality as quality
from mgmvae import paper
from mgmvae.tables.render import TableDoc, write_empty
from mgmvae.tables.spec import DASH, DATASET_NOTES, OURS, TableSpec
from mgmvae.tables.statistics import isnan
from mgmvae.tables.summary import column_tests, table_summary


def caption(spec: TableSpec, study: str | None, dataset: str, protocol: str) -> str:
    """The table's title; ``protocol``: the words naming the protocol (``protocols.describe``)."""
    note = DATASET_NOTES.get(dataset)
    where = f"{spec.number} — {spec.what}, study `{study}`, dataset `{dataset}`" + (f" ({note})" if note else "")
    return f"{where}, {protocol}"


def fmt(value: float, template: str = "{:.2f}") -> str:
    return DASH if isnan(value) else template.format(value)


def pm(mean: float, std: float) -> str:
    return DASH if isnan(mean) else f"{mean:.2f} ± {fmt(std)}"


def interval(low: float, high: float) -> str:
    return DASH if isnan(low) or isnan(high) else f"[{low:.2f}, {high:.2f}]"


def _arrow(text: str) -> str:
    return text.replace("->", "→")


def _cells(c: Any, paper_decimals: int) -> dict[str, tuple[str, str]]:
    """One column's cells of one model: {sub-header: (text, mark)}."""
    out = {"Ours": (pm(c.mean, c.std), c.mark), "95% CI": (interval(c.low, c.high), "")}
    if isinstance(c.paper_column, str):  # NaN in the frame where the spec names none
        out |= {f"Paper ({_arrow(c.paper_column)})": (fmt(c.paper, f"{{:.{paper_decimals}f}}"), "")}
        out |= {"Δ paper": (fmt(c.diff, "{:+.2f}"), "")}
    return out


def _numbers(c: Any, model: str, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One column's CSV fields of one model."""
    label = c.column
    row = {f"{label} mean": c.mean, f"{label} std": c.std, f"{label} ci95": c.ci95}
    if isinstance(c.paper_column, str):  # NaN in the frame where the spec names none
        row |= {f"paper {c.paper_column}": c.paper, f"{label} diff paper": c.diff}
    if model == OURS:
        t = tests[label]
        row |= {
            f"{label} paired vs": t["best"] or "",
            f"{label} paired t": t["test"]["t"] if t["test"] else math.nan,
            f"{label} paired p": t["test"]["p"] if t["test"] else math.nan,
        }
    return row


def _notes(spec: TableSpec, tests: dict[str, dict[str, Any]], has_paper: bool) -> list[str]:
    notes = [
        f"Ours: mean ± sample std (ddof=1) over seeds; 95% CI: mean ± t(0.975, n−1)·std/√n; {DASH} with one seed. "
        "Best of this study's models in bold, second underlined (per column)."
    ]
    if has_paper:
        notes.append(
            f"Paper: as reported on {spec.paper_on}; matched to our columns by position. "
            f"Δ paper = our mean − the paper's number; {DASH} where the paper has no number."
        )
    notes += [spec.note] if spec.note else []
    return notes + [f"Paired t-test over seeds, {label}: {t['text']}." for label, t in tests.items()]


def _paper_only(spec: TableSpec, models: list[str]) -> tuple[str, pd.DataFrame] | None:
    rows = paper.REPORTED.get(spec.name, {})
    columns = [c.paper for c in spec.columns if c.paper]
    only = [m for m in paper.model_order(rows) if m not in models]
    if not only or not columns:
        return None
    decimals = paper.DECIMALS.get(spec.name, spec.decimals)
    frame = pd.DataFrame(
        [
            [paper.display_name(m)] + [fmt(rows[m].get(c, math.nan), f"{{:.{decimals}f}}") for c in columns]
            for m in only
        ],
        columns=["Model"] + [_arrow(c) for c in columns],
    )
    return "Reported in the paper only (not run here):", frame


def paper_table(df: pd.DataFrame, spec: TableSpec, study: str | None, dataset: str, outdir: Path) -> None:
    """``<spec.name>.{csv,md,tex,html}`` for the runs on ``dataset``: one table per protocol setting,
    or, for a spec whose metric does not depend on the protocol, the first setting's runs."""
    frames = protocols.by_setting(df)
    if not spec.by_protocol:
        frames = dict(list(frames.items())[:1])
    several = len(frames) > 1
    docs = {}
    for setting, frame in frames.items():
        words = protocols.describe(setting, frame) if spec.by_protocol else protocols.INDEPENDENT
        label = f"{study}-{spec.name}" + (f"-{setting}" if several else "")
        docs[setting] = table_doc(frame, spec, dataset, caption(spec, study, dataset, words), label)
    words = protocols.INDEPENDENT if not spec.by_protocol else "protocols " + ", ".join(f"`{s}`" for s in frames)
    title = caption(spec, study, dataset, words)
    found = {setting: doc for setting, doc in docs.items() if doc is not None}
    if not found:
        write_empty(outdir, spec.name, title, "No runs of this study on this dataset.", ["model", "name", "n_seeds"])
        return
    protocols.write_docs(outdir, spec.name, title, found)


def table_doc(df: pd.DataFrame, spec: TableSpec, dataset: str, title: str, label: str) -> TableDoc | None:
    """The table of one protocol setting's runs (None without runs on ``dataset``)."""
    summary = table_summary(df, spec, dataset)
    if summary.empty:
        return None
    tests = column_tests(summary)
    decimals = paper.DECIMALS.get(spec.name, spec.decimals)
    models = paper.model_order(summary["model"].unique())
    runs = df[df["dataset"] == dataset]
    numbers: list[dict[str, Any]] = []
    cells: list[dict[tuple[str, str], tuple[str, str]]] = []
    for model in models:
        mine = summary[summary["model"] == model]
        n = int(mine["n"].max())
        own = runs[runs["model"] == model]
        numbers.append({"model": model, "name": paper.display_name(model)})
        numbers[-1] |= {"protocol": protocols.resolved(own, model)} if spec.by_protocol else {}
        numbers[-1] |= {"n_seeds": n}
        cells.append({("", "Model"): (paper.display_name(model), ""), ("", "Seeds"): (str(n), "")})
        if spec.quality:
            fields, lead = quality.settings(own)
            numbers[-1] |= fields
            cells[-1] |= {("", h): (v, "") for h, v in lead.items()}
        for c in mine.itertuples():
            row, column_cells = _numbers(c, model, tests), _cells(c, decimals)
            if spec.quality:
                fields, extra, unreliable = quality.estimate(own, c.key, c.column)
                row = _after(row, f"{c.column} ci95", fields)
                text, mark = column_cells["Ours"]
                column_cells |= {"Ours": (text + (f" {quality.UNRELIABLE}" if unreliable else ""), mark)}
                column_cells |= {h: (v, "") for h, v in extra.items()}
            numbers[-1] |= row
            cells[-1] |= {(_arrow(c.column), sub): v for sub, v in column_cells.items()}
    frame = pd.DataFrame(cells)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    notes = _notes(spec, tests, summary["paper_column"].notna().any())
    return TableDoc(
        caption=title,
        label=label,
        numbers=pd.DataFrame(numbers),
        cells=frame.map(lambda v: v[0]),
        marks=frame.map(lambda v: v[1]),
        lead=2,
        notes=notes + (quality.notes(runs) if spec.quality else []),
        extra=_paper_only(spec, models),
    )


def _after(row: dict[str, Any], key: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``row`` with ``fields`` inserted after ``key``."""
    items = list(row.items())
    at = [k for k, _ in items].index(key) + 1
    return dict(items[:at] + list(fields.items()) + items[at:])
