"""t-SNE of the joint shared latent: one row per model, coloured by label and by cluster.

Drawn with matplotlib's scatter: the colours are fixed per label / cluster id (tab10 by id), which
``seaborn.scatterplot`` would remap per panel from the ids present.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mgmvae import paper
from mgmvae.figures.grid import device_of
from mgmvae.figures.save import caption, pyplot, save_figure


@torch.no_grad()
def _assignments(
    model: Any, data: Any, idx: Tensor, z: Tensor, n_clusters: int, seed: int, batch_size: int
) -> tuple[np.ndarray, str]:
    from mgmvae.evaluation.clustering import kmeans_assignments

    out = []
    for s in range(0, len(idx), batch_size):
        batch = {
            m: v.to(device_of(model)) for m, v in data.batch("test", idx[s : s + batch_size].to(data.device)).items()
        }
        c = model.cluster(batch, data.modalities)
        if c is None:
            return kmeans_assignments(z, min(n_clusters, len(z)), seed).numpy(), "k-means"
        out.append(c.cpu())
    return torch.cat(out).numpy(), "own mixture"


def _embedding(z: Tensor, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))
    method = "exact" if len(z) < 200 else "barnes_hut"
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity, method=method)
    # one OpenMP thread: deterministic, and Barnes-Hut is far slower when threads are oversubscribed
    with threadpool_limits(1):
        return np.asarray(tsne.fit_transform(z.double().numpy()))


@torch.no_grad()
def tsne_plot(
    data: Any,
    models: Mapping[str, Any],
    out: str | Path,
    max_points: int,
    seed: int,
    n_clusters: int,
    batch_size: int,
    title: str | None = None,
) -> list[Path]:
    """t-SNE (2-D, seeded) of the joint shared latent of ≤ ``max_points`` test pairs (seeded
    subsample), one row per model: coloured by label (left) and by cluster (right; the model's own
    assignment, else k-means with ``n_clusters``)."""
    from threadpoolctl import threadpool_limits

    from mgmvae.evaluation.run import embed_pairs

    plt = pyplot()
    n = data.num_pairs("test")
    idx = (
        torch.arange(n)
        if n <= max_points
        else torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
    )
    y = data.pair_labels("test", idx.to(data.device)).cpu().numpy()
    names = paper.model_order(models)
    fig, axes = plt.subplots(len(names), 2, figsize=(9.5, 4.2 * len(names) + 0.4), squeeze=False)
    size = float(min(20.0, max(2.0, 4000.0 / len(idx))))
    cmap = plt.get_cmap("tab10" if n_clusters <= 10 else "tab20")
    for i, name in enumerate(names):
        model = models[name]
        z = embed_pairs(model, data, "test", idx, batch_size, False).cpu()
        with threadpool_limits(1):
            clusters, method = _assignments(model, data, idx, z, n_clusters, seed, batch_size)
        xy = _embedding(z, seed)
        for ax, colour, what in ((axes[i, 0], y, "label"), (axes[i, 1], clusters, f"cluster ({method})")):
            ax.scatter(xy[:, 0], xy[:, 1], c=colour % cmap.N, cmap=cmap, vmin=0, vmax=cmap.N - 1, s=size, linewidths=0)
            ax.set_title(f"{paper.display_name(name)}: coloured by {what}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        ids = np.unique(np.concatenate([y, np.asarray(clusters)]) % cmap.N)
        handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(c), label=str(c)) for c in ids]
        axes[i, 1].legend(
            handles=handles,
            title="label /\ncluster id",
            fontsize=7,
            title_fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    caption(fig, title or f"{data.name}: t-SNE of the joint shared latent, {len(idx)} test pairs")
    fig.tight_layout()
    return save_figure(fig, out)
