"""PolyMNIST: the embedded stand-in (digits_poly) and the loader of the released files, on tiny
files that the tests write in MoPoE's PNG layout and in MultiVae's tensor layout (no network)."""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mgmvae.compat import import_torchvision
from mgmvae.config import ConfigError, load_config
from mgmvae.data import DataError, ParamError
from mgmvae.data.digits_poly import BACKGROUND_SIZE, backgrounds, composite, tuple_sources
from mgmvae.data.embedded import hand_digits, hand_split
from mgmvae.study_datasets import build_dataset, check_raw_data

RNG = np.random.default_rng(0)
MODALITIES = ["m0", "m1", "m2", "m3", "m4"]


# ------------------------------------------------------------------- embedded: pieces
def test_backgrounds_are_seeded_and_keep_each_channel_dark_or_light():
    grounds = backgrounds(0)
    assert grounds.shape == (5, 3, BACKGROUND_SIZE, BACKGROUND_SIZE) and grounds.dtype == torch.uint8
    assert torch.equal(grounds, backgrounds(0)) and not torch.equal(grounds, backgrounds(1))
    light = grounds.flatten(2) >= 166  # 0.65·255 rounded
    dark = grounds.flatten(2) <= 89  # 0.35·255 rounded
    assert (light | dark).all()  # nothing mid-grey, where inverted ink would not show
    assert (light.all(2) | dark.all(2)).all()  # each channel of a background on one side only
    patterns = {tuple(light[j].all(1).tolist()) for j in range(5)}
    assert len(patterns) == 5  # a dark/light pattern of its own per modality
    assert (grounds.float().flatten(2).std(2).amax(1) > 5).all()  # textures, not flat colours


def test_composite_crops_and_inverts_where_the_digit_is_above_128():
    background = torch.arange(3 * 40 * 40).reshape(3, 40, 40).remainder(251).to(torch.uint8)
    digit = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    digit[0, 0, 5, 7] = 129  # ink
    digit[0, 0, 6, 7] = 128  # not ink: PolyMNIST binarises with > 128
    digit[1, 0, 0, 0] = 255
    out = composite(digit, background, torch.tensor([[1, 2], [12, 0]]))
    crop0, crop1 = background[:, 1:29, 2:30], background[:, 12:40, 0:28]
    assert out.shape == (2, 3, 28, 28) and out.dtype == torch.uint8
    assert torch.equal(out[0, :, 5, 7], 255 - crop0[:, 5, 7]) and torch.equal(out[0, :, 6, 7], crop0[:, 6, 7])
    assert torch.equal(out[1, :, 0, 0], 255 - crop1[:, 0, 0])
    expected0 = crop0.clone()
    expected0[:, 5, 7] = 255 - expected0[:, 5, 7]
    assert torch.equal(out[0], expected0)


def test_tuple_sources_are_per_class_permutations():
    labels = torch.tensor([1, 0, 1, 0, 1, 2])
    source = tuple_sources(labels, pairings=2, rng=np.random.default_rng(0))
    # class 0 at 1, 3; class 1 at 0, 2, 4; class 2 at 5: two permutations of each, classes in order
    blocks = [source[0:2], source[2:4], source[4:7], source[7:10], source[10:11], source[11:12]]
    assert [sorted(b.tolist()) for b in blocks] == [[1, 3], [1, 3], [0, 2, 4], [0, 2, 4], [5], [5]]
    assert torch.equal(labels[source], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]))


# -------------------------------------------------------------------- embedded: data
@pytest.fixture(scope="module")
def poly():
    return build_dataset("dp", {"source": "digits_poly", "pairings": 2}, "unused", False, seed=3)


def ink_masks(images: torch.Tensor, pattern_light: torch.Tensor) -> torch.Tensor:
    """The digit's ink, read back from composited images: where channel 0 left its background's side."""
    return (images[:, 0] >= 128) != pattern_light


def test_digits_poly_tuples_share_the_class_and_split_by_source_image(poly):
    assert poly.modalities == MODALITIES and all(s == (3, 28, 28) for s in poly.shapes.values())
    hand, labels = hand_digits()
    split = hand_split(labels)
    grounds = backgrounds(3)
    for s, n in (("train", 1437), ("test", 360)):
        assert poly.num_pairs(s) == 2 * n
        assert torch.equal(poly.pairs[s], torch.arange(2 * n).unsqueeze(1).repeat(1, 5))
        own = {(bytes((hand[i, 0] > 128).flatten().numpy()), int(labels[i])) for i in split[s]}
        uses = Counter(bytes((hand[i, 0] > 128).flatten().numpy()) for i in split[s])
        for j, m in enumerate(MODALITIES):
            y = poly.labels[m][s]
            assert torch.equal(y, poly.labels["m0"][s])  # every modality of a tuple: the same class
            masks = ink_masks(poly.images[m][s], bool(grounds[j, 0, 0, 0] >= 128))
            keys = [bytes(mask.flatten().numpy()) for mask in masks]
            assert all((key, int(c)) in own for key, c in zip(keys, y, strict=True))  # this split's digit, its class
            assert Counter(keys) == Counter({k: 2 * c for k, c in uses.items()})  # each image twice: 2 pairings
    m0, m1 = (ink_masks(poly.images[m]["train"], bool(grounds[j, 0, 0, 0] >= 128)) for j, m in enumerate(["m0", "m1"]))
    assert (m0 == m1).flatten(1).all(1).float().mean() < 0.05  # each modality draws its own instance of the class


def test_digits_poly_is_seeded(poly):
    again = build_dataset("dp", {"source": "digits_poly", "pairings": 2}, "unused", False, seed=3)
    other = build_dataset("dp", {"source": "digits_poly", "pairings": 2}, "unused", False, seed=4)
    for m in MODALITIES:
        assert torch.equal(again.images[m]["test"], poly.images[m]["test"])
    assert not torch.equal(other.images["m2"]["train"], poly.images["m2"]["train"])
    assert poly.meta["pairings"] == 2 and poly.meta["source"] == "digits_poly"
    with pytest.raises(ParamError, match="pairings = 0: input should be greater than 0") as error:
        build_dataset("dp", {"source": "digits_poly", "pairings": 0}, "unused", False, seed=3)
    assert error.value.key == "pairings"


# ------------------------------------------------------------------------ real files
def write_polymnist(root: Path, per_split: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """Tiny PolyMNIST in MoPoE's layout: MMNIST/{split}/m{k}/{i}.{label}.png, RGB 28×28, as
    ``torchvision.utils.save_image`` writes them. Returns the pixels [N,28,28,3] per split and
    modality in (label, index) order."""
    from PIL import Image

    written: dict[str, dict[str, np.ndarray]] = {}
    for split, n in per_split.items():
        names = [(i // 10, i % 10) for i in range(n)]  # (index, label): labels 0..9, index per class
        order = sorted(range(n), key=lambda k: (names[k][1], names[k][0]))
        written[split] = {}
        for m in MODALITIES:
            folder = root / "MMNIST" / split / m
            folder.mkdir(parents=True)
            pixels = RNG.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
            for (index, label), array in zip(names, pixels, strict=True):
                Image.fromarray(array).save(folder / f"{index}.{label}.png")
            written[split][m] = pixels[order]
    return written


def write_polymnist_tensors(root: Path, per_split: dict[str, int]) -> dict[str, dict[str, torch.Tensor]]:
    """Tiny PolyMNIST in MultiVae's layout: MMNIST/{split}/m{k}.pt, float [N,3,28,28] of values k/255
    (images as ``ToTensor`` reads them), and labels.pt [N]; row i is tuple i. Returns the uint8 images
    and the labels per split."""
    written: dict[str, dict[str, torch.Tensor]] = {}
    for split, n in per_split.items():
        folder = root / "MMNIST" / split
        folder.mkdir(parents=True)
        labels = torch.from_numpy(RNG.permutation(np.arange(n) % 10))
        torch.save(labels, folder / "labels.pt")
        written[split] = {"labels": labels}
        for m in MODALITIES:
            pixels = torch.from_numpy(RNG.integers(0, 256, (n, 3, 28, 28), dtype=np.uint8))
            torch.save(pixels.float() / 255, folder / f"{m}.pt")
            written[split][m] = pixels
    return written


def test_polymnist_reads_tuples_by_file_name(tmp_path):
    written = write_polymnist(tmp_path, {"train": 23, "test": 12})
    data = build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    assert data.modalities == MODALITIES and data.shapes["m3"] == (3, 28, 28)
    assert (data.num_pairs("train"), data.num_pairs("test")) == (23, 12)
    for split, n in (("train", 23), ("test", 12)):
        expected_labels = sorted(i % 10 for i in range(n))
        for m in MODALITIES:
            assert data.labels[m][split].tolist() == expected_labels
            assert torch.equal(data.images[m][split], torch.from_numpy(written[split][m]).permute(0, 3, 1, 2))
        assert torch.equal(data.pairs[split], torch.arange(n).unsqueeze(1).repeat(1, 5))


def test_polymnist_refuses_folders_that_do_not_match(tmp_path):
    write_polymnist(tmp_path, {"train": 12, "test": 12})
    (tmp_path / "MMNIST/train/m2/1.1.png").rename(tmp_path / "MMNIST/train/m2/9.1.png")
    with pytest.raises(DataError, match="do not hold the same file names") as error:
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    assert "m2" in str(error.value) and "9.1.png" in str(error.value)
    (tmp_path / "MMNIST/train/m2/9.1.png").rename(tmp_path / "MMNIST/train/m2/one.png")
    with pytest.raises(DataError, match=r"not named \{index\}.\{label\}.png: \['one.png'\]"):
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)


def test_polymnist_reads_multivaes_tensors_row_by_row(tmp_path):
    written = write_polymnist_tensors(tmp_path, {"train": 23, "test": 12})
    data = build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    assert data.meta["layout"] == "tensor" and (data.num_pairs("train"), data.num_pairs("test")) == (23, 12)
    for split in ("train", "test"):
        for m in MODALITIES:
            assert data.images[m][split].dtype == torch.uint8
            assert torch.equal(data.images[m][split], written[split][m])  # k/255 back to k exactly
            assert torch.equal(data.labels[m][split], written[split]["labels"])
        assert torch.equal(data.pairs[split], torch.arange(len(written[split]["labels"])).unsqueeze(1).repeat(1, 5))


def test_polymnist_tensors_that_are_not_multivaes_are_refused(tmp_path):
    write_polymnist_tensors(tmp_path, {"train": 12, "test": 10})
    test = tmp_path / "MMNIST" / "test"
    torch.save(torch.rand(9, 3, 28, 28), test / "m3.pt")
    with pytest.raises(DataError, match=r"m3.pt has shape \[9, 3, 28, 28\], not \[10, 3, 28, 28\]"):
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    torch.save(torch.rand(10, 3, 28, 28) * 255, test / "m3.pt")
    with pytest.raises(DataError, match=r"m3.pt holds values outside \[0, 1\]"):
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)


def test_polymnist_in_neither_layout_names_what_is_there_and_both_layouts(tmp_path):
    with pytest.raises(DataError, match="holds PolyMNIST in neither layout: found nothing") as error:
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    assert "set `download: true` and the archive's md5" in str(error.value)
    write_polymnist_tensors(tmp_path, {"train": 10, "test": 10})
    (tmp_path / "MMNIST" / "test" / "labels.pt").unlink()  # tensors incomplete, and no PNG folders
    with pytest.raises(DataError) as error:
        build_dataset("pm", {"source": "polymnist"}, tmp_path, False, seed=0)
    message = str(error.value)
    assert "found ['test/m0.pt'" in message and "'train/labels.pt'" in message
    assert f"MultiVae's tensors {tmp_path / 'MMNIST'}/{{train,test}}/m0.pt ... m4.pt and labels.pt" in message
    assert f"MoPoE's PNG folders {tmp_path / 'MMNIST'}/{{train,test}}/m0 ... m4/ of {{index}}.{{label}}.png" in message


def zip_tree(root: Path, archive: Path) -> str:
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            z.write(path, path.relative_to(root))
    return hashlib.md5(archive.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A PolyMNIST.zip 'on the server' and torchvision's download_url copying it; records the calls."""
    written = write_polymnist(tmp_path / "release", {"train": 14, "test": 11})
    archive = tmp_path / "server" / "PolyMNIST.zip"
    archive.parent.mkdir()
    md5 = zip_tree(tmp_path / "release", archive)
    calls = []

    def fake_download(url, root, filename, md5=None):
        calls.append(url)
        (Path(root) / filename).write_bytes(archive.read_bytes())

    monkeypatch.setattr(import_torchvision().datasets.utils, "download_url", fake_download)
    return written, archive, md5, calls


def test_polymnist_download_is_verified_unpacked_and_read(tmp_path, server):
    written, archive, md5, calls = server
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    spec = {"source": "polymnist", "md5": md5, "url": "https://example.org/PolyMNIST.zip"}
    data = build_dataset("pm", spec, data_dir, True, seed=0)
    assert calls == ["https://example.org/PolyMNIST.zip"]
    assert torch.equal(data.images["m1"]["test"], torch.from_numpy(written["test"]["m1"]).permute(0, 3, 1, 2))
    assert sorted(p.name for p in data_dir.iterdir()) == ["MMNIST", "PolyMNIST.zip"]  # no temporary left
    build_dataset("pm", spec, data_dir, True, seed=0)
    assert len(calls) == 1  # unpacked files are reused


def test_polymnist_refuses_a_download_it_cannot_verify(tmp_path, server):
    _, _, md5, calls = server
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(DataError, match="no checksum is published for PolyMNIST.zip"):
        build_dataset("pm", {"source": "polymnist"}, data_dir, True, seed=0)
    assert calls == [] and list(data_dir.iterdir()) == []
    wrong = "0" * 32
    with pytest.raises(DataError, match="MD5") as error:
        build_dataset("pm", {"source": "polymnist", "md5": wrong}, data_dir, True, seed=0)
    assert len(calls) == 1 and list(data_dir.iterdir()) == []  # the download was not kept
    assert "downloading PolyMNIST.zip failed" in str(error.value)
    with pytest.raises(ParamError, match="32 lowercase hex digits"):
        build_dataset("pm", {"source": "polymnist", "md5": "abc"}, data_dir, True, seed=0)


def test_polymnist_archive_of_another_layout_is_refused_and_nothing_unpacked(tmp_path, server):
    _, archive, md5, _ = server
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "PolyMNIST.zip").write_bytes(archive.read_bytes())
    with pytest.raises(DataError, match=r"holds \['MMNIST'\] at its top, and no PolyMNIST layout under PolyMNIST/"):
        build_dataset("pm", {"source": "polymnist", "md5": md5, "folder": "PolyMNIST"}, data_dir, True, seed=0)
    assert sorted(p.name for p in data_dir.iterdir()) == ["PolyMNIST.zip"]
    (data_dir / "PolyMNIST.zip").write_bytes(b"truncated")
    with pytest.raises(DataError, match="fails its MD5 check"):
        build_dataset("pm", {"source": "polymnist", "md5": md5}, data_dir, True, seed=0)


def test_polymnist_download_of_the_tensor_layout_keeps_the_classifiers_beside_it(tmp_path, monkeypatch):
    """MultiVae's archive as its code reads it: MMNIST/ of tensors and clf/ at the top, both unpacked."""
    written = write_polymnist_tensors(tmp_path / "release", {"train": 12, "test": 10})
    (tmp_path / "release" / "clf").mkdir()
    (tmp_path / "release" / "clf" / "pretrained_img_to_digit_clf_m0").write_bytes(b"weights")
    archive = tmp_path / "PolyMNIST.zip"
    md5 = zip_tree(tmp_path / "release", archive)
    fake = lambda url, root, filename, md5=None: (Path(root) / filename).write_bytes(archive.read_bytes())  # noqa: E731
    monkeypatch.setattr(import_torchvision().datasets.utils, "download_url", fake)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = build_dataset("pm", {"source": "polymnist", "md5": md5}, data_dir, True, seed=0)
    assert data.meta["layout"] == "tensor" and torch.equal(data.images["m4"]["train"], written["train"]["m4"])
    assert sorted(p.name for p in data_dir.iterdir()) == ["MMNIST", "PolyMNIST.zip", "clf"]
    assert (data_dir / "clf" / "pretrained_img_to_digit_clf_m0").read_bytes() == b"weights"


def test_preflight_stops_an_unverifiable_polymnist_download_before_any_job(tmp_path):
    tables = {"table1": "polymnist", "table2": "polymnist", "table3": "polymnist"}
    config = load_config(overrides={"tables": tables, "data_dir": str(tmp_path), "download": True})
    with pytest.raises(ConfigError, match="no checksum is published") as error:
        check_raw_data(config)
    assert str(tmp_path / "MMNIST" / "train" / "m0") in str(error.value)
    write_polymnist(tmp_path, {"train": 10, "test": 10})
    check_raw_data(config)  # present: nothing to download
