"""The paper's datasets from real MNIST and SVHN (mgmvae/data/sources.py): MNIST-SVHN and MNIST-CDCB.

The defaults are MMVAE's MNIST-SVHN construction (iffsid/mmvae, bin/make-mnist-svhn-idx.py): 20
pairings as its README says (its script 30), at most 10,000 images a class, which caps nothing in
practice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, PositiveInt

from mgmvae.data.cdcb import make_cdcb
from mgmvae.data.dataset import Dataset, Shape
from mgmvae.data.paired import SPLITS, PairedData
from mgmvae.data.pairing import class_matched_pairs, derive_seed
from mgmvae.data.sources import download_urls, load_mnist, load_svhn, raw_files


class MnistSvhn(Dataset):
    """MNIST ↔ SVHN by MMVAE's class-matched pairing; test pairs from both test splits, same rule."""

    name = "mnist_svhn"
    modalities = ("mnist", "svhn")
    shapes = {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}

    class Params(Dataset.Params):  # the module docstring
        pairings: PositiveInt = 20  # MMVAE's README: 20 (its script uses 30)
        max_per_class: PositiveInt = 10_000

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        pairings, max_per_class = self.params["pairings"], self.params["max_per_class"]
        splits = {}
        for k, s in enumerate(SPLITS):
            mnist, mnist_labels = load_mnist(data_dir, s, download)
            svhn, svhn_labels = load_svhn(data_dir, s, download)
            pairs = class_matched_pairs(mnist_labels, svhn_labels, pairings, max_per_class, derive_seed(seed, k))
            splits[s] = {"mnist": mnist, "svhn": svhn}, {"mnist": mnist_labels, "svhn": svhn_labels}, pairs
        return self.paired(name, seed, splits, self.params)

    def raw_files(self, data_dir: Path) -> list[Path]:
        return raw_files("mnist", data_dir) + raw_files("svhn", data_dir)

    def download_urls(self) -> list[str]:
        return download_urls("mnist") + download_urls("svhn")


class MnistCdcb(Dataset):
    """CD ↔ CB from MNIST's own train/test split; pair k is (k, k)."""

    name = "mnist_cdcb"
    modalities = ("cd", "cb")
    shapes = {"cd": (3, 32, 32), "cb": (3, 32, 32)}

    # Gonzalez-Garcia et al. 2018: the same MNIST image, independent colours
    class Params(Dataset.Params):
        colourings: PositiveInt = 1  # one colour draw per MNIST image; MNIST's own train/test split
        size: Annotated[int, Field(ge=28)] = 32  # MNIST's 28×28 padded to 3×32×32: both sides use the SVHN CNN

    def image_shapes(self) -> dict[str, Shape]:
        size = self.params["size"]
        return {m: (3, size, size) for m in self.modalities}

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        splits = {}
        for k, s in enumerate(SPLITS):
            gray, gray_labels = load_mnist(data_dir, s, download)
            cd, cb, source = make_cdcb(gray, self.params["colourings"], derive_seed(seed, k), size=self.params["size"])
            labels = gray_labels[source]
            splits[s] = {"cd": cd, "cb": cb}, {"cd": labels, "cb": labels}, self.identity_pairs(len(cd))
        return self.paired(name, seed, splits, self.params)

    def raw_files(self, data_dir: Path) -> list[Path]:
        return raw_files("mnist", data_dir)

    def download_urls(self) -> list[str]:
        return download_urls("mnist")
