"""One colour per model, the same in every figure, as a seaborn palette {display name: colour}.

A model takes its class's ``colour`` (the built-ins: tab10's); any other model (a plugin that
declares none) takes a colour of its own from its name: a hash picks one of ``EXTRA`` dark husl
hues, apart from tab10's mid tones (the next free one if two such models meet), so it is the same in
every figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import seaborn as sns
from matplotlib.colors import to_rgb

from mgmvae import paper
from mgmvae.registry import builtins, model_class

Colour = tuple[float, float, float]

EXTRA = 24  # hues for models without a colour of their own


def _declared(model: str) -> str | None:
    """The colour of a model's class, by run name or by label."""
    cls = model_class(model) or next((c for c in builtins().values() if c.label == model), None)
    return getattr(cls, "colour", None)


def model_palette(models: Iterable[str]) -> dict[str, Colour]:
    """{display name: RGB} for ``models`` (ids or display names)."""
    extra = sns.husl_palette(EXTRA, l=0.35, s=0.9)
    out: dict[str, Colour] = {}
    taken: set[int] = set()
    for model in sorted(set(models), key=lambda m: (_declared(m) is None, m)):
        declared = _declared(model)
        if declared is not None:
            out[paper.display_name(model)] = to_rgb(declared)
            continue
        slot = int(hashlib.sha256(model.encode()).hexdigest(), 16) % EXTRA
        while slot in taken and len(taken) < EXTRA:
            slot = (slot + 1) % EXTRA
        taken.add(slot)
        out[paper.display_name(model)] = tuple(extra[slot])
    return out
