"""The paired dataset: each base image set stored once as uint8, the pairing as index arrays.

On-disk layout (one ``torch.save`` file, loadable with ``weights_only=True``)::

    {
      "name": str,                         # dataset name, e.g. "mnist_svhn"
      "modalities": [m0, m1, ...],         # M >= 2; order matters: tables read m0->m1 and m1->m0
      "images": {m: {"train": uint8[N, C, H, W], "test": uint8[N', C, H, W]}},
      "labels": {m: {"train": int64[N], "test": int64[N']}},
      "pairs":  {"train": int64[P, M], "test": int64[P', M]},   # column j indexes images[modalities[j]]
      "meta": {...},                       # construction parameters (JSON-able)
    }

A "pair" is one tuple of M images, one per modality, sharing a label. A training batch is an index
gather on the device plus one float conversion: no per-sample Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from mgmvae.io import load_torch, save_torch

SPLITS = ("train", "test")


class DataError(ValueError):
    """A dataset file or source that cannot be used; the message says what is wrong and the fix."""


@dataclass
class PairedData:
    name: str
    modalities: list[str]
    images: dict[str, dict[str, Tensor]]
    labels: dict[str, dict[str, Tensor]]
    pairs: dict[str, Tensor]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        if len(self.modalities) < 2 or len(set(self.modalities)) != len(self.modalities):
            raise DataError(f"dataset {self.name!r}: expected two or more distinct modalities, got {self.modalities}")
        for m in self.modalities:
            for split in SPLITS:
                img = self.images[m][split]
                lab = self.labels[m][split]
                if img.dtype != torch.uint8 or img.dim() != 4:
                    raise DataError(
                        f"dataset {self.name!r}: images[{m!r}][{split!r}] must be uint8 [N,C,H,W], "
                        f"got {img.dtype} {tuple(img.shape)}"
                    )
                if len(img) == 0:
                    raise DataError(f"dataset {self.name!r}: no {split} images for modality {m!r}")
                if lab.shape != (len(img),):
                    raise DataError(
                        f"dataset {self.name!r}: labels[{m!r}][{split!r}] has shape {tuple(lab.shape)}, "
                        f"expected ({len(img)},)"
                    )
            if self.images[m]["train"].shape[1:] != self.images[m]["test"].shape[1:]:
                raise DataError(f"dataset {self.name!r}: train and test images of {m!r} differ in shape")
        for split in SPLITS:
            p = self.pairs[split]
            if p.dim() != 2 or p.shape[1] != len(self.modalities) or len(p) == 0:
                raise DataError(
                    f"dataset {self.name!r}: pairs[{split!r}] must be a non-empty int64 [P,{len(self.modalities)}]"
                )
            for j, m in enumerate(self.modalities):
                n = len(self.images[m][split])
                if int(p[:, j].min()) < 0 or int(p[:, j].max()) >= n:
                    raise DataError(f"dataset {self.name!r}: pairs[{split!r}] index out of range for {m!r}")

    # ------------------------------------------------------------------- info
    def shape(self, modality: str) -> tuple[int, int, int]:
        return tuple(self.images[modality]["train"].shape[1:])  # type: ignore[return-value]  # validate(): [N,C,H,W]

    @property
    def shapes(self) -> dict[str, tuple[int, int, int]]:
        return {m: self.shape(m) for m in self.modalities}

    def num_pairs(self, split: str) -> int:
        return len(self.pairs[split])

    def steps_per_epoch(self, batch_size: int, split: str = "train") -> int:
        """Optimiser steps in one epoch: the last partial batch is dropped, so every step sees a full batch."""
        return max(1, self.num_pairs(split) // batch_size)

    @property
    def device(self) -> torch.device:
        return self.pairs["train"].device

    # ---------------------------------------------------------------- access
    def batch(self, split: str, pair_index: Tensor) -> dict[str, Tensor]:
        """Float images in [0, 1] for the given pair indices, one entry per modality."""
        rows = self.pairs[split][pair_index]
        return {m: self.images[m][split][rows[:, j]].float().div_(255.0) for j, m in enumerate(self.modalities)}

    def pair_labels(self, split: str, pair_index: Tensor | None = None) -> Tensor:
        """Label of each pair (every modality shares it by construction; taken from modality 0)."""
        rows = self.pairs[split] if pair_index is None else self.pairs[split][pair_index]
        return self.labels[self.modalities[0]][split][rows[:, 0]]

    def unimodal(self, modality: str, split: str, index: Tensor | None = None) -> Tensor:
        """Float images in [0, 1] of one modality (all of the split, or the given image indices)."""
        img = self.images[modality][split]
        return (img if index is None else img[index]).float().div_(255.0)

    # ------------------------------------------------------------ movement
    def to(self, device: str | torch.device) -> PairedData:
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return PairedData(
            name=self.name,
            modalities=list(self.modalities),
            images={m: move(self.images[m]) for m in self.modalities},
            labels={m: move(self.labels[m]) for m in self.modalities},
            pairs=move(self.pairs),
            meta=dict(self.meta),
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "modalities": list(self.modalities),
            "images": self.images,
            "labels": self.labels,
            "pairs": self.pairs,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        save_torch(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> PairedData:
        path = Path(path)
        if not path.exists():
            raise DataError(f"dataset file {path} does not exist: run the 'prepare' stage first")
        try:
            raw = load_torch(path)
        except Exception as error:  # truncated or foreign file
            raise DataError(f"dataset file {path} cannot be read ({error}); delete it and prepare again") from error
        data = cls(**raw)
        return data if str(device) == "cpu" else data.to(device)
