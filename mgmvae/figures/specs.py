"""Every figure the ``figures`` stage writes, named: kind, dataset, model, direction and file stem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mgmvae import paper
from mgmvae.tables import TABLE_SPECS
from mgmvae.tables.spec import POLYMNIST

# kind -> report subcategory; the caption is workflow/report/<kind>.rst
KINDS = {
    "cross_generation": "Cross-generation grids",
    "translation": "Translation grids",
    "retrieval": "Retrieval panels",
    "tsne": "t-SNE of the shared latent",
    "curves": "Training curves",
    "bars": "Tables 1–3 as bar charts",
    "coherence": "Coherence against the number of given modalities",
}


def _spec(
    kind: str, dataset: str, model: str, stem: str, source: str | None = None, target: str | None = None
) -> dict[str, Any]:
    direction = f"{source} → {target}" if source else "—"
    return {
        "kind": kind,
        "dataset": dataset,
        "model": model,
        "direction": direction,
        "source": source,
        "target": target,
        "stem": f"{kind}/{stem}",
    }


def figure_specs(
    dataset_modalities: Mapping[str, Sequence[str]],
    models: Sequence[str] | Mapping[str, Sequence[str]],
    bars: bool = True,
    tables: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Every figure the ``figures`` stage writes, in a fixed order; ``models`` are the same for
    every dataset or given per dataset ({dataset: models}). ``bars``: include the figures of the
    study's tables, which read every dataset's metrics (the pipeline draws them in a job of their
    own): the bar charts of the paper tables whose spec has ``bars`` and the coherence figure of the
    M-modality table; ``tables`` (the config's) keeps those whose table names a dataset (None: all).
    A dataset's figures of two modalities (grids, retrieval panels) show its first two.

    Each is {"kind", "dataset", "model", "direction", "source", "target", "stem"}; the files are
    ``<stem>.png`` and ``<stem>.pdf`` under the figures folder (``stem`` has a sub-folder per
    kind). ``model`` and ``direction`` are "all" / "—" where a figure covers every model / no direction.
    """
    specs = []
    for d, modalities in dataset_modalities.items():
        m0, m1 = modalities[:2]
        names = paper.model_order(models[d] if isinstance(models, Mapping) else models)
        directions = ((m0, m1), (m1, m0))
        specs += [_spec("cross_generation", d, "all", f"{d}_{s}_to_{t}", s, t) for s, t in directions]
        specs += [_spec("translation", d, m, f"{d}_{m}_{s}_to_{t}", s, t) for m in names for s, t in directions]
        specs += [_spec("retrieval", d, "all", f"{d}_{s}_to_{t}", s, t) for s, t in directions]
        specs.append(_spec("tsne", d, "all", d))
        specs += [_spec("curves", d, m, f"{d}_{m}") for m in names]
    if bars:
        named = lambda table: tables is None or tables.get(table) is not None  # noqa: E731
        specs += [
            _spec("bars", "—", "all", t) for t, spec in TABLE_SPECS.items() if spec.bars and named(spec.reads or t)
        ]
        if named(POLYMNIST):
            specs.append(_spec("coherence", (tables or {}).get(POLYMNIST) or "—", "all", POLYMNIST))
    return specs
