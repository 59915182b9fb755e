"""Translation grid (the paper's Figure 5): content of each source image × style of each target image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mgmvae import paper
from mgmvae.figures.grid import device_of, example_pairs, image_grid
from mgmvae.figures.save import save_figure

NO_STYLE = "\n(no private latent: falls back to cross-generation; style ignored)"


def style_note(model: Any) -> str:
    """Models without private latents have no style to take: ``translate`` falls back to ``generate``."""
    return "" if getattr(model, "private_dim", 0) else NO_STYLE


@torch.no_grad()
def translation_grid(
    data: Any,
    model: Any,
    source: str,
    target: str,
    out: str | Path,
    n_content: int = 6,
    n_style: int = 6,
    model_name: str | None = None,
    title: str | None = None,
) -> list[Path]:
    """Cell (i, j): content of source image i (left column) in the style of target image j (top
    row). Without private latents each row repeats one image, and the title says so."""
    idx = example_pairs(data, n_content + n_style)
    c_idx, s_idx = idx[:n_content], idx[n_content:]
    if len(s_idx) == 0:  # tiny data: take styles from the same pairs
        s_idx = c_idx
    device = device_of(model)
    content = data.batch("test", c_idx.to(data.device))[source].to(device)
    style = data.batch("test", s_idx.to(data.device))[target].to(device)
    nc, ns = len(content), len(style)
    grid = model.translate(
        {source: content.repeat_interleave(ns, 0)}, {target: style.repeat(nc, 1, 1, 1)}, source, target
    )
    cells = [[None] + list(style)] + [[content[i]] + list(grid[i * ns : (i + 1) * ns]) for i in range(nc)]
    name = paper.display_name(str(model_name or getattr(model, "name", "model")))
    c_lab = data.pair_labels("test", c_idx.to(data.device)).tolist()
    s_lab = data.pair_labels("test", s_idx.to(data.device)).tolist()
    fig = image_grid(
        cells,
        [f"style ({target}) →"] + [f"content {i + 1} (label {c_lab[i]})" for i in range(nc)],
        [f"content\n({source})"] + [f"style {j + 1}\n(label {s_lab[j]})" for j in range(ns)],
        title or f"{data.name}, {name}: {source} content × {target} style{style_note(model)}",
    )
    return save_figure(fig, out)
