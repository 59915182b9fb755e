"""Posteriors, priors, likelihoods and KL terms: one implementation shared by every model.

Conventions: every distribution is diagonal over the last dimension; ``log_prob`` and ``kl`` sum
over that dimension (and over pixels for likelihoods) and keep the batch dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)
LOGVAR_MIN, LOGVAR_MAX = -12.0, 8.0  # keeps exp(logvar) finite in float32 and bf16


# --------------------------------------------------------------------------- posteriors
@dataclass
class DiagGaussian:
    mu: Tensor
    logvar: Tensor

    @property
    def var(self) -> Tensor:
        return self.logvar.exp()

    @property
    def std(self) -> Tensor:
        return (0.5 * self.logvar).exp()

    @property
    def mean(self) -> Tensor:
        return self.mu

    def rsample(self, n: int | None = None) -> Tensor:
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        return self.mu + self.std * torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype)

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (LOG_2PI + self.logvar + (z - self.mu).pow(2) / self.var).sum(-1)

    def kl(self, other: DiagGaussian) -> Tensor:
        """KL(self || other) in closed form."""
        return 0.5 * (other.logvar - self.logvar + (self.var + (self.mu - other.mu).pow(2)) / other.var - 1.0).sum(-1)

    def kl_standard_normal(self) -> Tensor:
        """KL(self || N(0, I)) in closed form."""
        return 0.5 * (self.var + self.mu.pow(2) - 1.0 - self.logvar).sum(-1)

    def detach(self) -> DiagGaussian:
        return DiagGaussian(self.mu.detach(), self.logvar.detach())


@dataclass
class DiagLaplace:
    """Laplace posterior/prior as MMVAE uses; ``scale`` is the Laplace scale b."""

    loc: Tensor
    scale: Tensor

    @property
    def mean(self) -> Tensor:
        return self.loc

    def rsample(self, n: int | None = None) -> Tensor:
        shape = self.loc.shape if n is None else (n, *self.loc.shape)
        u = torch.rand(shape, device=self.loc.device, dtype=self.loc.dtype) - 0.5
        u = u.clamp(-0.5 + 1e-6, 0.5 - 1e-6)
        return self.loc - self.scale * u.sign() * torch.log1p(-2.0 * u.abs())

    def log_prob(self, z: Tensor) -> Tensor:
        return (-math.log(2.0) - self.scale.log() - (z - self.loc).abs() / self.scale).sum(-1)

    def detach(self) -> DiagLaplace:
        return DiagLaplace(self.loc.detach(), self.scale.detach())


def softmax_scale(raw: Tensor) -> Tensor:
    """Laplace scales tied through a softmax, softmax(raw)·D over the last dimension (mean 1, and 1
    everywhere at raw = 0): MMVAE's and MMVAE+'s parameterisation of posterior and prior scales."""
    return F.softmax(raw, dim=-1) * raw.shape[-1]


def posterior(family: str, loc: Tensor, raw_scale: Tensor) -> DiagGaussian | DiagLaplace:
    """Build a posterior from an encoder head. ``raw_scale`` is a log-variance for Gaussians;
    for Laplace, MMVAE's parameterisation softmax(raw)·D + eps is used for the scale."""
    if family == "gaussian":
        return DiagGaussian(loc, raw_scale.clamp(LOGVAR_MIN, LOGVAR_MAX))
    if family == "laplace":
        return DiagLaplace(loc, softmax_scale(raw_scale) + 1e-6)
    raise ValueError(f"unknown posterior family {family!r}; use 'gaussian' or 'laplace'")


def standard_prior(family: str, like: Tensor) -> DiagGaussian | DiagLaplace:
    zeros = torch.zeros_like(like)
    if family == "gaussian":
        return DiagGaussian(zeros, zeros)
    # MMVAE's Laplace prior: loc 0, scale softmax(0)·D = 1 per dimension.
    return DiagLaplace(zeros, torch.ones_like(like))


def product_of_experts(experts: Sequence[DiagGaussian], prior_expert: bool = True) -> DiagGaussian:
    """Product of diagonal Gaussian experts, optionally with an N(0, I) prior expert (MVAE).

    precision = Σ 1/σ²_i (+1 for the prior);  μ = Σ μ_i/σ²_i / precision.
    A missing modality is simply not in ``experts``.
    """
    if not experts:
        raise ValueError("product_of_experts needs at least one expert")
    precisions = [(-e.logvar).exp() for e in experts]
    total = torch.stack(precisions).sum(0)
    weighted = torch.stack([e.mu * p for e, p in zip(experts, precisions, strict=True)]).sum(0)
    if prior_expert:
        total = total + 1.0  # N(0, I): precision 1, mean 0
    return DiagGaussian(weighted / total, -total.log())


def wasserstein_barycenter(experts: Sequence[DiagGaussian], weights: Sequence[float] | None = None) -> DiagGaussian:
    """2-Wasserstein barycenter of diagonal Gaussians: μ* = Σ λ μ, σ* = Σ λ σ
    (the closed form for commuting covariances, as MWB-VAE, Qiu et al., AAAI 2025, uses it)."""
    if weights is None:
        weights = [1.0 / len(experts)] * len(experts)
    mu = sum(w * e.mu for w, e in zip(weights, experts, strict=True))
    std = sum(w * e.std for w, e in zip(weights, experts, strict=True))
    return DiagGaussian(mu, 2.0 * std.log())  # type: ignore[arg-type, union-attr]  # sum() over >= 1 expert: a Tensor


def nonempty_subsets(names: Sequence[str]) -> list[list[str]]:
    """All 2^M − 1 non-empty subsets of ``names``, by size then in the given order (MoPoE)."""
    from itertools import combinations

    return [list(s) for k in range(1, len(names) + 1) for s in combinations(names, k)]


def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """log (1/n) Σ_i exp(x_i) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


@dataclass
class MixtureOfExperts:
    """Uniform mixture (1/M) Σ_m q_m of diagonal experts (MMVAE, Shi et al. 2019)."""

    experts: Sequence[DiagGaussian | DiagLaplace]

    @property
    def mean(self) -> Tensor:
        return torch.stack([q.mean for q in self.experts]).mean(0)

    def log_prob(self, z: Tensor) -> Tensor:
        """log q_mix(z) = log mean_m q_m(z); z: [..., B, D] -> [..., B]."""
        return log_mean_exp(torch.stack([q.log_prob(z) for q in self.experts]), dim=0)

    def rsample_stratified(self, n: int = 1) -> Tensor:
        """n reparameterised draws from each expert in turn: [M, n, B, D]."""
        return torch.stack([q.rsample(n) for q in self.experts])

    def detach(self) -> MixtureOfExperts:
        return MixtureOfExperts([q.detach() for q in self.experts])


# ------------------------------------------------------------------ mixture prior (VaDE)
class GaussianMixturePrior(nn.Module):
    """p(c) = Cat(softmax(logits)),  p(z | c=k) = N(μ_k, diag σ²_k), all learnable."""

    def __init__(self, n_components: int, dim: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.randn(n_components, dim))
        self.logvars = nn.Parameter(torch.zeros(n_components, dim))

    @property
    def n_components(self) -> int:
        return self.logits.shape[0]

    def log_weights(self) -> Tensor:
        return F.log_softmax(self.logits, dim=-1)

    def component_log_density(self, z: Tensor) -> Tensor:
        """log N(z; μ_k, σ²_k) for each component: [..., D] -> [..., K]."""
        logvars = self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)
        diff = z.unsqueeze(-2) - self.means
        return -0.5 * (LOG_2PI + logvars + diff.pow(2) / logvars.exp()).sum(-1)

    def responsibilities(self, z: Tensor) -> Tensor:
        """q(c | z) by Bayes' rule under the mixture: softmax_k(log π_k + log N(z; μ_k, σ²_k))."""
        return F.softmax(self.log_weights() + self.component_log_density(z), dim=-1)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.logsumexp(self.log_weights() + self.component_log_density(z), dim=-1)

    def component_kl(self, q: DiagGaussian) -> Tensor:
        """KL(q(z) || p(z | c=k)) for every k in closed form: [B, D] -> [B, K]."""
        logvars = self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)
        mu, logvar = q.mu.unsqueeze(-2), q.logvar.unsqueeze(-2)
        return 0.5 * (logvars - logvar + (logvar.exp() + (mu - self.means).pow(2)) / logvars.exp() - 1.0).sum(-1)

    def mixture_kl(self, q: DiagGaussian, gamma: Tensor) -> Tensor:
        """The λ1 term of Eq. 6: KL(q(c|z) || p(c)) + Σ_c q(c|z) KL(q(z) || p(z|c)), per sample."""
        categorical = (gamma * (gamma.clamp_min(1e-12).log() - self.log_weights())).sum(-1)
        return categorical + (gamma * self.component_kl(q)).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw (z, c) from the mixture."""
        c = torch.multinomial(self.log_weights().exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], device=self.means.device, generator=generator)
        std = (0.5 * self.logvars.clamp(LOGVAR_MIN, LOGVAR_MAX)).exp()
        return self.means[c] + std[c] * eps, c


# ------------------------------------------------------------------------- likelihoods
SERIES_BELOW = 0.1  # |logit| under which the continuous Bernoulli uses its Taylor series (no 0/0)


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """log C of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), elementwise in the logit l.

    C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ) with λ = sigmoid(l) is l / tanh(l/2), even in l, so
    log C = log|l| − log(1 − e^−|l|) + log(1 + e^−|l|), exact for every |l| (torch's
    ``ContinuousBernoulli`` clamps λ and stops growing past |l| ≈ 16 in float32), and
    log 2 + l²/12 − 7l⁴/1440 near 0, where the first form is 0/0."""
    a = logits.abs()
    safe = a.clamp_min(SERIES_BELOW)  # keeps the unused branch of ``where`` finite, gradients too
    exact = safe.log() - torch.log(-torch.expm1(-safe)) + F.softplus(-safe)
    series = math.log(2.0) + a.pow(2) / 12.0 - 7.0 * a.pow(4) / 1440.0
    return torch.where(a < SERIES_BELOW, series, exact)


def continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    """E[x] of the continuous Bernoulli: λ/(2λ − 1) + 1/(2 atanh(1 − 2λ)) = 1/(1 − e^−l) − 1/l in the
    logit l, and 1/2 + l/12 − l³/720 near 0, where the first form cancels."""
    small = logits.abs() < SERIES_BELOW
    safe = torch.where(small, torch.full_like(logits, SERIES_BELOW), logits)
    exact = -1.0 / torch.expm1(-safe) - 1.0 / safe
    series = 0.5 + logits / 12.0 - logits.pow(3) / 720.0
    return torch.where(small, series, exact)


class Likelihood:
    """p(x | decoder output). The decoder emits logits, one per pixel.

    - ``laplace``/``gaussian``: location = sigmoid(logits), fixed scale (MMVAE: Laplace, 0.75);
    - ``bernoulli``: binary cross-entropy on intensities in [0, 1] (DMVAE's choice); a density on
      {0, 1} only, so on grey levels it is not normalised;
    - ``continuous_bernoulli``: the normalised density on [0, 1] with the same logits,
      −BCE(logits, x) + log C(logits) (torch's ``ContinuousBernoulli``, with its normaliser in exact form).

    ``mean`` is the distribution's mean, what generation decodes: sigmoid(logits) for the first
    three, the continuous Bernoulli's own mean (not its λ) for the last.
    """

    FAMILIES = ("laplace", "gaussian", "bernoulli", "continuous_bernoulli")

    def __init__(self, family: str, scale: float):
        if family not in self.FAMILIES:
            raise ValueError(f"unknown likelihood {family!r}; choose one of {self.FAMILIES}")
        self.family, self.scale = family, float(scale)

    @property
    def normalised(self) -> bool:
        """Whether ``log_prob`` is the log of a density that integrates to 1 over the data's values
        (continuous Bernoulli on [0, 1], Gaussian and Laplace on the real line); a Bernoulli on grey
        levels is not, so its log-likelihoods are not comparable with a density's."""
        return self.family != "bernoulli"

    def mean(self, logits: Tensor) -> Tensor:
        if self.family == "continuous_bernoulli":
            return continuous_bernoulli_mean(logits)
        return torch.sigmoid(logits)

    def log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        """log p(x | logits) summed over all pixels: [..., C, H, W] -> [...]."""
        if self.family in ("bernoulli", "continuous_bernoulli"):
            ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
            if self.family == "continuous_bernoulli":
                ll = ll + continuous_bernoulli_log_norm(logits)
        elif self.family == "laplace":
            ll = -(torch.sigmoid(logits) - x).abs() / self.scale - math.log(2.0 * self.scale)
        else:
            ll = -0.5 * ((torch.sigmoid(logits) - x) / self.scale).pow(2) - math.log(self.scale) - 0.5 * LOG_2PI
        return ll.flatten(-3).sum(-1)
