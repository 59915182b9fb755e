"""Figures: like the paper's Figures 3–7 (cross-generation grids, translation grids, retrieval panels)
for every model, and beyond them t-SNE, training curves, bar charts of the tables, coherence against
the number of given modalities and the ablation plot; one module per kind (docs/architecture.md),
``specs`` names every figure, ``render`` draws them all. Everything is deterministic: the example
pairs are the first test pairs of each class (``grid.example_pairs``), subsamples and t-SNE seeded.
"""

from __future__ import annotations

from mgmvae.figures.ablation import ablation_plots
from mgmvae.figures.render import render_all
from mgmvae.figures.save import FORMATS
from mgmvae.figures.specs import KINDS, figure_specs

__all__ = ["FORMATS", "KINDS", "ablation_plots", "figure_specs", "render_all"]
