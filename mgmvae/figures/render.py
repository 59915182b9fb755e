"""Every figure of ``figure_specs`` for a study: the driver of the ``figures`` stage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mgmvae import paper
from mgmvae.figures.bars import table_bars
from mgmvae.figures.coherence import coherence_plot
from mgmvae.figures.cross_generation import cross_generation_grid
from mgmvae.figures.curves import training_curves
from mgmvae.figures.retrieval import retrieval_panel
from mgmvae.figures.specs import figure_specs
from mgmvae.figures.translation import style_note, translation_grid
from mgmvae.figures.tsne import tsne_plot


def render_all(
    datasets: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, list[Any]]],
    metrics: pd.DataFrame | None,
    table_datasets: Mapping[str, str],
    outdir: str | Path,
    *,
    study: str | None,
    seed: int,
    tsne_points: int,
    evaluation: Mapping[str, Any],
    bars: bool = True,
) -> list[Path]:
    """Every figure of ``figure_specs``: ``datasets`` {name: PairedData}, ``models`` {dataset:
    {model: model}}, ``histories`` {dataset: {model: history}}, ``metrics`` the long frame of
    ``load_run_metrics``; ``evaluation`` the config's section (its batch size, retrieval chunk and
    clusters). Returns the written paths (PNG and PDF)."""
    from mgmvae.tables import TABLE_SPECS
    from mgmvae.tables.spec import POLYMNIST

    outdir = Path(outdir)
    specs = figure_specs(
        {d: data.modalities for d, data in datasets.items()},
        {d: list(models[d]) for d in datasets},
        bars=bars,
        tables=table_datasets,
    )
    written = []
    tag = f" (seed {seed})"
    batch_size, n_clusters = int(evaluation["batch_size"]), int(evaluation["n_clusters"])
    for spec in specs:
        kind, d, m, out = spec["kind"], spec["dataset"], spec["model"], outdir / spec["stem"]
        data: Any = datasets.get(d)  # None for the bar charts, which read the metrics
        src, tgt = spec["source"], spec["target"]
        if kind == "cross_generation":
            title = f"{d}: cross-generation {src} → {tgt}{tag}"
            written += cross_generation_grid(data, models[d], src, tgt, out, title=title)
        elif kind == "translation":
            title = f"{d}, {paper.display_name(m)}{tag}: {src} content × {tgt} style{style_note(models[d][m])}"
            written += translation_grid(data, models[d][m], src, tgt, out, model_name=m, title=title)
        elif kind == "retrieval":
            title = f"{d}: retrieval {src} → {tgt}{tag}\nframe green: same label as the query, red: other label"
            chunk = int(evaluation["retrieval_chunk"])
            written += retrieval_panel(data, models[d], src, tgt, out, batch_size, chunk, title=title)
        elif kind == "tsne":
            points = min(tsne_points, data.num_pairs("test"))
            title = f"{d}: t-SNE of the joint shared latent{tag}, {points} test pairs"
            written += tsne_plot(data, models[d], out, tsne_points, seed, n_clusters, batch_size, title=title)
        elif kind == "curves":
            title = f"{d}, {paper.display_name(m)}{tag}: training loss terms per epoch"
            written += training_curves(histories.get(d, {}).get(m, []), out, title=title)
        elif kind == "bars":
            table = Path(spec["stem"]).name
            dataset = table_datasets[TABLE_SPECS[table].reads or table]
            written += table_bars(metrics, table, dataset, out, study=study)
        elif kind == "coherence":
            written += coherence_plot(metrics, table_datasets[POLYMNIST], out, study=study)
    return written
