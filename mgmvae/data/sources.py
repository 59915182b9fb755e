"""Real raw data through torchvision: MNIST (gzipped idx files) and SVHN (.mat), MD5-checked.

Layout under ``root`` follows torchvision, so an earlier ``torchvision.datasets`` download is reused:
``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` and ``root/{train,test}_32x32.mat``.
The expected MD5s are torchvision's own lists (``torchvision.datasets.MNIST.resources``,
``SVHN.split_list``); ``MD5_OVERRIDES`` replaces them
per file name (tests write tiny files in the real formats, whose sums differ). Downloads go to a
temporary file that is renamed into place only after its MD5 checks, so an interrupted or offline
download never leaves a half-written file behind.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mgmvae.compat import import_torchvision
from mgmvae.data.paired import SPLITS, DataError
from mgmvae.io import atomic_path

MNIST_PREFIX = {"train": "train", "test": "t10k"}
IDX_MAGIC = {"images": 2051, "labels": 2049}  # uint8 data, 3 resp. 1 dimensions
MD5_OVERRIDES: dict[str, str] = {}  # file name -> expected MD5, consulted before torchvision's lists


@lru_cache(maxsize=1)
def _torchvision_catalogue() -> dict[str, tuple[list[str], str]]:
    """File name -> (candidate URLs, MD5), read from torchvision's dataset classes."""
    datasets = import_torchvision().datasets
    files = {
        name: ([mirror + name for mirror in datasets.MNIST.mirrors], md5) for name, md5 in datasets.MNIST.resources
    }
    for url, name, md5 in datasets.SVHN.split_list.values():
        files[name] = ([url], md5)
    return files


def _tv_utils():
    """torchvision.datasets.utils (download_url, check_integrity), imported the CPU-safe way."""
    return import_torchvision().datasets.utils


def mnist_files(root: str | Path, split: str) -> dict[str, Path]:
    """Expected paths of the MNIST image and label files of a split."""
    _check_split(split)
    raw = Path(root) / "MNIST" / "raw"
    prefix = MNIST_PREFIX[split]
    return {
        "images": raw / f"{prefix}-images-idx3-ubyte.gz",
        "labels": raw / f"{prefix}-labels-idx1-ubyte.gz",
    }


def svhn_file(root: str | Path, split: str) -> Path:
    _check_split(split)
    return Path(root) / f"{split}_32x32.mat"


def load_mnist(root: str | Path, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as (uint8 [N,1,28,28], int64 [N])."""
    files = mnist_files(root, split)
    _ensure_files(list(files.values()), download)
    images = _read_idx(files["images"], "images")
    labels = _read_idx(files["labels"], "labels")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{files['images']} has {images.shape[0]} images but {files['labels']} has {labels.shape[0]} "
            "labels; delete both files and download them again"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_svhn(root: str | Path, split: str, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN ``split`` as (uint8 [N,3,32,32], int64 [N]) with SVHN's label 10 mapped to digit 0."""
    path = svhn_file(root, split)
    _ensure_files([path], download)
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
        x, y = mat["X"], mat["y"]
    except Exception as error:  # truncated or foreign .mat
        raise _corrupt(path, f"cannot be read ({error})") from error
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        found = f"X {x.dtype} {x.shape} and y {y.shape}"
        raise _corrupt(path, f"has {found}, expected X uint8 [32,32,3,N] and y [N,1]")
    # X is [H, W, C, N]; torchvision uses the same transpose to reach [N, C, H, W].
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
    return images, labels


# --------------------------------------------------------------------------- files
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


def _expected_md5(path: Path) -> str:
    if path.name in MD5_OVERRIDES:
        return MD5_OVERRIDES[path.name]
    return _torchvision_catalogue()[path.name][1]


def _ensure_files(paths: list[Path], download: bool) -> None:
    """Make every file present (downloading if allowed) and MD5-correct, or raise DataError saying how."""
    errors: list[str] = []
    if download:
        for path in paths:
            if not path.exists():
                try:
                    download_verified(path, _torchvision_catalogue()[path.name][0], _expected_md5(path))
                except Exception as error:  # offline, mirror down, wrong checksum
                    errors.append(f"{path.name}: {error}")
    missing = [path for path in paths if not path.exists()]
    if missing:
        listing = "\n".join(f"  {p}" for p in missing)
        how = "downloading failed:\n" + "\n".join(f"  {e}" for e in errors) + "\n" if download else "download is off; "
        raise DataError(
            f"missing raw data files:\n{listing}\n{how}"
            "put these files at exactly these paths, or set `download: true` on a machine with network access"
        )
    for path in paths:
        if not verified(path, _expected_md5(path)):
            raise _corrupt(path, "fails its MD5 check (corrupted or truncated)")


def verified(path: Path, md5: str) -> bool:
    """Whether ``path`` exists and has the MD5 ``md5``."""
    return bool(_tv_utils().check_integrity(path, md5))


def download_verified(path: Path, urls: list[str], md5: str) -> None:
    """Try each URL for ``path``; the file appears only once complete and MD5-verified
    (RuntimeError listing each URL's failure otherwise)."""
    utils = _tv_utils()
    failures = []
    for url in urls:
        try:
            with atomic_path(path) as tmp:
                utils.download_url(url, str(tmp.parent), tmp.name, md5)
                if not utils.check_integrity(tmp, md5):
                    raise RuntimeError("downloaded file fails its MD5 check")
            return
        except Exception as error:
            failures.append(f"{url}: {error}")
    raise RuntimeError("; ".join(failures))


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"raw data file {path} {what}; delete it and download it again (`download: true`)")


def _read_idx(path: Path, kind: str) -> np.ndarray:
    """Parse a gzipped idx file (big-endian magic, dimension sizes, then uint8 data)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise _corrupt(path, f"cannot be decompressed ({error})") from error
    ndim = 3 if kind == "images" else 1
    header = 4 * (ndim + 1)
    if len(data) < header or int.from_bytes(data[:4], "big") != IDX_MAGIC[kind]:
        raise _corrupt(path, f"is not an idx {kind} file (magic number {IDX_MAGIC[kind]} expected)")
    shape = tuple(int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, ndim + 1))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise _corrupt(path, f"holds {len(data) - header} bytes of data, expected {expected} for {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def raw_files(source: str, root: str | Path) -> list[Path]:
    """Every raw file a source needs ("mnist" or "svhn"), both splits."""
    if source == "mnist":
        return [p for split in SPLITS for p in mnist_files(root, split).values()]
    if source == "svhn":
        return [svhn_file(root, split) for split in SPLITS]
    raise ValueError(f"unknown raw source {source!r}; use 'mnist' or 'svhn'")


def download_urls(source: str) -> list[str]:
    """Candidate download URLs of a source's files (from torchvision's own lists)."""
    catalogue = _torchvision_catalogue()
    return [url for path in raw_files(source, ".") for url in catalogue[path.name][0]]
