"""The digit classifiers (MMVAE's and PolyMNIST's ClfImg): architecture, training determinism,
save/load, and released weights loaded by the classifier stage."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml
from torch import nn

from mgmvae.config import DEFAULT_CONFIG
from mgmvae.data import DataError
from mgmvae.evaluation.classifiers import (
    load_classifier,
    load_released,
    predict,
    save_classifier,
    train_classifier,
)
from mgmvae.nets import ClfImg, digit_classifier


@pytest.mark.parametrize("shape,flat", [((1, 28, 28), 320), ((3, 32, 32), 500)])
def test_shapes(shape, flat):
    net = digit_classifier(shape, "mmvae")
    assert net.conv1.in_channels == shape[0] and net.fc1.in_features == flat and net.fc2.out_features == 10
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_unsupported_shape_and_network():
    with pytest.raises(ValueError, match="supported shapes"):
        digit_classifier((1, 32, 32), "mmvae")
    with pytest.raises(ValueError, match=r"ClfImg takes \(3, 28, 28\) images"):
        digit_classifier((3, 32, 32), "clf_img")
    with pytest.raises(ValueError, match="choose one of"):
        digit_classifier((3, 28, 28), "resnet")


def reference_clf_img() -> nn.Sequential:
    """ClfImg's layers as MoPoE writes them (mmnist/networks/ConvNetworkImgClfCMNIST.py), typed out here."""
    return nn.Sequential(
        nn.Conv2d(3, 10, kernel_size=4, stride=2, padding=1),
        nn.Dropout2d(0.5),
        nn.ReLU(),
        nn.Conv2d(10, 20, kernel_size=4, stride=2, padding=1),
        nn.Dropout2d(0.5),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(980, 128),
        nn.Dropout(0.5),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def released_state(seed: int) -> dict:
    """A state dict as the released files hold it: the reference module's, under its attribute ``encoder``."""
    torch.manual_seed(seed)
    return {f"encoder.{k}": v for k, v in reference_clf_img().state_dict().items()}


def test_clf_img_is_the_references_network():
    net = digit_classifier((3, 28, 28), "clf_img").eval()
    keys = [f"encoder.{i}.{p}" for i in (0, 3, 7, 10) for p in ("weight", "bias")]
    assert list(net.state_dict()) == keys
    # parameters by hand: 3·10·4·4+10, 10·20·4·4+20, 980·128+128, 128·10+10
    assert sum(p.numel() for p in net.parameters()) == 490 + 3220 + 125568 + 1290
    state = released_state(0)
    net.load_state_dict(state)
    reference = reference_clf_img().eval()
    reference.load_state_dict({k.removeprefix("encoder."): v for k, v in state.items()})
    x = torch.rand(6, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x))
        features = net.features(x)
        assert features.shape == (6, 128) and (features >= 0).all()  # after the last ReLU
        assert torch.equal(net.head(features), net(x))
        assert torch.allclose(features, reference[:-1](x))


def test_released_weights_load_only_when_present_and_verified(tmp_path):
    def load(md5, modality="m0"):
        return load_released(tmp_path, modality, md5, "clf_img", (3, 28, 28), "classifier.released")

    with pytest.raises(DataError, match="pretrained_img_to_digit_clf_m0 are missing") as error:
        load(None)
    assert "classifier.released: null" in str(error.value)
    path = tmp_path / "pretrained_img_to_digit_clf_m0"
    torch.save(released_state(1), path)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(
        DataError, match=f"cannot be verified: its MD5 is {md5}; set classifier.released.md5.m0: {md5} once you trust"
    ):
        load(None)
    with pytest.raises(
        DataError, match=f"fails its MD5 check \\(classifier.released.md5.m0 = {'0' * 32}\\): its MD5 is {md5}"
    ):
        load("0" * 32)
    net = load(md5)
    assert not net.training and all(torch.equal(v, released_state(1)[k]) for k, v in net.state_dict().items())
    other = tmp_path / "pretrained_img_to_digit_clf_m1"
    torch.save(digit_classifier((3, 28, 28), "mmvae").state_dict(), other)  # another network's weights
    with pytest.raises(DataError, match=r"not a state dict of clf_img \(encoder.0.weight"):
        load(hashlib.md5(other.read_bytes()).hexdigest(), "m1")


def toy_digits(n: int, seed: int):
    """Class c is a bright 6x6 block at one of 10 positions on a noisy background."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = torch.randint(0, 60, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    rows, cols = (y // 5) * 12 + 4, (y % 5) * 5 + 1
    for c in range(10):  # per class, not per sample
        sel = y == c
        x[sel, :, int(rows[sel][0]) : int(rows[sel][0]) + 6, int(cols[sel][0]) : int(cols[sel][0]) + 6] = 255
    return x, y


def test_train_reaches_high_accuracy_and_is_deterministic():
    tx, ty = toy_digits(400, 0)
    vx, vy = toy_digits(100, 1)
    kw = dict(
        network="mmvae", epochs=3, batch_size=32, lr=3e-3, seed=0, eval_batch_size=64, device="cpu", progress=False
    )
    seen = []
    net, m = train_classifier(tx, ty, vx, vy, on_epoch=lambda e, r: seen.append(e), **kw)
    assert m["test_accuracy"] > 0.9 and m["epochs"] == 3 and len(m["per_epoch"]) == 3 and seen == [1, 2, 3]
    net2, m2 = train_classifier(tx, ty, vx, vy, **kw)
    assert m2["test_accuracy"] == m["test_accuracy"] and m2["per_epoch"] == m["per_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True))


def test_clf_img_trains_on_three_channels():
    (tx, ty), (vx, vy) = toy_digits(400, 0), toy_digits(100, 1)
    kw = dict(
        network="clf_img", epochs=3, batch_size=32, lr=3e-3, seed=0, eval_batch_size=64, device="cpu", progress=False
    )
    net, m = train_classifier(tx.repeat(1, 3, 1, 1), ty, vx.repeat(1, 3, 1, 1), vy, **kw)
    assert isinstance(net, ClfImg) and m["test_accuracy"] > 0.9


@pytest.mark.parametrize("shape,network", [((3, 32, 32), "mmvae"), ((3, 28, 28), "clf_img")])
def test_save_load_round_trip(tmp_path, shape, network):
    net = digit_classifier(shape, network).eval()
    metrics = {"test_accuracy": 0.5, "per_epoch": [{"epoch": 1, "loss": 1.0}]}
    path = tmp_path / "clf.pt"
    save_classifier(net, metrics, path)
    raw = torch.load(path, weights_only=True)
    assert raw["shape"] == list(shape) and raw["network"] == network
    loaded = load_classifier(path, "cpu")
    assert loaded.metrics == metrics and not loaded.training and type(loaded) is type(net)
    x = torch.rand(5, *shape)
    assert torch.equal(predict(net, x, 64), predict(loaded, x, 64))
    assert torch.allclose(net(x), loaded(x))


def test_classifier_stage_loads_released_weights_instead_of_training(tmp_path, capsys):
    """`polymnist` (config: ClfImg, released weights in data_dir/clf): the stage loads and verifies them,
    measures their accuracy and writes the classifier file evaluate loads; a missing or unverified file stops it."""
    from mgmvae.cli import main
    from mgmvae.data.paired import PairedData

    g = torch.Generator().manual_seed(0)
    modalities = [f"m{k}" for k in range(5)]
    images = {
        m: {
            s: torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8)
            for s, n in (("train", 30), ("test", 20))
        }
        for m in modalities
    }
    labels = {m: {s: torch.arange(len(images[m][s])) % 10 for s in ("train", "test")} for m in modalities}
    pairs = {s: torch.arange(len(labels["m0"][s])).unsqueeze(1).repeat(1, 5) for s in ("train", "test")}
    PairedData("polymnist", modalities, images, labels, pairs, {}).save(tmp_path / "poly.pt")
    (tmp_path / "clf").mkdir()
    released = tmp_path / "clf" / "pretrained_img_to_digit_clf_m2"
    torch.save(released_state(2), released)
    md5 = hashlib.md5(released.read_bytes()).hexdigest()

    def stage(md5s: dict) -> int:
        config = tmp_path / "config.yaml"
        overrides = {"data_dir": str(tmp_path), "device": "cpu", "classifier": {"min_accuracy": 0.0}}
        overrides["classifier"]["by_dataset"] = {"polymnist": {"released": {"folder": "clf", "md5": md5s}}}
        config.write_text(yaml.safe_dump(overrides))
        args = ["classifier", "--config", str(DEFAULT_CONFIG), str(config), "--dataset", "polymnist", "--modality"]
        args += ["m2", "--data", str(tmp_path / "poly.pt"), "--out", str(tmp_path / "out" / "m2.pt")]
        return main([*args, "--no-mlflow", "--no-progress"])

    assert stage({"m2": None}) == 2
    assert f"{released} cannot be verified: its MD5 is {md5}" in capsys.readouterr().err
    released.rename(released.with_name("elsewhere"))
    assert stage({"m2": md5}) == 2
    assert f"{released} are missing" in capsys.readouterr().err
    released.with_name("elsewhere").rename(released)
    assert stage({"m2": md5}) == 0
    loaded = load_classifier(tmp_path / "out" / "m2.pt")
    reference = reference_clf_img().eval()
    reference.load_state_dict({k.removeprefix("encoder."): v for k, v in released_state(2).items()})
    x = images["m2"]["test"].float() / 255
    assert isinstance(loaded, ClfImg) and torch.allclose(loaded(x), reference(x).detach())
    expected = (reference(x).argmax(1) == labels["m2"]["test"]).float().mean().item()
    assert loaded.metrics["test_accuracy"] == pytest.approx(expected) and loaded.metrics["md5"] == md5
