"""The M-modality table (PolyMNIST): per model, conditional coherence by number of given modalities,
joint coherence, the probe by number of given modalities and mean retrieval, with the seed
statistics, marks and paired tests of Tables 1–3 (``paper_table``), and the published PolyMNIST
numbers (``mgmvae.paper.POLYMNIST``) beside the coherence columns only on ``polymnist``, the released
data scored as the references score it (ClfImg, released weights: config ``classifier.by_dataset``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mgmvae.tables.paper_table import paper_table
from mgmvae.tables.render import write_empty
from mgmvae.tables.spec import NOT_NAMED, POLYMNIST, polymnist_spec


def n_modalities(df: pd.DataFrame, dataset: str) -> int | None:
    """M of the dataset's runs: one more than the largest number of given modalities of their
    conditional coherence; None without runs."""
    keys = df[(df["dataset"] == dataset) & (df["metric"] == "conditional_coherence")]["key"]
    return max(int(k) for k in keys) + 1 if len(keys) else None


def polymnist_table(df: pd.DataFrame, study: str | None, dataset: str | None, outdir: Path) -> None:
    """``polymnist.{csv,md,tex,html}`` for the runs on ``dataset``; a note where the study names none."""
    if dataset is None:
        spec = polymnist_spec(2, published=False)
        title = f"{spec.number} — {spec.what}, study `{study}`"
        write_empty(outdir, POLYMNIST, title, NOT_NAMED.format(key=POLYMNIST), ["model", "name", "n_seeds"])
        return
    spec = polymnist_spec(n_modalities(df, dataset) or 2, published=dataset == "polymnist")  # the released data
    paper_table(df, spec, study, dataset, outdir)
