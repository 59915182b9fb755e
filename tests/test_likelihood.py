"""The test log-likelihood estimator against closed forms.

A linear-Gaussian two-modality model (z ~ N(0, I), h_m ~ N(0, I), x_m = W_m z + V_m h_m + b_m + σ ε)
has log p(x_S) = log N(x_S; b_S, W_S W_Sᵀ + V V ᵀ + σ² I) in closed form. Its encoders are built by
hand: with orthogonal columns in W_m and no private latent, the product of the likelihood factors
with the prior expert is the exact posterior, so every importance weight equals p(x_S) and the
estimate is exact for any K; with private latents the factorised proposal is not exact and the
estimate must rise towards the closed form as K grows.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Laplace, MixtureSameFamily, MultivariateNormal, Normal

from mgmvae.distributions import DiagGaussian, DiagLaplace, MixtureOfExperts, log_mean_exp, product_of_experts
from mgmvae.evaluation.likelihood import draw, evaluate_log_likelihood, importance_log_weights
from mgmvae.registry import builtin_model_names as model_names
from tests.conftest import evaluation_settings, make_batch, make_model

DIMS = {"x": 4, "y": 3}
D, SIGMA = 2, 0.6


def estimate_log_likelihood(*args, **kwargs) -> Tensor:
    """log p̂(x_S) per pair [B]: the log of the mean importance weight (``importance_log_weights``'s arguments)."""
    return log_mean_exp(importance_log_weights(*args, **kwargs))


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class IdentityGaussian:
    """p(x | mean) = N(mean, σ² I) over the [1, 1, d] 'image' (the Likelihood interface)."""

    normalised = True

    def log_prob(self, mean: Tensor, x: Tensor) -> Tensor:
        return Normal(mean, SIGMA).log_prob(x).flatten(-3).sum(-1)


class LinearGaussian(nn.Module):
    """The model surface the estimator reads, for a linear-Gaussian model with hand-built encoders."""

    def __init__(self, private_dim: int = 0, proposal: str = "poe", weights: dict | None = None, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.modalities, self.private_dim, self.proposal = list(DIMS), private_dim, proposal
        self.W, self.V, self.b = {}, {}, {}
        for m, d in DIMS.items():
            q, _ = torch.linalg.qr(torch.randn(d, D, generator=g))
            self.W[m] = q * torch.tensor([1.5, 0.8])  # orthogonal columns: WᵀW diagonal
            self.V[m] = torch.randn(d, private_dim, generator=g)
            self.b[m] = torch.randn(d, generator=g)
        self.likelihood = IdentityGaussian()
        self.weights = weights or dict.fromkeys(DIMS, 1.0)
        self.device = torch.device("cpu")

    # -------------------------------------------------------------- generative side
    def decode(self, m: str, z: Tensor, h: Tensor | None = None) -> Tensor:
        mean = z @ self.W[m].T + self.b[m]
        if h is not None:
            mean = mean + h @ self.V[m].T
        return mean.unsqueeze(-2).unsqueeze(-2)

    def log_prior(self, z: Tensor) -> Tensor:
        return Normal(0.0, 1.0).log_prob(z).sum(-1)

    def log_private_prior(self, m: str, h: Tensor) -> Tensor:
        return Normal(0.0, 1.0).log_prob(h).sum(-1)

    def prior_name(self) -> str:
        return "standard gaussian"

    def marginal(self, subset: list[str]) -> MultivariateNormal:
        """The closed form p(x_S)."""
        w = torch.cat([self.W[m] for m in subset])
        v = torch.block_diag(*[self.V[m] for m in subset])
        cov = w @ w.T + v @ v.T + SIGMA**2 * torch.eye(len(w))
        return MultivariateNormal(torch.cat([self.b[m] for m in subset]), cov)

    def sample_pairs(self, n: int, seed: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, D, generator=g)
        out = {}
        for m, d in DIMS.items():
            h = torch.randn(n, self.private_dim, generator=g)
            x = self.decode(m, z, h).squeeze(-2).squeeze(-2) + SIGMA * torch.randn(n, d, generator=g)
            out[m] = x.view(n, 1, 1, d)
        return out

    # ----------------------------------------------------------------- inference side
    def encode(self, batch, modalities=None) -> dict:
        """Shared expert: the diagonal of the likelihood factor of z, noise V Vᵀ + σ² I (exact without
        private latents); private: the marginal posterior of h_m given x_m, diagonal part. With private
        latents the factorised proposal is inexact anyway; both are then widened (light-tailed weights)."""
        out = {}
        for m in modalities or self.modalities:
            if batch.get(m) is None:
                continue
            x = batch[m].flatten(1) - self.b[m]
            noise = self.V[m] @ self.V[m].T + SIGMA**2 * torch.eye(DIMS[m])
            projected = torch.linalg.solve(noise, self.W[m])  # C⁻¹ W
            precision = (self.W[m] * projected).sum(0)  # diag(Wᵀ C⁻¹ W)
            widen = 3.0 if self.private_dim else 1.0
            logvar = (widen / precision).log().expand(len(x), D)
            shared = DiagGaussian((x @ projected) / precision, logvar)
            private = None
            if self.private_dim:
                c = self.W[m] @ self.W[m].T + SIGMA**2 * torch.eye(DIMS[m])
                cov = torch.linalg.inv(torch.eye(self.private_dim) + self.V[m].T @ torch.linalg.solve(c, self.V[m]))
                mean = x @ torch.linalg.solve(c, self.V[m]) @ cov
                private = DiagGaussian(mean, (widen * cov.diagonal()).log().expand_as(mean))
            out[m] = (shared, private)
        return out

    def joint_posterior(self, encoded):
        if self.proposal == "poe":
            return product_of_experts([q for q, _ in encoded.values()], prior_expert=True)
        return MixtureOfExperts([product_of_experts([q], prior_expert=True) for q, _ in encoded.values()])


SUBSETS = {"joint": ["x", "y"], "x": ["x"], "y": ["y"]}


def closed_forms(model: LinearGaussian, batch: dict) -> dict[str, Tensor]:
    return {k: model.marginal(s).log_prob(torch.cat([batch[m].flatten(1) for m in s], 1)) for k, s in SUBSETS.items()}


# ------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("samples, chunk", [(1, 100), (7, 10), (30, 2)])
def test_exact_posterior_gives_the_closed_form_for_any_k(samples, chunk):
    model = LinearGaussian()
    batch = model.sample_pairs(5, seed=1)
    truth = closed_forms(model, batch)
    torch.manual_seed(0)
    for key, subset in SUBSETS.items():
        estimate = estimate_log_likelihood(model, batch, subset, samples, chunk)
        assert estimate.shape == (5,) and estimate.dtype == torch.float64
        assert torch.allclose(estimate, truth[key], atol=1e-9), key


@pytest.mark.parametrize("proposal", ["poe", "mixture"])
def test_estimate_rises_towards_the_closed_form_as_k_grows(proposal):
    """IWAE: E[log p̂_K] increases with K to log p(x); private latents make the proposal inexact."""
    model = LinearGaussian(private_dim=1, proposal=proposal)
    batch = model.sample_pairs(500, seed=2)
    truth = closed_forms(model, batch)
    for key, subset in SUBSETS.items():
        torch.manual_seed(0)
        gaps = [
            float((estimate_log_likelihood(model, batch, subset, k, chunk=10**6) - truth[key]).mean())
            for k in (1, 4, 16, 2000)
        ]
        assert gaps[0] < -1.0, (key, gaps)  # the proposal is not exact: K = 1 (the ELBO) is a loose bound
        assert all(a < b for a, b in zip(gaps, gaps[1:], strict=False)), (key, gaps)
        assert -0.01 < gaps[-1] < 0.005, (key, gaps)


def test_weighted_estimate_scales_each_modality_term():
    """K = 1 with the exact posterior: unweighted = log p(x); weight 2 adds log p(x | z) at the draw."""
    model = LinearGaussian(weights={"x": 2.0, "y": 1.0})
    batch = model.sample_pairs(4, seed=3)
    torch.manual_seed(5)
    weighted = estimate_log_likelihood(model, batch, ["x"], 1, 100, weighted=True)
    torch.manual_seed(5)
    z = model.joint_posterior(model.encode(batch, ["x"])).rsample(1)
    expected = closed_forms(model, batch)["x"] + model.likelihood.log_prob(model.decode("x", z), batch["x"])[0]
    assert torch.allclose(weighted, expected, atol=1e-9)
    assert torch.allclose(estimate_log_likelihood(model, batch, ["x"], 1, 100), closed_forms(model, batch)["x"])


def test_weighting_applies_to_the_joint_estimate_only():
    """As MMVAE's m_iwae (weighted) beside its cross_iwaes (unweighted); same seed, same draws."""
    model = LinearGaussian(private_dim=1, weights={"x": 2.0, "y": 1.0})
    batch = model.sample_pairs(6, seed=4)

    def run(weighted):
        fetch = lambda i: {m: x[i] for m, x in batch.items()}  # noqa: E731
        return evaluate_log_likelihood(model, fetch, 6, 8, 100, seed=0, ess_floor=2, weighted=weighted, progress=False)

    plain, weighted = run(False), run(True)
    assert weighted["x"] == plain["x"] and weighted["y"] == plain["y"]
    assert weighted["joint"] < plain["joint"] - 1.0  # log p(x | z) < 0 counted twice
    assert weighted["estimator"]["weighted"] and not plain["estimator"]["weighted"]


# --------------------------------------------------------------- mixture proposal
@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_mixture_log_prob_matches_torch(family):
    g = torch.Generator().manual_seed(0)
    loc, raw = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    if family == "gaussian":
        experts = [DiagGaussian(loc[i], raw[i]) for i in range(3)]
        base = Normal(loc.transpose(0, 1), (0.5 * raw).exp().transpose(0, 1))
    else:
        experts = [DiagLaplace(loc[i], raw[i].exp()) for i in range(3)]
        base = Laplace(loc.transpose(0, 1), raw.exp().transpose(0, 1))
    reference = MixtureSameFamily(Categorical(torch.ones(5, 3)), Independent(base, 1))  # batch 5, 3 components
    z = 2 * torch.randn(7, 5, 4, generator=g)  # [K, B, D]
    assert torch.allclose(MixtureOfExperts(experts).log_prob(z), reference.log_prob(z), atol=1e-10)


def test_mixture_draws_are_stratified():
    far = [DiagGaussian(torch.full((2, 1), c), torch.full((2, 1), -10.0)) for c in (-5.0, 5.0)]
    z = draw(MixtureOfExperts(far), 6)
    assert z.shape == (6, 2, 1)
    assert (z[:3] < 0).all() and (z[3:] > 0).all()  # three from each component
    with pytest.raises(ValueError, match="split evenly"):
        draw(MixtureOfExperts(far), 5)


# ------------------------------------------------------------- MGMVAE's prior
def test_mgmvae_mixture_prior_log_density_by_hand():
    shapes = {"x": (1, 28, 28), "y": (1, 28, 28)}
    model = make_model("mgmvae", {"n_components": 2}, shapes=shapes, shared_dim=2, private_dim=1)
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5]])
    standard = norm.logpdf(z.numpy()).sum(-1)
    assert model.log_prior(z).detach().numpy() == pytest.approx(standard)  # before the k-means fit: N(0, I)
    assert "not fitted" in model.prior_name()

    pi, mu, var = [0.25, 0.75], [[1.0, -1.0], [-0.5, 2.0]], [[0.5, 2.0], [1.5, 0.3]]
    with torch.no_grad():
        model.mixture.logits.copy_(torch.tensor(pi).log() + 3.0)  # softmax ignores the shift
        model.mixture.means.copy_(torch.tensor(mu))
        model.mixture.logvars.copy_(torch.tensor(var).log())
        model.mixture_ready.fill_(True)
    hand = [
        math.log(
            sum(pi[k] * math.prod(norm.pdf(zi[j], mu[k][j], math.sqrt(var[k][j])) for j in range(2)) for k in (0, 1))
        )
        for zi in z.tolist()
    ]
    assert model.log_prior(z).detach().numpy() == pytest.approx(hand)
    assert model.prior_name().startswith("gaussian mixture")


# ------------------------------------------------------------- every model
@pytest.mark.parametrize("name", model_names())
def test_every_model_gives_finite_estimates_of_the_right_shape(name):
    torch.set_default_dtype(torch.float32)
    model = make_model(name, likelihood={"family": "bernoulli", "scale": 0.75}).eval()
    data = make_batch(n=3, seed=1)
    for subset in (["a", "b"], ["a"], ["b"]):
        estimate = estimate_log_likelihood(model, data, subset, samples=4, chunk=5)
        assert estimate.shape == (3,) and estimate.dtype == torch.float64 and torch.isfinite(estimate).all()

    def run(seed):
        fetch = lambda i: {m: x[i] for m, x in data.items()}  # noqa: E731
        return evaluate_log_likelihood(model, fetch, 3, samples=4, chunk=8, seed=seed, ess_floor=2, progress=False)

    out = run(0)
    assert set(out) == {"joint", "a", "b", "estimator", "quality"}
    assert set(out["estimator"]) == {"samples", "pairs", "prior", "weighted", "proposal_scale"}
    assert all(math.isfinite(out[k]) for k in ("joint", "a", "b"))
    assert out["joint"] < out["a"] and out["joint"] < out["b"]  # Bernoulli: every log p(x_m | z) < 0
    assert run(0) == out and run(1) != out  # seeded


@pytest.mark.parametrize("name", ["mmvae", "mmvae_plus"])
def test_laplace_models_give_finite_estimates(name):
    """MMVAE's published setting: Laplace posterior, prior (learned scale) and likelihood."""
    torch.set_default_dtype(torch.float32)
    model = make_model(name, posterior="laplace", likelihood={"family": "laplace", "scale": 0.75}).eval()
    data = make_batch(n=2, seed=1)
    estimate = estimate_log_likelihood(model, data, ["a", "b"], samples=4, chunk=8)
    assert estimate.shape == (2,) and torch.isfinite(estimate).all()


def test_bad_settings_and_batches_are_refused():
    model = LinearGaussian()
    batch = model.sample_pairs(2, seed=0)
    with pytest.raises(ValueError, match="samples, chunk and pairs >= 1"):
        evaluate_log_likelihood(model, lambda i: batch, 2, samples=0, chunk=10, seed=0, ess_floor=2)
    with pytest.raises(ValueError, match=r"lacks modalities \['y'\]"):
        estimate_log_likelihood(model, {"x": batch["x"]}, ["x", "y"], 2, 10)


# ------------------------------------------------------------- the evaluation stage
def test_evaluate_model_reports_the_log_likelihood_when_asked(toy_data):
    from mgmvae.evaluation.run import evaluate_model
    from mgmvae.nets import digit_classifier

    torch.set_default_dtype(torch.float32)
    model = make_model("mvae", shapes=toy_data.shapes, likelihood={"family": "bernoulli", "scale": 0.75})
    classifiers = {m: digit_classifier(toy_data.shape(m), "mmvae").eval() for m in toy_data.modalities}
    settings = evaluation_settings(
        batch_size=16, probe_max_train=32, probe_folds=2, max_cluster=16, joint_coherence_samples=16, quality_samples=16
    )
    likelihood = {"likelihood_samples": 3, "likelihood_pairs": 5, "likelihood_chunk": 4}
    out = evaluate_model(model, toy_data, classifiers, settings | likelihood, seed=0, protocol="mean")
    ll = out["log_likelihood"]
    assert ll["estimator"] == {
        "samples": 3,
        "pairs": 5,
        "prior": "standard gaussian",
        "weighted": False,
        "proposal_scale": 1.0,
    }
    assert ll["joint"] < min(ll["a"], ll["b"]) < 0
    skipped = settings | {"likelihood_samples": 0}  # K = 0 skips the metric
    assert "log_likelihood" not in evaluate_model(model, toy_data, classifiers, skipped, seed=0, protocol="mean")
