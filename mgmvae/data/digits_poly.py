"""Embedded PolyMNIST (docs/datasets.md): the hand digits (mgmvae/data/embedded.py) built as PolyMNIST
is (Sutter et al., ICLR 2021; thomassutter/MoPoE, mmnist/MMNISTDataset.py, ``_create_mmnist_dataset``
and ``_add_background_image``: a random 28×28 crop of the modality's background, its colours inverted
where the digit is ink; per class and modality an independent permutation of the class's images), on
five 96×96 textures generated from the data seed, each channel dark or light so the ink stands out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import Tensor

from mgmvae.data.dataset import Dataset
from mgmvae.data.embedded import HAND_SPLIT_SEED, hand_digits, hand_split
from mgmvae.data.paired import SPLITS, PairedData
from mgmvae.data.pairing import derive_seed

SIZE = 28
BACKGROUND_SIZE = 96
INK_THRESHOLD = 128  # PolyMNIST's binarisation: ink where the digit is > 128
DARK, LIGHT = 0.35, 0.65  # each channel of a background in [0, DARK] or [LIGHT, 1]
BACKGROUND_STREAM, TUPLE_STREAM = 3, 4  # derive_seed keys, apart from embedded.py's 0..2
PERIOD_PX = (8.0, 14.0)  # stripes and rings
CHECKER_PX = (4, 9)  # cell side, upper bound exclusive
NOISE_GRID = 6  # smooth noise: random values on a 6×6 grid, bicubic in between
MODALITIES = ("m0", "m1", "m2", "m3", "m4")  # PolyMNIST's names


# ------------------------------------------------------------------------ backgrounds
def _noise(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    grid = torch.from_numpy(rng.random((1, 3, NOISE_GRID, NOISE_GRID)))
    field = F.interpolate(grid, size=y.shape, mode="bicubic", align_corners=True)[0].numpy()
    low, high = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    return (field - low) / (high - low)


def _stripes(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    angle, period = rng.uniform(0, np.pi), rng.uniform(*PERIOD_PX)
    phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    return 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)


def _checker(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    cell = rng.integers(*CHECKER_PX)
    squares = ((x // cell + y // cell) % 2).astype(bool)
    low, high = rng.uniform(0.0, 0.3, (3, 1, 1)), rng.uniform(0.7, 1.0, (3, 1, 1))
    return np.where(squares, high, low)


def _rings(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    cy, cx = rng.uniform(0, BACKGROUND_SIZE, 2)
    period = rng.uniform(*PERIOD_PX)
    phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    return 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(y - cy, x - cx) / period + phase)


def _gradient(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, (3, 1, 1))  # one direction per channel: colour gradients
    phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
    return 0.5 + 0.5 * np.cos(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / BACKGROUND_SIZE + phase)


TEXTURES = (_noise, _stripes, _checker, _rings, _gradient)  # modality j's texture is TEXTURES[j]


def backgrounds(seed: int) -> Tensor:
    """The five backgrounds, uint8 [5, 3, 96, 96], each channel dark or light by a pattern of its own."""
    rng = np.random.default_rng(derive_seed(seed, BACKGROUND_STREAM))
    patterns = rng.permutation(8)[: len(TEXTURES)]  # bit c: channel c light; distinct per background
    y, x = np.mgrid[0:BACKGROUND_SIZE, 0:BACKGROUND_SIZE].astype(np.float64)
    out = []
    for texture, pattern in zip(TEXTURES, patterns, strict=True):
        t = np.broadcast_to(texture(rng, y, x), (3, BACKGROUND_SIZE, BACKGROUND_SIZE))
        light = ((int(pattern) >> np.arange(3)) & 1).astype(bool)[:, None, None]
        values = np.where(light, LIGHT + (1 - LIGHT) * t, DARK * t)
        out.append(np.round(values * 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out))


# ------------------------------------------------------------------------ compositing
def composite(digits: Tensor, background: Tensor, corners: Tensor) -> Tensor:
    """PolyMNIST's ``_add_background_image``: the 28×28 crop of ``background`` (uint8 [3, S, S]) at
    each (row, column) corner, its colours inverted (255 − v) where the digit (uint8 [N, 1, 28, 28])
    is above 128. Returns uint8 [N, 3, 28, 28]."""
    offsets = torch.arange(SIZE)
    rows = corners[:, 0, None] + offsets  # [N, 28]
    cols = corners[:, 1, None] + offsets
    crops = background[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # [N, 3, 28, 28]
    return torch.where(digits > INK_THRESHOLD, 255 - crops, crops)


def tuple_sources(labels: Tensor, pairings: int, rng: np.random.Generator) -> np.ndarray:
    """For one modality: which image of the split each tuple shows. Classes in order, each class's
    images in ``pairings`` random permutations (PolyMNIST: one permutation per modality and class)."""
    blocks = []
    for c in range(10):
        members = np.flatnonzero(labels.numpy() == c)
        blocks += [rng.permutation(members) for _ in range(pairings)]
    return np.concatenate(blocks)


class DigitsPoly(Dataset):
    """Embedded PolyMNIST: five modalities of 3×28×28, the class shared, the instance per modality."""

    name = "digits_poly"
    modalities = MODALITIES
    shapes = {m: (3, SIZE, SIZE) for m in MODALITIES}

    class Params(Dataset.Params):
        pairings: PositiveInt = 10  # permutations per class and modality: 14,370 / 3,600 tuples (PolyMNIST: 60,000)

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        hand, hand_labels = hand_digits()
        split = hand_split(hand_labels)
        grounds = backgrounds(seed)
        splits = {}
        for k, s in enumerate(SPLITS):
            digits, digit_labels = hand[split[s]], hand_labels[split[s]]
            images, labels = {}, {}
            for j, m in enumerate(self.modalities):
                rng = np.random.default_rng(derive_seed(seed, TUPLE_STREAM, k, j))
                source = torch.from_numpy(tuple_sources(digit_labels, self.params["pairings"], rng))
                corners = torch.from_numpy(rng.integers(0, BACKGROUND_SIZE - SIZE, (len(source), 2)))
                images[m] = composite(digits[source], grounds[j], corners)
                labels[m] = digit_labels[source]
            splits[s] = images, labels, self.identity_pairs(len(source))
        meta = {**self.params, "hand_split_seed": HAND_SPLIT_SEED, "background_size": BACKGROUND_SIZE}
        return self.paired(name, seed, splits, meta)
