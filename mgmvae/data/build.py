"""One entry point from a dataset spec to a PairedData, for the four dataset sources.

A spec is ``{"source": ..., **parameters}``; every parameter is optional with the defaults below
(MMVAE's MNIST-SVHN construction, iffsid/mmvae bin/make-mnist-svhn-idx.py: 20 pairings as its
README says, at most 10,000 images a class) and an unknown one is an error rather than silently ignored. The same seed
gives bitwise identical tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from mgmvae.data.cdcb import make_cdcb
from mgmvae.data.embedded import build_digits_cdcb, build_digits_street
from mgmvae.data.paired import SPLITS, DataError, PairedData
from mgmvae.data.pairing import class_matched_pairs, derive_seed
from mgmvae.data.sources import load_mnist, load_svhn

DEFAULTS: dict[str, dict[str, int]] = {
    # MMVAE's README says 20 pairings (its script 30); 10,000 per class caps nothing in practice.
    "mnist_svhn": {"pairings": 20, "max_per_class": 10_000},
    "mnist_cdcb": {"colourings": 1, "size": 32},
    # 300 street images a class: the pairing uses ~150 (hand has ~144 a class), the rest help the
    # street classifier.
    "digits_street": {"pairings": 20, "street_per_class_train": 300, "street_per_class_test": 100,
                      "max_per_class": 10_000},
    "digits_cdcb": {"colourings": 10},
}  # fmt: skip


def build_mnist_svhn(
    name: str, seed: int, data_dir: Path, download: bool, pairings: int, max_per_class: int
) -> PairedData:
    """MNIST ↔ SVHN by MMVAE's class-matched pairing; test pairs from both test splits, same rule."""
    images: dict[str, dict[str, torch.Tensor]] = {"mnist": {}, "svhn": {}}
    labels: dict[str, dict[str, torch.Tensor]] = {"mnist": {}, "svhn": {}}
    pairs = {}
    for k, s in enumerate(SPLITS):
        images["mnist"][s], labels["mnist"][s] = load_mnist(data_dir, s, download)
        images["svhn"][s], labels["svhn"][s] = load_svhn(data_dir, s, download)
        pairs[s] = class_matched_pairs(
            labels["mnist"][s], labels["svhn"][s], pairings, max_per_class, derive_seed(seed, k)
        )
    meta = {"source": "mnist_svhn", "seed": seed, "pairings": pairings, "max_per_class": max_per_class}
    return PairedData(name, ["mnist", "svhn"], images, labels, pairs, meta)


def build_mnist_cdcb(name: str, seed: int, data_dir: Path, download: bool, colourings: int, size: int) -> PairedData:
    """CD ↔ CB from MNIST's own train/test split; pair k is (k, k)."""
    if size < 28:
        raise DataError(f"mnist_cdcb: size must be >= 28 (MNIST is 28×28), got {size}")
    images: dict[str, dict[str, torch.Tensor]] = {"cd": {}, "cb": {}}
    labels: dict[str, dict[str, torch.Tensor]] = {"cd": {}, "cb": {}}
    pairs = {}
    for k, s in enumerate(SPLITS):
        gray, gray_labels = load_mnist(data_dir, s, download)
        cd, cb, source = make_cdcb(gray, colourings, derive_seed(seed, k), size=size)
        images["cd"][s], images["cb"][s] = cd, cb
        labels["cd"][s] = labels["cb"][s] = gray_labels[source]
        pairs[s] = torch.arange(len(cd)).unsqueeze(1).repeat(1, 2)
    meta = {"source": "mnist_cdcb", "seed": seed, "colourings": colourings, "size": size}
    return PairedData(name, ["cd", "cb"], images, labels, pairs, meta)


def _embedded(builder: Callable) -> Callable:
    """Adapt an embedded-data builder (no files, no download) to the common builder signature."""
    return lambda name, seed, data_dir, download, **params: builder(name, seed, **params)


# source -> builder(name, seed, data_dir, download, **parameters) -> PairedData
DATASET_BUILDERS: dict[str, Callable[..., PairedData]] = {
    "mnist_svhn": build_mnist_svhn,
    "mnist_cdcb": build_mnist_cdcb,
    "digits_street": _embedded(build_digits_street),
    "digits_cdcb": _embedded(build_digits_cdcb),
}


def resolve_spec(spec: dict) -> tuple[str, dict[str, int]]:
    """(source, parameters with defaults filled in); DataError for an unknown source, key or value."""
    source = spec.get("source")
    if source not in DEFAULTS:
        raise DataError(f"unknown dataset source {source!r}; allowed: {sorted(DEFAULTS)}")
    params = dict(DEFAULTS[source])
    for key, value in spec.items():
        if key == "source":
            continue
        if key not in params:
            raise DataError(f"unknown key {key!r} for dataset source {source!r}; allowed: {sorted(params)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"dataset key {key!r} must be a positive integer, got {value!r}")
        params[key] = value
    return source, params


def build_dataset(name: str, spec: dict, data_dir: str | Path, download: bool, seed: int) -> PairedData:
    """Build dataset ``name`` from ``spec`` (raw files under ``data_dir`` for the MNIST-based sources)."""
    source, params = resolve_spec(spec)
    return DATASET_BUILDERS[source](name, seed, Path(data_dir), download, **params)
