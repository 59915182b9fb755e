"""The paper's tables from the per-run metrics: mean ± std over seeds with a 95% t-interval, the
paper's number and our difference to it, a paired test of MGMVAE against the best baseline; per
table ``.csv`` (numbers), ``.md``, ``.tex`` (booktabs) and ``.html``. One module per part
(docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mgmvae.tables.clustering import clustering_table
from mgmvae.tables.generative import generative_table
from mgmvae.tables.paper_table import paper_table
from mgmvae.tables.polymnist import polymnist_table
from mgmvae.tables.render import write_empty
from mgmvae.tables.runs import COLUMNS, load_run_metrics
from mgmvae.tables.spec import EXTENSIONS, NOT_NAMED, POLYMNIST, TABLE_SPECS, Column, TableSpec, table_names
from mgmvae.tables.statistics import ci95_halfwidth, paired_test, rank_marks, seed_stats, t_interval
from mgmvae.tables.summary import table_summary

__all__ = [
    "COLUMNS",
    "EXTENSIONS",
    "TABLE_SPECS",
    "Column",
    "TableSpec",
    "build_tables",
    "ci95_halfwidth",
    "load_run_metrics",
    "paired_test",
    "rank_marks",
    "seed_stats",
    "t_interval",
    "table_summary",
]


def _one_study(df: pd.DataFrame, study: str | None) -> tuple[pd.DataFrame, str | None]:
    studies = sorted(df["study"].unique())
    if study is None:
        if len(studies) > 1:
            raise ValueError(f"metrics from several studies {studies}: pass study= to choose one")
        return df, (studies[0] if studies else None)
    return df[df["study"] == study], study


def build_tables(
    df: pd.DataFrame, table_datasets: Mapping[str, str], outdir: str | Path, study: str | None = None
) -> list[Path]:
    """Write every table of ``table_names()`` as .csv, .md, .tex and .html under ``outdir``; return their paths.

    ``table_datasets`` names the dataset each table reads, e.g. {"table1": "mnist_svhn",
    "table2": "mnist_svhn", "table3": "mnist_cdcb", "polymnist": None}; a table it names none for
    (null, or absent) gets files that say so. ``df`` must hold a single study unless ``study``
    selects one.
    """
    df, study = _one_study(df, study)
    dup = df.duplicated(["dataset", "model", "seed", "protocol_setting", "metric", "key"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(
            f"duplicate run: study {study!r}, dataset {first['dataset']!r}, "
            f"model {first['model']!r}, seed {first['seed']}, protocol {first['protocol_setting']!r}"
        )
    outdir = Path(outdir)
    for name, spec in TABLE_SPECS.items():
        key = spec.reads or name
        if table_datasets.get(key) is None:
            title = f"{spec.number} — {spec.what}, study `{study}`"
            write_empty(outdir, name, title, NOT_NAMED.format(key=key), ["model", "name", "n_seeds"])
        else:
            paper_table(df, spec, study, table_datasets[key], outdir)
    polymnist_table(df, study, table_datasets.get(POLYMNIST), outdir)
    generative_table(df, study, table_datasets, outdir)
    clustering_table(df, study, outdir)
    return [outdir / f"{name}.{ext}" for name in table_names() for ext in EXTENSIONS]
