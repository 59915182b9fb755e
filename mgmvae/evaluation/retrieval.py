"""Cross-modal retrieval by Euclidean distance in the shared latent (Table 3 of the paper)."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def topk_indices(query_z: Tensor, gallery_z: Tensor, k: int, chunk: int) -> Tensor:
    """Indices [Q, k] of the k gallery items nearest (Euclidean) to each query, nearest first.

    Distances are computed ``chunk`` queries at a time (``evaluation.retrieval_chunk``), so memory
    is chunk x G. The exact (non-matmul) cdist is used so that near-ties do not depend on the chunk
    size; for k=1, exact ties go to the lowest gallery index.
    """
    if k < 1 or k > len(gallery_z):
        raise ValueError(f"k={k} must lie in [1, {len(gallery_z)}] (the gallery size)")
    gallery_z = gallery_z.to(query_z.device).float()
    out = []
    for s in range(0, len(query_z), chunk):
        d = torch.cdist(query_z[s : s + chunk].float(), gallery_z, compute_mode="donot_use_mm_for_euclid_dist")
        out.append(d.argmin(1, keepdim=True) if k == 1 else d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long, device=query_z.device)


def top1_retrieval(query_z: Tensor, query_y: Tensor, gallery_z: Tensor, gallery_y: Tensor, chunk: int) -> float:
    """Fraction of queries whose nearest gallery item has the query's label."""
    if len(query_z) == 0:
        raise ValueError("top1_retrieval needs at least one query")
    nearest = topk_indices(query_z, gallery_z, k=1, chunk=chunk)[:, 0]
    hit = gallery_y.to(nearest.device)[nearest] == query_y.to(nearest.device)
    return hit.float().mean().item()
