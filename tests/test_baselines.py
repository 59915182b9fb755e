"""MMVAE and DMVAE objectives against independent hand computations on small cases.

Hand computations use only the networks (encoder heads, decoders) and closed-form densities
written out here; the random draws are reproduced by seeding before each call.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import SHAPES, gauss_lp, kl_std, laplace_ll, make_batch, make_model

B, D, P = 4, 3, 2
make = partial(make_model, shared_dim=D, private_dim=P)
batch = partial(make_batch, n=B)


def laplace_lp(z, loc, scale):
    return (-torch.log(2 * scale) - (z - loc).abs() / scale).sum(-1)


def heads(model, m, x):
    return model.encoders[m](x)


# ======================================================================== MMVAE
def mmvae_hand_elbo(model, x, family, present, seed):
    """(1/M) Σ_m [Σ_d w_d log p(x_d|z_m) + log p(z_m) − log (1/M) Σ_j q_j(z_m)], z_m ~ q_m."""
    with torch.no_grad():
        torch.manual_seed(seed)
        out = {m: heads(model, m, x[m]) for m in present}
        raw = model.prior_raw
        if family == "gaussian":
            lq = {m: (lambda z, o=o: gauss_lp(z, o.shared_loc, o.shared_scale)) for m, o in out.items()}
            z = {m: o.shared_loc + (0.5 * o.shared_scale).exp() * torch.randn(1, B, D) for m, o in out.items()}
            lp = lambda z: gauss_lp(z, torch.zeros(D), raw)  # noqa: E731
        else:
            scale = {m: F.softmax(o.shared_scale, -1) * D + 1e-6 for m, o in out.items()}
            lq = {m: (lambda z, o=o, s=scale[m]: laplace_lp(z, o.shared_loc, s)) for m, o in out.items()}
            z = {}
            for m, o in out.items():
                u = (torch.rand(1, B, D) - 0.5).clamp(-0.5 + 1e-6, 0.5 - 1e-6)
                z[m] = o.shared_loc - scale[m] * u.sign() * torch.log1p(-2 * u.abs())
            lp = lambda z: laplace_lp(z, torch.zeros(D), F.softmax(raw, -1) * D + 1e-6)  # noqa: E731
        total = 0.0
        for m in present:
            recon = sum(laplace_ll(model, d, x[d], z[m]) for d in present)
            lq_mix = torch.logsumexp(torch.stack([lq[j](z[m]) for j in present]), 0) - math.log(len(present))
            total = total + (recon + lp(z[m]) - lq_mix) / len(present)
        return total.mean()


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_mmvae_elbo_equals_hand_sum(family):
    model = make("mmvae", {"objective": "elbo"}, posterior=family)
    with torch.no_grad():
        model.prior_raw.copy_(torch.tensor([0.3, -0.2, 0.1]))  # a non-trivial learned prior
    x = batch()
    torch.manual_seed(7)
    terms = model.loss(x)
    hand = mmvae_hand_elbo(model, x, family, ["a", "b"], seed=7)
    assert torch.allclose(-terms["loss"], hand, rtol=1e-5)
    parts = terms["recon_a"] + terms["recon_b"] - terms["kl"]
    assert torch.allclose(-terms["loss"], parts, rtol=1e-5)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_mmvae_iwae_k1_equals_elbo(family):
    x = batch()
    grads = {}
    for objective in ["elbo", "iwae", "dreg"]:
        model = make("mmvae", {"objective": objective, "k": 1}, posterior=family)
        torch.manual_seed(3)
        terms = model.loss(x)
        terms["loss"].backward()
        grads[objective] = (terms["loss"].detach(), torch.cat([p.grad.flatten() for p in model.decoders.parameters()]))
    assert torch.allclose(grads["iwae"][0], grads["elbo"][0], rtol=1e-6)
    assert torch.allclose(grads["dreg"][0], grads["elbo"][0], rtol=1e-6)
    assert torch.allclose(grads["iwae"][1], grads["elbo"][1], rtol=1e-4, atol=1e-6)


def test_mmvae_iwae_value_by_hand():
    """K=3: (1/M) Σ_m log (1/K) Σ_k w(z_mk), with log w recomputed from the model's pieces."""
    model = make("mmvae", {"objective": "iwae", "k": 3})
    x = batch()
    torch.manual_seed(5)
    loss = model.loss(x)["loss"]
    with torch.no_grad():
        torch.manual_seed(5)
        q = model.joint_posterior(model.encode(x))
        z = torch.stack([e.mu + e.std * torch.randn(3, B, D) for e in q.experts])
        lq = torch.logsumexp(torch.stack([gauss_lp(z, e.mu, e.logvar) for e in q.experts]), 0) - math.log(2)
        lw = (
            laplace_ll(model, "a", x["a"], z) + laplace_ll(model, "b", x["b"], z) + gauss_lp(z, 0, model.prior_raw) - lq
        )
        hand = (torch.logsumexp(lw, 1) - math.log(3)).mean(0).mean()
    assert torch.allclose(-loss, hand, rtol=1e-5)


def test_mmvae_dreg_decoder_and_prior_gradients_equal_iwae():
    """Float64: |log w| is in the thousands, so float32 round-off alone moves w̃ by ~1e-4."""
    x = {m: v.double() for m, v in batch().items()}
    out = {}
    for objective in ["iwae", "dreg"]:
        model = make("mmvae", {"objective": objective, "k": 5}).double()
        torch.manual_seed(11)
        terms = model.loss(x)
        terms["loss"].backward()
        dec = torch.cat([p.grad.flatten() for p in model.decoders.parameters()])
        enc = torch.cat([p.grad.flatten() for p in model.encoders.parameters()])
        out[objective] = terms["loss"].detach(), dec, model.prior_raw.grad.clone(), enc
    assert torch.allclose(out["dreg"][0], out["iwae"][0])
    assert torch.allclose(out["dreg"][1], out["iwae"][1], rtol=1e-9, atol=1e-12)
    assert torch.allclose(out["dreg"][2], out["iwae"][2], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(out["dreg"][3], out["iwae"][3], rtol=1e-3)  # encoders do differ


MLP2 = {"a": (1, 28, 28), "b": (1, 28, 28)}


def mean_encoder_grad(objective, k, present, seeds=4, n=5000):
    """Encoder head-bias gradients for a 1-D latent, averaged over n copies of one pair and
    several seeds -> (mean, standard error over seeds). Tractable and cheap: the decoders are
    replaced by the closed form log p(x_m | z) = log N(c_m; z, 1), c_a = 1, c_b = -0.5."""
    model = make("mmvae", {"objective": objective, "k": k}, shapes=MLP2, shared_dim=1)
    centre = {"a": 1.0, "b": -0.5}
    model.log_likelihood = lambda m, x, z, h=None: -0.5 * (z - centre[m]).pow(2).sum(-1)
    with torch.no_grad():
        for e in model.encoders.values():
            e.head.bias.copy_(torch.tensor([0.8, -1.0]))  # a posterior away from the prior
    one = batch(MLP2, n=1)
    x = {m: (one[m].expand(n, -1, -1, -1) if m in present else None) for m in MLP2}
    grads = []
    for seed in range(seeds):
        model.zero_grad()
        torch.manual_seed(seed)
        model.loss(x)["loss"].backward()
        grads.append(torch.cat([model.encoders[m].head.bias.grad for m in present]))
    g = torch.stack(grads)
    return g.mean(0), g.std(0) / seeds**0.5


@pytest.mark.parametrize("k,present", [(4, ["a"]), (1, ["a", "b"])])
def test_mmvae_dreg_expectation_matches_iwae_gradient(k, present):
    """Unbiased cases: one expert (plain DReG) and a mixture with K=1 (sticking the landing)."""
    iwae, se_i = mean_encoder_grad("iwae", k, present)
    dreg, se_d = mean_encoder_grad("dreg", k, present)
    tol = 4 * (se_i**2 + se_d**2).sqrt() + 0.01
    assert ((dreg - iwae).abs() < tol).all(), (dreg, iwae, tol)


def test_mmvae_dreg_mixture_k_gt_1_is_biased_as_documented():
    """The reference code's DReG on a mixture with K>1 is not the IWAE gradient (docstring caveat)."""
    iwae, se_i = mean_encoder_grad("iwae", 4, ["a", "b"])
    dreg, se_d = mean_encoder_grad("dreg", 4, ["a", "b"])
    tol = 4 * (se_i**2 + se_d**2).sqrt() + 0.01
    assert ((dreg - iwae).abs() > tol).any(), (dreg, iwae, tol)


def test_mmvae_one_modality_missing():
    model = make("mmvae", {"objective": "elbo"})
    x = batch()
    only_a = {"a": x["a"], "b": None}
    torch.manual_seed(2)
    terms = model.loss(only_a)
    assert set(terms) == {"loss", "bound", "recon_a", "kl"}
    assert torch.allclose(-terms["loss"], mmvae_hand_elbo(model, x, "gaussian", ["a"], seed=2), rtol=1e-5)
    for objective in ["iwae", "dreg"]:
        model.params.update(objective=objective, k=3)
        loss = model.loss(only_a)["loss"]
        loss.backward()
        assert torch.isfinite(loss)
    qa = model.encode(x)["a"][0]
    assert torch.allclose(model.embed(only_a, ["a"]), qa.mean)
    assert torch.allclose(model.embed(x, ["a", "b"]), (qa.mean + model.encode(x)["b"][0].mean) / 2)
    assert model.generate(only_a, "a", "b").shape == (B, *SHAPES["b"])
    assert model.sample(2)["a"].shape == (2, *SHAPES["a"])


def test_mmvae_learn_prior_and_params():
    learned = make("mmvae", {"objective": "dreg", "k": 2})
    learned.loss(batch())["loss"].backward()
    assert learned.prior_raw.grad is not None and learned.prior_raw.grad.abs().sum() > 0
    fixed = make("mmvae", {"learn_prior": False})
    assert "prior_raw" not in dict(fixed.named_parameters())
    with pytest.raises(ValueError, match="objective"):
        make("mmvae", {"objective": "vimco"})


# ======================================================================== DMVAE
def dmvae_hand_terms(model, x, seed):
    """{(m, term): (recon, kl_shared, kl_private)} by hand, same draws as DMVAE.loss."""
    with torch.no_grad():
        torch.manual_seed(seed)
        o = {m: heads(model, m, x[m]) for m in x}
        prec = sum((-o[m].shared_scale).exp() for m in x) + 1.0  # + N(0, I) expert
        mu_poe = sum(o[m].shared_loc * (-o[m].shared_scale).exp() for m in x) / prec
        shared = {m: (o[m].shared_loc, o[m].shared_scale) for m in x} | {"poe": (mu_poe, -prec.log())}
        z = {s: mu + (0.5 * lv).exp() * torch.randn(B, D) for s, (mu, lv) in shared.items()}
        out = {}
        for m in x:
            mu_h, lv_h = o[m].private_loc, o[m].private_scale
            h = mu_h + (0.5 * lv_h).exp() * torch.randn(B, P)
            for term, s in [("self", m)] + [(f"cross_{n}", n) for n in x if n != m] + [("poe", "poe")]:
                recon = laplace_ll(model, m, x[m], torch.cat([z[s], h], -1))
                out[m, term] = recon, kl_std(*shared[s]), kl_std(mu_h, lv_h)
        return out


@pytest.mark.parametrize("poe_reconstruction", [True, False])
def test_dmvae_loss_equals_hand_sum(poe_reconstruction):
    model = make("dmvae", {"poe_reconstruction": poe_reconstruction})
    x = batch()
    torch.manual_seed(9)
    terms = model.loss(x)
    hand = dmvae_hand_terms(model, x, seed=9)
    total = sum(
        ((r if (t != "poe" or poe_reconstruction) else 0) - ks - kp).mean() for (m, t), (r, ks, kp) in hand.items()
    )
    assert torch.allclose(-terms["loss"], total, rtol=1e-5)
    for (m, t), (r, ks, _kp) in hand.items():
        assert torch.allclose(terms[f"{m}/{t}/kl_shared"], ks.mean(), rtol=1e-5)
        if t != "poe" or poe_reconstruction:
            assert torch.allclose(terms[f"{m}/{t}/recon"], r.mean(), rtol=1e-5)


def test_dmvae_poe_reconstruction_switch_removes_exactly_poe_recon():
    x = batch()
    losses = {}
    for flag in [True, False]:
        model = make("dmvae", {"poe_reconstruction": flag})
        torch.manual_seed(4)
        losses[flag] = model.loss(x)
    hand = dmvae_hand_terms(model, x, seed=4)
    poe_recon = sum(hand[m, "poe"][0].mean() for m in x)
    assert torch.allclose(losses[False]["loss"] - losses[True]["loss"], poe_recon, rtol=1e-5)
    assert losses[False]["a/poe/recon"] == 0 and losses[True]["a/poe/recon"] != 0


def test_dmvae_one_modality_missing():
    model = make("dmvae")
    x = batch()
    only_b = {"a": None, "b": x["b"]}
    torch.manual_seed(1)
    terms = model.loss(only_b)
    assert {k for k in terms if k.endswith("recon")} == {"b/self/recon", "b/poe/recon"}
    o = heads(model, "b", x["b"])
    with torch.no_grad():
        torch.manual_seed(1)
        prec = (-o.shared_scale).exp() + 1.0
        poe = (o.shared_loc * (-o.shared_scale).exp() / prec, -prec.log())
        z = o.shared_loc + (0.5 * o.shared_scale).exp() * torch.randn(B, D)
        torch.randn(B, D)  # the PoE draw (its reconstruction is off by default)
        h = o.private_loc + (0.5 * o.private_scale).exp() * torch.randn(B, P)
        kp = kl_std(o.private_loc, o.private_scale)
        self_elbo = laplace_ll(model, "b", x["b"], torch.cat([z, h], -1)) - kl_std(o.shared_loc, o.shared_scale) - kp
        hand = self_elbo.mean() + (-kl_std(*poe) - kp).mean()
    assert torch.allclose(-terms["loss"], hand, rtol=1e-5)
    model.loss(only_b)["loss"].backward()
    assert torch.allclose(model.embed(only_b, ["b"]), o.shared_loc)
    assert model.embed(x, ["a", "b"]).shape == (B, D)
    assert model.generate(only_b, "b", "a").shape == (B, *SHAPES["a"])
    assert model.translate(x, x, "a", "b").shape == (B, *SHAPES["b"])
    with pytest.raises(ValueError, match="gaussian"):
        make("dmvae", posterior="laplace")


# ======================================================================== both
@pytest.mark.parametrize(
    "name,params", [("mmvae", {"objective": "dreg", "k": 3}), ("mmvae", {"objective": "elbo"}), ("dmvae", {})]
)
def test_same_seed_same_numbers(name, params):
    runs = []
    for _ in range(2):
        model = make(name, params, seed=21)
        torch.manual_seed(22)
        terms = model.loss(batch())
        terms["loss"].backward()
        runs.append(
            (
                torch.stack([v.detach() for v in terms.values()]),
                torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]),
            )
        )
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
