"""Figures: the paper's Figures 3–7 for every model, and more.

Like the paper's Figures 3–7: cross-generation grids (the source row, then one generated row per
model), translation grids (content × style), retrieval panels (query, true partner, top-3).
Beyond it: a t-SNE of the shared latent coloured by label and by cluster, training curves per
loss term, bar charts of the paper tables with seed intervals, coherence against the number of
given modalities (the M-modality table's figure), and the ablation plot.

One module per kind (``cross_generation``, ``translation``, ``retrieval``, ``tsne``, ``curves``,
``bars``, ``coherence``, ``ablation``), on ``grid`` (torchvision's make_grid), ``palette`` (one
colour per model) and ``save`` (PNG and PDF, atomic, no timestamps); ``specs`` names every
figure, ``render`` draws them all.
Everything is deterministic: example pairs are fixed by ``example_pairs`` (the first test pairs of
each class, in class order), subsamples and t-SNE are seeded. Models are ``{model name: model}``
(the ``mgmvae.base`` interface); images come from a ``PairedData``'s test split.
"""

from __future__ import annotations

from mgmvae.figures.ablation import ablation_plot, ablation_plots
from mgmvae.figures.bars import table_bars
from mgmvae.figures.coherence import coherence_plot
from mgmvae.figures.cross_generation import cross_generation_grid
from mgmvae.figures.curves import training_curves
from mgmvae.figures.grid import example_pairs
from mgmvae.figures.palette import model_palette
from mgmvae.figures.render import render_all
from mgmvae.figures.retrieval import retrieval_panel
from mgmvae.figures.save import FORMATS, save_figure
from mgmvae.figures.specs import KINDS, figure_specs
from mgmvae.figures.translation import translation_grid
from mgmvae.figures.tsne import tsne_plot

__all__ = [
    "FORMATS",
    "KINDS",
    "ablation_plot",
    "ablation_plots",
    "coherence_plot",
    "cross_generation_grid",
    "example_pairs",
    "figure_specs",
    "model_palette",
    "render_all",
    "retrieval_panel",
    "save_figure",
    "table_bars",
    "training_curves",
    "translation_grid",
    "tsne_plot",
]
