"""CDCB colouring of grayscale digits (Gonzalez-Garcia, van de Weijer and Bengio, NeurIPS 2018).

With ink ``x`` in [0, 1] and an RGB colour ``c``: CD (coloured digit on black) is ``x·c``; CB (white
digit on a coloured background) is ``(1−x)·c + x``. Colours are uniform in RGB and drawn
independently for CD and CB. Padding to 32×32 lets both sides share SVHN's CNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 8192


def pad_to(images: Tensor, size: int) -> Tensor:
    """Zero-pad [N,C,H,W] symmetrically to size×size (extra pixel, if odd, on the bottom/right)."""
    h, w = images.shape[-2:]
    if size < max(h, w):
        raise ValueError(f"cannot pad {h}×{w} images to {size}×{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


def colour_digits(gray: Tensor, cd_colours: Tensor, cb_colours: Tensor) -> tuple[Tensor, Tensor]:
    """uint8 [N,1,H,W] + float [N,3] colours in [0,1] -> (CD, CB), each uint8 [N,3,H,W]."""
    x = gray.float().div(255.0)
    cd = x * cd_colours[:, :, None, None]
    cb = (1.0 - x) * cb_colours[:, :, None, None] + x
    to_uint8 = lambda t: t.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)  # noqa: E731
    return to_uint8(cd), to_uint8(cb)


def make_cdcb(gray: Tensor, colourings: int = 1, seed: int = 0, size: int | None = 32) -> tuple[Tensor, Tensor, Tensor]:
    """Colour each image ``colourings`` times with fresh CD and CB colours.

    Returns (CD, CB, source) where coloured image ``k`` comes from ``gray[source[k]]``; the order is
    colouring-major (``k = j·N + i``), so CD[k] and CB[k] are the pair and labels follow by ``source``.
    """
    if colourings < 1:
        raise ValueError(f"colourings must be >= 1, got {colourings}")
    if size is not None:
        gray = pad_to(gray, size)
    n = len(gray)
    source = torch.arange(n).repeat(colourings)
    generator = torch.Generator().manual_seed(seed)
    cd_colours = torch.rand(len(source), 3, generator=generator)
    cb_colours = torch.rand(len(source), 3, generator=generator)
    # Chunked so that the float intermediates of 60k MNIST images stay small.
    chunks = [
        colour_digits(gray[source[i : i + CHUNK]], cd_colours[i : i + CHUNK], cb_colours[i : i + CHUNK])
        for i in range(0, len(source), CHUNK)
    ]
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]), source
