"""The M-modality table (PolyMNIST): per model, conditional coherence by number of given modalities
(its header names the targets: ``evaluation.coherence_targets``), joint coherence, the probe by number
of given modalities and mean retrieval, with the seed statistics, marks and paired tests of Tables
1–3 (``paper_table``), and the published PolyMNIST numbers (``mgmvae.paper.POLYMNIST``) beside the
coherence columns only on ``polymnist`` with MultiVae's targets, the released data scored as the
references score it (ClfImg, released weights: config ``classifier.by_dataset``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mgmvae.tables.paper_table import paper_table
from mgmvae.tables.render import write_empty
from mgmvae.tables.spec import NOT_NAMED, POLYMNIST, polymnist_spec


def given_included(df: pd.DataFrame, dataset: str) -> bool:
    """Whether the runs scored coherence on every target (``evaluation.coherence_targets: all``); runs
    that do not record it scored those outside the given modalities."""
    flags = df[(df["dataset"] == dataset) & (df["metric"] == "conditional_coherence_targets")]["value"]
    if flags.nunique() > 1:
        raise ValueError(f"runs on {dataset!r} differ in evaluation.coherence_targets: evaluate them under one")
    return bool(flags.iloc[0]) if len(flags) else False


def n_modalities(df: pd.DataFrame, dataset: str, included: bool) -> int | None:
    """M of the dataset's runs: the most given modalities of their conditional coherence, plus one
    unless ``included``; None without runs."""
    keys = df[(df["dataset"] == dataset) & (df["metric"] == "conditional_coherence")]["key"]
    return max(int(k) for k in keys) + (not included) if len(keys) else None


def polymnist_table(df: pd.DataFrame, study: str | None, dataset: str | None, outdir: Path) -> None:
    """``polymnist.{csv,md,tex,html}`` for the runs on ``dataset``; a note where the study names none."""
    if dataset is None:
        spec = polymnist_spec(2, False, False)
        title = f"{spec.number} — {spec.what}, study `{study}`"
        write_empty(outdir, POLYMNIST, title, NOT_NAMED.format(key=POLYMNIST), ["model", "name", "n_seeds"])
        return
    included = given_included(df, dataset)
    spec = polymnist_spec(n_modalities(df, dataset, included) or 2, dataset == "polymnist", included)
    paper_table(df, spec, study, dataset, outdir)
