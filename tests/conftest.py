"""Shared fixtures: tiny synthetic paired data in the real on-disk format."""

from __future__ import annotations

import pytest
import torch

from mgmvae.data.paired import PairedData


def synthetic_paired(n_train: int = 64, n_test: int = 32, seed: int = 0) -> PairedData:
    """Class-coded toy images: modality a is 1×28×28, b is 3×32×32; pair k = (k, k)."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.arange(n) % 10
        a = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
        b = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
        for c in range(10):  # a bright stripe whose position encodes the class
            a[labels == c, :, 2 * c : 2 * c + 3, :] = 255
            b[labels == c, c % 3, :, 3 * c : 3 * c + 3] = 255
        a = (a.int() + torch.randint(0, 30, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        b = (b.int() + torch.randint(0, 30, b.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        return a, b, labels

    images, labels = {"a": {}, "b": {}}, {"a": {}, "b": {}}
    pairs = {}
    for name, n in (("train", n_train), ("test", n_test)):
        a, b, y = split(n)
        images["a"][name], images["b"][name] = a, b
        labels["a"][name], labels["b"][name] = y, y.clone()
        pairs[name] = torch.stack([torch.arange(n), torch.arange(n)], 1)
    return PairedData("toy", ["a", "b"], images, labels, pairs, {"synthetic": True})


@pytest.fixture
def toy_data() -> PairedData:
    return synthetic_paired()


TOY_SETTINGS = {
    "shared_dim": 4,
    "private_dim": 2,
    "posterior": "gaussian",
    "likelihood": {"family": "laplace", "scale": 0.75},
    "likelihood_weights": "auto",
    "optimizer": {"name": "adam", "lr": 1e-3, "amsgrad": False},
    "epochs": 2,
    "batch_size": 16,
    "log_every": 2,
    "precision": "float32",
    "params": {},
}


def evaluation_settings(**overrides) -> dict:
    """config.yaml's ``evaluation`` section (where every default is stated) with ``overrides``."""
    from mgmvae.config import load_config

    return {**load_config()["evaluation"], **overrides}
