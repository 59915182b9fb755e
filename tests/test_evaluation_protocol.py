"""Evaluation protocols (mean | sample), joint and class-balanced coherence, and the probe's
cross-validation, on hand-built cases with known answers."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from mgmvae.config import ROOT as REPO
from mgmvae.config import ConfigError, load_config
from mgmvae.evaluation import evaluate_model
from mgmvae.evaluation.coherence import conditional_coherence, joint_coherence
from mgmvae.evaluation.probe import fit_linear_probe, linear_probe
from mgmvae.evaluation.protocol import resolve_protocol
from mgmvae.nets import digit_classifier
from mgmvae.registry import resolve
from mgmvae.seeding import seeded
from tests.conftest import SHAPES, evaluation_settings, make_batch, make_model, synthetic_paired
from tests.test_metrics import STEP, CodeReader, PerfectModel, coded, decode, synthetic_data


def toy_model(name: str, **params):
    return make_model(name, params).eval()


toy_batch = partial(make_batch, n=8, seed=1)


# ------------------------------------------------------------ joint coherence
def test_joint_coherence_known_fraction_any_batch_size():
    """Draw k has class k % 10 in modality a; b disagrees on classes 0, 1, 2: 70% agree."""
    shift = torch.tensor([1, 2, 3, 3, 4, 5, 6, 7, 8, 9])

    def make_sampler():
        drawn = [0]

        def sample(k):
            labels = (torch.arange(k) + drawn[0]) % 10
            drawn[0] += k
            return {"a": coded(labels, (1, 4, 4)), "b": coded(shift[labels], (3, 4, 4))}

        return sample

    readers = {"a": CodeReader(), "b": CodeReader()}
    for bs in (7, 1024):
        assert joint_coherence(make_sampler(), 1000, readers, batch_size=bs) == pytest.approx(0.7)


def test_joint_coherence_needs_every_modality_to_agree():
    labels = torch.arange(100) % 10
    wrong_c = labels.clone()
    wrong_c[:25] = (wrong_c[:25] + 1) % 10  # c disagrees on a quarter; a and b always agree
    images = {"a": coded(labels, (1, 3, 3)), "b": coded(labels, (1, 3, 3)), "c": coded(wrong_c, (1, 3, 3))}
    readers = {m: CodeReader() for m in images}
    assert joint_coherence(lambda k: images, 100, readers, batch_size=100) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no classifier for modalities"):
        joint_coherence(lambda k: images, 100, {"a": CodeReader()}, batch_size=100)


class CodeDecoder(nn.Module):
    """Decoder stand-in: the image's class code is ``rule(latent)`` (logits whose sigmoid is the code)."""

    def __init__(self, shape, rule):
        super().__init__()
        self.shape, self.rule = shape, rule

    def forward(self, latent):
        p = coded(self.rule(latent), self.shape).clamp(1e-4, 1 - 1e-4)
        return torch.log(p) - torch.log1p(-p)


def test_mgmvae_joint_coherence_draws_the_mixture_and_the_private_latents():
    """a shows 1 where z_0 > 0; b shows 1 unless its private h_0 > 1. With π = (0.25, 0.75) on
    components at z_0 = +10 / -10: agreement = P(z_0 > 0)·P(h_0 ≤ 1) + P(z_0 < 0)·P(h_0 > 1)."""
    model = toy_model("mgmvae", n_components=2)
    d = model.shared_dim
    with torch.no_grad():
        model.mixture.means.zero_()
        model.mixture.means[0, 0], model.mixture.means[1, 0] = 10.0, -10.0
        model.mixture.logvars.zero_()
        model.mixture.logits.copy_(torch.tensor([0.25, 0.75]).log())
    model.decoders["a"] = CodeDecoder(SHAPES["a"], lambda u: (u[:, 0] > 0).long())
    model.decoders["b"] = CodeDecoder(SHAPES["b"], lambda u: 1 - (u[:, d] > 1.0).long())
    readers = {"a": CodeReader(), "b": CodeReader()}
    tail = 0.5 * math.erfc(1 / math.sqrt(2))  # P(N(0,1) > 1)
    expected = 0.25 * (1 - tail) + 0.75 * tail
    with seeded(0):
        got = joint_coherence(model.sample, 20_000, readers, batch_size=4096)
    assert got == pytest.approx(expected, abs=0.015)  # 5 standard errors
    # under N(0, I) shared draws (no mixture) it would be 0.5; with h = 0 it would be 0.25
    assert abs(got - 0.5) > 0.1 and abs(got - 0.25) > 0.05


# ------------------------------------------------------- balanced coherence
def test_balanced_coherence_is_the_mean_of_per_class_accuracies():
    """90 sources of class 0 and 10 of class 1; every generation shows 0: plain 0.9, balanced 0.5."""
    labels = torch.cat([torch.zeros(90), torch.ones(10)]).long()
    got = conditional_coherence(lambda i: coded(torch.zeros(len(i)).long(), (1, 4, 4)), labels, CodeReader(), 16)
    assert got == pytest.approx({"accuracy": 0.9, "balanced_accuracy": 0.5})
    # class 1 right, half of class 0 wrong: plain 0.55, balanced (0.5 + 1) / 2
    pred = labels.clone()
    pred[:45] = 1
    got = conditional_coherence(lambda i: coded(pred[i], (1, 4, 4)), labels, CodeReader(), 100)
    assert got == pytest.approx({"accuracy": 0.55, "balanced_accuracy": 0.75})


# ------------------------------------------------------------------ protocols
@pytest.mark.parametrize("name", ["mvae", "mmvae", "dmvae", "mopoe", "mwbvae", "mmvae_plus", "idmvae", "mgmvae"])
def test_mean_is_deterministic_and_sample_is_seeded_and_differs(name):
    model, batch = toy_model(name), toy_batch()
    mean = model.generate(batch, "a", "b", "mean")
    assert torch.equal(mean, model.generate(batch, "a", "b", "mean"))
    with seeded(3):
        first = model.generate(batch, "a", "b", "sample")
    with seeded(3):
        again = model.generate(batch, "a", "b", "sample")
    with seeded(4):
        other = model.generate(batch, "a", "b", "sample")
    assert torch.equal(first, again)
    assert not torch.allclose(first, mean, atol=1e-6) and not torch.allclose(first, other, atol=1e-6)


def test_sample_protocol_decodes_a_posterior_draw_with_a_drawn_private_latent():
    """DMVAE (reference: cross_acc_prior): z ~ q(z | x_a), h_b ~ N(0, I), decoded by b's decoder."""
    model, batch = toy_model("dmvae"), toy_batch()
    q, _ = model.encode(batch, ["a"])["a"]
    with seeded(5):
        got = model.generate(batch, "a", "b", "sample")
    with seeded(5):
        z = q.mu + q.std * torch.randn_like(q.mu)
        h = torch.randn(len(z), model.private_dim)
    assert torch.allclose(got, torch.sigmoid(model.decoders["b"](torch.cat([z, h], -1))), atol=1e-6)
    assert torch.allclose(model.generate(batch, "a", "b"), torch.sigmoid(model.decoders["b"](F.pad(q.mu, (0, 2)))))


def test_embeddings_follow_each_reference():
    """MMVAE's and MMVAE+'s probes read posterior draws; MoPoE's and IDMVAE's read means."""
    batch = toy_batch()
    for name, draws in (("mmvae", True), ("mmvae_plus", True), ("mopoe", False), ("idmvae", False), ("mvae", False)):
        model = toy_model(name)
        mean = model.embed(batch, ["a", "b"])
        with seeded(0):
            sampled = model.embed(batch, ["a", "b"], "sample")
        assert torch.equal(sampled, mean) is not draws, name


def test_mixture_readings_of_several_given_modalities():
    """A mixture given a and b under ``mean``: ``multivae`` decodes one expert's mean per row (a
    uniform draw per row from the seeded RNG) and embeds by the average of the means; ``mopoe``
    reads one expert per row for both; ``average`` the average for both. One given modality: its
    expert under every reading. A draw (``sample``) is the same under every reading."""
    batch = toy_batch(n=32)
    for name in ("mmvae", "mmvae_plus", "idmvae"):
        model = toy_model(name)
        with torch.no_grad():
            means = torch.stack([q.mean for q, _ in model.encode(batch).values()])  # [2, B, D]
        with seeded(0):
            pick = torch.randint(2, (32,))
        assert 8 < int(pick.sum()) < 24  # both experts are picked
        one, both = means[pick, torch.arange(32)], means.mean(0)
        expected = {"multivae": (one, both), "mopoe": (one, one), "average": (both, both)}
        drawn = {}
        for reading, (decoded, embedded) in expected.items():
            model.mixture_reading = reading
            with seeded(0):
                got = model.generate(batch, ["a", "b"], "b")
            torch.testing.assert_close(got, model.likelihood.mean(model.decode("b", decoded)))
            with seeded(0):
                torch.testing.assert_close(model.embed(batch, ["a", "b"]), embedded)
            torch.testing.assert_close(model.embed(batch, ["a"]), means[0])
            torch.testing.assert_close(
                model.generate(batch, "a", "b"), model.likelihood.mean(model.decode("b", means[0]))
            )
            with seeded(1):
                drawn[reading] = model.generate(batch, ["a", "b"], "b", "sample")
        assert torch.equal(drawn["multivae"], drawn["mopoe"]) and torch.equal(drawn["mopoe"], drawn["average"])
        model.mixture_reading = "median"
        with pytest.raises(ValueError, match="evaluation.mixture_reading"):
            model.embed(batch, ["a", "b"])


@pytest.mark.parametrize("name", ["mvae", "dmvae", "mopoe", "mwbvae", "mgmvae"])
def test_models_without_a_mixture_read_several_modalities_alike_under_every_reading(name):
    model, batch = toy_model(name), toy_batch()
    outputs = []
    for reading in ("multivae", "mopoe", "average"):
        model.mixture_reading = reading
        outputs.append((model.generate(batch, ["a", "b"], "b"), model.embed(batch, ["a", "b"])))
    assert all(torch.equal(g, outputs[0][0]) and torch.equal(e, outputs[0][1]) for g, e in outputs)


def test_private_priors_per_reference():
    """Base N(0, I) (DMVAE, MGMVAE); IDMVAE N(0, softplus(0) + 1e-8); MMVAE+ N(0, softplus(0) +
    1e-20): its evaluation draws w from the unit prior, not the auxiliary one."""
    n = 40_000
    plus = toy_model("mmvae_plus")
    with torch.no_grad():
        plus.aux_logvar["b"].fill_(math.log(9.0))  # an auxiliary scale of 3 must not leak into evaluation
    for name, std in (("dmvae", 1.0), ("mgmvae", 1.0), ("idmvae", math.log(2.0) + 1e-8)):
        with seeded(0):
            h = toy_model(name).draw_private("b", n)
        assert h.shape == (n, 2) and h.mean().abs() < 0.02 and h.std().item() == pytest.approx(std, rel=0.02), name
    with seeded(0):
        assert plus.draw_private("b", n).std().item() == pytest.approx(math.log(2.0), rel=0.02)
    assert toy_model("mvae").draw_private("a", 3) is None


def test_protocol_resolution():
    expected = {
        "mvae": "mean",
        "mmvae": "sample",
        "dmvae": "sample",
        "mopoe": "sample",
        "mwbvae": "mean",
        "mmvae_plus": "sample",
        "idmvae": "sample",
        "mgmvae": "mean",
    }
    assert {m: resolve_protocol("reference", resolve(m).cls) for m in expected} == expected
    assert {resolve_protocol(p, resolve("mmvae").cls) for p in ("mean", "sample")} == {"mean", "sample"}
    with pytest.raises(ValueError, match="evaluation.protocol"):
        resolve_protocol("median", resolve("mvae").cls)
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        toy_model("mvae").generate(toy_batch(), "a", "b", "median")


def test_config_protocols_and_presets():
    presets = REPO / "workflow" / "presets"
    assert load_config()["evaluation"]["protocol"] == "mean"
    assert load_config(REPO / "config.yaml", presets / "ci.yaml")["evaluation"]["protocol"] == "sample"
    assert load_config(REPO / "config.yaml", presets / "published.yaml")["evaluation"]["protocol"] == "reference"
    with pytest.raises(ConfigError, match="evaluation.protocol"):
        load_config(overrides={"evaluation": {"protocol": "median"}})
    with pytest.raises(ConfigError, match="evaluation.probe"):
        load_config(overrides={"evaluation": {"probe": "svm"}})


def test_evaluate_model_is_seeded_and_the_protocols_differ():
    data = synthetic_paired(n_train=60, n_test=30)
    model = toy_model("mmvae_plus")
    torch.manual_seed(0)
    classifiers = {m: digit_classifier(data.shape(m), "mmvae").eval() for m in data.modalities}
    settings = evaluation_settings(
        batch_size=16, joint_coherence_samples=50, quality_samples=50, probe_folds=2, likelihood_samples=0
    )
    runs = {}
    for protocol in ("mean", "sample", "sample"):
        torch.manual_seed(len(runs))  # the global RNG state before the call must not matter
        out = evaluate_model(model, data, classifiers, settings, seed=7, protocol=protocol)
        runs.setdefault(protocol, []).append(out)
    assert runs["sample"][0] == runs["sample"][1]
    # MMVAE+ embeds posterior draws under sample: probe, retrieval and clustering scores move
    assert runs["sample"][0] != runs["mean"][0]
    assert runs["mean"][0]["probe_selection"]["method"] == "logistic_cv"


# ----------------------------------------------------------------------- probe
def test_probe_cross_validation_never_sees_a_test_latent(monkeypatch):
    """Test images carry an intensity code one step off the training ones (same class); the fake
    model's embedding keeps that intensity. Every array any scaler (hence any fold) is fitted on
    must hold training latents only."""
    data = synthetic_data(n_train=100, n_test=40)
    for m, shape in data.shapes.items():
        labels = data.labels[m]["test"]
        data.images[m]["test"] = (coded(labels, shape) * 255 + 1).round().to(torch.uint8)
    assert torch.equal(decode(data.images["a"]["test"].float() / 255), data.labels["a"]["test"])

    class IntensityModel(PerfectModel):
        def embed(self, batch, modalities, protocol="mean"):
            x = batch[[m for m in modalities if batch.get(m) is not None][0]]
            return torch.cat([super().embed(batch, modalities), (x.mean((1, 2, 3)) * 255).unsqueeze(1)], 1)

    seen = []
    fit = StandardScaler.fit
    monkeypatch.setattr(
        StandardScaler, "fit", lambda self, X, *a, **k: seen.append(np.array(X)) or fit(self, X, *a, **k)
    )
    settings = evaluation_settings(
        batch_size=32, probe_folds=3, joint_coherence_samples=10, quality_samples=0, likelihood_samples=0
    )
    readers = {"a": CodeReader(), "b": CodeReader()}
    out = evaluate_model(IntensityModel(data.shapes), data, readers, settings, seed=0, protocol="mean")
    # 3 folds × 5 values of C, and the refit; then one probe per single modality (probe_by_subset)
    assert len(seen) == 3 * 5 + 1 + 2
    intensity = np.concatenate([x[:, -1] for x in seen]).round().astype(int)
    assert (intensity % STEP == 0).all(), "the probe was fitted on a test latent"
    assert out["probe"] == {"a": 1.0, "b": 1.0, "joint": 1.0}


def test_probe_cv_score_is_a_training_split_score():
    """The recorded C and CV accuracy are what scikit-learn's cross-validation on the training
    latents alone gives."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (600,), generator=g)
    z = F.one_hot(y, 10).float() + 1.5 * torch.randn(600, 10, generator=g)
    grid = [0.001, 1.0]
    probe = fit_linear_probe(z, y, seed=2, settings=evaluation_settings(probe_c_grid=grid, probe_folds=4))
    cv = StratifiedKFold(4, shuffle=True, random_state=2)
    scores = {
        c: cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, random_state=2)),
            z.double().numpy(),
            y.numpy(),
            cv=cv,
        ).mean()
        for c in grid
    }
    best = max(grid, key=scores.get)
    assert probe.selection == {
        "method": "logistic_cv",
        "C": best,
        "cv_accuracy": pytest.approx(scores[best]),
        "folds": 4,
    }
    single = fit_linear_probe(z, y, seed=2, settings=evaluation_settings(probe_c_grid=[0.5], probe_folds=4))
    assert single.selection["C"] == 0.5


def test_probe_refuses_too_few_latents_per_class():
    z, y = torch.randn(20, 3), torch.arange(20) % 10  # two of each class
    with pytest.raises(ValueError, match="probe_folds"):
        fit_linear_probe(z, y, seed=0, settings=evaluation_settings(probe_folds=3))
    with pytest.raises(ValueError, match="evaluation.probe"):
        fit_linear_probe(z, y, seed=0, settings=evaluation_settings(probe="svm"))


def test_paper_probe_gradient_descent_is_seeded_and_learns():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (2000,), generator=g)
    z = 3 * F.one_hot(y, 10).float() + 0.3 * torch.randn(2000, 10, generator=g)
    settings = evaluation_settings(probe="linear_sgd", probe_epochs=5, probe_lr=0.01, probe_batch_size=64)
    tests = {"test": (z[1500:], y[1500:])}
    a = linear_probe(z[:1500], y[:1500], tests, seed=1, settings=settings)
    b = linear_probe(z[:1500], y[:1500], tests, seed=1, settings=settings)
    assert a == b and a["test"] > 0.98
    noise = torch.randn(2000, 20, generator=g)
    chance = linear_probe(noise[:1500], y[:1500], {"test": (noise[1500:], y[1500:])}, seed=1, settings=settings)
    assert chance["test"] < 0.16
    fitted = fit_linear_probe(z[:1500], y[:1500], seed=1, settings=settings)
    assert fitted.selection == {"method": "linear_sgd", "epochs": 5, "lr": 0.01, "batch_size": 64}
