"""MGMVAE's terms (Eq. 5–13) against closed forms, Monte Carlo and hand computations, plus the
model surface (missing modalities, sampling, gradients, determinism)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from mgmvae.distributions import DiagGaussian, GaussianMixturePrior, product_of_experts
from mgmvae.model import MGMVAE, center_loss, select_negatives, triplet_loss
from mgmvae.registry import build_model
from mgmvae.train import train_model
from tests.conftest import TOY_SETTINGS, make_model, synthetic_paired, toy_batch

make = partial(make_model, "mgmvae")


# ------------------------------------------------------------------ Eq. 5: product of experts
def test_poe_with_prior_expert_matches_closed_form():
    # N(2, 1/4) · N(-1, 1/2) · N(0, 1): precision 4 + 2 + 1 = 7, mean (2·4 − 1·2) / 7 = 6/7
    e = lambda mu, var: DiagGaussian(torch.tensor([[mu]]), torch.tensor([[math.log(var)]]))  # noqa: E731
    q = product_of_experts([e(2.0, 0.25), e(-1.0, 0.5)], prior_expert=True)
    assert q.mu.item() == pytest.approx(6 / 7, rel=1e-6)
    assert q.var.item() == pytest.approx(1 / 7, rel=1e-6)
    # one modality missing: its expert is left out
    q = product_of_experts([e(2.0, 0.25)], prior_expert=True)
    assert q.mu.item() == pytest.approx(8 / 5, rel=1e-6) and q.var.item() == pytest.approx(1 / 5, rel=1e-6)


# ------------------------------------------------------------- mixture prior (Eq. 6, λ1)
def small_mixture(seed=0, k=3, d=2):
    torch.manual_seed(seed)
    prior = GaussianMixturePrior(k, d).double()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(k, dtype=torch.float64))
        prior.means.copy_(torch.randn(k, d, dtype=torch.float64))
        prior.logvars.copy_(0.3 * torch.randn(k, d, dtype=torch.float64))
    return prior


def test_responsibilities_match_scipy_bayes_rule():
    prior = small_mixture()
    z = torch.randn(5, 2, dtype=torch.float64)
    pi = prior.log_weights().exp().detach().numpy()
    dens = (
        np.stack(
            [
                multivariate_normal(
                    prior.means[k].detach().numpy(), np.diag(prior.logvars[k].exp().detach().numpy())
                ).pdf(z.numpy())
                for k in range(3)
            ],
            axis=1,
        )
        * pi
    )
    expected = dens / dens.sum(1, keepdims=True)
    np.testing.assert_allclose(prior.responsibilities(z).detach().numpy(), expected, rtol=1e-9)


def test_mixture_kl_matches_monte_carlo():
    # With γ fixed: KL(γ||π) + Σ_c γ_c KL(q||p(z|c)) = KL(γ||π) + E_q[Σ_c γ_c (log q(z) − log p(z|c))].
    prior = small_mixture(seed=1)
    q = DiagGaussian(torch.tensor([[0.3, -0.5]], dtype=torch.float64), torch.tensor([[-0.7, 0.2]], dtype=torch.float64))
    gamma = torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64)
    closed = prior.mixture_kl(q, gamma).item()
    torch.manual_seed(0)
    z = q.rsample(200_000)  # [N, 1, 2]
    log_q = q.log_prob(z)  # [N, 1]
    log_p = prior.component_log_density(z)  # [N, 1, K]
    mc_component = (gamma * (log_q.unsqueeze(-1) - log_p)).sum(-1).mean().item()
    categorical = (gamma * (gamma.log() - prior.log_weights())).sum().item()
    assert closed == pytest.approx(categorical + mc_component, abs=0.01)
    # and VaDE's closed form (Jiang et al., IJCAI 2017, Eq. 17; written out independently)
    var_c, mu_c, pi = prior.logvars.exp(), prior.means, prior.log_weights().exp()
    vade = (
        gamma[0] * 0.5 * (torch.log(2 * math.pi * var_c) + q.var / var_c + (q.mu - mu_c) ** 2 / var_c).sum(-1)
    ).sum()
    vade = (
        vade - 0.5 * (1 + torch.log(2 * math.pi * q.var)).sum() - (gamma * pi.log()).sum() + (gamma * gamma.log()).sum()
    )
    assert closed == pytest.approx(vade.item(), rel=1e-9)


# --------------------------------------------------------------------- Eq. 7–9: center loss
def test_center_loss_uses_exactly_the_confident_samples():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]], requires_grad=True)
    gamma = torch.tensor([[0.95, 0.05], [0.10, 0.90], [0.60, 0.40], [0.80, 0.20]])  # τ = 0.8: rows 0, 1
    zx = torch.tensor([[1.0, 0.0], [9.0, 1.0], [5.0, 5.0], [3.0, 3.0]], requires_grad=True)
    zy = torch.tensor([[0.0, 2.0], [10.0, 0.0], [7.0, 7.0], [4.0, 4.0]])
    loss, frac = center_loss([zx, zy], centers, gamma, tau=0.8)
    hand = ((1 + 4) + (1 + 1 + 0)) / 2  # row 0 → c0: 1 + 4; row 1 → c1: 2 + 0; conf 0.8 is not > 0.8
    assert loss.item() == pytest.approx(hand)
    assert frac.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.all(zx.grad[2:] == 0) and zx.grad[:2].abs().sum() > 0 and centers.grad.abs().sum() > 0


def test_center_loss_empty_confident_set_is_zero_not_nan():
    centers = torch.zeros(2, 3, requires_grad=True)
    z = torch.randn(4, 3, requires_grad=True)
    loss, frac = center_loss([z], centers, torch.full((4, 2), 0.5), tau=0.8)
    assert loss.item() == 0.0 and frac.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(centers.grad).all()


def test_model_center_loss_follows_controlled_responsibilities():
    model = make({"mixture_init": "random", "tau": 0.8, "center_on": "mean"})
    _, batch = toy_batch(8)
    enc = model.encode(batch)
    mu = {m: enc[m][0].mu.detach() for m in enc}
    with torch.no_grad():  # component 0 at the origin, all others far away; all very narrow
        model.mixture.means.fill_(100.0)
        model.mixture.means[0].zero_()
        model.mixture.logvars.fill_(-8.0)
        model.centers.copy_(torch.arange(10.0).unsqueeze(1).expand(10, 4))
    # every sample is far nearer component 0 → confident, label 0, center c_0 = 0
    terms = model.loss(batch)
    hand = sum(mu[m].pow(2).sum(-1) for m in mu).mean().item()
    assert terms["confident_fraction"].item() == 1.0
    assert terms["center"].item() == pytest.approx(hand, rel=1e-4)


# ---------------------------------------------------------------- Eq. 11–12: triplet alignment
def test_triplet_loss_matches_hand_computation():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 2.0]])  # d_pos = 5, 1
    n = torch.tensor([[[6.0, 8.0], [0.0, 1.0]], [[4.0, 5.0], [1.0, 1.0]]])  # d = (10, 1) → 5.5; (5, 0) → 2.5
    got = triplet_loss(a, p, n, margin=1.7)
    assert got.tolist() == pytest.approx([max(5 - 5.5 + 1.7, 0), max(1 - 2.5 + 1.7, 0)])
    assert triplet_loss(a, p, n, margin=0.0).tolist() == pytest.approx([0.0, 0.0])


def test_semi_hard_selection_drops_the_closer_negative():
    anchor = torch.tensor([[0.0], [10.0], [20.0]])
    cand = torch.tensor([[2.0], [11.0], [0.5]])  # anchor 0: positive d=2, cand 2 at d=0.5 (closer), cand 1 at d=11
    for seed in range(20):
        torch.manual_seed(seed)
        idx, ok = select_negatives(anchor, cand, k=1, semi_hard=True)
        assert idx[0, 0] == 1 and ok[0, 0]
        assert (idx[:, 0] != torch.arange(3)).all()  # never the partner
    # random mode picks the closer one sometimes
    picks = set()
    for seed in range(40):
        torch.manual_seed(seed)
        picks.add(int(select_negatives(anchor, cand, k=1, semi_hard=False)[0][0, 0]))
    assert picks == {1, 2}


def test_semi_hard_falls_back_to_random_when_none_is_valid():
    anchor = torch.tensor([[0.0], [1.0], [2.0]])
    cand = torch.tensor([[9.0], [1.0], [2.0]])  # anchor 0's positive is the farthest: no valid negative
    torch.manual_seed(0)
    idx, ok = select_negatives(anchor, cand, k=2, semi_hard=True)
    assert sorted(idx[0].tolist()) == [1, 2] and not ok[0].any()
    assert idx.shape == (3, 2) and (idx != torch.arange(3).unsqueeze(1)).all()


def test_model_alignment_is_symmetric_eq12():
    model = make({"negatives": 1, "margin": 1.7, "semi_hard_from_epoch": 1000})
    mu_x, mu_y = torch.randn(6, 4), torch.randn(6, 4)
    torch.manual_seed(3)
    got, _ = model.alignment(mu_x, mu_y)
    torch.manual_seed(3)
    ix, _ = select_negatives(mu_x, mu_y, 1, False)
    iy, _ = select_negatives(mu_y, mu_x, 1, False)
    hand = triplet_loss(mu_x, mu_y, mu_y[ix], 1.7).mean() + triplet_loss(mu_y, mu_x, mu_x[iy], 1.7).mean()
    assert got.item() == pytest.approx(hand.item())


# ------------------------------------------------------------------------- the whole model
def test_loss_terms_and_total_eq13():
    model = make({"mixture_init": "random", "beta": 1.0, "gamma": 1.0})
    _, batch = toy_batch(16)
    torch.manual_seed(1)
    t = model.loss(batch)
    expected = {
        "loss",
        "elbo",
        "recon_a",
        "recon_b",
        "kl_mixture",
        "kl_private",
        "kl_unimodal_shared",
        "center",
        "align",
        "confident_fraction",
        "negatives_farther_fraction",
        "active_components",
    }
    assert expected <= set(t) and all(v.dim() == 0 and torch.isfinite(v) for v in t.values())
    p = model.params
    elbo = (
        t["recon_a"]
        + t["recon_b"]
        - p["lambda1"] * t["kl_mixture"]
        - p["lambda2"] * t["kl_private"]
        - p["lambda3"] * t["kl_unimodal_shared"]
        + t.get("recon_cross", 0.0)
    )  # extra_recon (default on)
    assert t["elbo"].item() == pytest.approx(elbo.item(), rel=1e-5)
    assert t["loss"].item() == pytest.approx((-t["elbo"] + t["center"] + t["align"]).item(), rel=1e-5)
    # Eq. 6 exactly (no extra reconstructions): no cross term, same identity
    model = make({"mixture_init": "random", "extra_recon": False})
    torch.manual_seed(1)
    t = model.loss(batch)
    assert "recon_cross" not in t
    elbo = (
        t["recon_a"]
        + t["recon_b"]
        - p["lambda1"] * t["kl_mixture"]
        - p["lambda2"] * t["kl_private"]
        - p["lambda3"] * t["kl_unimodal_shared"]
    )
    assert t["elbo"].item() == pytest.approx(elbo.item(), rel=1e-5)


def test_gradients_reach_mixture_and_centers():
    model = make({"mixture_init": "random", "tau": 0.0})
    _, batch = toy_batch(16)
    model.loss(batch)["loss"].backward()
    for p in (model.mixture.logits, model.mixture.means, model.mixture.logvars, model.centers):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_beta_gamma_zero_skip_terms_and_ablation_without_mixture():
    _, batch = toy_batch(8)
    t = make({"mixture_init": "random", "beta": 0.0, "gamma": 0.0}).loss(batch)
    assert t["center"].item() == 0 and t["align"].item() == 0
    assert t["loss"].item() == pytest.approx(-t["elbo"].item(), rel=1e-6)
    model = make({"use_mixture_prior": False})
    t = model.loss(batch)
    assert t["center"].item() == 0 and torch.isfinite(t["loss"])
    q = model.joint_posterior(model.encode(batch))
    assert not hasattr(model, "mixture") and model.cluster(batch, ["a"]) is None
    assert model.sample(3)["a"].shape == (3, 1, 28, 28)
    assert q.kl_standard_normal().shape == (8,)


def test_one_modality_missing_works_everywhere():
    model = make({"mixture_init": "random"})
    _, batch = toy_batch(8)
    for gone, kept in (("b", "a"), ("a", "b")):
        partial = {kept: batch[kept], gone: None}
        t = model.loss(partial)
        assert torch.isfinite(t["loss"]) and t[f"recon_{gone}"].item() == 0 and t["align"].item() == 0
        t["loss"].backward()
        assert model.embed(partial, [kept]).shape == (8, 4)
        assert model.generate(partial, kept, gone).shape == (8, *model.shapes[gone])
        c = model.cluster(partial, [kept])
        assert c.shape == (8,) and c.max() < 10
    out = model.translate({"a": batch["a"]}, {"b": batch["b"]}, "a", "b")
    assert out.shape == (8, 3, 32, 32)


def test_sample_shapes_come_from_the_mixture():
    model = make({"mixture_init": "random"})
    out = model.sample(5)
    assert out["a"].shape == (5, 1, 28, 28) and out["b"].shape == (5, 3, 32, 32)
    assert all(((v >= 0) & (v <= 1)).all() for v in out.values())


def test_kmeans_initialisation_and_warm_up():
    data = synthetic_paired(n_train=64, n_test=16)
    model = make({"mixture_init": "kmeans", "mixture_init_epoch": 1, "n_components": 5})
    batch = data.batch("train", torch.arange(16))
    model.on_epoch_start(0, data)
    assert not bool(model.mixture_ready)
    t = model.loss(batch)  # warm-up: N(0,I) KL, no center loss
    assert t["center"].item() == 0 and t["active_components"].item() == 0
    model.on_epoch_start(1, data)
    assert bool(model.mixture_ready)
    torch.testing.assert_close(model.centers.data, model.mixture.means.data)
    pi = model.mixture.log_weights().exp()
    assert pi.sum().item() == pytest.approx(1.0) and (pi > 0).all()
    emb = model.embed(data.batch("train", torch.arange(64)), ["a", "b"])
    assert (model.mixture.means.min(0).values >= emb.min(0).values - 1e-5).all()  # centroids of embeddings


def test_same_seed_same_loss_and_training_is_deterministic():
    _, batch = toy_batch(16)
    losses = []
    for _ in range(2):
        model = make({"mixture_init": "random", "semi_hard_from_epoch": 0})
        torch.manual_seed(7)
        losses.append({k: v.item() for k, v in model.loss(batch).items()})
    assert losses[0] == losses[1]
    data = synthetic_paired(n_train=48, n_test=16)
    settings = {
        **TOY_SETTINGS,
        "epochs": 2,
        "params": {"mixture_init_epoch": 1, "semi_hard_from_epoch": 1, "n_components": 4},
    }
    histories = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mgmvae", data.shapes, settings)
        histories.append(train_model(model, data, settings, seed=0, progress=False))
    assert histories[0] == histories[1] and len(histories[0]) == 2


def test_unknown_params_are_rejected():
    with pytest.raises(ValueError, match="no parameter"):
        make({"lambda4": 1.0})
    with pytest.raises(ValueError, match="mixture_init = 'gmm': input should be 'kmeans' or 'random'"):
        make({"mixture_init": "gmm"})
    with pytest.raises(ValueError, match="negatives = 0: input should be greater than 0"):
        make({"negatives": 0})
    assert MGMVAE.Params().margin == 1.7 and MGMVAE.Params().lambda3 == 0.0025  # the paper's MNIST-SVHN values


def test_recon_scale_multiplies_the_log_likelihood():
    _, batch = toy_batch(4)
    base, scaled = make({"recon_scale": 1.0}), make({"recon_scale": "per_pixel"})
    assert scaled.recon_scale == pytest.approx(1 / 3072)
    z, h = torch.zeros(4, 4), torch.zeros(4, 2)
    for m in ("a", "b"):
        torch.testing.assert_close(
            scaled.log_likelihood(m, batch[m], z, h), base.log_likelihood(m, batch[m], z, h) / 3072
        )
    with pytest.raises(ValueError, match="recon_scale"):
        make({"recon_scale": -1})


# ------------------------------------------------------------------ state: load and validation
def test_loaded_state_is_the_state_the_loss_uses():
    data, batch = toy_batch(16)
    params = {"mixture_init": "kmeans", "mixture_init_epoch": 0, "n_components": 4}
    fitted = make(params)
    fitted.on_epoch_start(0, data)  # k-means: the mixture is in use from here
    loaded = make(params, seed=1)
    loaded.load_state_dict(fitted.state_dict())  # no on_epoch_start before the loss
    terms = []
    for model in (fitted, loaded):
        torch.manual_seed(5)
        terms.append(model.loss(batch))
    assert terms[0]["active_components"].item() > 0  # the mixture objective, not the warm-up one
    for key, value in terms[0].items():
        assert torch.equal(value, terms[1][key]), key
    loaded.load_state_dict(make(params, seed=2).state_dict())  # an unfitted state: warm-up again
    assert loaded.loss(batch)["active_components"].item() == 0


def test_a_run_that_never_reaches_the_mixture_fit_is_refused():
    from mgmvae.config import ConfigError, load_config
    from mgmvae.contracts.model import validate_models

    never = {
        "dataset_settings": {"mnist_cdcb": {"epochs": 2}},
        "model_settings": {"mgmvae": {"params": {"mixture_init_epoch": 2}}},
    }
    with pytest.raises(
        ConfigError, match=r"model_settings\.mgmvae\.params.*mnist_cdcb.*mixture_init_epoch = 2.*epochs = 2"
    ):
        validate_models(load_config(overrides=never))
    for fix in ({"mixture_init_epoch": 1}, {"use_mixture_prior": False}, {"mixture_init": "random"}):
        ok = {**never, "model_settings": {"mgmvae": {"params": {"mixture_init_epoch": 2, **fix}}}}
        validate_models(load_config(overrides=ok))
    variant = {"ablation": {"variants": {"late": {"params": {"mixture_init_epoch": 50}}}}}
    with pytest.raises(ConfigError, match=r"ablation\.variants\.late\.params.*mixture_init_epoch = 50"):
        validate_models(load_config(overrides=variant))
