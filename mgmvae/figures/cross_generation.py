"""Cross-generation grid (the paper's Figures 3–4): fixed source images, one generated row per model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgmvae import paper
from mgmvae.figures.grid import device_of, example_pairs, image_grid
from mgmvae.figures.save import save_figure


@torch.no_grad()
def cross_generation_grid(
    data: Any,
    models: Mapping[str, Any],
    source: str,
    target: str,
    out: str | Path,
    n: int = 10,
    title: str | None = None,
) -> list[Path]:
    """Row 0: ``n`` fixed source test images (one per class); then one row per model: its
    ``target`` generation from each source image alone."""
    idx = example_pairs(data, n)
    names = paper.model_order(models)
    labels = data.pair_labels("test", idx.to(data.device)).tolist()
    src = data.batch("test", idx.to(data.device))[source]
    cells = [list(src)]
    for name in names:
        model = models[name]
        cells.append(list(model.generate({source: src.to(device_of(model))}, source, target)))
    rows = [f"source ({source})"] + [f"{paper.display_name(name)} → {target}" for name in names]
    fig = image_grid(
        cells, rows, [f"label {y}" for y in labels], title or f"{data.name}: cross-generation {source} → {target}"
    )
    return save_figure(fig, out)
