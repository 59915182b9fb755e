"""Aggregating per-run metrics into the paper's tables (ours: mean ± std over seeds, beside the paper's).

Each run writes one JSON file::

    {"study": s, "dataset": d, "model": m, "seed": k, "modalities": [m0, m1], "metrics": <evaluate_model output>}

Our direction m0->m1 is matched with the paper's first column (MNIST->SVHN, CD->CB) and the
probe on m0 with the paper's MNIST column, by position, because the quick preset's stand-in
datasets name their modalities differently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from mgmvae import paper
from mgmvae.io import save_text

COLUMNS = ["study", "dataset", "model", "seed", "m0", "m1", "metric", "key", "slot", "value", "method", "k"]

TITLES = {
    "table1": ("Table 1", "cross_generation", "cross-modal generation accuracy (%)"),
    "table2": ("Table 2", "probe", "linear-probe accuracy (%) on the shared latent"),
    "table3": ("Table 3", "retrieval_top1", "cross-modal retrieval top-1 accuracy (%)"),
}

DATASET_NOTES = {
    "digits_street": "embedded stand-in for MNIST-SVHN",
    "digits_cdcb": "embedded stand-in for MNIST-CDCB",
    "mnist_svhn": "MNIST-SVHN, as in the paper",
    "mnist_cdcb": "MNIST-CDCB, as in the paper",
}

DASH = "—"


# ------------------------------------------------------------------ loading
def _slot(metric: str, key: str, m0: str, m1: str) -> int:
    """Position of a metric key among the paper's columns (0, 1), or -1 where the paper has none."""
    if metric == "probe":
        return {m0: 0, m1: 1}.get(key, -1)
    if metric in ("cross_generation", "retrieval_top1"):
        return {f"{m0}->{m1}": 0, f"{m1}->{m0}": 1}.get(key, -1)
    return -1


def _run_rows(run: dict) -> list[dict]:
    m0, m1 = run["modalities"]
    base = {k: run[k] for k in ("study", "dataset", "model")} | {"seed": int(run["seed"]), "m0": m0, "m1": m1}
    rows = []
    for metric, values in run["metrics"].items():
        extra = {"method": values.get("method"), "k": values.get("k")} if metric == "clustering" else {}
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "k":
                rows.append(base | extra | {"metric": metric, "key": key, "slot": _slot(metric, key, m0, m1), "value": float(value)})
    return rows


def load_run_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long table, one row per (run, metric, key): columns ``COLUMNS``; values are fractions."""
    rows = []
    for path in paths:
        try:
            rows += _run_rows(json.loads(Path(path).read_text()))
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a per-run metrics file ({error!r})") from error
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------- formatting
def _model_order(models: Iterable[str]) -> list[str]:
    known = [m for m in paper.MODEL_ORDER if m in set(models)]
    unknown = sorted(set(models) - set(known))
    # unlisted models go before MGMVAE, which the paper puts last
    return [m for m in known if m != "mgmvae"] + unknown + (["mgmvae"] if "mgmvae" in known else [])


def _pm(mean: float, std: float) -> str:
    if mean is None or math.isnan(mean):
        return DASH
    return f"{mean:.2f} ± {DASH if std is None or math.isnan(std) else f'{std:.2f}'}"


def _num(value, decimals: int) -> str:
    return DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def _markdown(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align] + rows
    return "\n".join("| " + " | ".join(r) + " |" for r in lines) + "\n"


def _caption(number: str, what: str, study: str | None, dataset: str) -> str:
    note = DATASET_NOTES.get(dataset)
    return f"{number} — {what}, study `{study}`, dataset `{dataset}`" + (f" ({note})" if note else "")


def _stats(sub: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed) and seed count, in percent."""
    g = sub.groupby(by)["value"]
    return pd.DataFrame({"mean": g.mean() * 100, "std": g.std(ddof=1) * 100, "n": g.count()})


# ------------------------------------------------------------------- tables
def _paper_table(df: pd.DataFrame, table: str, study: str | None, dataset: str, outdir: Path) -> None:
    number, metric, what = TITLES[table]
    sub = df[(df["dataset"] == dataset) & (df["metric"] == metric)]
    caption = _caption(number, what, study, dataset)
    paper_cols, paper_rows, dec = paper.COLUMNS[table], paper.TABLES[table], paper.DECIMALS[table]
    if sub.empty:
        save_text(pd.DataFrame(columns=["model", "name", "n_seeds"]).to_csv(index=False), outdir / f"{table}.csv")
        save_text(f"{caption}\n\nNo runs of this study on this dataset.\n", outdir / f"{table}.md")
        return
    pairs = sub[["m0", "m1"]].drop_duplicates()
    if len(pairs) > 1:
        raise ValueError(f"{table}: runs on dataset {dataset!r} disagree on the modality order: {pairs.values.tolist()}")
    m0, m1 = pairs.iloc[0]
    # (our column label, metric key, paper column or None)
    if metric == "probe":
        cols = [(m0, m0, paper_cols[0]), (m1, m1, paper_cols[1]), ("joint", "joint", None)]
    else:
        cols = [(f"{m0}->{m1}", f"{m0}->{m1}", paper_cols[0]), (f"{m1}->{m0}", f"{m1}->{m0}", paper_cols[1])]

    stats = _stats(sub, ["model", "key"])
    seeds = sub.groupby("model")["seed"].nunique()
    models = _model_order(sub["model"].unique())
    csv_rows, md_rows = [], []
    for model in models:
        row = {"model": model, "name": paper.display_name(model), "n_seeds": int(seeds[model])}
        md = [paper.display_name(model), str(int(seeds[model]))]
        for label, key, pcol in cols:
            mean, std = (stats.loc[(model, key), ["mean", "std"]] if (model, key) in stats.index else (math.nan, math.nan))
            row |= {f"{label} mean": mean, f"{label} std": std}
            md.append(_pm(mean, std))
            if pcol is not None:
                reported = paper_rows.get(model, {}).get(pcol)
                row[f"paper {pcol}"] = reported
                md.append(_num(reported, dec))
        csv_rows.append(row)
        md_rows.append(md)

    header = ["Model", "Seeds"]
    for label, _, pcol in cols:
        header += [f"{label.replace('->', '→')} (ours)"] + ([f"{pcol.replace('->', '→')} (paper)"] if pcol else [])
    text = f"{caption}\n\n" + _markdown(header, md_rows)
    text += (
        "\nOurs: mean ± sample std (ddof=1) over seeds, " + DASH + " for std with one seed. "
        f"Paper: as reported on {'MNIST-CDCB' if table == 'table3' else 'MNIST-SVHN'}; matched to our columns by position.\n"
    )
    paper_only = [m for m in _model_order(paper_rows) if m not in models]
    if paper_only:
        text += "\nReported in the paper only (not run here):\n\n" + _markdown(
            ["Model"] + [c.replace("->", "→") for c in paper_cols],
            [[paper.display_name(m)] + [_num(paper_rows[m].get(c), dec) for c in paper_cols] for m in paper_only],
        )
    save_text(pd.DataFrame(csv_rows).to_csv(index=False, float_format="%.4f"), outdir / f"{table}.csv")
    save_text(text, outdir / f"{table}.md")


def _clustering_table(df: pd.DataFrame, study: str | None, outdir: Path) -> None:
    sub = df[df["metric"] == "clustering"]
    caption = (
        f"Clustering of the joint shared latent of test pairs — Hungarian accuracy (%), NMI and ARI (×100), "
        f"study `{study}`, datasets " + ", ".join(f"`{d}`" for d in sorted(sub["dataset"].unique()))
    )
    stats = _stats(sub, ["dataset", "model", "key"])
    csv_rows, md_rows = [], []
    for dataset in sorted(sub["dataset"].unique()):
        ds = sub[sub["dataset"] == dataset]
        for model in _model_order(ds["model"].unique()):
            runs = ds[ds["model"] == model]
            method = "/".join(sorted(runs["method"].dropna().astype(str).unique()))
            k = "/".join(str(int(v)) for v in sorted(runs["k"].dropna().unique()))
            n = int(runs["seed"].nunique())
            row = {"dataset": dataset, "model": model, "name": paper.display_name(model), "method": method, "k": k, "n_seeds": n}
            md = [dataset, paper.display_name(model), method, k, str(n)]
            for key in ("accuracy", "nmi", "ari"):
                mean, std = stats.loc[(dataset, model, key), ["mean", "std"]] if (dataset, model, key) in stats.index else (math.nan, math.nan)
                row |= {f"{key} mean": mean, f"{key} std": std}
                md.append(_pm(mean, std))
            csv_rows.append(row)
            md_rows.append(md)
    header = ["Dataset", "Model", "Method", "k", "Seeds", "Accuracy", "NMI", "ARI"]
    body = _markdown(header, md_rows, numeric_from=4) if md_rows else "No clustering results in this study.\n"
    save_text(pd.DataFrame(csv_rows, columns=list(csv_rows[0]) if csv_rows else ["dataset", "model"]).to_csv(index=False, float_format="%.4f"), outdir / "clustering.csv")
    save_text(f"{caption}\n\n{body}", outdir / "clustering.md")


def build_tables(df: pd.DataFrame, table_datasets: dict[str, str], outdir: str | Path, study: str | None = None) -> list[Path]:
    """Write table{1,2,3}.{csv,md} and clustering.{csv,md} under ``outdir``; return their paths.

    ``table_datasets`` names the dataset each table reads, e.g. {"table1": "mnist_svhn",
    "table2": "mnist_svhn", "table3": "mnist_cdcb"}. ``df`` must hold a single study unless
    ``study`` selects one.
    """
    studies = sorted(df["study"].unique())
    if study is None:
        if len(studies) > 1:
            raise ValueError(f"metrics from several studies {studies}: pass study= to choose one")
        study = studies[0] if studies else None
    else:
        df = df[df["study"] == study]
    dup = df.duplicated(["dataset", "model", "seed", "metric", "key"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(f"duplicate run: study {study!r}, dataset {first['dataset']!r}, model {first['model']!r}, seed {first['seed']}")
    outdir = Path(outdir)
    for table in ("table1", "table2", "table3"):
        _paper_table(df, table, study, table_datasets[table], outdir)
    _clustering_table(df, study, outdir)
    return [outdir / f"{name}.{ext}" for name in ("table1", "table2", "table3", "clustering") for ext in ("csv", "md")]
