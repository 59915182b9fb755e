"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): mixture-of-experts multimodal VAE with
modality-specific latents and auxiliary priors.

Latents: a shared z with q(z | x_1:M) = (1/M) Σ_m q(z | x_m) (MMVAE's mixture) and a private w_m
per modality with q(w_m | x_m). Every distribution of z and w is of the ``posterior`` family, a
switch of the settings:

- ``laplace``, the reference's (epalu/mmvaeplus, src/models/vae_polymnist.py ``PolyMNIST``: prior,
  likelihood and posterior all ``dist.Laplace``; the ``published`` preset): posteriors with scales
  softmax(raw)·D + 10⁻⁶ over each latent's own dimensions (``Enc.forward``, η = ``Constants.eta``
  in src/utils.py); the unit prior p(z) p(w_m) = Laplace(0, 1) (``pu_params``: softmax(0)·D = 1,
  fixed; src/models/mmvae_polymnist.py); the auxiliary prior r_d(w) = Laplace(0, softmax(ρ_d)·D_w),
  ρ_d learnable from 0 (``pw_params``), so its scales are tied: they sum to D_w.
- ``gaussian`` (the paper setting's identical settings): N(·, exp(logvar)) posteriors, p(z) p(w_m)
  = N(0, I) and r_d(w) = N(0, diag exp(ρ_d)), ρ_d learnable from 0.

Objective, sampled stratified over the present modalities m (as MMVAE, "looser": average over
strata outside the log): z_m ~ q(z | x_m), w_m ~ q(w_m | x_m), and for every target d

    self  (d = m):  x_m is decoded from (z_m, w_m);
    cross (d ≠ m):  x_d is decoded from (z_m, w̃_d) with w̃_d ~ r_d(w) (reparameterised, so ρ_d
                    learns through the cross reconstruction);

    log W_m = Σ_d w_d log p(x_d | z_m, ·) + β [log p(z_m) + log p(w_m) − log q_mix(z_m) − log q(w_m | x_m)]

  ``elbo``: (1/M) Σ_m mean_k log W_mk; ``iwae``: (1/M) Σ_m log mean_k W_mk; ``dreg``: the iwae
  value with DReG gradients for z and w (as our MMVAE; with K=1 it is sticking-the-landing).
  β multiplies the log-density ratio inside the weight, as the reference code (and IDMVAE's).
M modalities: as written, over the M present modalities: every stratum m decodes every target d,
cross targets with w̃_d from r_d (epalu/mmvaeplus, src/models/mmvae.py ``MMVAE.forward`` fills the
off-diagonal of ``px_us`` from each source's z and a draw of the target's ``pw``; src/objectives.py
``_m_iwae`` and ``_m_dreg`` sum over the targets and average over the strata; the PolyMNIST model,
src/models/mmvae_polymnist.py ``PolyMNIST_5modalities``, is that class with five VAEs). Cost per
step: O(M² K) decoder rows (M·K draws, each decoded by M decoders).
Defaults: ``objective: elbo``, ``k: 1`` (CPU budget; K=1 makes all three equal in value),
``beta: 2.5`` (MMVAE+'s PolyMNIST value, also IDMVAE's). Missing modality: the strata and targets
are the present modalities only.
Evaluation (protocols in mgmvae/base.py): ``embed`` is the mixture mean (a draw under ``sample``);
``generate`` decodes the target with w at the prior mean (``mean``) or drawn from the unit prior
p(w) (``sample``, as the reference); ``translate`` takes the style reference's w (base class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from baselines.mmvae import check_importance_params
from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import (
    DiagGaussian,
    DiagLaplace,
    MixtureOfExperts,
    log_mean_exp,
    posterior,
    softmax_scale,
    standard_prior,
)


def dreg_value(lw: Tensor, latents: list[Tensor], bound: Tensor) -> Tensor:
    """The IWAE value ``bound.mean()`` whose gradient is the DReG estimator: normalised weights
    w̃ over the K dimension (dim 1 of ``lw`` [M, K, B]); the latents sampled from q get their
    incoming gradient scaled once more by w̃ (encoder path w̃²), everything else gets w̃."""
    w = torch.softmax(lw.detach(), dim=1)
    for latent in latents:
        if latent.requires_grad:
            latent.register_hook(lambda grad: grad * w.unsqueeze(-1))
    surrogate = (w * lw).sum(1).mean()
    return bound.mean().detach() + surrogate - surrogate.detach()


class MMVAEPlus(MultimodalVAE):
    name = "mmvae_plus"
    uses_private = True
    default_params = {"objective": "elbo", "k": 1, "beta": 2.5}
    # epalu/mmvaeplus, src/models/mmvae.py ``reconstruct_and_cross_reconstruct_forw`` (used by
    # ``cross_coherence`` in src/main_polymnist.py): z a posterior draw, w drawn from the unit prior
    # (not the auxiliary prior r_d: ``private_prior``); ``unconditional_coherence_and_lr``
    # fits the latent classifier on posterior draws (``qu_x(...).rsample()``).
    reference_protocol = "sample"
    embeds_sample = True

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        check_importance_params(self.name, self.params)
        if self.private_dim < 1:
            raise ValueError(f"{self.name} needs private_dim >= 1")
        # ρ_d: the auxiliary prior's raw scale (a log-variance under gaussian, softmax logits under laplace)
        self.aux_logvar = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.private_dim)) for m in self.modalities})

    def encode(self, batch: Batch, modalities: Sequence[str] | None = None) -> dict[str, tuple[Any, Any]]:
        """Shared and private posteriors, both of the ``posterior`` family (the base class keeps
        private posteriors Gaussian)."""
        out = {}
        for m in self.present(batch, modalities):
            e = self.encoders[m](batch[m])
            shared = posterior(self.posterior_family, e.shared_loc, e.shared_scale)
            out[m] = (shared, posterior(self.posterior_family, e.private_loc, e.private_scale))
        return out

    def joint_posterior(self, encoded) -> MixtureOfExperts:
        return MixtureOfExperts([q for q, _ in encoded.values()])

    def private_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:  # type: ignore[override]  # Laplace family too
        """The unit prior p(w_m): N(0, I), or Laplace(0, 1) under ``laplace`` (the reference's ``pu``)."""
        return standard_prior(self.posterior_family, like)

    def auxiliary_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:
        """r_d(w): N(0, diag exp(ρ_d)), or Laplace(0, softmax(ρ_d)·D_w) under ``laplace`` (the
        reference's ``pw_params``, no η)."""
        raw = self.aux_logvar[modality]
        if self.posterior_family == "laplace":
            return DiagLaplace(torch.zeros_like(like), softmax_scale(raw).expand_as(like))
        return DiagGaussian(torch.zeros_like(like), raw.clamp(-12, 8).expand_as(like))

    # ---------------------------------------------------------------- objective
    def elbo_terms(self, batch: Batch, encoded, k: int, dreg: bool):
        """log W [M, K, B], its parts, and the sampled (z, w) [M, K, B, ·]."""
        present = list(encoded)
        q_z = self.joint_posterior(encoded)
        z = q_z.rsample_stratified(k)  # [M, K, B, D]
        w = torch.stack([encoded[m][1].rsample(k) for m in present])  # [M, K, B, P]
        q_density = q_z.detach() if dreg else q_z
        recon = {}
        for d in present:
            h = torch.stack(
                [
                    w[i] if m == d else self.auxiliary_prior(d, w[i]).rsample()  # rsample of shape like w[i]
                    for i, m in enumerate(present)
                ]
            )
            recon[d] = self.log_likelihood(d, batch[d], z, h)  # type: ignore[arg-type]  # [M, K, B]; d is present
        log_pz = self.prior(z).log_prob(z)
        log_pw = torch.stack([self.private_prior(m, w[i]).log_prob(w[i]) for i, m in enumerate(present)])
        log_qw = torch.stack(
            [(encoded[m][1].detach() if dreg else encoded[m][1]).log_prob(w[i]) for i, m in enumerate(present)]
        )
        kl_z = q_density.log_prob(z) - log_pz  # single-sample log q/p, [M, K, B]
        kl_w = log_qw - log_pw
        beta = float(self.params["beta"])
        lw = sum(recon.values()) - beta * (kl_z + kl_w)
        return lw, recon, kl_z, kl_w, z, w

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        terms, value = self.elbo_loss(batch, encoded)
        return {"loss": -value, **terms}

    def elbo_loss(self, batch: Batch, encoded) -> tuple[dict[str, Tensor], Tensor]:
        objective = self.params["objective"]
        k = 1 if objective == "elbo" else int(self.params["k"])
        dreg = objective == "dreg"
        lw, recon, kl_z, kl_w, z, w = self.elbo_terms(batch, encoded, k, dreg)
        bound = (lw.mean(1) if objective == "elbo" else log_mean_exp(lw, dim=1)).mean(0)  # [B]
        value = dreg_value(lw, [z, w], bound) if dreg else bound.mean()
        present = list(encoded)
        terms = {}
        for d, r in recon.items():  # r: [M, K, B], stratum i decodes d from modality present[i]'s z
            for i, m in enumerate(present):
                terms[f"recon_{d}" + ("" if m == d else f"_from_{m}")] = r[i].mean()
        terms.update({"kl_z": kl_z.mean(), "kl_w": kl_w.mean(), "bound": bound.mean().detach()})
        return terms, value
