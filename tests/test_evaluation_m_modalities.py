"""The M-modality evaluation against hand-built cases with known answers: subsets and their order,
coherence over test pairs or unique inputs, conditional coherence from subsets, the probe per
subset, retrieval over ordered pairs, and their means by subset size."""

from __future__ import annotations

import pytest
import torch

from mgmvae.base import MultimodalVAE
from mgmvae.config import ConfigError, load_config, studied_datasets
from mgmvae.data.paired import PairedData
from mgmvae.distributions import DiagGaussian, MixtureOfExperts
from mgmvae.evaluation import evaluate_model
from mgmvae.evaluation.run import coherence_items
from mgmvae.evaluation.subsets import generations, mean_by_size, subsets
from tests.conftest import TOY_SETTINGS, evaluation_settings
from tests.test_metrics import CodeReader, PerfectModel, coded, decode

SHAPES = {"a": (1, 6, 6), "b": (3, 5, 5), "c": (1, 4, 4)}


def as_uint8(labels: torch.Tensor, shape) -> torch.Tensor:
    return (coded(labels, shape) * 255).round().to(torch.uint8)


def three_modalities(n_train: int = 60, n_test: int = 40) -> PairedData:
    """Class-coded images of three modalities; the test images of ``c`` carry the wrong code
    (label + 1), a and b the right one. Two pairings per image, partners of the same class."""
    labels = {s: torch.arange(n) % 10 for s, n in (("train", n_train), ("test", n_test))}
    images = {m: {s: as_uint8(y, shape) for s, y in labels.items()} for m, shape in SHAPES.items()}
    images["c"]["test"] = as_uint8((labels["test"] + 1) % 10, SHAPES["c"])
    pairs = {
        s: torch.cat([torch.stack([(torch.arange(n) + j * k) % n for j in range(3)], 1) for k in (0, 10)])
        for s, n in (("train", n_train), ("test", n_test))
    }
    return PairedData(
        "three", list(SHAPES), images, {m: {s: y.clone() for s, y in labels.items()} for m in SHAPES}, pairs
    )


class FirstGiven(PerfectModel):
    """Generates the class code of the first source modality (subsets in the dataset's order);
    records every source it was given."""

    def __init__(self, shapes):
        super().__init__(shapes)
        self.sources: list = []

    def generate(self, batch, source, target, protocol="mean"):
        self.sources.append(source)
        first = source if isinstance(source, str) else source[0]
        self.generated += len(batch[first])
        return coded(decode(batch[first]), self.shapes[target])


def settings(**overrides):
    return (
        evaluation_settings(
            batch_size=16,
            probe_max_train=60,
            probe_folds=3,
            joint_coherence_samples=20,
            likelihood_samples=0,
            quality_samples=0,  # the quality's generations are counted in tests/test_quality.py
        )
        | overrides
    )


# ------------------------------------------------------------------- subsets
def test_subsets_their_order_and_the_generations_from_them():
    assert subsets(["a", "b", "c"]) == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]
    assert subsets(["a", "b"], proper=True) == [("a",), ("b",)]
    assert generations(["a", "b"], "outside") == [(("a",), "b"), (("b",), "a")]  # Table 1's two directions, in order
    # PolyMNIST: C(5,1)·4 + C(5,2)·3 + C(5,3)·2 + C(5,4)·1 = 20 + 30 + 20 + 5
    five = generations([f"m{i}" for i in range(5)], "outside")
    assert len(five) == 75 and all(t not in s for s, t in five)
    # MoPoE's targets: every modality from every non-empty subset, the full set too: (2^5 − 1)·5
    assert generations(["a", "b"], "all") == [(s, t) for s in [("a",), ("b",), ("a", "b")] for t in "ab"]
    assert len(generations([f"m{i}" for i in range(5)], "all")) == 31 * 5
    with pytest.raises(ValueError, match="evaluation.coherence_targets"):
        generations(["a", "b"], "given")
    assert mean_by_size([(1, 0.5), (2, 1.0), (1, 1.0), (2, 0.0), (2, 0.5)]) == {"1": 0.75, "2": 0.5}


# ---------------------------------------------------------- pairs or images
def uneven_pairs() -> PairedData:
    """Source image 0 of ``a`` (class 0) is in three test pairs, the others in one each."""
    a_y, b_y = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0, 1, 2, 3])
    images = {"a": as_uint8(a_y, (1, 4, 4)), "b": as_uint8(b_y, (1, 4, 4))}
    pairs = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5]])
    return PairedData(
        "uneven",
        ["a", "b"],
        {m: {"train": x, "test": x.clone()} for m, x in images.items()},
        {"a": {"train": a_y, "test": a_y.clone()}, "b": {"train": b_y, "test": b_y.clone()}},
        {"train": pairs.repeat(2, 1), "test": pairs},  # two of each class to train the probe on
    )


class WrongOnZero(PerfectModel):
    """Generates class 0 as class 5; every other class right."""

    def generate(self, batch, source, target, protocol="mean"):
        y = decode(batch[source])
        return coded(torch.where(y == 0, 5, y), self.shapes[target])


def test_coherence_over_pairs_counts_a_repeated_image_once_per_pair():
    """a->b: image 0 (wrong) is in 3 of the 6 pairs: 0.5 over pairs, 1 of 4 images: 0.75 unique.
    Balanced: class 0 at 0 and three classes at 1 either way: 0.75. b->a: each b image in one pair."""
    data = uneven_pairs()
    readers = {"a": CodeReader(), "b": CodeReader()}
    got = {}
    for over in ("pairs", "unique_images"):
        given = settings(coherence_over=over, probe_folds=2, n_clusters=4)
        got[over] = evaluate_model(WrongOnZero(data.shapes), data, readers, given, seed=0, protocol="mean")
    assert got["pairs"]["cross_generation"] == pytest.approx({"a->b": 0.5, "b->a": 0.5})
    assert got["unique_images"]["cross_generation"] == pytest.approx({"a->b": 0.75, "b->a": 0.5})
    assert got["pairs"]["cross_generation_balanced"]["a->b"] == pytest.approx(0.75)
    assert got["unique_images"]["cross_generation_balanced"]["a->b"] == pytest.approx(0.75)
    assert got["pairs"]["conditional_coherence"] == pytest.approx({"1": 0.5})
    assert got["unique_images"]["conditional_coherence"] == pytest.approx({"1": 0.625})


def test_coherence_items_rows_and_distinct_tuples():
    data = three_modalities()
    assert torch.equal(coherence_items(data, ("b", "c"), "pairs"), data.pairs["test"][:, [1, 2]])
    assert torch.equal(coherence_items(data, ("b",), "unique_images")[:, 0], torch.arange(40))
    data.pairs["test"] = torch.tensor([[0, 0, 0], [0, 0, 1], [0, 0, 0], [1, 2, 3]])
    assert coherence_items(data, ("a", "b"), "unique_images").tolist() == [[0, 0], [1, 2]]
    assert coherence_items(data, ("a", "b", "c"), "unique_images").tolist() == [[0, 0, 0], [0, 0, 1], [1, 2, 3]]
    with pytest.raises(ValueError, match="evaluation.coherence_over"):
        coherence_items(data, ("a",), "images")


def test_two_modalities_pairs_generate_once_per_test_pair():
    data = three_modalities()
    two = PairedData("two", ["a", "b"], data.images, data.labels, {s: p[:, :2] for s, p in data.pairs.items()})
    del two.images["c"], two.labels["c"]
    model = FirstGiven(two.shapes)
    out = evaluate_model(model, two, {"a": CodeReader(), "b": CodeReader()}, settings(), seed=0, protocol="mean")
    assert model.generated == 2 * two.num_pairs("test") and model.sources == ["a"] * 5 + ["b"] * 5  # 80 pairs, batch 16
    assert out["conditional_coherence"] == {"1": 1.0}  # the mean of Table 1's two directions
    assert out["probe_by_subset_size"] == {"1": 1.0, "2": out["probe"]["joint"]}
    assert out["retrieval_mean"] == {"top1": 1.0}


# ------------------------------------------------------------ M modalities
@pytest.fixture(scope="module")
def three_out():
    data = three_modalities()
    model = FirstGiven(data.shapes)
    readers = {m: CodeReader() for m in SHAPES}
    return model, evaluate_model(model, data, readers, settings(), seed=0, protocol="mean")


def test_conditional_coherence_from_every_subset(three_out):
    """c's test images are one class off. From a subset the model reads its first modality, so a
    generation is right unless the subset starts with c: (c)->a and (c)->b are wrong."""
    model, out = three_out
    assert out["cross_generation"] == {
        "a->b": 1.0, "a->c": 1.0, "b->a": 1.0, "b->c": 1.0, "c->a": 0.0, "c->b": 0.0,
        "a,b->c": 1.0, "a,c->b": 1.0, "b,c->a": 1.0,
    }  # fmt: skip
    assert out["conditional_coherence"] == pytest.approx({"1": 4 / 6, "2": 1.0})
    assert out["conditional_coherence_balanced"] == pytest.approx({"1": 4 / 6, "2": 1.0})
    assert ["a", "b"] in model.sources and ["b", "c"] in model.sources  # a subset goes to generate as a list
    assert out["joint_coherence"] == {"joint": 1.0, "samples": 20}
    assert out["conditional_coherence_targets"] == {"given_included": False}


def test_coherence_on_every_target_includes_the_given_modalities():
    """MoPoE's targets: from every subset to every modality. Size 1: (c) -> a, b, c are wrong (c's
    codes are one off), 6 of 9 right; sizes 2 and 3 start with a or b: right. The default scores
    the targets outside only (``three_out``) and says so in the metrics."""
    data = three_modalities()
    readers = {m: CodeReader() for m in SHAPES}
    out = evaluate_model(FirstGiven(data.shapes), data, readers, settings(coherence_targets="all"), 0, protocol="mean")
    assert len(out["cross_generation"]) == 7 * 3 and out["cross_generation"]["c->c"] == 0.0
    assert out["cross_generation"]["a->a"] == out["cross_generation"]["a,b,c->c"] == 1.0
    assert out["conditional_coherence"] == pytest.approx({"1": 6 / 9, "2": 1.0, "3": 1.0})
    assert out["conditional_coherence_targets"] == {"given_included": True}


class CodeMixture(MultimodalVAE):
    """A mixture of experts whose expert for modality m sits at the class code read off x_m (with a
    tiny spread); its decoder draws the code at z's first coordinate, rounded."""

    def encode(self, batch, modalities=None):
        code = {
            m: decode(batch[m]).float()[:, None].expand(-1, self.shared_dim) for m in self.present(batch, modalities)
        }
        return {m: (DiagGaussian(c, torch.full_like(c, -20.0)), None) for m, c in code.items()}

    def joint_posterior(self, encoded):
        return MixtureOfExperts([q for q, _ in encoded.values()])

    def decode(self, modality, z, h=None):
        return torch.logit(coded(z[:, 0].round().long(), self.shapes[modality]), eps=1e-6)


def test_coherence_from_several_modalities_follows_the_mixture_reading():
    """c's test codes are two classes off. From {a, c} or {b, c}, one expert per row (MultiVae's
    and MoPoE's readings) is right on the rows that draw a or b, about half; the average of the
    two codes is one class off, always wrong; from {a, b} every reading is right."""
    shapes = {"a": (1, 28, 28), "b": (3, 32, 32), "c": (3, 28, 28)}
    labels = {s: torch.arange(n) % 10 for s, n in (("train", 20), ("test", 400))}
    images = {m: {s: as_uint8(y, shape) for s, y in labels.items()} for m, shape in shapes.items()}
    images["c"]["test"] = as_uint8((labels["test"] + 2) % 10, shapes["c"])
    pairs = {s: torch.arange(len(y))[:, None].expand(-1, 3) for s, y in labels.items()}
    data = PairedData("codes", list(shapes), images, {m: dict(labels) for m in shapes}, pairs)
    model = CodeMixture(shapes, TOY_SETTINGS)
    readers = {m: CodeReader() for m in shapes}
    got = {}
    for reading in ("multivae", "mopoe", "average"):
        given = settings(mixture_reading=reading, batch_size=64, probe_folds=2)
        got[reading] = evaluate_model(model, data, readers, given, seed=0, protocol="mean")["cross_generation"]
        assert model.mixture_reading == "multivae"  # the evaluation restores the model's reading
    assert got["average"]["a,c->b"] == got["average"]["b,c->a"] == 0.0
    for reading in ("multivae", "mopoe"):
        assert got[reading]["a,c->b"] == pytest.approx(0.5, abs=0.1) and got[reading]["b,c->a"] == pytest.approx(
            0.5, abs=0.1
        )
    assert {got[r]["a,b->c"] for r in got} == {1.0}


def test_probe_per_subset_and_retrieval_over_ordered_pairs(three_out):
    """The embedding is the class code of the first given modality. A probe fitted on c's training
    latents (right codes) misreads c's test latents (one class off); every other subset starts with
    a or b. Retrieval between a or b and c matches a code to the class one off: wrong both ways."""
    _, out = three_out
    assert out["probe_by_subset"] == {"a": 1.0, "b": 1.0, "c": 0.0, "a,b": 1.0, "a,c": 1.0, "b,c": 1.0, "a,b,c": 1.0}
    assert out["probe_by_subset_size"] == pytest.approx({"1": 2 / 3, "2": 1.0, "3": 1.0})
    assert out["probe"] == {"a": 1.0, "b": 1.0, "c": 0.0, "joint": 1.0}  # Table 2's probe, per modality
    assert out["retrieval_top1"] == {"a->b": 1.0, "a->c": 0.0, "b->a": 1.0, "b->c": 0.0, "c->a": 0.0, "c->b": 0.0}
    assert out["retrieval_mean"] == pytest.approx({"top1": 2 / 6})


# -------------------------------------------------------------------- config
def test_a_table_without_a_dataset_and_the_coherence_switch_are_config_keys():
    config = load_config(overrides={"tables": {"table3": None, "polymnist": "mnist_svhn"}})
    assert studied_datasets(config) == ["mnist_svhn"]
    assert load_config()["tables"]["polymnist"] is None and load_config()["evaluation"]["coherence_over"] == "pairs"
    with pytest.raises(ConfigError, match="tables.polymnist"):
        load_config(overrides={"tables": {"polymnist": "nope"}})
    with pytest.raises(ConfigError, match="evaluation.coherence_over"):
        load_config(overrides={"evaluation": {"coherence_over": "images"}})
    evaluation = load_config()["evaluation"]
    assert (evaluation["coherence_targets"], evaluation["mixture_reading"]) == ("outside", "multivae")
    for key in ("coherence_targets", "mixture_reading"):
        with pytest.raises(ConfigError, match=f"evaluation.{key}"):
            load_config(overrides={"evaluation": {key: "nope"}})


def test_polymnist_quick_preset_is_embedded_cpu_and_every_model():
    from mgmvae.config import ROOT

    config = load_config(ROOT / "config.yaml", ROOT / "workflow" / "presets" / "polymnist_quick.yaml")
    assert studied_datasets(config) == ["digits_poly"] and config["tables"]["polymnist"] == "digits_poly"
    assert config["device"] == "cpu" and config["download"] is False
    assert config["models"] == load_config()["models"]  # all eight
