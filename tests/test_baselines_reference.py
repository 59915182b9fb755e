"""The baselines' departures from their reference code, each checked against a closed form or
against the reference's own formula written out here: MoPoE's prior expert in the full-set
product (thomassutter/MoPoE ``poe_fusion``) and its subset blocks (``mixture_component_selection``),
MVAE's per-step KL annealing and its share of training at full weight (mhw32/multimodal-vae-public
``train``), IDMVAE's softplus prior scale (chatzikon/IDMVAE ``_compute_prior_from_params``),
MMVAE+'s Laplace posteriors and priors (epalu/mmvaeplus ``PolyMNIST``, ``pu_params``, ``pw_params``).
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Laplace

from baselines.mopoe import subset_blocks
from baselines.mvae import annealing_factor
from mgmvae.config import ROOT, load_config
from mgmvae.distributions import DiagGaussian, DiagLaplace, continuous_bernoulli_mean
from mgmvae.registry import build_model, run_settings
from mgmvae.train import train_model
from tests.conftest import SHAPES, TOY_SETTINGS, make_batch, make_model, synthetic_paired

B, D, P = 5, 3, 2
make = partial(make_model, shared_dim=D, private_dim=P)
batch = partial(make_batch, n=B, seed=7)


# ======================================================================== MoPoE
def closed_form_poe(heads, modalities, prior):
    """N(μ, σ²) with 1/σ² = Σ 1/σ_m² (+1 for an N(0, I) expert), μ = σ² Σ μ_m/σ_m²."""
    prec = sum((-heads[m].shared_scale).exp() for m in modalities) + (1.0 if prior else 0.0)
    mu = sum(heads[m].shared_loc * (-heads[m].shared_scale).exp() for m in modalities) / prec
    return mu, 1.0 / prec


def test_mopoe_default_puts_the_prior_expert_in_the_full_set_only():
    model = make("mopoe")  # default: the reference's full_set
    x = batch()
    with torch.no_grad():
        heads = {m: model.encoders[m](x[m]) for m in SHAPES}
        _, mix = model.subset_mixture(model.encode(x))
        for q, subset, prior in zip(mix.experts, [["a"], ["b"], ["a", "b"]], [False, False, True], strict=True):
            mu, var = closed_form_poe(heads, subset, prior)
            torch.testing.assert_close(q.mu, mu, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(q.var, var, rtol=1e-5, atol=1e-7)
        mu, _ = closed_form_poe(heads, ["a", "b"], prior=True)  # the joint embedding is the full-set product
        torch.testing.assert_close(model.embed(x, ["a", "b"]), mu, rtol=1e-5, atol=1e-6)
        # without the prior expert the full-set mean differs: the test can tell the two apart
        assert not torch.allclose(mu, closed_form_poe(heads, ["a", "b"], prior=False)[0], atol=1e-4)
        # with b missing the only subset is {a}: no full-set product, so no prior expert (as the reference)
        alone, _ = closed_form_poe(heads, ["a"], prior=False)
        torch.testing.assert_close(model.embed({"a": x["a"], "b": None}, ["a"]), alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="prior_expert"):
        make("mopoe", {"prior_expert": True})


def reference_subset_rows(batch_size, n_subsets):
    """thomassutter/MoPoE utils/utils.py ``mixture_component_selection``, transcribed with the uniform
    float32 weights ``BaseMMVae.inference`` passes: the component of each row."""
    weights = torch.ones(n_subsets) / n_subsets
    weights = weights / weights.sum()  # reweight_weights
    starts, ends = [], []
    for k in range(n_subsets):
        start = 0 if k == 0 else int(ends[k - 1])
        end = batch_size if k == n_subsets - 1 else start + int(torch.floor(batch_size * weights[k]))
        starts.append(start)
        ends.append(end)
    ends[-1] = batch_size
    return torch.cat([torch.full((ends[k] - starts[k],), k) for k in range(n_subsets)])


@pytest.mark.parametrize("n_subsets", [1, 3, 7, 15])  # 2^M − 1 for M = 1 … 4 modalities
def test_mopoe_subset_blocks_are_the_references(n_subsets):
    for batch_size in range(1, 300):
        expected = reference_subset_rows(batch_size, n_subsets)
        assert torch.equal(subset_blocks(batch_size, n_subsets), expected), batch_size


def test_mopoe_unstratified_loss_decodes_each_rows_block_subset():
    """Seven rows, three subsets: rows 0-1 decode {a}'s draw, 2-3 {b}'s, 4-6 {a, b}'s (row % 3 would
    give 0,1,2,0,1,2,0)."""
    model = make("mopoe", {"stratified": False, "beta": 1.0})
    x = batch(n=7)
    torch.manual_seed(3)
    terms = model.loss(x)
    with torch.no_grad():
        torch.manual_seed(3)
        _, mix = model.subset_mixture(model.encode(x))
        draws = [q.mu + q.std * torch.randn(7, D) for q in mix.experts]
        z = torch.stack([draws[s][i] for i, s in enumerate([0, 0, 1, 1, 2, 2, 2])])
        for m in SHAPES:
            expected = model.log_likelihood(m, x[m], z).mean()
            torch.testing.assert_close(terms[f"recon_{m}"], expected, rtol=1e-5, atol=1e-4)


# ========================================================================= MVAE
def reference_factors(epochs, n_batches, annealing_epochs):
    """mhw32/multimodal-vae-public mnist/train.py, transcribed: epochs 1-based, batch_idx 0-based."""
    out = []
    for epoch in range(1, epochs + 1):
        for batch_idx in range(n_batches):
            if epoch < annealing_epochs:
                out.append(float(batch_idx + (epoch - 1) * n_batches + 1) / float(annealing_epochs * n_batches))
            else:
                out.append(1.0)
    return out


@pytest.mark.parametrize("annealing_epochs", [0, 1, 3, 10])
def test_mvae_annealing_factor_is_the_references_per_step(annealing_epochs):
    ours = [annealing_factor(step, 4, annealing_epochs) for step in range(5 * 4)]
    expected = reference_factors(5, 4, annealing_epochs) if annealing_epochs else [1.0] * 20
    assert ours == pytest.approx(expected, rel=0, abs=1e-15)


def test_mvae_loss_weights_every_kl_by_the_factor_of_its_step():
    data = synthetic_paired(n_train=32, n_test=8)
    model = make("mvae", {"annealing_epochs": 3})
    model.settings["batch_size"] = 8  # 4 steps per epoch
    x = data.batch("train", torch.arange(8))
    model.train()
    model.on_epoch_start(1, data)  # resumed at epoch 1 (0-based): step 4
    for step in (4, 5):
        terms = model.loss(x)
        factor = (step + 1) / (3 * 4)
        assert terms["kl_annealing"].item() == pytest.approx(factor)
        elbo = sum(terms[f"{t}/recon_{m}"] for t in ("joint", "a", "b") for m in SHAPES if f"{t}/recon_{m}" in terms)
        kl = terms["joint/kl"] + terms["a/kl"] + terms["b/kl"]
        torch.testing.assert_close(terms["loss"], -(elbo - factor * kl))
    model.on_epoch_start(2, data)  # epoch 3 (1-based) = annealing_epochs: weight 1 from here
    assert model.loss(x)["kl_annealing"].item() == 1.0


def test_mvae_annealing_resumes_bitwise(tmp_path):
    data = synthetic_paired(n_train=48, n_test=8)
    settings = {**TOY_SETTINGS, "epochs": 3, "batch_size": 16, "params": {"annealing_epochs": 3}}

    def run(epochs, checkpoint=None):
        torch.manual_seed(0)
        model = build_model("mvae", data.shapes, settings)
        history = train_model(
            model, data, {**settings, "epochs": epochs}, seed=0, checkpoint=checkpoint, config_hash="h", progress=False
        )
        return model, history

    straight, history = run(3)
    assert [h["kl_annealing"] for h in history] == pytest.approx(
        [sum(reference_factors(3, 3, 3)[e * 3 : e * 3 + 3]) / 3 for e in range(3)]
    )
    ckpt = tmp_path / "checkpoint.pt"
    run(1, ckpt)
    resumed, resumed_history = run(3, ckpt)
    assert resumed_history == history
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


PRESETS = {
    "paper": (ROOT / "config.yaml",),
    "quick": (ROOT / "config.yaml", ROOT / "workflow" / "presets" / "quick.yaml"),
    "published": (ROOT / "config.yaml", ROOT / "workflow" / "presets" / "published.yaml"),
}
# Share of training at full KL weight in the reference's scripts: MNIST 200 of 500 epochs annealed
# (epochs 200-500 at weight 1), CelebA 20 of 100 (epochs 20-100).
REFERENCE_SHARES = (301 / 500, 81 / 100)


def full_weight_share(epochs, annealing_epochs, n_batches=3):
    factors = reference_factors(epochs, n_batches, annealing_epochs)
    return sum(f == 1.0 for f in factors) / len(factors)


def test_reference_shares_are_the_scripts():
    assert full_weight_share(500, 200) == pytest.approx(REFERENCE_SHARES[0])
    assert full_weight_share(100, 20) == pytest.approx(REFERENCE_SHARES[1])


@pytest.mark.parametrize(
    "preset, datasets",
    [
        ("paper", ["mnist_svhn", "mnist_cdcb"]),
        ("quick", ["digits_street", "digits_cdcb"]),
        ("published", ["mnist_svhn", "mnist_cdcb"]),
    ],
)
def test_mvae_trains_the_references_share_at_full_kl_weight(preset, datasets):
    """Under the reference's formula, the share of the run's steps at weight 1 lies within the
    reference scripts' (annealing_epochs equal to the epochs would leave only the last epoch)."""
    config = load_config(*PRESETS[preset])
    for dataset in datasets:
        settings = run_settings(config, dataset, "mvae")
        share = full_weight_share(settings["epochs"], settings["params"]["annealing_epochs"])
        assert REFERENCE_SHARES[0] <= share <= REFERENCE_SHARES[1], (dataset, settings["epochs"], share)


# ======================================================================= IDMVAE
SOFTPLUS0 = math.log(2.0) + 1e-8  # softplus(0) + η


def test_idmvae_priors_have_the_references_softplus_scale():
    model = make("idmvae")
    z = torch.randn(6, D)
    w = torch.randn(6, P)
    reference = torch.distributions.Normal(0.0, SOFTPLUS0)
    torch.testing.assert_close(model.prior(z).log_prob(z), reference.log_prob(z).sum(-1))
    torch.testing.assert_close(model.private_prior("a", w).log_prob(w), reference.log_prob(w).sum(-1))
    aux = model.auxiliary_prior("b", w)  # learnable ρ starts at 0: the same scale
    torch.testing.assert_close(aux.std, torch.full_like(w, SOFTPLUS0))
    with torch.no_grad():
        model.aux_logvar["b"].copy_(torch.tensor([1.5, -2.0]))
    expected = torch.nn.functional.softplus(torch.tensor([1.5, -2.0])) + 1e-8
    torch.testing.assert_close(model.auxiliary_prior("b", w).std, expected.expand_as(w))
    unit = make("idmvae", {"prior_scale": "unit"})
    torch.testing.assert_close(unit.prior(z).log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_idmvae_elbo_uses_the_softplus_prior():
    """Same weights and draws: the KL terms of the two prior choices differ by exactly
    mean[log N(z; 0, 1) − log N(z; 0, s²)] (and the same for w), s = softplus(0) + η."""
    x = batch()
    terms = {}
    for choice in ("softplus", "unit"):
        model = make("idmvae", {"prior_scale": choice}, seed=3)
        torch.manual_seed(11)
        terms[choice] = model.loss(x)
    with torch.no_grad():
        model = make("idmvae", {"prior_scale": "unit"}, seed=3)
        torch.manual_seed(11)
        encoded = model.encode(x)
        z = model.joint_posterior(encoded).rsample_stratified(1)  # the first draw of the loss
        w = torch.stack([encoded[m][1].rsample(1) for m in SHAPES])
    unit, scaled = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(0.0, SOFTPLUS0)
    gap_z = (unit.log_prob(z) - scaled.log_prob(z)).sum(-1).mean()
    gap_w = (unit.log_prob(w) - scaled.log_prob(w)).sum(-1).mean()
    torch.testing.assert_close(terms["softplus"]["kl_z"] - terms["unit"]["kl_z"], gap_z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms["softplus"]["kl_w"] - terms["unit"]["kl_w"], gap_w, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="prior_scale"):
        make("idmvae", {"prior_scale": "wide"})


# ======================================================================= MMVAE+
def softmax_scales(raw):
    """epalu/mmvaeplus: F.softmax(raw, dim=-1) * raw.size(-1), the scale of every Laplace it builds."""
    return F.softmax(raw, dim=-1) * raw.shape[-1]


def test_mmvae_plus_laplace_switch_gives_the_references_families():
    model = make("mmvae_plus", posterior="laplace")
    x = batch()
    with torch.no_grad():
        encoded = model.encode(x)
        heads = model.encoders["a"](x["a"])
    q_z, q_w = encoded["a"]
    assert isinstance(q_z, DiagLaplace) and isinstance(q_w, DiagLaplace)
    # posteriors: Enc.forward's softmax(lv)·D + η (η = 1e-6), over each latent's own dimensions
    torch.testing.assert_close(q_z.scale, softmax_scales(heads.shared_scale) + 1e-6)
    torch.testing.assert_close(q_w.scale, softmax_scales(heads.private_scale) + 1e-6)
    torch.testing.assert_close(q_w.loc, heads.private_loc)
    # unit prior pu: Laplace(0, softmax(0)·D) = Laplace(0, 1) for z and for w
    z, w = torch.randn(6, D), torch.randn(6, P)
    unit = Laplace(0.0, 1.0)
    torch.testing.assert_close(model.prior(z).log_prob(z), unit.log_prob(z).sum(-1))
    torch.testing.assert_close(model.private_prior("b", w).log_prob(w), unit.log_prob(w).sum(-1))
    # auxiliary prior pw: Laplace(0, softmax(ρ)·D_w), ρ learnable from 0: the scales tied, summing to D_w
    rho = torch.tensor([1.5, -2.0])
    with torch.no_grad():
        model.aux_logvar["b"].copy_(rho)
    aux = model.auxiliary_prior("b", w)
    assert isinstance(aux, DiagLaplace)
    torch.testing.assert_close(aux.scale, softmax_scales(rho).expand_as(w))
    torch.testing.assert_close(aux.scale.sum(-1), torch.full((6,), float(P)))
    torch.testing.assert_close(aux.log_prob(w), Laplace(0.0, softmax_scales(rho)).log_prob(w).sum(-1))
    # prior_scale does not apply to the Laplace family: the reference's scales either way
    unit_scale = make("mmvae_plus", {"prior_scale": "unit"}, posterior="laplace")
    torch.testing.assert_close(unit_scale.prior(z).log_prob(z), model.prior(z).log_prob(z))
    assert isinstance(make("mmvae_plus").encode(x)["a"][1], DiagGaussian)


def test_mmvae_plus_gaussian_priors_have_the_references_softplus_scales():
    """srl-ethz/mmvaeplus, --priorposterior Normal: p(z), p(w) = Normal(0, softplus(0) + η) and
    r_d = Normal(0, softplus(ρ_d) + η), η = 1e-20; ``prior_scale: unit``: N(0, I), N(0, exp ρ_d)."""
    model, z, w = make("mmvae_plus"), torch.randn(6, D), torch.randn(6, P)
    reference = torch.distributions.Normal(0.0, math.log(2.0) + 1e-20)
    torch.testing.assert_close(model.prior(z).log_prob(z), reference.log_prob(z).sum(-1))
    torch.testing.assert_close(model.private_prior("a", w).log_prob(w), reference.log_prob(w).sum(-1))
    rho = torch.tensor([1.5, -2.0])
    with torch.no_grad():
        model.aux_logvar["b"].copy_(rho)
    aux = torch.distributions.Normal(0.0, torch.log1p(rho.exp()) + 1e-20)
    torch.testing.assert_close(model.auxiliary_prior("b", w).log_prob(w), aux.log_prob(w).sum(-1))
    unit = make("mmvae_plus", {"prior_scale": "unit"})
    with torch.no_grad():
        unit.aux_logvar["b"].copy_(rho)
    standard = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(unit.prior(z).log_prob(z), standard.log_prob(z).sum(-1))
    torch.testing.assert_close(unit.private_prior("a", w).log_prob(w), standard.log_prob(w).sum(-1))
    torch.testing.assert_close(unit.auxiliary_prior("b", w).std, (0.5 * rho).exp().expand_as(w))
    with pytest.raises(ValueError, match="prior_scale"):
        make("mmvae_plus", {"prior_scale": "wide"})


def test_mmvae_plus_laplace_elbo_by_hand():
    """K=1 under ``posterior: laplace``: the reference's _m_iwae weight with every density Laplace,
    draws reproduced by the inverse CDF from the model's uniforms, densities from torch."""
    model = make("mmvae_plus", {"beta": 2.5}, posterior="laplace")
    with torch.no_grad():
        model.aux_logvar["a"].copy_(torch.tensor([0.5, -1.0]))
        model.aux_logvar["b"].copy_(torch.tensor([-0.3, 0.2]))
    x = batch()

    def draw(loc, scale, shape):
        u = (torch.rand(shape) - 0.5).clamp(-0.5 + 1e-6, 0.5 - 1e-6)
        return loc - scale * u.sign() * torch.log1p(-2 * u.abs())

    torch.manual_seed(9)
    terms = model.loss(x)
    with torch.no_grad():
        torch.manual_seed(9)
        h = {m: model.encoders[m](x[m]) for m in SHAPES}
        q_z = {m: Laplace(h[m].shared_loc, softmax_scales(h[m].shared_scale) + 1e-6) for m in SHAPES}
        q_w = {m: Laplace(h[m].private_loc, softmax_scales(h[m].private_scale) + 1e-6) for m in SHAPES}
        z = {m: draw(q_z[m].loc, q_z[m].scale, (1, B, D)) for m in SHAPES}
        w = {m: draw(q_w[m].loc, q_w[m].scale, (1, B, P)) for m in SHAPES}
        aux = {
            (d, m): draw(0.0, softmax_scales(model.aux_logvar[d]), (1, B, P)) for d in SHAPES for m in SHAPES if m != d
        }
        unit = Laplace(0.0, 1.0)
        total = 0.0
        for m in SHAPES:
            recon = 0.0
            for d in SHAPES:
                logits = model.decoders[d](torch.cat([z[m], w[m] if d == m else aux[(d, m)]], -1))
                pixels = Laplace(torch.sigmoid(logits), 0.75).log_prob(x[d])
                recon = recon + model.weights[d] * pixels.flatten(-3).sum(-1)
            lq_z = torch.logsumexp(torch.stack([q_z[j].log_prob(z[m]).sum(-1) for j in SHAPES]), 0) - math.log(2)
            ratio = unit.log_prob(z[m]).sum(-1) + unit.log_prob(w[m]).sum(-1) - lq_z - q_w[m].log_prob(w[m]).sum(-1)
            total = total + (recon + 2.5 * ratio).mean() / 2
    torch.testing.assert_close(-terms["loss"], total, rtol=1e-5, atol=1e-3)


def test_published_preset_turns_the_laplace_switch_on_for_mmvae_plus():
    config = load_config(*PRESETS["published"])
    assert run_settings(config, "mnist_svhn", "mmvae_plus")["posterior"] == "laplace"
    assert run_settings(load_config(), "mnist_svhn", "mmvae_plus")["posterior"] == "gaussian"


# ================================================================ continuous Bernoulli
def test_generation_decodes_the_continuous_bernoullis_mean():
    model = make("mvae", likelihood={"family": "continuous_bernoulli", "scale": 0.75})
    model.eval()
    x = batch()
    with torch.no_grad():
        logits = model.decode("b", model.shared_posterior(x, ["a"]).mean)
        generated = model.generate(x, "a", "b")
    torch.testing.assert_close(generated, continuous_bernoulli_mean(logits))
    assert not torch.allclose(generated, torch.sigmoid(logits), atol=1e-3)
