"""Shared probability pieces against independent computations (closed forms, torch.distributions,
Monte Carlo)."""

import math

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Laplace, Normal

from mgmvae.distributions import (
    DiagGaussian,
    DiagLaplace,
    Likelihood,
    continuous_bernoulli_log_norm,
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


@pytest.mark.parametrize("family", ["laplace", "gaussian", "bernoulli", "continuous_bernoulli"])
def test_likelihoods_match_torch(family):
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    mean = torch.sigmoid(logits)
    if family == "laplace":
        ref = Laplace(mean, 0.75).log_prob(x)
    elif family == "gaussian":
        ref = Normal(mean, 0.75).log_prob(x)
    elif family == "continuous_bernoulli":
        ref = ContinuousBernoulli(logits=logits).log_prob(x)
    else:
        ref = x * torch.log(mean) + (1 - x) * torch.log1p(-mean)
    got = Likelihood(family, 0.75).log_prob(logits, x)
    assert torch.allclose(got, ref.flatten(1).sum(-1), atol=1e-8)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="unknown likelihood"):
        Likelihood("poisson", 0.75)


# ------------------------------------------------------------------ continuous Bernoulli
MODERATE = torch.tensor(
    [-9.0, -3.0, -0.7, -0.05, -1e-3, 0.0, 2e-4, 0.02, 0.0999, 0.1, 0.4, 1.5, 6.0], dtype=torch.float64
)
EXTREME = torch.tensor([-60.0, -40.0, -17.0, 17.0, 40.0, 60.0], dtype=torch.float64)


def pixels(logits):
    """One 1×1×1 image per logit, the shape ``Likelihood`` reads."""
    return logits.reshape(-1, 1, 1, 1)


def test_continuous_bernoulli_normaliser_matches_torch():
    """Where torch's ``ContinuousBernoulli`` is exact (|logit| below its clamp), the log-normaliser
    log C(λ) = log p(x) + BCE(logits, x) is torch's, near λ = 1/2 (series branch) and away from it."""
    x = torch.full_like(MODERATE, 0.3)
    torch_log_norm = ContinuousBernoulli(logits=MODERATE).log_prob(x) - x * torch.log(torch.sigmoid(MODERATE))
    torch_log_norm = torch_log_norm - (1 - x) * torch.log(torch.sigmoid(-MODERATE))
    torch.testing.assert_close(continuous_bernoulli_log_norm(MODERATE), torch_log_norm, rtol=0, atol=1e-9)
    torch.testing.assert_close(continuous_bernoulli_log_norm(torch.zeros(1)), torch.tensor([math.log(2.0)]))


def test_continuous_bernoulli_is_normalised_on_the_unit_interval():
    """∫_0^1 p(x) dx = 1 and ∫_0^1 x p(x) dx = ``mean``, by the trapezoid rule on a fine grid, for
    every logit, also past the |logit| ≈ 16 where torch's float32 normaliser stops growing."""
    lik = Likelihood("continuous_bernoulli", 0.75)
    grid = torch.linspace(0.0, 1.0, 400_001)
    for logit in torch.cat([MODERATE, EXTREME]):
        density = lik.log_prob(pixels(logit.expand_as(grid)), pixels(grid)).exp()
        assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-6), logit
        mean = lik.mean(logit.reshape(1)).item()
        assert torch.trapezoid(grid * density, grid).item() == pytest.approx(mean, abs=1e-6), logit


def test_continuous_bernoulli_mean_is_the_distributions_not_sigmoid():
    lik = Likelihood("continuous_bernoulli", 0.75)
    torch.testing.assert_close(lik.mean(MODERATE), ContinuousBernoulli(logits=MODERATE).mean, rtol=0, atol=1e-9)
    assert not torch.allclose(lik.mean(MODERATE), torch.sigmoid(MODERATE), atol=1e-2)
    # far out the mean tends to 1/|l| (λ → 0) and 1 − 1/l (λ → 1): 1/(1 − e^−l) − 1/l
    torch.testing.assert_close(lik.mean(torch.tensor([-60.0, 60.0])), torch.tensor([1 / 60, 1 - 1 / 60]))


def test_continuous_bernoulli_gradients_are_finite_at_and_near_half():
    logits = torch.tensor([0.0, 1e-6, -0.1, 0.1, 80.0], requires_grad=True)
    x = torch.tensor([0.2, 0.9, 0.5, 0.0, 1.0])
    lik = Likelihood("continuous_bernoulli", 0.75)
    (lik.log_prob(pixels(logits), pixels(x)).sum() + lik.mean(logits).sum()).backward()
    assert torch.isfinite(logits.grad).all()


def test_likelihood_says_whether_it_is_a_normalised_density():
    assert [Likelihood(f, 0.75).normalised for f in Likelihood.FAMILIES] == [True, True, False, True]
    # the reason: a Bernoulli "density" on grey levels integrates to less than 1 over [0, 1]
    grid = torch.linspace(0.0, 1.0, 10_001)
    logit = torch.zeros_like(grid)
    bernoulli = Likelihood("bernoulli", 0.75).log_prob(pixels(logit), pixels(grid)).exp()
    assert torch.trapezoid(bernoulli, grid).item() == pytest.approx(0.5)
