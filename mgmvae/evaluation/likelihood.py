"""Test log-likelihood: importance-sampled log p(x_S) for every model, under its own prior; the
stratified mixture proposal, ``proposal_scale``, Kish's ESS and why: docs/evaluation.md ("Test
log-likelihood"). For a set S of modalities (all of them: the joint log p(x, y); one: log p(x_m)),
with shared latent z and private latents h_m (models without them skip every h term):

    log p̂(x_S) = log (1/K) Σ_k w_k,
    log w_k = Σ_{m∈S} w_m log p(x_m | z_k, h_mk) + log p(z_k) − log q(z_k | x_S)
              + Σ_{m∈S} [log p(h_mk) − log q(h_mk | x_m)],
    z_k ~ q(z | x_S) = the model's ``joint_posterior`` of the modalities in S,  h_mk ~ q(h_m | x_m).

E[p̂] = p(x_S): log p̂ is a stochastic lower bound (IWAE) rising towards log p(x_S) with K. The priors
are the model's ``log_prior`` and ``log_private_prior``; w_m = 1 unless ``weighted``, which weighs the
joint estimate only, as MMVAE (iffsid/mmvae, src/report/calculate_likelihoods.py, ``m_iwae``:
``.mul(model.vaes[d].llik_scaling)``; its ``cross_iwaes`` leave the unimodal ones unweighted); MGMVAE's
``recon_scale`` never enters. Weights are summed in float64; draws are seeded and the global RNG restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mgmvae.distributions import DiagGaussian, DiagLaplace, MixtureOfExperts, log_mean_exp

Batch = Mapping[str, Tensor]


class DensityModel(Protocol):
    """What the estimator reads of a model (``mgmvae.base.MultimodalVAE`` offers all of it)."""

    modalities: list[str]
    weights: dict[str, float]
    likelihood: Any  # ``log_prob(decoder output, x)`` summed over pixels

    def encode(self, batch: Batch, modalities: Sequence[str] | None = None) -> dict[str, tuple[Any, Any]]: ...
    def joint_posterior(self, encoded: Mapping[str, tuple[Any, Any]]) -> Any: ...
    def decode(self, modality: str, z: Tensor, h: Tensor | None = None) -> Tensor: ...
    def log_prior(self, z: Tensor) -> Tensor: ...
    def log_private_prior(self, modality: str, h: Tensor) -> Tensor: ...
    def prior_name(self) -> str: ...


def components(q: Any) -> int:
    """Number of strata of a proposal: a uniform mixture's components, else 1."""
    return len(q.experts) if isinstance(q, MixtureOfExperts) else 1


def widened(q: Any, scale: float) -> Any:
    """The proposal q with every factor's standard deviation (Gaussian) or scale (Laplace) times ``scale``."""
    if scale == 1.0:
        return q
    if isinstance(q, MixtureOfExperts):
        return MixtureOfExperts([widened(e, scale) for e in q.experts])
    if isinstance(q, DiagGaussian):
        return DiagGaussian(q.mu, q.logvar + 2.0 * math.log(scale))
    if isinstance(q, DiagLaplace):
        return DiagLaplace(q.loc, q.scale * scale)
    raise TypeError(f"cannot widen a {type(q).__name__} proposal: set evaluation.likelihood_proposal_scale to 1")


def draw(q: Any, n: int) -> Tensor:
    """n draws [n, B, D] from a proposal; a uniform mixture stratified, n/M from each component."""
    if isinstance(q, MixtureOfExperts):
        per, rest = divmod(n, len(q.experts))
        if rest:
            raise ValueError(f"{n} draws cannot be split evenly over {len(q.experts)} mixture components")
        return q.rsample_stratified(per).flatten(0, 1)
    return q.rsample(n)


def log_weights(model: DensityModel, batch: Batch, encoded: Mapping, q: Any, n: int, weighted: bool) -> Tensor:
    """log w [n, B] (float64) for n fresh draws from q(z | x_S) Π_m q(h_m | x_m)."""
    z = draw(q, n)
    lw = (model.log_prior(z) - q.log_prob(z)).double()
    for m, (_, q_h) in encoded.items():
        h = None
        if q_h is not None:
            h = q_h.rsample(n)
            lw = lw + (model.log_private_prior(m, h) - q_h.log_prob(h)).double()
        scale = float(model.weights[m]) if weighted else 1.0
        lw = lw + scale * model.likelihood.log_prob(model.decode(m, z, h), batch[m]).double()
    return lw


@torch.no_grad()
def importance_log_weights(
    model: DensityModel,
    batch: Batch,
    subset: Sequence[str],
    samples: int,
    chunk: int,
    weighted: bool = False,
    proposal_scale: float = 1.0,
) -> Tensor:
    """log w [K, B] (float64) of ``samples`` draws per pair (K: rounded up to a multiple of a
    mixture's components), ``chunk`` draws × pairs at a time."""
    encoded = model.encode(batch, subset)
    if set(encoded) != set(subset):
        raise ValueError(f"the batch lacks modalities {sorted(set(subset) - set(encoded))} of {list(subset)}")
    q = widened(model.joint_posterior(encoded), proposal_scale)
    encoded = {m: (q_z, None if q_h is None else widened(q_h, proposal_scale)) for m, (q_z, q_h) in encoded.items()}
    m = components(q)
    total = math.ceil(samples / m) * m
    pairs = next(iter(batch[s] for s in subset)).shape[0]
    step = max(m, chunk // pairs // m * m)
    sizes = [min(step, total - start) for start in range(0, total, step)]  # the last part smaller
    return torch.cat([log_weights(model, batch, encoded, q, n, weighted) for n in sizes])


def effective_sample_size(lw: Tensor) -> Tensor:
    """Kish's ESS (Σw)²/Σw² of each pair's weights from their logs: [K, B] -> [B], in [1, K]."""
    return torch.exp(2.0 * torch.logsumexp(lw, dim=0) - torch.logsumexp(2.0 * lw, dim=0))


def quality(ess: Tensor, floor: float, draws: int) -> dict[str, Any]:
    """Mean ESS over pairs, the fraction of pairs under ``floor``, ``reliable`` (at most half under
    it) and the ``draws`` per pair the ESS is out of (K, rounded up for a mixture proposal)."""
    under = float((ess < floor).double().mean())
    return {"ess_mean": float(ess.mean()), "ess_under_floor": under, "reliable": under <= 0.5, "draws": draws}


@torch.no_grad()
def evaluate_log_likelihood(
    model: DensityModel,
    fetch: Callable[[Tensor], Batch],
    n_pairs: int,
    samples: int,
    chunk: int,
    seed: int,
    *,
    ess_floor: float,
    weighted: bool = False,
    proposal_scale: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean over pairs of log p̂(x, y) (``joint``) and of each log p̂(x_m) (under the modality's
    name), in nats; ``fetch(index)`` returns the batch of pairs ``index`` of range(n_pairs).
    ``estimator`` records K, the pair count, the prior, the weighting and the proposal; ``quality``
    whether the likelihood is a normalised density, the ESS floor and, per estimate, ``quality()``
    (both nested, so that tables reading the numbers beside a metric see only the estimates)."""
    if samples < 1 or chunk < 1 or n_pairs < 1:
        raise ValueError(f"log-likelihood needs samples, chunk and pairs >= 1, got {samples}, {chunk}, {n_pairs}")
    modalities = list(model.modalities)
    subsets = {"joint": modalities} | {m: [m] for m in modalities}
    per_batch = max(1, chunk // samples)  # all K draws of a pair in one decoder call when they fit
    totals = dict.fromkeys(subsets, 0.0)
    ess: dict[str, list[Tensor]] = {key: [] for key in subsets}
    draws = dict.fromkeys(subsets, 0)
    device = torch.device(getattr(model, "device", "cpu"))
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in tqdm(range(0, n_pairs, per_batch), desc="log-likelihood", disable=not progress, leave=False):
            batch = fetch(torch.arange(start, min(start + per_batch, n_pairs)))
            for key, subset in subsets.items():
                joint_weights = weighted and key == "joint"  # MMVAE weighs the joint estimate only
                lw = importance_log_weights(model, batch, subset, samples, chunk, joint_weights, proposal_scale)
                totals[key] += float(log_mean_exp(lw).sum())
                ess[key].append(effective_sample_size(lw).cpu())
                draws[key] = lw.shape[0]
    estimator = {
        "samples": samples,
        "pairs": n_pairs,
        "prior": model.prior_name(),
        "weighted": weighted,
        "proposal_scale": proposal_scale,
    }
    per_estimate = {key: quality(torch.cat(values), ess_floor, draws[key]) for key, values in ess.items()}
    report = {"normalised": bool(model.likelihood.normalised), "ess_floor": ess_floor} | per_estimate
    return {key: value / n_pairs for key, value in totals.items()} | {"estimator": estimator, "quality": report}
