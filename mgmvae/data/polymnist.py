"""The released PolyMNIST files (Sutter et al., ICLR 2021) in either layout the references read,
``tensor`` (MultiVae's ``MMNISTDataset``) or ``png`` (MoPoE's, MMVAE+'s), and their download from
Zenodo: docs/datasets.md. MoPoE pairs the PNG folders' ``glob`` orders, which agree only as far as the
file system lists them alike; here tuples are matched by file name and ordered by (label, index).
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
from mgmvae.io import load_torch

ARCHIVE = "PolyMNIST.zip"
ZENODO_URL = "https://zenodo.org/record/4899160/files/PolyMNIST.zip"
FILE_NAME = re.compile(r"^(\d+)\.(\d)\.png$")  # {index}.{label}.png
MD5 = re.compile(r"^[0-9a-f]{32}$")
MODALITIES = ("m0", "m1", "m2", "m3", "m4")


class PolyMnist(Dataset):
    """PolyMNIST from its released files: five modalities of 3×28×28, tensor or PNG layout."""

    name = "polymnist"
    modalities = MODALITIES
    shapes = {m: (3, 28, 28) for m in MODALITIES}

    class Params(Dataset.Params):
        folder: str = "MMNIST"  # under data_dir, holding train/ and test/ (MoPoE, MultiVae: MMNIST)
        url: str = ZENODO_URL  # the released archive (Sutter et al. 2021)
        md5: str | None = None  # the archive's; none is published: a download needs it, else it is refused

    def check_params(self) -> None:
        md5 = self.params["md5"]
        if md5 is not None and not (isinstance(md5, str) and MD5.match(md5)):
            raise ParamError("md5", f"dataset key 'md5' must be null or 32 lowercase hex digits, got {md5!r}")
        folder = Path(self.params["folder"])
        if folder.is_absolute() or ".." in folder.parts or not folder.parts:
            raise ParamError("folder", f"dataset key 'folder' must be a folder under data_dir, got {str(folder)!r}")

    def raw_files(self, data_dir: Path) -> list[Path]:
        root = Path(data_dir) / self.params["folder"]
        return layout_files(root, layout(root) or "png")

    def download_urls(self) -> list[str]:
        self._md5()
        return [self.params["url"]]

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        """The tuples of the released files; ``seed`` plays no part (the files fix every draw)."""
        data_dir = Path(data_dir)
        root = data_dir / self.params["folder"]
        if layout(root) is None and download and not root.exists():
            self._unpack(self._archive(data_dir), data_dir)
        kind = layout(root)
        if kind is None:
            fix = f"delete {root} and run again" if download else "set `download: true` and the archive's md5"
            raise DataError(f"{no_layout(root)}\nUnzip {ARCHIVE} into {data_dir}, or {fix}")
        read = read_tensors if kind == "tensor" else read_pngs
        splits = {}
        for s in SPLITS:
            images, labels = read(root / s)
            splits[s] = images, dict.fromkeys(self.modalities, labels), self.identity_pairs(len(labels))
        meta = {"folder": self.params["folder"], "md5": self.params["md5"], "layout": kind}
        return self.paired(name, seed, splits, meta)

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
        """Unzip into a temporary folder; move its top-level entries not yet in ``data_dir`` there."""
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".polymnist-") as tmp:
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(tmp)
            except (zipfile.BadZipFile, OSError) as error:
                raise DataError(f"{archive} cannot be unpacked ({error}): delete it and download it again") from None
            if layout(Path(tmp) / self.params["folder"]) is None:
                top = sorted(p.name for p in Path(tmp).iterdir())
                raise DataError(
                    f"{archive} holds {top} at its top, and no PolyMNIST layout under {self.params['folder']}/ "
                    f"(MultiVae's {{train,test}}/m0.pt ... or MoPoE's {{train,test}}/m0/ ...): set the dataset's "
                    f"`folder` to the one that holds train/ and test/"
                )
            for entry in Path(tmp).iterdir():
                if not (data_dir / entry.name).exists():
                    entry.rename(data_dir / entry.name)


# ---------------------------------------------------------------------- layouts
def layout_files(root: Path, kind: str) -> list[Path]:
    """What layout ``kind`` holds under ``root``: MultiVae's tensor files or MoPoE's PNG folders."""
    if kind == "tensor":
        return [root / s / f for s in SPLITS for f in (*(f"{m}.pt" for m in MODALITIES), "labels.pt")]
    return [root / s / m for s in SPLITS for m in MODALITIES]


def layout(root: Path) -> str | None:
    """``tensor`` or ``png``, whichever is complete under ``root`` (tensor first); None if neither is."""
    if all(p.is_file() for p in layout_files(root, "tensor")):
        return "tensor"
    return "png" if all(p.is_dir() for p in layout_files(root, "png")) else None


def no_layout(root: Path) -> str:
    """Why neither layout was found under ``root``: what is there and what each layout needs."""
    found = sorted(str(p.relative_to(root)) for p in root.glob("*/*")) if root.is_dir() else []
    return (
        f"{root} holds PolyMNIST in neither layout: found {found[:8] or 'nothing'}; expected MultiVae's tensors "
        f"{root}/{{train,test}}/m0.pt ... m4.pt and labels.pt, or MoPoE's PNG folders "
        f"{root}/{{train,test}}/m0 ... m4/ of {{index}}.{{label}}.png"
    )


def read_tensors(folder: Path) -> tuple[dict[str, Tensor], Tensor]:
    """MultiVae's ``m{k}.pt`` (floats in [0, 1], or uint8) as uint8, and ``labels.pt`` as int64."""
    labels, images = _tensor(folder / "labels.pt"), {}
    if labels.dim() != 1 or labels.is_floating_point():
        raise DataError(f"{folder / 'labels.pt'} holds {labels.dtype} {list(labels.shape)}, not integer labels [N]")
    for m in MODALITIES:
        x, path = _tensor(folder / f"{m}.pt"), folder / f"{m}.pt"
        if x.shape != (len(labels), 3, 28, 28):
            raise DataError(f"{path} has shape {list(x.shape)}, not [{len(labels)}, 3, 28, 28] (labels.pt's length)")
        if x.is_floating_point() and not (x.min() >= 0 and x.max() <= 1):
            raise DataError(f"{path} holds values outside [0, 1], not images as MultiVae reads them")
        images[m] = x.mul(255).round().to(torch.uint8) if x.is_floating_point() else x.to(torch.uint8)
    return images, labels.long()


def _tensor(path: Path) -> Tensor:
    try:
        value = load_torch(path)
    except Exception as error:  # not a torch file, or one holding more than tensors
        raise DataError(f"{path} cannot be read as a tensor ({error}); unpack the archive again") from None
    if not isinstance(value, Tensor):
        raise DataError(f"{path} holds a {type(value).__name__}, not a tensor; unpack the archive again")
    return value


def read_pngs(folder: Path) -> tuple[dict[str, Tensor], Tensor]:
    """MoPoE's ``m{k}/{index}.{label}.png`` as uint8 [N, 3, 28, 28] per modality, tuples matched by name."""
    names, labels = tuple_names([folder / m for m in MODALITIES])
    return {m: read_png_files([folder / m / n for n in names]) for m in MODALITIES}, labels


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


def read_png_files(paths: list[Path]) -> Tensor:
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
