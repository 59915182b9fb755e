"""The released PolyMNIST files (Sutter et al., ICLR 2021), in the layout MoPoE's code reads.

thomassutter/MoPoE: job_polymnist reads ``$DIR_DATA/MMNIST/{train,test}/m{0..4}``;
mmnist/MMNISTDataset.py, ``_create_mmnist_dataset``, writes ``m{k}/{i}.{label}.png`` (an RGB
28×28 image; ``i``: the position in that modality's permutation of the class), and
``MMNISTDataset.__getitem__`` takes the label from the name (``name.split(".")[-2]``). The same name
across the folders is one tuple. MoPoE pairs the folders' ``glob`` orders, which agree only as far
as the file system lists the folders alike; here the tuples are matched by name and ordered by
(label, index), and folders that differ in their names are refused.

Download: MoPoE's README links a Google Drive folder, which a program cannot fetch as a file; the
archive ``PolyMNIST.zip`` is on Zenodo (record 4899160), the link MultiVae's ``MMNISTDataset``
downloads (AgatheSenellart/MultiVae, src/multivae/data/datasets/mmnist.py,
``__check_or_download_data__``). Neither publishes a checksum, and none is built in here: a
download needs the archive's MD5 as the parameter ``md5`` and is refused without it, never used
unverified. The archive is kept beside the data (``data_dir/PolyMNIST.zip``) and unpacked into a
temporary folder that is renamed into place only once it holds every modality folder.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mgmvae.data.dataset import Dataset, ParamError
from mgmvae.data.paired import SPLITS, DataError, PairedData
from mgmvae.data.sources import download_verified, verified

ARCHIVE = "PolyMNIST.zip"
ZENODO_URL = "https://zenodo.org/record/4899160/files/PolyMNIST.zip"
FILE_NAME = re.compile(r"^(\d+)\.(\d)\.png$")  # {index}.{label}.png
MD5 = re.compile(r"^[0-9a-f]{32}$")
MODALITIES = ("m0", "m1", "m2", "m3", "m4")


class PolyMnist(Dataset):
    """PolyMNIST from its released PNG files: five modalities of 3×28×28, one tuple per file name."""

    name = "polymnist"
    modalities = MODALITIES
    shapes = {m: (3, 28, 28) for m in MODALITIES}
    # folder: under data_dir, holding {train,test}/m{0..4}/ (MoPoE: data/MMNIST); md5: the archive's.
    default_params = {"folder": "MMNIST", "url": ZENODO_URL, "md5": None}

    def check_params(self) -> None:
        md5 = self.params["md5"]
        if md5 is not None and not (isinstance(md5, str) and MD5.match(md5)):
            raise ParamError("md5", f"dataset key 'md5' must be null or 32 lowercase hex digits, got {md5!r}")
        folder = Path(self.params["folder"])
        if folder.is_absolute() or ".." in folder.parts or not folder.parts:
            raise ParamError("folder", f"dataset key 'folder' must be a folder under data_dir, got {str(folder)!r}")

    def raw_files(self, data_dir: Path) -> list[Path]:
        root = Path(data_dir) / self.params["folder"]
        return [root / s / m for s in SPLITS for m in self.modalities]

    def download_urls(self) -> list[str]:
        self._md5()
        return [self.params["url"]]

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        """The tuples of the released files; ``seed`` plays no part (the files fix every draw)."""
        data_dir = Path(data_dir)
        missing = [p for p in self.raw_files(data_dir) if not p.is_dir()]
        if missing and not download:
            listing = "\n".join(f"  {p}" for p in missing)
            raise DataError(
                f"missing PolyMNIST folders:\n{listing}\ndownload is off; unzip {ARCHIVE} into {data_dir} (MoPoE's "
                f"layout {self.params['folder']}/{{train,test}}/m0..m4), or set `download: true` and the archive's md5"
            )
        if missing:
            self._unpack(self._archive(data_dir), data_dir)
        images: dict[str, dict[str, Tensor]] = {m: {} for m in self.modalities}
        labels: dict[str, dict[str, Tensor]] = {m: {} for m in self.modalities}
        pairs = {}
        for s in SPLITS:
            folders = [data_dir / self.params["folder"] / s / m for m in self.modalities]
            names, split_labels = tuple_names(folders)
            for m, folder in zip(self.modalities, folders, strict=True):
                images[m][s] = read_pngs([folder / n for n in names])
                labels[m][s] = split_labels
            pairs[s] = torch.arange(len(names)).unsqueeze(1).repeat(1, len(self.modalities))
        meta = {"source": self.name, "seed": seed, "folder": self.params["folder"], "md5": self.params["md5"]}
        return PairedData(name, list(self.modalities), images, labels, pairs, meta)

    # ------------------------------------------------------------------ download
    def _md5(self) -> str:
        md5 = self.params["md5"]
        if md5 is None:
            raise DataError(
                f"polymnist: no checksum is published for {ARCHIVE}, so a download cannot be verified and is refused. "
                f"Set the dataset's `md5` to the MD5 of an archive you trust (md5sum {ARCHIVE}), or unzip it yourself "
                f"into data_dir"
            )
        return md5

    def _archive(self, data_dir: Path) -> Path:
        """``data_dir/PolyMNIST.zip``, downloaded if absent; DataError unless its MD5 is ``md5``."""
        archive, md5 = data_dir / ARCHIVE, self._md5()
        if not archive.exists():
            try:
                download_verified(archive, [self.params["url"]], md5)
            except Exception as error:  # offline, server down, wrong checksum
                raise DataError(f"downloading {ARCHIVE} failed: {error}") from None
        elif not verified(archive, md5):
            raise DataError(f"{archive} fails its MD5 check ({md5}): delete it and download it again")
        return archive

    def _unpack(self, archive: Path, data_dir: Path) -> None:
        """Unzip into a temporary folder, then rename its ``folder`` into place, complete or not at all."""
        target = data_dir / self.params["folder"]
        if target.exists():
            raise DataError(f"{target} exists but lacks modality folders: delete it and run again to unpack {archive}")
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".polymnist-") as tmp:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(tmp)
            except (zipfile.BadZipFile, OSError) as error:
                raise DataError(f"{archive} cannot be unpacked ({error}): delete it and download it again") from None
            unpacked = Path(tmp) / self.params["folder"]
            lacking = [s / m for s in map(Path, SPLITS) for m in self.modalities if not (unpacked / s / m).is_dir()]
            if lacking:
                top = sorted(p.name for p in Path(tmp).iterdir())
                raise DataError(
                    f"{archive} holds {top} at its top, not {self.params['folder']}/{{train,test}}/m0..m4 "
                    f"(lacking {[str(p) for p in lacking[:3]]}); set the dataset's `folder` to the one that holds them"
                )
            unpacked.rename(target)


# ---------------------------------------------------------------------- reading
def tuple_names(folders: list[Path]) -> tuple[list[str], Tensor]:
    """The file names every modality folder has, ordered by (label, index), and their labels;
    DataError for a foreign PNG name or folders that do not hold the same names."""
    listings = []
    for folder in folders:
        names = {p.name for p in folder.glob("*.png")}
        foreign = sorted(n for n in names if not FILE_NAME.match(n))
        if foreign:
            raise DataError(f"{folder} holds PNG files not named {{index}}.{{label}}.png: {foreign[:3]}")
        if not names:
            raise DataError(f"{folder} holds no {{index}}.{{label}}.png files")
        listings.append(names)
    for folder, names in zip(folders[1:], listings[1:], strict=True):
        if names != listings[0]:
            differ = sorted(names ^ listings[0])[:3]
            raise DataError(
                f"{folder} and {folders[0]} do not hold the same file names (e.g. {differ}): a tuple is one name "
                f"across the modality folders; unpack the archive again"
            )
    ordered = sorted(listings[0], key=_label_and_index)
    return ordered, torch.tensor([_label_and_index(n)[0] for n in ordered], dtype=torch.int64)


def _label_and_index(name: str) -> tuple[int, int]:
    index, label = FILE_NAME.match(name).groups()  # type: ignore[union-attr]  # names are checked first
    return int(label), int(index)


def read_pngs(paths: list[Path]) -> Tensor:
    """uint8 [N, 3, 28, 28] from RGB PNG files (as torchvision's ``save_image`` writes them)."""
    from PIL import Image

    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except OSError as error:
            raise DataError(f"{path} cannot be read as an image ({error}); unpack the archive again") from None
        if array.shape != (28, 28, 3):
            raise DataError(f"{path} is {array.shape[1]}×{array.shape[0]}; PolyMNIST images are 28×28")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
