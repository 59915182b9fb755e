"""Which evaluation protocol made a table's numbers: its caption text, and one table per protocol.

A study evaluates each run under one protocol setting or several (``evaluation.protocol``:
``mean``, ``sample``, ``reference`` or a list). A table shows one setting's runs; with several, its
files hold one table per setting, each under its heading (``render.write_sections``), in the order
of the metrics files (the study's first protocol first). Under ``reference`` each model has its
own reference code's protocol: the caption lists which.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mgmvae import paper
from mgmvae.tables.render import TableDoc, write_sections, write_table

UNRECORDED = "not recorded"  # a metrics file that does not name its protocol
INDEPENDENT = "the same under every evaluation protocol"  # a metric that does not depend on it


def by_setting(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of each protocol setting, in the order of the metrics files."""
    settings = df["protocol_setting"].fillna(UNRECORDED)
    return {str(s): df[settings == s] for s in settings.unique()}


def resolved(frame: pd.DataFrame, model: str) -> str:
    """The protocol(s) a model's runs were evaluated under: ``mean``, ``sample`` (or both, joined by /)."""
    values = frame.loc[frame["model"] == model, "protocol"].dropna().unique()
    return "/".join(sorted(map(str, values))) or UNRECORDED


def describe(setting: str, frame: pd.DataFrame) -> str:
    """The caption's words: ``protocol `sample```; under ``reference``, which model had which."""
    if setting == UNRECORDED:
        return f"protocol {UNRECORDED}"
    text = f"protocol `{setting}`"
    if setting != "reference":
        return text
    models = paper.model_order(frame["model"].unique())
    groups: dict[str, list[str]] = {}
    for model in models:
        groups.setdefault(resolved(frame, model), []).append(paper.display_name(model))
    listed = "; ".join(f"{p}: {', '.join(names)}" for p, names in groups.items())
    return f"{text} (each model its reference code's: {listed})"


def write_docs(outdir: Path, name: str, caption: str, docs: dict[str, TableDoc]) -> None:
    """One table as ``write_table`` writes it; several (one per setting) as sections under ``caption``."""
    if len(docs) == 1:
        write_table(outdir, name, next(iter(docs.values())))
    else:
        write_sections(outdir, name, caption, {f"Protocol `{s}`": doc for s, doc in docs.items()})
