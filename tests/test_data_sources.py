"""Raw-data loaders on tiny files written in the real on-disk formats (no network)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mgmvae.compat import import_torchvision
from mgmvae.data import DataError, sources
from mgmvae.study_datasets import build_dataset

RNG = np.random.default_rng(0)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """Gzipped idx file as MNIST ships it: big-endian magic, big-endian sizes, uint8 payload."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, split: str, n: int, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    files = sources.mnist_files(root, split)
    write_idx(files["images"], images, 2051)
    write_idx(files["labels"], labels, 2049)
    for path in files.values():
        monkeypatch.setitem(sources.MD5_OVERRIDES, path.name, md5_of(path))
    return images, labels


def write_svhn(root: Path, split: str, n: int, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's .mat: X [32,32,3,N] uint8 and y [N,1] with 10 standing for the digit 0."""
    import scipy.io

    x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10).reshape(n, 1)
    y[y == 0] = 10
    path = sources.svhn_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x, "y": y.astype(np.uint8)})
    monkeypatch.setitem(sources.MD5_OVERRIDES, path.name, md5_of(path))
    return x, y


def test_default_md5s_are_torchvisions():
    datasets = import_torchvision().datasets
    assert sources._expected_md5(Path("train_32x32.mat")) == datasets.SVHN.split_list["train"][2]
    assert (
        sources._expected_md5(Path("t10k-labels-idx1-ubyte.gz"))
        == dict(datasets.MNIST.resources)["t10k-labels-idx1-ubyte.gz"]
    )


def test_mnist_loads(tmp_path, monkeypatch):
    images, labels = write_mnist(tmp_path, "test", 12, monkeypatch)
    x, y = sources.load_mnist(tmp_path, "test", download=False)
    assert x.dtype == torch.uint8 and x.shape == (12, 1, 28, 28)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert torch.equal(x[:, 0], torch.from_numpy(images))


def test_svhn_loads_and_maps_10_to_0(tmp_path, monkeypatch):
    x_raw, y_raw = write_svhn(tmp_path, "train", 13, monkeypatch)
    x, y = sources.load_svhn(tmp_path, "train", download=False)
    assert x.dtype == torch.uint8 and x.shape == (13, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(13)]
    # pixel (row 5, column 7, green) of image 4 in [N,C,H,W] is X[5, 7, 1, 4] in SVHN's [H,W,C,N]
    assert x[4, 1, 5, 7] == x_raw[5, 7, 1, 4]


def test_truncated_file_names_it_and_says_redownload(tmp_path, monkeypatch):
    write_mnist(tmp_path, "train", 5, monkeypatch)
    path = sources.mnist_files(tmp_path, "train")["images"]
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="MD5") as info:
        sources.load_mnist(tmp_path, "train")
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_corrupt_svhn_with_matching_md5_is_still_a_data_error(tmp_path, monkeypatch):
    path = sources.svhn_file(tmp_path, "test")
    path.write_bytes(b"not a mat file at all")
    monkeypatch.setitem(sources.MD5_OVERRIDES, path.name, md5_of(path))
    with pytest.raises(DataError, match="delete it") as info:
        sources.load_svhn(tmp_path, "test")
    assert str(path) in str(info.value)


def test_bad_idx_magic_is_a_data_error(tmp_path, monkeypatch):
    write_mnist(tmp_path, "test", 3, monkeypatch)
    path = sources.mnist_files(tmp_path, "test")["labels"]
    write_idx(path, np.zeros(3), 2051)  # an images magic in a labels file
    monkeypatch.setitem(sources.MD5_OVERRIDES, path.name, md5_of(path))
    with pytest.raises(DataError, match="magic number 2049"):
        sources.load_mnist(tmp_path, "test")


def test_missing_files_without_download_are_named(tmp_path):
    with pytest.raises(DataError) as info:
        sources.load_mnist(tmp_path, "train", download=False)
    message = str(info.value)
    for path in sources.mnist_files(tmp_path, "train").values():
        assert str(path) in message
    assert "download: true" in message


def test_offline_download_names_files_and_leaves_nothing(tmp_path, monkeypatch):
    utils = import_torchvision().datasets.utils

    def offline(url, root, filename, md5):  # writes half a file, then the network drops
        (Path(root) / filename).write_bytes(b"partial")
        raise OSError("Network is unreachable")

    monkeypatch.setattr(utils, "download_url", offline)
    with pytest.raises(DataError, match="Network is unreachable") as info:
        sources.load_svhn(tmp_path, "test", download=True)
    assert str(sources.svhn_file(tmp_path, "test")) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left behind


def test_download_is_verified_then_moved_into_place(tmp_path, monkeypatch):
    source = tmp_path / "server"
    write_svhn(source, "test", 4, monkeypatch)
    utils = import_torchvision().datasets.utils
    monkeypatch.setattr(
        utils,
        "download_url",
        lambda url, root, filename, md5: (Path(root) / filename).write_bytes((source / "test_32x32.mat").read_bytes()),
    )
    root = tmp_path / "data"
    x, y = sources.load_svhn(root, "test", download=True)
    assert x.shape == (4, 3, 32, 32) and sorted(p.name for p in root.iterdir()) == ["test_32x32.mat"]


def test_mnist_svhn_and_mnist_cdcb_from_raw_files(tmp_path, monkeypatch):
    for split, n in (("train", 40), ("test", 20)):
        write_mnist(tmp_path, split, n, monkeypatch)
        write_svhn(tmp_path, split, n + 7, monkeypatch)
    data = build_dataset("ms", {"source": "mnist_svhn", "pairings": 3}, tmp_path, False, seed=1)
    assert data.modalities == ["mnist", "svhn"] and data.shapes == {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}
    assert data.num_pairs("train") == 3 * 40 and data.num_pairs("test") == 3 * 20
    for split in ("train", "test"):
        rows = data.pairs[split]
        assert torch.equal(data.labels["mnist"][split][rows[:, 0]], data.labels["svhn"][split][rows[:, 1]])
    again = build_dataset("ms", {"source": "mnist_svhn", "pairings": 3}, tmp_path, False, seed=1)
    assert torch.equal(again.pairs["train"], data.pairs["train"])

    cdcb = build_dataset("mc", {"source": "mnist_cdcb", "colourings": 2}, tmp_path, False, seed=0)
    assert cdcb.shapes == {"cd": (3, 32, 32), "cb": (3, 32, 32)}
    assert cdcb.num_pairs("train") == 80 and cdcb.num_pairs("test") == 40
    assert cdcb.meta["colourings"] == 2


def test_mnist_svhn_without_files_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="download: true") as info:
        build_dataset("ms", {"source": "mnist_svhn"}, tmp_path, False, seed=0)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in str(info.value)
