"""The MMVAE digit classifiers: architecture, training determinism, save/load."""

from __future__ import annotations

import pytest
import torch

from mgmvae.evaluation.classifiers import (
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)
from mgmvae.nets import digit_classifier


@pytest.mark.parametrize("shape,flat", [((1, 28, 28), 320), ((3, 32, 32), 500)])
def test_shapes(shape, flat):
    net = digit_classifier(shape)
    assert net.conv1.in_channels == shape[0] and net.fc1.in_features == flat and net.fc2.out_features == 10
    assert net(torch.zeros(2, *shape)).shape == (2, 10)


def test_unsupported_shape():
    with pytest.raises(ValueError, match="supported shapes"):
        digit_classifier((1, 32, 32))


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
    kw = dict(epochs=3, batch_size=32, lr=3e-3, seed=0, device="cpu", progress=False)
    seen = []
    net, m = train_classifier(tx, ty, vx, vy, on_epoch=lambda e, r: seen.append(e), **kw)
    assert m["test_accuracy"] > 0.9 and m["epochs"] == 3 and len(m["per_epoch"]) == 3 and seen == [1, 2, 3]
    net2, m2 = train_classifier(tx, ty, vx, vy, **kw)
    assert m2["test_accuracy"] == m["test_accuracy"] and m2["per_epoch"] == m["per_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True))


def test_save_load_round_trip(tmp_path):
    net = digit_classifier((3, 32, 32)).eval()
    metrics = {"test_accuracy": 0.5, "per_epoch": [{"epoch": 1, "loss": 1.0}]}
    path = tmp_path / "clf.pt"
    save_classifier(net, (3, 32, 32), metrics, path)
    raw = torch.load(path, weights_only=True)
    assert raw["shape"] == [3, 32, 32]
    loaded = load_classifier(path, "cpu")
    assert loaded.metrics == metrics and not loaded.training
    x = torch.rand(5, 3, 32, 32)
    assert torch.equal(predict(net, x), predict(loaded, x))
    assert torch.allclose(net(x), loaded(x))
