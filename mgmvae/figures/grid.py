"""Image grids: the fixed example pairs, and a grid of images with row and column labels.

The layout is ``torchvision.utils.make_grid``; each tile is first centred on a white square of the
largest image's size (modalities differ in size and channels) and, for the retrieval panels,
framed in a colour, which make_grid's single ``pad_value`` cannot do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from torch import Tensor

from mgmvae.compat import import_torchvision
from mgmvae.figures.save import pyplot

BORDER, GAP = 4, 3  # white (or coloured) ring around each image; white gap between tiles


def example_pairs(data: Any, n: int, split: str = "test") -> Tensor:
    """``n`` fixed pair indices: the first pair of each class in class order, then the second, ..."""
    y = data.pair_labels(split).cpu()
    per = [torch.nonzero(y == c).flatten().tolist() for c in torch.unique(y).tolist()]
    out: list[int] = []
    r = 0
    while len(out) < n and any(r < len(p) for p in per):
        out += [p[r] for p in per if r < len(p)][: n - len(out)]
        r += 1
    return torch.tensor(out, dtype=torch.long)


def _tile(image: Tensor | None, size: int, frame: str | None) -> Tensor:
    """A [3, size + 2·BORDER, …] tile: the image centred on white, in a coloured ring if ``frame``."""
    slot = size + 2 * BORDER
    tile = torch.ones(3, slot, slot)
    if frame is not None:  # a coloured ring, then a white one, so it stands out on any background
        tile[:] = torch.tensor(to_rgb(frame)).view(3, 1, 1)
        tile[:, BORDER - 1 : slot - BORDER + 1, BORDER - 1 : slot - BORDER + 1] = 1.0
    if image is not None:
        img = image.detach().float().clamp(0, 1).cpu().expand(3, -1, -1)
        h, w = img.shape[-2:]
        oy, ox = BORDER + (size - h) // 2, BORDER + (size - w) // 2
        tile[:, oy : oy + h, ox : ox + w] = img
    return tile


def image_grid(
    cells: Sequence[Sequence[Tensor | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    frames: Sequence[Sequence[str | None]] | None = None,
    groups: Sequence[tuple[int, int, str]] = (),
    inch: float = 0.62,
) -> Figure:
    """One axes showing the grid; row labels left, column labels on top, ``groups`` as
    (first column, last column, text) headers above the column labels."""
    plt = pyplot()
    size = max(max(c.shape[-2:]) for row in cells for c in row if c is not None)
    nrows, ncols = len(cells), max(len(r) for r in cells)
    tiles = [
        _tile(row[j] if j < len(row) else None, size, frames[i][j] if frames is not None and j < len(row) else None)
        for i, row in enumerate(cells)
        for j in range(ncols)
    ]
    grid = import_torchvision().utils.make_grid(tiles, nrow=ncols, padding=GAP, pad_value=1.0)
    pitch = size + 2 * BORDER + GAP

    def centres(n: int) -> list[float]:
        return [GAP + k * pitch + (pitch - GAP - 1) / 2 for k in range(n)]

    fig, ax = plt.subplots(figsize=(inch * ncols + 1.4, inch * nrows + 0.9 + 0.25 * bool(groups)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_yticks(centres(nrows), list(row_labels), fontsize=8)
    ax.set_xticks(centres(ncols), list(col_labels), fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for first, last, text in groups:
        x = (centres(ncols)[first] + centres(ncols)[last]) / 2
        ax.annotate(
            text,
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 24),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
        )
    # the title sits above the column labels (and the group headers)
    ax.set_title(title, fontsize=9, pad=18 if groups else 6)
    return fig


def device_of(model: Any) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")
