"""Shared probability pieces against independent computations (closed forms, torch.distributions,
Monte Carlo)."""

import math

import pytest
import torch
from torch.distributions import Laplace, Normal

from mgmvae.distributions import (
    DiagGaussian,
    DiagLaplace,
    Likelihood,
    product_of_experts,
    wasserstein_barycenter,
)


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons in double precision, restored afterwards for the other test files."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def gaussian(mu, var):
    return DiagGaussian(torch.tensor([mu]), torch.tensor([math.log(var)]))


def test_product_of_experts_matches_hand_computation():
    # N(1, 1/2) · N(-2, 1/4) · N(0, 1):  precision 2 + 4 + 1 = 7,  mean (1·2 − 2·4 + 0) / 7 = −6/7
    q = product_of_experts([gaussian(1.0, 0.5), gaussian(-2.0, 0.25)], prior_expert=True)
    assert q.mu.item() == pytest.approx(-6 / 7)
    assert q.var.item() == pytest.approx(1 / 7)
    q = product_of_experts([gaussian(1.0, 0.5), gaussian(-2.0, 0.25)], prior_expert=False)
    assert q.mu.item() == pytest.approx((1 * 2 - 2 * 4) / 6)
    assert q.var.item() == pytest.approx(1 / 6)


def test_product_of_experts_is_the_normalised_product_of_densities():
    experts = [gaussian(0.3, 0.7), gaussian(-1.1, 2.0)]
    q = product_of_experts(experts, prior_expert=True)
    z = torch.linspace(-6, 6, 20001).unsqueeze(-1)
    log_product = sum(e.log_prob(z) for e in experts) + gaussian(0.0, 1.0).log_prob(z)
    density = torch.softmax(log_product, 0) / (z[1] - z[0])
    assert torch.allclose(density, q.log_prob(z).exp(), atol=1e-6)


def test_single_expert_without_prior_is_itself():
    e = DiagGaussian(torch.randn(3, 5), torch.randn(3, 5))
    q = product_of_experts([e], prior_expert=False)
    assert torch.allclose(q.mu, e.mu) and torch.allclose(q.logvar, e.logvar)


def test_gaussian_log_prob_and_kl_match_torch():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    mu2, logvar2 = torch.randn(4, 3), torch.randn(4, 3)
    q, p = DiagGaussian(mu, logvar), DiagGaussian(mu2, logvar2)
    z = torch.randn(4, 3)
    ref = Normal(mu, (0.5 * logvar).exp())
    ref_p = Normal(mu2, (0.5 * logvar2).exp())
    assert torch.allclose(q.log_prob(z), ref.log_prob(z).sum(-1))
    assert torch.allclose(q.kl(p), torch.distributions.kl_divergence(ref, ref_p).sum(-1))
    assert torch.allclose(q.kl_standard_normal(), q.kl(DiagGaussian(torch.zeros(4, 3), torch.zeros(4, 3))))


def test_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q, p = gaussian(0.5, 0.3), gaussian(-0.2, 1.7)
    z = q.rsample(400_000)
    mc = (q.log_prob(z) - p.log_prob(z)).mean()
    assert mc.item() == pytest.approx(q.kl(p).item(), abs=5e-3)


def test_laplace_matches_torch():
    loc, scale = torch.randn(5, 2), torch.rand(5, 2) + 0.1
    z = torch.randn(5, 2)
    assert torch.allclose(DiagLaplace(loc, scale).log_prob(z), Laplace(loc, scale).log_prob(z).sum(-1))
    torch.manual_seed(0)
    samples = DiagLaplace(torch.zeros(1), torch.ones(1)).rsample(200_000)
    assert samples.abs().mean().item() == pytest.approx(1.0, abs=0.01)  # E|z| = b


def test_wasserstein_barycenter_one_dimensional_known_case():
    # In 1-D the W2 barycenter of N(m_i, s_i²) is N(Σλm, (Σλs)²).
    b = wasserstein_barycenter([gaussian(0.0, 1.0), gaussian(4.0, 9.0)], [0.25, 0.75])
    assert b.mu.item() == pytest.approx(3.0)
    assert b.std.item() == pytest.approx(0.25 * 1 + 0.75 * 3)


@pytest.mark.parametrize("family", ["laplace", "gaussian", "bernoulli"])
def test_likelihoods_match_torch(family):
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    mean = torch.sigmoid(logits)
    if family == "laplace":
        ref = Laplace(mean, 0.75).log_prob(x)
    elif family == "gaussian":
        ref = Normal(mean, 0.75).log_prob(x)
    else:
        ref = x * torch.log(mean) + (1 - x) * torch.log1p(-mean)
    got = Likelihood(family, 0.75).log_prob(logits, x)
    assert torch.allclose(got, ref.flatten(1).sum(-1), atol=1e-8)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="unknown likelihood"):
        Likelihood("poisson")
