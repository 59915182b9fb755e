"""One colour per model, the same in every figure, as a seaborn palette {display name: colour}.

The models of the study and the paper's rows take the ten tab10 colours in ``COLOUR_ORDER``; any
other model (a user's plugin) takes a colour of its own from its name: a hash picks one of
``EXTRA`` dark husl hues, apart from tab10's mid tones (the next free one if two such models meet),
so it is the same in every figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import seaborn as sns

from mgmvae import paper

Colour = tuple[float, float, float]

COLOUR_ORDER = ["mvae", "mmvae_plus", "mmvae", "mwbvae", "dmvae", "idmvae", "mopoe", "cmmd", "oshima2024", "mgmvae"]
EXTRA = 24  # hues for models outside COLOUR_ORDER


def _known(model: str) -> int | None:
    names = {paper.display_name(m): i for i, m in enumerate(COLOUR_ORDER)}
    return COLOUR_ORDER.index(model) if model in COLOUR_ORDER else names.get(model)


def model_palette(models: Iterable[str]) -> dict[str, Colour]:
    """{display name: RGB} for ``models`` (ids or display names)."""
    tab10, extra = sns.color_palette("tab10"), sns.husl_palette(EXTRA, l=0.35, s=0.9)
    out: dict[str, Colour] = {}
    taken: set[int] = set()
    for model in sorted(set(models), key=lambda m: (_known(m) is None, m)):
        index = _known(model)
        if index is not None:
            out[paper.display_name(model)] = tuple(tab10[index])
            continue
        slot = int(hashlib.sha256(model.encode()).hexdigest(), 16) % EXTRA
        while slot in taken and len(taken) < EXTRA:
            slot = (slot + 1) % EXTRA
        taken.add(slot)
        out[paper.display_name(model)] = tuple(extra[slot])
    return out
