"""Linear probe on the shared latent (Table 2 of the paper).

The paper trains "a single-layer neural network with an input dimension of 20 and an output
dimension of 10" on the joint (PoE) latent of training pairs and tests it on latents of test
data. We fit multinomial logistic regression (lbfgs, on standardised latents): a single linear
layer, deterministic, with no learning-rate or epoch choices to tune.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def linear_probe(
    train_z: Tensor,
    train_y: Tensor,
    test_sets: dict[str, tuple[Tensor, Tensor]],
    seed: int,
    max_train: int | None = 50_000,
    max_iter: int = 1000,
) -> dict[str, float]:
    """Fit a linear classifier on ``train_z`` and return its accuracy on each named test set.

    At most ``max_train`` training latents are used (a seeded subsample), which keeps the fit to
    seconds on million-pair training sets; ``None`` uses all of them.
    """
    if len(train_z) != len(train_y):
        raise ValueError("train_z and train_y differ in length")
    if max_train is not None and len(train_z) > max_train:
        keep = torch.randperm(len(train_z), generator=torch.Generator().manual_seed(seed))[:max_train]
        train_z, train_y = train_z[keep.to(train_z.device)], train_y[keep.to(train_y.device)]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(_numpy(train_z).astype(np.float64), _numpy(train_y))
    return {
        name: float((probe.predict(_numpy(z).astype(np.float64)) == _numpy(y)).mean())
        for name, (z, y) in test_sets.items()
    }
