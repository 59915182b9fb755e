"""The dataset interface: what a dataset class declares and how it is built. Every source, built-in or
your own, subclasses ``Dataset``; the registry finds it from ``datasets.<name>.source`` and the entry's
other keys override its ``Params`` (the rules a dataset follows: docs/datasets.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from mgmvae import params
from mgmvae.data.paired import DataError, PairedData

Shape = tuple[int, int, int]
SplitData = tuple[Mapping[str, Tensor], Mapping[str, Tensor], Tensor]  # ({m: images}, {m: labels}, pairs)


class ParamError(DataError, params.ParamError):
    """A dataset parameter that cannot be used; ``key`` names it, the message says why and the fix."""


class Dataset:
    """A dataset source: its modalities and their (C, H, W) shapes, its parameters, its build."""

    name: ClassVar[str] = "base"  # the source name: what `datasets.<name>.source` gives for a built-in
    modalities: ClassVar[tuple[str, ...]] = ()  # two or more; their order is the tables' m0, m1, ...
    shapes: ClassVar[Mapping[str, Shape]] = {}  # (C, H, W) per modality under the default parameters

    class Params(params.Params):
        """The dataset's parameters, their types and defaults (mgmvae/params.py)."""

    default_params: ClassVar[Mapping[str, Any]] = {}  # a plugin's alternative to Params: {parameter: default}

    def __init__(self, given: Mapping[str, Any] | None = None):
        try:
            self.params = params.resolve(params.params_class(type(self)), given or {}, f"dataset source {self.name!r}")
        except params.ParamError as error:
            raise ParamError(error.key, str(error)) from None
        self.check_params()

    def check_params(self) -> None:
        """Refuse parameter values this source cannot build from: raise ParamError(key, why)."""

    def image_shapes(self) -> dict[str, Shape]:
        """(C, H, W) of each modality under ``self.params`` (override where a parameter changes them)."""
        return {m: tuple(self.shapes[m]) for m in self.modalities}  # type: ignore[misc]  # checked (C, H, W)

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        """The dataset ``name`` (its config key) for ``seed``; raw files, if any, under ``data_dir``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    def paired(self, name: str, seed: int, splits: Mapping[str, SplitData], meta: Mapping) -> PairedData:
        """``build``'s result from each split's (images, labels, pairs); ``meta`` after the source name and seed."""
        images = {m: {s: split[0][m] for s, split in splits.items()} for m in self.modalities}
        labels = {m: {s: split[1][m] for s, split in splits.items()} for m in self.modalities}
        pairs = {s: split[2] for s, split in splits.items()}
        meta = {"source": self.name, "seed": seed, **meta}
        return PairedData(name, list(self.modalities), images, labels, pairs, meta)

    def identity_pairs(self, n: int) -> Tensor:
        """Pair k is image k of every modality."""
        return torch.arange(n).unsqueeze(1).repeat(1, len(self.modalities))

    def raw_files(self, data_dir: Path) -> list[Path]:
        """The files ``build`` reads under ``data_dir`` (checked before any job); none by default."""
        return []

    def download_urls(self) -> list[str]:
        """Where ``build`` would download missing raw files from (their hosts are checked before any
        job); DataError if such a download could not be verified."""
        return []
