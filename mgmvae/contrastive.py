"""Contrastive (InfoNCE) estimators shared by models that maximise cross-view mutual information."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_logits(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``, over the temperature: [B, B]."""
    if temperature <= 0:
        raise ValueError(f"InfoNCE temperature must be > 0, got {temperature}")
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2) / temperature


def info_nce(a: Tensor, b: Tensor, temperature: float = 0.1, center: bool = False) -> Tensor:
    """One-directional InfoNCE with ``a`` as queries and ``b`` as keys (van den Oord et al. 2018), batch mean:

        L = −(1/B) Σ_i log [ exp(s(a_i, b_i)/τ) / Σ_j exp(s(a_i, b_j)/τ) ],   s = cosine similarity;

    log B − L bounds I(a; b) from below. ``center`` subtracts each side's batch mean first (as a
    batch-normalised projection head would): an offset common to all rows makes every cosine ≈ 1.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce needs two [B, D] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if center:
        a, b = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)
    logits = similarity_logits(a, b, temperature)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target)
