"""MoPoE, MWB-VAE, MMVAE+ and IDMVAE: their shared pieces against definitions computed
independently (matrix fixed points, quantile integrals, hand sums), and their inference surface."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from baselines.idmvae import LatentDiffusionPrior, diffusion_loss, linear_beta_schedule, q_sample
from mgmvae.contrastive import info_nce
from mgmvae.distributions import DiagGaussian, nonempty_subsets, wasserstein_barycenter
from tests.conftest import SHAPES, gauss_lp, laplace_ll, make_batch, make_model

NEW_MODELS = ["mopoe", "mwbvae", "mmvae_plus", "idmvae"]
B, D, P = 4, 4, 2
make = partial(make_model, shared_dim=D, private_dim=P)
batch = partial(make_batch, n=B)


def gauss(mu, std):
    mu, std = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    return DiagGaussian(mu, 2 * std.log())


def w2_squared(p: DiagGaussian, q: DiagGaussian) -> torch.Tensor:
    """Squared 2-Wasserstein distance of diagonal Gaussians: ||μ1−μ2||² + ||σ1−σ2||² (summed
    over the last dimension, batch dimensions kept)."""
    return (p.mu - q.mu).pow(2).sum(-1) + (p.std - q.std).pow(2).sum(-1)


# ============================================================ Wasserstein geometry
def _sqrtm(a):
    vals, vecs = torch.linalg.eigh(a)
    return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T


def test_barycenter_satisfies_the_matrix_fixed_point():
    """Σ* = Σ λ_m (Σ*^½ Σ_m Σ*^½)^½ for the W2 barycenter; found here by the fixed-point iteration
    of Álvarez-Esteban et al. (2016) on full matrices, then compared with the closed form."""
    g = torch.Generator().manual_seed(0)
    stds = [torch.rand(5, generator=g, dtype=torch.float64) * 2 + 0.1 for _ in range(3)]
    mus = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(3)]
    lam = [0.2, 0.5, 0.3]
    covs = [torch.diag(s**2) for s in stds]
    S = torch.eye(5, dtype=torch.float64)
    for _ in range(200):
        root = _sqrtm(S)
        inv_root = torch.linalg.inv(root)
        inner = sum(w * _sqrtm(root @ c @ root) for w, c in zip(lam, covs, strict=True))
        S = inv_root @ inner @ inner @ inv_root
    root = _sqrtm(S)
    assert torch.allclose(S, sum(w * _sqrtm(root @ c @ root) for w, c in zip(lam, covs, strict=True)), atol=1e-10)
    bary = wasserstein_barycenter([gauss(m, s) for m, s in zip(mus, stds, strict=True)], lam)
    assert torch.allclose(bary.var, torch.diagonal(S), rtol=1e-8)
    assert torch.allclose(bary.mu, sum(w * m for w, m in zip(lam, mus, strict=True)))


def test_barycenter_one_dimensional_known_case_and_quantiles():
    # N(0, 1) and N(4, 3²) with equal weights: N(2, 2²).
    bary = wasserstein_barycenter([gauss([0.0], [1.0]), gauss([4.0], [3.0])])
    assert torch.allclose(bary.mu, torch.tensor([2.0], dtype=torch.float64))
    assert torch.allclose(bary.std, torch.tensor([2.0], dtype=torch.float64))
    # In 1-D the W2 barycenter's quantile function is the λ-average of the quantile functions.
    u = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    normal = torch.distributions.Normal
    lam = [0.3, 0.7]
    parts = [(-1.0, 0.5), (3.0, 2.5)]
    avg_q = sum(w * normal(m, s).icdf(u) for w, (m, s) in zip(lam, parts, strict=True))
    b = wasserstein_barycenter([gauss([m], [s]) for m, s in parts], lam)
    assert torch.allclose(normal(b.mu[0], b.std[0]).icdf(u), avg_q, atol=1e-10)
    # ...and it minimises Σ λ W2²: small perturbations of (μ*, σ*) do not lower it.
    objective = lambda q: sum(w * w2_squared(q, gauss([m], [s])) for w, (m, s) in zip(lam, parts, strict=True))  # noqa: E731
    best = objective(b)
    for dm, ds in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
        assert objective(gauss(b.mu + dm, b.std + ds)) > best


def test_w2_squared_against_quantile_integral():
    """W2²(p, q) = ∫_0^1 (F_p^{-1}(u) − F_q^{-1}(u))² du in 1-D (midpoint rule), and sums over
    independent dimensions."""
    normal = torch.distributions.Normal
    n = 200_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    cases = [((0.3, 1.2), (-1.0, 0.4)), ((2.0, 0.7), (2.0, 0.7)), ((0.0, 2.0), (1.5, 0.5))]
    for (m1, s1), (m2, s2) in cases:
        numeric = ((normal(m1, s1).icdf(u) - normal(m2, s2).icdf(u)) ** 2).mean()
        closed = w2_squared(gauss([m1], [s1]), gauss([m2], [s2]))[()]
        assert abs(float(closed) - float(numeric)) < 2e-3 * max(1.0, float(numeric))
    p, q = gauss([[0.3, 2.0]], [[1.2, 0.7]]), gauss([[-1.0, 2.0]], [[0.4, 0.7]])
    assert torch.allclose(w2_squared(p, q), torch.tensor([1.3**2 + 0.8**2], dtype=torch.float64))


# ================================================================ MoPoE / MWB
def test_nonempty_subsets():
    assert nonempty_subsets(["a", "b"]) == [["a"], ["b"], ["a", "b"]]
    for m in range(1, 6):
        subsets = nonempty_subsets([f"m{i}" for i in range(m)])
        assert len(subsets) == 2**m - 1 and len({tuple(s) for s in subsets}) == 2**m - 1


@pytest.mark.parametrize("prior_expert", ["full_set", "none", "all"])
def test_mopoe_subset_posteriors_are_products_and_mixture_is_average(prior_expert):
    model = make("mopoe", {"prior_expert": prior_expert})
    x = batch()
    with torch.no_grad():
        encoded = model.encode(x)
        subsets, mix = model.subset_mixture(encoded)
        assert subsets == [["a"], ["b"], ["a", "b"]] and len(mix.experts) == 3
        heads = {m: model.encoders[m](x[m]) for m in SHAPES}
        for s, q in zip(subsets, mix.experts, strict=True):  # hand PoE: precisions add, means precision-weighted
            with_prior = prior_expert == "all" or (prior_expert == "full_set" and len(s) == 2)
            prec = sum((-heads[m].shared_scale).exp() for m in s) + (1.0 if with_prior else 0.0)
            mu = sum(heads[m].shared_loc * (-heads[m].shared_scale).exp() for m in s) / prec
            assert torch.allclose(q.mu, mu, atol=1e-6) and torch.allclose(q.var, 1 / prec, rtol=1e-5)
        z = torch.randn(B, D)
        hand = torch.stack([gauss_lp(z, q.mu, q.logvar).exp() for q in mix.experts]).mean(0).log()
        assert torch.allclose(mix.log_prob(z), hand, atol=1e-5)
        # embed from {a, b} reads the subset posterior of exactly {a, b}; from {a}: a's expert
        assert torch.allclose(model.embed(x, ["a", "b"]), mix.experts[2].mu)
        assert torch.allclose(model.embed(x, ["a"]), mix.experts[0].mu, atol=1e-6)


def test_mopoe_loss_equals_hand_stratified_elbo():
    model = make("mopoe", {"beta": 2.5})
    x = batch()
    torch.manual_seed(11)
    loss = model.loss(x)["loss"]
    with torch.no_grad():
        torch.manual_seed(11)
        _, mix = model.subset_mixture(model.encode(x))
        total = 0.0
        for q in mix.experts:
            z = q.mu + q.std * torch.randn(B, D)
            recon = sum(laplace_ll(model, m, x[m], z) for m in SHAPES)
            kl = 0.5 * (q.var + q.mu**2 - 1 - q.logvar).sum(-1)
            total = total + (recon - 2.5 * kl).mean() / 3
    assert torch.allclose(-loss, total, rtol=1e-5)


def test_mopoe_unstratified_decodes_one_subset_per_element():
    model = make("mopoe", {"stratified": False, "beta": 1.0})
    x = batch(n=6)
    torch.manual_seed(3)
    loss = model.loss(x)["loss"]
    with torch.no_grad():
        torch.manual_seed(3)
        _, mix = model.subset_mixture(model.encode(x))
        draws = [q.mu + q.std * torch.randn(6, D) for q in mix.experts]
        z = torch.stack([draws[i // 2][i] for i in range(6)])  # contiguous blocks: rows 2s, 2s+1 use subset s
        recon = sum(laplace_ll(model, m, x[m], z) for m in SHAPES).mean()
        kl = torch.stack([0.5 * (q.var + q.mu**2 - 1 - q.logvar).sum(-1) for q in mix.experts]).mean()
    assert torch.allclose(-loss, recon - kl, rtol=1e-5)


def test_mwbvae_uses_barycenters_with_renormalised_weights():
    model = make("mwbvae", {"weights": {"a": 1.0, "b": 3.0}})
    x = batch()
    with torch.no_grad():
        encoded = model.encode(x)
        subsets, mix = model.subset_mixture(encoded)
        qa, qb = encoded["a"][0], encoded["b"][0]
        assert len(mix.experts) == 3
        assert torch.allclose(mix.experts[0].mu, qa.mu) and torch.allclose(mix.experts[1].std, qb.std)
        joint = mix.experts[2]
        assert torch.allclose(joint.mu, 0.25 * qa.mu + 0.75 * qb.mu, atol=1e-6)
        assert torch.allclose(joint.std, 0.25 * qa.std + 0.75 * qb.std, atol=1e-6)
        assert torch.allclose(model.embed(x, ["a", "b"]), joint.mu)
    plain = make("mwbvae", {"subsets": False})
    with torch.no_grad():
        subsets, mix = plain.subset_mixture(plain.encode(x))
    assert subsets == [["a", "b"]] and len(mix.experts) == 1
    with pytest.raises(ValueError, match="weights"):
        make("mwbvae", {"weights": {"a": 1.0}})


# ====================================================================== InfoNCE
def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    tau = 0.5
    cos = lambda u, v: sum(p * q for p, q in zip(u, v, strict=True)) / (math.hypot(*u) * math.hypot(*v))  # noqa: E731
    total = 0.0
    for i in range(3):
        logits = [cos(a[i].tolist(), b[j].tolist()) / tau for j in range(3)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert math.isclose(float(info_nce(a, b, tau)), total / 3, rel_tol=1e-6)
    # two vectors, perfectly aligned pairs and orthogonal negatives: log(1 + e^{-1/τ})
    e = torch.eye(2)
    assert math.isclose(float(info_nce(e, 3 * e, 0.2)), math.log(1 + math.exp(-5.0)), rel_tol=1e-6)
    # centring removes a common offset: all cosines ≈ 1 without it, the e-case with it
    offset = torch.tensor([100.0, 100.0])
    assert math.isclose(float(info_nce(e + offset, e + offset, 0.2)), math.log(2), rel_tol=1e-3)
    assert math.isclose(
        float(info_nce(e + offset, e + offset, 0.2, center=True)),
        math.log(1 + math.exp(-10.0)),
        rel_tol=0,
        abs_tol=1e-6,
    )


# ====================================================================== diffusion
def test_noise_schedule_and_forward_moments():
    s = linear_beta_schedule(200)
    ab = s.alpha_bars
    assert s.steps == 200 and torch.all(s.betas > 0) and torch.all(s.betas < 1)
    assert torch.all(ab[1:] < ab[:-1]) and 0 < float(ab[-1]) < 1e-3 and float(ab[0]) > 0.99
    assert torch.allclose(ab, torch.cumprod(1 - s.betas, 0))
    x0 = torch.tensor([[1.5, -2.0, 0.0]]).expand(100_000, 3)
    g = torch.Generator().manual_seed(0)
    for step in [0, 50, 199]:
        t = torch.full((100_000,), step)
        xt = q_sample(s, x0, t, torch.randn(100_000, 3, generator=g))
        assert torch.allclose(xt.mean(0), ab[step].sqrt() * x0[0], atol=0.02)
        assert torch.allclose(xt.var(0), (1 - ab[step]).expand(3), rtol=0.03, atol=1e-4)


def test_diffusion_loss_is_noise_mse():
    prior = LatentDiffusionPrior(3, steps=50)
    s = prior.schedule
    x0, noise = torch.randn(6, 3), torch.randn(6, 3)
    t = torch.tensor([0, 3, 10, 20, 40, 49])
    ab = torch.cumprod(1 - s.betas, 0)[t].unsqueeze(-1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    hand = ((prior.denoiser(xt, t) - noise) ** 2).mean()
    assert torch.allclose(diffusion_loss(prior.denoiser, s, x0, t, noise), hand)


def test_ancestral_sampling_with_the_exact_denoiser():
    """For data N(μ, s²) the optimal ε-predictor is E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ);
    with it the ancestral sampler must return N(μ, s²). The reverse variance β̃_t is exact only
    in the many-step limit (it is the lower bound of Ho et al.), hence T = 1000 here."""
    mu, sd = 2.0, 0.5
    prior = LatentDiffusionPrior(2, steps=1000)
    ab_all = prior.schedule.alpha_bars

    class Exact(torch.nn.Module):
        def forward(self, x, t):
            ab = ab_all[t].unsqueeze(-1)
            return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sd**2 + 1 - ab)

    prior.denoiser = Exact()
    z = prior.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), torch.full((2,), mu), atol=0.02)
    assert torch.allclose(z.std(0), torch.full((2,), sd), atol=0.02)


# ======================================================================= MMVAE+
# The priors' scales under each prior_scale: srl-ethz/mmvaeplus's softplus(·) + η (η = 1e-20) for
# p(z), p(w) and r_d(w) (``softplus``), or N(0, I) and N(0, exp ρ_d) (``unit``).
PRIOR_STD = {"softplus": lambda raw: torch.nn.functional.softplus(raw) + 1e-20, "unit": lambda raw: (0.5 * raw).exp()}


def mmvae_plus_log_weights(model, x, h, k, prior_scale, detach_q=False):
    """log W [M, K, B] of the references' ``_m_dreg``/``_m_iwae`` from torch.distributions, the draws
    reproduced in the model's order from torch's RNG (seed it before); the sampled z and w."""
    normal = torch.distributions.Normal
    std = PRIOR_STD[prior_scale]
    q = {
        m: (
            normal(h[m].shared_loc, (0.5 * h[m].shared_scale).exp()),
            normal(h[m].private_loc, (0.5 * h[m].private_scale).exp()),
        )
        for m in SHAPES
    }
    z = {m: q[m][0].rsample((k,)) for m in SHAPES}
    w = {m: q[m][1].rsample((k,)) for m in SHAPES}
    aux = {(d, m): std(model.aux_logvar[d]) * torch.randn(k, B, P) for d in SHAPES for m in SHAPES if m != d}
    if detach_q:
        q = {
            m: (normal(a.loc.detach(), a.scale.detach()), normal(b.loc.detach(), b.scale.detach()))
            for m, (a, b) in q.items()
        }
    unit = normal(0.0, std(torch.zeros(())))
    lws = []
    for m in SHAPES:
        recon = sum(laplace_ll(model, d, x[d], torch.cat([z[m], w[m] if d == m else aux[(d, m)]], -1)) for d in SHAPES)
        lq_z = torch.logsumexp(torch.stack([q[j][0].log_prob(z[m]).sum(-1) for j in SHAPES]), 0) - math.log(2)
        ratio = unit.log_prob(z[m]).sum(-1) + unit.log_prob(w[m]).sum(-1) - lq_z - q[m][1].log_prob(w[m]).sum(-1)
        lws.append(recon + 2.5 * ratio)
    return torch.stack(lws), z, w


@pytest.mark.parametrize("prior_scale", ["softplus", "unit"])
def test_mmvae_plus_elbo_by_hand(prior_scale):
    """K=1: (1/M) Σ_m [Σ_d log p(x_d | z_m, w_m if d=m else w̃_d~r_d) + β(log p(z)+log p(w_m)
    − log q_mix(z_m) − log q(w_m|x_m))], with the draws reproduced in the model's order."""
    model = make("mmvae_plus", {"beta": 2.5, "prior_scale": prior_scale})
    with torch.no_grad():
        model.aux_logvar["a"].copy_(torch.tensor([0.5, -1.0]))
        model.aux_logvar["b"].copy_(torch.tensor([-0.3, 0.2]))
    x = batch()
    torch.manual_seed(9)
    terms = model.loss(x)
    with torch.no_grad():
        torch.manual_seed(9)
        lw, _, _ = mmvae_plus_log_weights(model, x, {m: model.encoders[m](x[m]) for m in SHAPES}, 1, prior_scale)
    torch.testing.assert_close(-terms["loss"], lw.mean(), rtol=1e-5, atol=1e-3)


def test_mmvae_plus_dreg_gradient_is_the_references_m_dreg_gradient():
    """K = 3: every parameter's gradient is that of the references' surrogate Σ_k w̃_k log W_k, w̃
    without gradient and every density attached (epalu/mmvaeplus and srl-ethz/mmvaeplus
    ``m_dreg``; its hook sits on a copy outside the loss's graph), here from torch.distributions:
    the IWAE gradient. Tucker et al.'s DReG (densities detached, w̃² on the sampled latents) moves
    the encoders differently: the test sees the difference."""
    x = batch()
    model = make("mmvae_plus", {"objective": "dreg", "k": 3, "beta": 2.5})
    torch.manual_seed(5)
    model.loss(x)["loss"].backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    def hand(tucker: bool) -> dict:
        model.zero_grad()
        torch.manual_seed(5)
        heads = {m: model.encoders[m](x[m]) for m in SHAPES}
        lw, z, w = mmvae_plus_log_weights(model, x, heads, 3, "softplus", detach_q=tucker)
        weights = torch.softmax(lw.detach(), dim=1)
        if tucker:
            for latent, i in [(z[m], i) for i, m in enumerate(SHAPES)] + [(w[m], i) for i, m in enumerate(SHAPES)]:
                latent.register_hook(lambda g, i=i: g * weights[i].unsqueeze(-1))
        (-(weights * lw).sum(1).mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    def error(a, b):  # float32 sums over thousands of pixels: relative to the gradient's size
        return float((a - b).abs().max() / b.abs().max())

    references, tucker = hand(tucker=False), hand(tucker=True)
    assert max(error(got[n], references[n]) for n in got) < 1e-3
    assert error(tucker["encoders.a.head.weight"], references["encoders.a.head.weight"]) > 1e-2
    assert error(tucker["decoders.b.net.7.weight"], references["decoders.b.net.7.weight"]) < 1e-3


def test_mmvae_plus_objectives_agree_at_k1_and_aux_scale_learns():
    x = batch()
    values = {}
    for objective in ["elbo", "iwae", "dreg"]:
        model = make("mmvae_plus", {"objective": objective, "k": 1})
        torch.manual_seed(4)
        terms = model.loss(x)
        terms["loss"].backward()
        values[objective] = terms["loss"].detach()
        assert model.aux_logvar["a"].grad is not None and model.aux_logvar["a"].grad.abs().sum() > 0
    assert torch.allclose(values["iwae"], values["elbo"]) and torch.allclose(values["dreg"], values["elbo"])
    model = make("mmvae_plus", {"objective": "iwae", "k": 3})
    assert torch.isfinite(model.loss(x)["loss"])


# ======================================================================= IDMVAE
def test_idmvae_regularisers_by_hand():
    model = make("idmvae", {"gen_aug_loss": "matching", "temperature": 0.3})
    x = batch()
    with torch.no_grad():
        encoded = model.encode(x)
        mu = {m: encoded[m][0].mu for m in SHAPES}
        centred = {m: v - v.mean(0) for m, v in mu.items()}
        hand_mi = info_nce(centred["a"], centred["b"], 0.3) + info_nce(centred["b"], centred["a"], 0.3)
        assert torch.allclose(model.cross_mi_loss(encoded), hand_mi)
        assert float(model.cross_mi_loss({"a": encoded["a"]})) == 0.0
        torch.manual_seed(2)
        got = model.gen_aug_loss(encoded)
        torch.manual_seed(2)
        hand = 0.0
        for m in SHAPES:
            qz, qw = encoded[m]
            z, w = qz.rsample(), qw.rsample()
            style_swapped = torch.sigmoid(model.decoders[m](torch.cat([z, w.roll(1, 0)], -1)))
            content_swapped = torch.sigmoid(model.decoders[m](torch.cat([z.roll(1, 0), w], -1)))
            s_again = model.encoders[m](style_swapped).shared_loc
            p_again = model.encoders[m](content_swapped).private_loc
            hand = hand + 0.5 * (((s_again - qz.mu) ** 2).sum(-1).mean() + ((p_again - qw.mu) ** 2).sum(-1).mean())
    assert torch.allclose(got, hand, rtol=1e-4)


def test_idmvae_loss_combines_terms_and_diffusion_is_detached():
    model = make("idmvae")
    x = batch()
    torch.manual_seed(0)
    terms = model.loss(x)
    p = model.params
    parts = (
        -terms["bound"]
        + p["cross_mi_weight"] * terms["cross_mi"]
        + p["gen_aug_weight"] * terms["gen_aug"]
        + p["diffusion_weight"] * terms["diffusion"]
    )
    assert torch.allclose(terms["loss"], parts, rtol=1e-5)
    model.zero_grad()
    (terms["diffusion"]).backward()
    assert all(q.grad is None or q.grad.abs().sum() == 0 for q in model.encoders.parameters())
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in model.diffusion.parameters())


# ============================================================ shared surface
@pytest.mark.parametrize("name", NEW_MODELS)
def test_missing_modality_inference_and_training(name):
    model = make(name)
    x = batch()
    for missing, present in [("a", "b"), ("b", "a")]:
        partial = {present: x[present], missing: None}
        terms = model.loss(partial)
        assert torch.isfinite(terms["loss"])
        terms["loss"].backward()
        z = model.embed(partial, [present])
        assert z.shape == (B, D) and torch.isfinite(z).all()
        out = model.generate(partial, present, missing)
        assert out.shape == (B, *SHAPES[missing]) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert model.embed(x, ["a", "b"]).shape == (B, D)
    samples = model.sample(3)
    assert {m: tuple(v.shape) for m, v in samples.items()} == {m: (3, *s) for m, s in SHAPES.items()}


@pytest.mark.parametrize("name", NEW_MODELS)
def test_same_seed_same_numbers(name):
    x = batch()
    runs = []
    for _ in range(2):
        model = make(name, seed=5)
        torch.manual_seed(1)
        terms = model.loss(x)
        terms["loss"].backward()
        grad = torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])
        torch.manual_seed(2)
        runs.append((torch.stack([v.detach() for v in terms.values()]), grad, model.sample(2)["a"]))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert torch.equal(runs[0][2], runs[1][2])


def test_unknown_params_and_families_are_rejected():
    with pytest.raises(ValueError, match="no parameter"):
        make("mopoe", {"k": 3})
    with pytest.raises(ValueError, match="gaussian"):
        make("mwbvae", posterior="laplace")
    with pytest.raises(ValueError, match="gen_aug_loss"):
        make("idmvae", {"gen_aug_loss": "other"})
