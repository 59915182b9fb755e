"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): mixture-of-experts multimodal VAE with
modality-specific latents and auxiliary priors.

Latents: a shared z with q(z | x_1:M) = (1/M) Σ_m q(z | x_m) (MMVAE's mixture) and a private w_m per
modality with q(w_m | x_m), all of the ``posterior`` family: ``laplace``, the reference's
(epalu/mmvaeplus, src/models/vae_polymnist.py ``PolyMNIST``; scales softmax(raw)·D + 10⁻⁶, ``Enc.forward``;
unit prior Laplace(0, 1), ``pu_params`` in src/models/mmvae_polymnist.py; auxiliary prior
r_d(w) = Laplace(0, softmax(ρ_d)·D_w), ``pw_params``), or ``gaussian``, srl-ethz/mmvaeplus's
``--priorposterior Normal`` (Normal priors of scale softplus(·) + η: p(z) p(w_m) = N(0, 0.693²),
r_d(w) = N(0, (softplus(ρ_d) + η)²); ``prior_scale: unit``: N(0, I) and N(0, exp ρ_d)); ρ_d learnable
from 0. Both variants and the departures: docs/models.md, "MMVAE+ against its official code".

Objective, stratified over the present modalities m ("looser", as MMVAE): z_m ~ q(z | x_m),
w_m ~ q(w_m | x_m), and every target d decoded from (z_m, w_m) if d = m, else from (z_m, w̃_d) with
w̃_d ~ r_d(w) reparameterised (so ρ_d learns through the cross reconstruction):

    log W_m = Σ_d w_d log p(x_d | z_m, ·) + β [log p(z_m) + log p(w_m) − log q_mix(z_m) − log q(w_m | x_m)]

  ``elbo``: (1/M) Σ_m mean_k log W_mk; ``iwae``: (1/M) Σ_m log mean_k W_mk; ``dreg``: what both
  official ``m_dreg`` compute, the iwae gradient (epalu/mmvaeplus src/objectives.py ``_m_dreg``).
  β multiplies the log-density ratio inside the weight, as the reference code (and IDMVAE's).
M modalities: every stratum decodes every target (epalu/mmvaeplus, src/models/mmvae.py
``MMVAE.forward``; src/objectives.py ``_m_iwae`` averages over the strata). ``generate`` under
``sample`` draws w from the unit prior p(w) (srl-ethz/mmvaeplus ``self_and_cross_modal_generation_forward``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, PositiveInt
from torch import Tensor, nn

from baselines.mmvae import Objective
from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import (
    DiagGaussian,
    DiagLaplace,
    MixtureOfExperts,
    log_mean_exp,
    softmax_scale,
    standard_prior,
)


class MMVAEPlus(MultimodalVAE):
    name = "mmvae_plus"
    label, colour = "MMVAE+", "tab:orange"
    uses_private = private_in_family = True

    class Params(MultimodalVAE.Params):  # the module docstring
        objective: Objective = "elbo"  # both references' released runs: --obj elbo --K 1 (their m_elbo = iwae at K=1)
        k: PositiveInt = 1  # larger K multiplies the cost
        beta: NonNegativeFloat = 2.5  # MMVAE+'s PolyMNIST value (also IDMVAE's)
        prior_scale: Literal["softplus", "unit"] = "softplus"  # srl-ethz/mmvaeplus's Normal priors; unit: N(0, I)

    eta = 1e-20  # srl-ethz/mmvaeplus mmvaeplus/utils.py, Constants.eta: added to every softplus scale
    # epalu/mmvaeplus: src/models/mmvae.py ``reconstruct_and_cross_reconstruct_forw`` decodes a draw with
    # w from the unit prior; src/main_polymnist.py ``unconditional_coherence_and_lr`` probes draws.
    reference_protocol = "sample"
    embeds_sample = True

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        if self.private_dim < 1:
            raise ValueError(f"{self.name} needs private_dim >= 1")
        # ρ_d: the auxiliary prior's raw scale (a log-variance under gaussian, softmax logits under laplace)
        self.aux_logvar = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.private_dim)) for m in self.modalities})

    def joint_posterior(self, encoded) -> MixtureOfExperts:
        return MixtureOfExperts([q for q, _ in encoded.values()])

    def softplus_scales(self) -> bool:
        """Whether the priors are Normals of scale softplus(·) + η (``laplace`` ignores ``prior_scale``)."""
        return self.params["prior_scale"] == "softplus" and self.posterior_family == "gaussian"

    def softplus_normal(self, raw: Tensor, like: Tensor) -> DiagGaussian:
        """N(0, (softplus(raw) + η)²)."""
        std = F.softplus(raw) + self.eta
        return DiagGaussian(torch.zeros_like(like), (2.0 * std.log()).expand_as(like))

    def prior(self, like: Tensor):
        return self.softplus_normal(like.new_zeros(()), like) if self.softplus_scales() else super().prior(like)

    def private_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:  # type: ignore[override]  # Laplace family too
        """The unit prior p(w_m): N(0, 0.693²) (``softplus``), N(0, I) (``unit``) or Laplace(0, 1) (``laplace``)."""
        if self.softplus_scales():
            return self.softplus_normal(like.new_zeros(()), like)
        return standard_prior(self.posterior_family, like)

    def auxiliary_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:
        """r_d(w) of the module docstring (``laplace``: no η, as epalu/mmvaeplus ``pw_params``)."""
        raw = self.aux_logvar[modality]
        if self.posterior_family == "laplace":
            return DiagLaplace(torch.zeros_like(like), softmax_scale(raw).expand_as(like))
        if self.softplus_scales():
            return self.softplus_normal(raw, like)
        return DiagGaussian(torch.zeros_like(like), raw.clamp(-12, 8).expand_as(like))

    # ---------------------------------------------------------------- objective
    def elbo_terms(self, batch: Batch, encoded, k: int):
        """log W [M, K, B] and its parts, every density attached (as the references, ``dreg`` too)."""
        present = list(encoded)
        q_z = self.joint_posterior(encoded)
        z = q_z.rsample_stratified(k)  # [M, K, B, D]
        w = torch.stack([encoded[m][1].rsample(k) for m in present])  # [M, K, B, P]
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
        log_qw = torch.stack([encoded[m][1].log_prob(w[i]) for i, m in enumerate(present)])
        kl_z = q_z.log_prob(z) - log_pz  # single-sample log q/p, [M, K, B]
        kl_w = log_qw - log_pw
        beta = float(self.params["beta"])
        lw = sum(recon.values()) - beta * (kl_z + kl_w)
        return lw, recon, kl_z, kl_w

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        terms, value = self.elbo_loss(batch, encoded)
        return {"loss": -value, **terms}

    def elbo_loss(self, batch: Batch, encoded) -> tuple[dict[str, Tensor], Tensor]:
        objective = self.params["objective"]
        k = 1 if objective == "elbo" else int(self.params["k"])
        lw, recon, kl_z, kl_w = self.elbo_terms(batch, encoded, k)
        bound = (lw.mean(1) if objective == "elbo" else log_mean_exp(lw, dim=1)).mean(0)  # [B]; dreg: as iwae
        value = bound.mean()
        present = list(encoded)
        terms = {}
        for d, r in recon.items():  # r: [M, K, B], stratum i decodes d from modality present[i]'s z
            for i, m in enumerate(present):
                terms[f"recon_{d}" + ("" if m == d else f"_from_{m}")] = r[i].mean()
        terms.update({"kl_z": kl_z.mean(), "kl_w": kl_w.mean(), "bound": bound.mean().detach()})
        return terms, value
