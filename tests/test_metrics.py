"""Metrics against hand-built cases with known answers, and the orchestrator end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgmvae.data.paired import PairedData
from mgmvae.evaluation import (
    clustering_scores,
    conditional_coherence,
    evaluate_model,
    kmeans_assignments,
    linear_probe,
    top1_retrieval,
    topk_indices,
)
from tests.conftest import evaluation_settings

STEP = 20  # class c is coded as a constant image of intensity c * STEP / 255


def coded(labels: torch.Tensor, shape) -> torch.Tensor:
    """Float images in [0,1] whose constant intensity encodes the class."""
    return (labels.float() * STEP / 255).view(-1, 1, 1, 1).expand(-1, *shape).contiguous()


def decode(x: torch.Tensor) -> torch.Tensor:
    return (x.float().mean((1, 2, 3)) * 255 / STEP).round().long()


class CodeReader(nn.Module):
    """Fake classifier: reads the class code off the image (its features are its logits)."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    def features(self, x):
        return -(decode(x).float()[:, None] - torch.arange(10.0)).abs() + self.anchor

    def head(self, features):
        return features

    def forward(self, x):
        return self.head(self.features(x))


class PerfectModel(nn.Module):
    """Fake model: embeds/generates from the class code; optional own clusters (a permutation)."""

    def __init__(self, shapes, cluster_perm=None):
        super().__init__()
        self.shapes, self.cluster_perm = shapes, cluster_perm
        self.anchor = nn.Parameter(torch.zeros(()))
        self.generated = 0

    def embed(self, batch, modalities, protocol="mean"):
        present = [m for m in modalities if batch.get(m) is not None]
        assert present, "embed called without a modality"
        return 5.0 * F.one_hot(decode(batch[present[0]]), 10).float()

    def generate(self, batch, source, target, protocol="mean"):
        self.generated += len(batch[source])
        return coded(decode(batch[source]), self.shapes[target])

    def sample(self, n):
        labels = torch.arange(n) % 10
        return {m: coded(labels, shape) for m, shape in self.shapes.items()}

    def cluster(self, batch, modalities):
        if self.cluster_perm is None:
            return None
        return self.cluster_perm[decode(batch[modalities[0]])]


def synthetic_data(n_train=60, n_test=40) -> PairedData:
    shapes = {"a": (1, 6, 6), "b": (3, 5, 5)}
    labels = {s: torch.arange(n) % 10 for s, n in (("train", n_train), ("test", n_test))}
    images = {
        m: {s: (coded(labels[s], shp) * 255).round().to(torch.uint8) for s in labels} for m, shp in shapes.items()
    }
    # two pairings per image, partners of the same class (n is a multiple of 10)
    pairs = {
        s: torch.cat([torch.stack([torch.arange(n), (torch.arange(n) + k) % n], 1) for k in (0, 10)])
        for s, n in (("train", n_train), ("test", n_test))
    }
    return PairedData(
        name="tiny",
        modalities=["a", "b"],
        images=images,
        labels={m: {s: labels[s].clone() for s in labels} for m in shapes},
        pairs=pairs,
    )


# ----------------------------------------------------------------- coherence
def test_coherence_known_fraction_wrong():
    labels = torch.arange(100) % 10
    source = (coded(labels, (1, 4, 4)) * 255).round().to(torch.uint8)
    shift = torch.tensor([1, 2, 3, 3, 4, 5, 6, 7, 8, 9])  # classes 0, 1, 2 come out wrong: 30%

    def generate(index):
        return coded(shift[decode(source[index].float() / 255)], (3, 4, 4))

    for bs in (7, 1024):
        acc = conditional_coherence(generate, labels, CodeReader(), batch_size=bs)["accuracy"]
        assert acc == pytest.approx(0.7)


# --------------------------------------------------------------------- probe
def test_probe_separable_and_random():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=g)
    z = 3 * F.one_hot(y, 10).float() + 0.1 * torch.randn(2000, 10, generator=g)
    res = linear_probe(z[:1500], y[:1500], {"test": (z[1500:], y[1500:])}, seed=0, settings=evaluation_settings())
    assert res["test"] > 0.99

    zr, yr = torch.randn(4000, 20, generator=g), torch.randint(0, 10, (4000,), generator=g)
    res = linear_probe(zr[:2000], yr[:2000], {"test": (zr[2000:], yr[2000:])}, seed=0, settings=evaluation_settings())
    assert res["test"] < 0.16  # chance is 0.10


def test_probe_subsample_is_seeded():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (600,), generator=g)
    z = F.one_hot(y, 10).float() + torch.randn(600, 10, generator=g)
    a = linear_probe(z, y, {"t": (z, y)}, seed=3, settings=evaluation_settings(probe_max_train=200))
    b = linear_probe(z, y, {"t": (z, y)}, seed=3, settings=evaluation_settings(probe_max_train=200))
    assert a == b


# ----------------------------------------------------------------- retrieval
def test_retrieval_two_of_five_wrong():
    gallery = torch.tensor([[0.0], [10.0], [20.0], [30.0], [40.0]])
    gallery_y = torch.tensor([0, 1, 2, 3, 4])
    query = torch.tensor([[1.0], [11.0], [22.0], [29.0], [38.0]])
    query_y = torch.tensor([0, 1, 7, 3, 9])  # nearest are 0,1,2,3,4: queries 2 and 4 are wrong
    assert topk_indices(query, gallery, 1, chunk=2)[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert top1_retrieval(query, query_y, gallery, gallery_y, chunk=2) == pytest.approx(0.6)
    assert topk_indices(query[:1], gallery, 3, chunk=2).tolist() == [[0, 1, 2]]


def test_retrieval_chunking_matches_unchunked():
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(101, 8, generator=g), torch.randn(300, 8, generator=g)
    qy, gy = torch.randint(0, 10, (101,), generator=g), torch.randint(0, 10, (300,), generator=g)
    assert torch.equal(topk_indices(q, gal, 5, chunk=7), topk_indices(q, gal, 5, chunk=len(q)))
    assert top1_retrieval(q, qy, gal, gy, chunk=7) == top1_retrieval(q, qy, gal, gy, chunk=len(q))


# ---------------------------------------------------------------- clustering
def test_hungarian_permuted_labelling_and_known_confusion():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    perfect = clustering_scores(y, torch.tensor([2, 2, 0, 0, 1, 1]))
    assert perfect == pytest.approx({"accuracy": 1.0, "nmi": 1.0, "ari": 1.0})
    assert clustering_scores([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1])["accuracy"] == pytest.approx(5 / 6)
    # more clusters than classes: only one cluster per class can be matched
    assert clustering_scores([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5])["accuracy"] == pytest.approx(2 / 6)


def test_nmi_ari_near_zero_for_independent_labels():
    g = torch.Generator().manual_seed(0)
    s = clustering_scores(torch.randint(0, 10, (5000,), generator=g), torch.randint(0, 10, (5000,), generator=g))
    assert abs(s["ari"]) < 0.01 and s["nmi"] < 0.02


def test_kmeans_recovers_blobs_deterministically():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    z = 10 * F.one_hot(y, 3).float() + 0.3 * torch.randn(300, 3, generator=g)
    a = kmeans_assignments(z, 3, seed=0)
    assert a.dtype == torch.long and torch.equal(a, kmeans_assignments(z, 3, seed=0))
    assert clustering_scores(y, a)["accuracy"] == 1.0


# -------------------------------------------------------------- orchestrator
@pytest.mark.parametrize("own_clusters", [False, True])
def test_evaluate_model_perfect_fake(own_clusters):
    data = synthetic_data()
    perm = torch.tensor([3, 1, 4, 0, 5, 9, 2, 6, 8, 7]) if own_clusters else None
    model = PerfectModel(data.shapes, cluster_perm=perm)
    settings = evaluation_settings(
        batch_size=16,
        probe_max_train=50,
        probe_folds=3,
        max_cluster=60,
        likelihood_samples=0,
        coherence_over="unique_images",
        quality_samples=200,
    )
    out = evaluate_model(model, data, {"a": CodeReader(), "b": CodeReader()}, settings, seed=0, protocol="mean")

    assert set(out) == {
        "cross_generation",
        "cross_generation_balanced",
        "joint_coherence",
        "probe",
        "probe_selection",
        "retrieval_top1",
        "clustering",
        # the M-modality sections (two modalities here)
        "conditional_coherence",
        "conditional_coherence_balanced",
        "conditional_coherence_targets",
        "probe_by_subset",
        "probe_by_subset_size",
        "retrieval_mean",
        "generative_quality",
    }
    assert out["cross_generation"] == {"a->b": 1.0, "b->a": 1.0}
    assert out["cross_generation_balanced"] == {"a->b": 1.0, "b->a": 1.0}
    assert out["joint_coherence"] == {"joint": 1.0, "samples": 10_000}
    assert out["probe"] == {"a": 1.0, "b": 1.0, "joint": 1.0}
    assert out["retrieval_top1"] == {"a->b": 1.0, "b->a": 1.0}
    c = out["clustering"]
    assert c["method"] == ("mixture" if own_clusters else "kmeans") and c["k"] == 10
    assert c["accuracy"] == pytest.approx(1.0) and c["nmi"] == pytest.approx(1.0) and c["ari"] == pytest.approx(1.0)
    # every generated image is a test image and every digit is drawn: precision and recall 1; the
    # conditional ones follow the test labels (FD ~0; ddof on 40 vs 80 images), the prior's do not
    # quite (its batches of 16 draw digits 0-5 more often)
    quality = out["generative_quality"]
    for kind, key in (("prior", "a"), ("prior", "b"), ("conditional", "b->a"), ("conditional", "a->b")):
        assert quality[kind][key]["precision"] == quality[kind][key]["recall"] == 1.0
    assert quality["conditional"]["mean"]["fd_classifier"] < 0.01 < quality["prior"]["mean"]["fd_classifier"]
    assert 0.95 < quality["prior"]["mean"]["label_entropy"] < 1.0
    # cross-generation ran once per unique test image of each source modality, and the quality's
    # conditional generations once per test pair (fewer than evaluation.quality_samples) per target
    assert model.generated == 2 * len(data.images["a"]["test"]) + 2 * data.num_pairs("test")
    json.dumps(out)  # JSON-able
    assert model.training  # training mode restored


def test_evaluate_model_scores_test_split_only():
    """A model that is perfect on training images only must not score 1.0 on test metrics."""
    data = synthetic_data()
    # make the test images of modality "a" carry a wrong code (class + 1)
    wrong = (data.labels["a"]["test"] + 1) % 10
    data.images["a"]["test"] = (coded(wrong, (1, 6, 6)) * 255).round().to(torch.uint8)
    out = evaluate_model(
        PerfectModel(data.shapes),
        data,
        {"a": CodeReader(), "b": CodeReader()},
        evaluation_settings(likelihood_samples=0, quality_samples=0),
        seed=0,
        protocol="mean",
    )
    assert out["cross_generation"]["a->b"] == 0.0
    assert out["probe"]["a"] == 0.0 and out["probe"]["b"] == 1.0
    assert out["retrieval_top1"]["a->b"] == 0.0
