"""Retrieval panel (the paper's Figures 6–7): per query, its true partner and each model's top-k."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgmvae import paper
from mgmvae.figures.grid import device_of, example_pairs, image_grid
from mgmvae.figures.save import save_figure

CORRECT, WRONG = "#1a9850", "#d73027"  # frame colours: retrieved label right / wrong


@torch.no_grad()
def retrieval_panel(
    data: Any,
    models: Mapping[str, Any],
    source: str,
    target: str,
    out: str | Path,
    batch_size: int,
    chunk: int,
    n_queries: int = 6,
    k: int = 3,
    title: str | None = None,
) -> list[Path]:
    """Per query row: the query (``source``), its true partner (``target``), then each model's top-k
    from the ``target`` test gallery by Euclidean distance in the shared latent (``chunk``: queries
    scored at once, ``evaluation.retrieval_chunk``); green frame = same label as the query, red =
    another label."""
    from mgmvae.evaluation.retrieval import topk_indices
    from mgmvae.evaluation.run import embed_unimodal

    idx = example_pairs(data, n_queries)
    rows = data.pairs["test"][idx.to(data.device)].cpu()
    j_src, j_tgt = data.modalities.index(source), data.modalities.index(target)
    queries = data.unimodal(source, "test", rows[:, j_src].to(data.device))
    partners = data.unimodal(target, "test", rows[:, j_tgt].to(data.device))
    q_labels = data.labels[source]["test"][rows[:, j_src].to(data.device)].cpu()
    g_labels = data.labels[target]["test"].cpu()
    gallery = data.images[target]["test"]
    k = min(k, len(gallery))
    names = paper.model_order(models)
    hits = {}
    for name in names:
        model = models[name]
        g = embed_unimodal(model, data, target, "test", batch_size, False)
        q = model.embed({source: queries.to(device_of(model))}, [source])
        hits[name] = topk_indices(q, g, k, chunk).cpu()
    cells: list[list[torch.Tensor | None]] = []
    frames: list[list[str | None]] = []
    for i in range(len(idx)):
        cells.append([queries[i], partners[i]])
        frames.append([None, None])
        for name in names:
            for gi in hits[name][i].tolist():
                cells[-1].append(gallery[gi].float() / 255.0)
                frames[-1].append(CORRECT if int(g_labels[gi]) == int(q_labels[i]) else WRONG)
    cols = [f"query\n({source})", f"partner\n({target})"] + [f"top-{r + 1}" for _ in names for r in range(k)]
    groups = [(2 + m * k, 2 + m * k + k - 1, paper.display_name(name)) for m, name in enumerate(names)]
    fig = image_grid(
        cells,
        [f"label {int(y)}" for y in q_labels],
        cols,
        title or f"{data.name}: retrieval {source} → {target} (frame green: same label as the query, red: other)",
        frames=frames,
        groups=groups,
    )
    return save_figure(fig, out)
