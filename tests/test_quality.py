"""Generative quality and diversity (mgmvae/evaluation/quality.py) against independent computations
and hand-made cases with known answers, and a reviewer's check: a collapsed plugin model, one fixed
image of one digit whatever it is given, must read as collapsed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.cli import main
from mgmvae.compat import import_torchvision
from mgmvae.config import ROOT
from mgmvae.evaluation import evaluate_model
from mgmvae.evaluation.classifiers import train_classifier
from mgmvae.evaluation.quality import (
    InceptionFeatures,
    frechet_distance,
    label_entropy,
    load_inception,
    precision_recall,
)
from mgmvae.nets import SUPPORTED_SHAPES, digit_classifier
from tests.conftest import TOY_SETTINGS, evaluation_settings, synthetic_paired
from tests.test_evaluation_m_modalities import FirstGiven, three_modalities
from tests.test_metrics import CodeReader


def scipy_frechet(a, b) -> float:
    """FID's formula as pytorch-fid computes it, with scipy's general matrix square root."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(sa) + np.trace(sb) - 2 * np.trace(scipy.linalg.sqrtm(sa @ sb).real))


def brute_precision_recall(real: Tensor, fake: Tensor, k: int) -> dict[str, float]:
    """Kynkäänniemi et al.'s definition, one pair of points at a time."""
    real_points, fake_points = real.double().tolist(), fake.double().tolist()

    def radii(points):  # sorted distances to every point of the set, itself (0) first: index k
        return [sorted(math.dist(p, q) for q in points)[k] for p in points]

    def covered(points, centres, r):
        return sum(any(math.dist(p, c) <= rc for c, rc in zip(centres, r, strict=True)) for p in points) / len(points)

    return {
        "precision": covered(fake_points, real_points, radii(real_points)),
        "recall": covered(real_points, fake_points, radii(fake_points)),
    }


# ------------------------------------------------------------------- the metrics
def test_frechet_distance_matches_scipy_sqrtm_and_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(400, 6, generator=g) * torch.linspace(0.5, 2.0, 6) + 1.5
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a, b), rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # a collapsed set (every row one point p): ‖μ − p‖² + Tr Σ
    p = b[0]
    closed = float(((a.double().mean(0) - p.double()) ** 2).sum() + np.trace(np.cov(a.double().numpy(), rowvar=False)))
    assert frechet_distance(a, p.expand(300, -1)) == pytest.approx(closed, rel=1e-9)
    with pytest.raises(ValueError, match="at least 2 points"):
        frechet_distance(a[:1], b)


def test_precision_recall_against_brute_force_and_known_answers():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(30, 3, generator=g)
    fake = 0.8 * torch.randn(25, 3, generator=g) + 0.7
    for k in (1, 2, 3):
        for chunk in (4, 1000):
            assert precision_recall(real, fake, k, chunk) == pytest.approx(brute_precision_recall(real, fake, k))
    # real at 0, 1, 2, 3 (each radius 1 with k = 1); fake at 0.5 (inside) and 10 (outside). The fake
    # radii are 9.5 (each other's distance): every real point lies within 9.5 of 0.5
    line = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    assert precision_recall(line, torch.tensor([[0.5], [10.0]]), 1, 2) == {"precision": 0.5, "recall": 1.0}
    assert precision_recall(real, real.clone(), 3, 7) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(real, real + 1000.0, 3, 7) == {"precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="need more than 3 points"):
        precision_recall(real, fake[:3], 3, 7)


def test_label_entropy_is_one_for_every_digit_equally_and_zero_for_one():
    def logits(labels):
        return F.one_hot(torch.tensor(labels), 10).float()

    assert label_entropy(logits(list(range(10)) * 3)) == pytest.approx(1.0)
    assert label_entropy(logits([3] * 50)) == 0.0
    assert label_entropy(logits([1, 2] * 5)) == pytest.approx(math.log(2) / math.log(10))


@pytest.mark.parametrize(
    ("shape", "network", "width"),
    [(s, "mmvae", 50) for s in sorted(SUPPORTED_SHAPES)] + [((3, 28, 28), "clf_img", 128)],
)
def test_the_digit_classifiers_read_their_penultimate_features(shape, network, width):
    net = digit_classifier(shape, network).eval()
    x = torch.rand(4, *shape)
    features = net.features(x)
    assert features.shape == (4, width) and (features >= 0).all()  # after the last hidden ReLU
    assert torch.equal(net(x), net.head(features))


# ------------------------------------------------------------- the reviewer's check
class OneDigit(MultimodalVAE):
    """A collapsed model, written as a plugin (docs/plugins.md): every generation and every prior
    draw is the same test image of one digit in each modality, whatever it is given."""

    name = "one_digit"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        return {"loss": sum(p.sum() * 0 for p in self.parameters())}

    def show(self, images: Batch) -> OneDigit:
        """The image each modality shows: ``{modality: [1, C, H, W]}`` in [0, 1]."""
        self.shown = images
        return self

    def draw(self, n: int) -> Batch:
        return {m: x.to(self.device).expand(n, -1, -1, -1) for m, x in self.shown.items()}

    def generate(self, batch, source, target, protocol="mean"):
        return self.draw(len(next(x for x in batch.values() if x is not None)))[target]

    def sample(self, n):
        return self.draw(n)


class Memoriser(OneDigit):
    """Shows training pairs drawn at random: the quality and diversity of the data itself."""

    def draw(self, n: int) -> Batch:
        rows = torch.randint(len(next(iter(self.shown.values()))), (n,))
        return {m: x[rows].to(self.device) for m, x in self.shown.items()}


def as_float(x: Tensor) -> Tensor:
    return x.float() / 255


@pytest.fixture(scope="module")
def trained():
    """Synthetic pairs and a digit classifier per modality trained on them."""
    data = synthetic_paired(n_train=300, n_test=300)
    classifiers = {}
    for m in data.modalities:
        x, y = data.images[m], data.labels[m]
        net, metrics = train_classifier(
            x["train"],
            y["train"],
            x["test"],
            y["test"],
            network="mmvae",
            epochs=10,
            batch_size=32,
            lr=1e-3,
            seed=0,
            eval_batch_size=128,
            progress=False,
        )
        assert metrics["test_accuracy"] > 0.95
        classifiers[m] = net
    return data, classifiers


def quality_settings(**overrides):
    return evaluation_settings(
        batch_size=100, joint_coherence_samples=300, quality_samples=300, probe_max_train=300, probe_folds=2
    ) | {"max_cluster": 100, "likelihood_samples": 0, **overrides}


def test_a_collapsed_model_reads_as_collapsed(trained):
    data, classifiers = trained
    torch.manual_seed(0)
    digit = int((data.labels["a"]["test"] == 3).nonzero()[0])  # a test pair of digit 3
    shown = {m: as_float(data.images[m]["test"][digit : digit + 1]) for m in data.modalities}
    collapsed = OneDigit(data.shapes, TOY_SETTINGS).show(shown)
    memoriser = Memoriser(data.shapes, TOY_SETTINGS).show(
        {m: as_float(data.images[m]["train"]) for m in data.modalities}
    )
    one = evaluate_model(collapsed, data, classifiers, quality_settings(), seed=0, protocol="mean")
    memo = evaluate_model(memoriser, data, classifiers, quality_settings(), seed=0, protocol="mean")
    q, m = one["generative_quality"], memo["generative_quality"]

    assert one["joint_coherence"]["joint"] > 0.99  # it wins joint coherence ...
    assert q["prior"]["mean"]["label_entropy"] < 0.01 < 0.95 < m["prior"]["mean"]["label_entropy"]  # ... with one digit
    # the real test images' own split-half distance on the same features: the floor a model can reach
    # (frechet_distance: scipy's sqrtm is inaccurate on these singular covariances, dead ReLU units)
    half = []
    for name, net in classifiers.items():
        features = net.features(as_float(data.images[name]["test"])).detach()
        half.append(frechet_distance(features[:150], features[150:]))  # 15 of each digit
    for kind in ("prior", "conditional"):
        mine, theirs = q[kind]["mean"], m[kind]["mean"]
        assert mine["fd_classifier"] > 10 * max(theirs["fd_classifier"], *half)
        assert mine["recall"] < 0.05 < 0.5 < theirs["recall"]  # no diversity ...
        assert mine["precision"] == 1.0  # ... yet the image it shows is a real one
        assert "fid_inception" not in mine  # no Inception weights configured


def test_every_modality_from_all_the_others_with_three_modalities():
    data = three_modalities()
    model = FirstGiven(data.shapes)
    settings = evaluation_settings(batch_size=16, probe_max_train=60, probe_folds=3, joint_coherence_samples=20)
    settings |= {"likelihood_samples": 0, "quality_samples": 50}
    quality = evaluate_model(model, data, {m: CodeReader() for m in data.modalities}, settings, seed=0, protocol="mean")
    quality = quality["generative_quality"]
    assert list(quality["prior"]) == ["a", "b", "c", "mean"]
    assert list(quality["conditional"]) == ["b,c->a", "a,c->b", "a,b->c", "mean"]
    assert quality["settings"] == {"samples": 50, "k": 3}
    assert ["b", "c"] in model.sources and ["a", "b"] in model.sources
    fd = [quality["conditional"][key]["fd_classifier"] for key in ("b,c->a", "a,c->b", "a,b->c")]
    assert quality["conditional"]["mean"]["fd_classifier"] == pytest.approx(sum(fd) / 3)


# ------------------------------------------------------------------ Inception FID
class TinyFeatures(nn.Module):
    """A stand-in for Inception-v3 up to pool3: records what it is given."""

    def __init__(self):
        super().__init__()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(2), nn.Linear(12, 5)
        self.seen: list[tuple] = []

    def forward(self, x):
        self.seen.append((tuple(x.shape[1:]), float(x.min()), float(x.max())))
        return self.fc(self.pool(x).flatten(1))


def test_inception_fid_on_an_injected_network(trained):
    _, classifiers = trained
    data = synthetic_paired(n_train=64, n_test=40, seed=1)  # quality_samples >= 40: every test image, in order
    tiny = TinyFeatures()
    shown = {m: as_float(data.images[m]["test"][:1]) for m in data.modalities}
    model = OneDigit(data.shapes, TOY_SETTINGS).show(shown)
    settings = quality_settings(quality_samples=50, joint_coherence_samples=40)
    out = evaluate_model(model, data, classifiers, settings, 0, protocol="mean", inception=InceptionFeatures(tiny))
    assert {shape for shape, _, _ in tiny.seen} == {(3, 299, 299)}
    # in [-1, 1] up to float32 rounding of the bilinear weights (1 + 1 ulp on some CPUs' kernels)
    assert all(-1.0 - 1e-6 <= low and high <= 1.0 + 1e-6 for _, low, high in tiny.seen)

    def features(x):  # grey to three channels, 299×299, [0, 1] to [-1, 1]
        with torch.no_grad():
            big = F.interpolate(x.repeat(1, 3 // x.shape[1], 1, 1), size=(299, 299), mode="bilinear")
            return tiny.fc(tiny.pool(2 * big - 1).flatten(1)).double()

    quality = out["generative_quality"]
    for m, target in (("a", "b->a"), ("b", "a->b")):
        real, p = features(as_float(data.images[m]["test"])), features(shown[m])[0]
        # the model shows one image: its features are one point p, at ‖μ − p‖² + Tr Σ
        closed = float(((real.mean(0) - p) ** 2).sum() + np.trace(np.cov(real.numpy(), rowvar=False)))
        assert quality["prior"][m]["fid_inception"] == pytest.approx(closed, rel=1e-5)
        assert quality["conditional"][target]["fid_inception"] == pytest.approx(closed, rel=1e-5)


def test_inception_weights_that_are_missing_are_refused_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    with pytest.raises(FileNotFoundError, match=r"evaluation\.inception_weights.*inception_v3_google-0cc3c7bd\.pth"):
        load_inception(missing, "cpu")
    config = tmp_path / "inception.yaml"
    config.write_text(f"evaluation:\n  inception_weights: {missing}\n")
    args = ["evaluate", "--dataset", "digits_street", "--model", "mvae", "--model-file", str(tmp_path / "m.pt")]
    assert main([*args, "--no-mlflow", "--config", str(ROOT / "config.yaml"), str(config)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "run the 'train' stage first" not in err  # refused before any work


def test_load_inception_reads_torchvision_weights_and_gives_pool3(tmp_path):
    models = import_torchvision().models
    torch.manual_seed(0)
    reference = models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False).eval()
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    features = load_inception(tmp_path / "weights.pth", "cpu")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        got = features(x)
        # torchvision's own way: ImageNet-normalised input, which transform_input maps back to [-1, 1]
        big = F.interpolate(x.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear")
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        reference.fc = nn.Identity()
        expected = reference((big - mean[:, None, None]) / std[:, None, None])
    assert got.shape == (2, 2048)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
