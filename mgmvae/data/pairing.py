"""MMVAE's class-matched pairing of two labelled image sets (iffsid/mmvae, bin/make-mnist-svhn-idx.py).

For each class c keep the first ``n_c = min(#A_c, #B_c, max_per_class)`` indices of each side, then
concatenate ``pairings`` independent random permutations of each list and pair them position by
position. MMVAE's script draws with an unseeded ``torch.randperm``; here a seeded generator makes
the pairing reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def derive_seed(*keys: int) -> int:
    """An independent 63-bit seed for each tuple of integer keys, e.g. (dataset seed, purpose, split)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def class_counts(labels_a: Tensor, labels_b: Tensor, max_per_class: int) -> dict[int, int]:
    """``n_c`` for every class present on either side (0 where one side lacks the class)."""
    classes = torch.unique(torch.cat([labels_a, labels_b])).tolist()
    return {c: min(int((labels_a == c).sum()), int((labels_b == c).sum()), max_per_class) for c in classes}


def class_matched_pairs(
    labels_a: Tensor, labels_b: Tensor, pairings: int, max_per_class: int = 10_000, seed: int = 0
) -> Tensor:
    """int64 [pairings * Σ n_c, 2]: row = (index into A, index into B), both sides of the same class."""
    if pairings < 1 or max_per_class < 1:
        raise ValueError(f"pairings and max_per_class must be >= 1, got {pairings}, {max_per_class}")
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for c, n in class_counts(labels_a, labels_b, max_per_class).items():
        if n == 0:
            continue
        first_a = torch.nonzero(labels_a == c).flatten()[:n]
        first_b = torch.nonzero(labels_b == c).flatten()[:n]
        # argsort of uniform noise: `pairings` independent permutations of 0..n-1 in one call per side.
        perm_a = torch.rand(pairings, n, generator=generator).argsort(dim=1)
        perm_b = torch.rand(pairings, n, generator=generator).argsort(dim=1)
        blocks.append(torch.stack([first_a[perm_a].flatten(), first_b[perm_b].flatten()], dim=1))
    if not blocks:
        raise ValueError("the two label sets share no class: nothing to pair")
    return torch.cat(blocks).to(torch.int64)
