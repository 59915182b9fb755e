"""MMVAE+ (Palumbo, Daunhawer & Vogt, ICLR 2023): mixture-of-experts multimodal VAE with
modality-specific latents and auxiliary priors.

Latents: a shared z with q(z | x_1:M) = (1/M) Σ_m q(z | x_m) (MMVAE's mixture) and a private w_m
per modality with q(w_m | x_m). Priors: p(z) the standard prior of the posterior family, p(w_m) =
N(0, I). Auxiliary priors r_d(w) = N(0, diag exp(ρ_d)) with a learnable log-variance ρ_d per
modality (initialised 0), as MMVAE+'s auxiliary prior with learnable scale.

Objective, sampled stratified over the present modalities m (as MMVAE, "looser": average over
strata outside the log): z_m ~ q(z | x_m), w_m ~ q(w_m | x_m), and for every target d

    self  (d = m):  x_m is decoded from (z_m, w_m);
    cross (d ≠ m):  x_d is decoded from (z_m, w̃_d) with w̃_d ~ r_d(w) (reparameterised, so ρ_d
                    learns through the cross reconstruction);

    log W_m = Σ_d w_d log p(x_d | z_m, ·) + β [log p(z_m) + log p(w_m) − log q_mix(z_m) − log q(w_m | x_m)]

  ``elbo``: (1/M) Σ_m mean_k log W_mk; ``iwae``: (1/M) Σ_m log mean_k W_mk; ``dreg``: the iwae
  value with DReG gradients for z and w (as our MMVAE; with K=1 it is sticking-the-landing).
  β multiplies the log-density ratio inside the weight, as the reference code (and IDMVAE's).
Defaults: ``objective: elbo``, ``k: 1`` (CPU budget; K=1 makes all three equal in value),
``beta: 2.5`` (MMVAE+'s PolyMNIST value, also IDMVAE's). Missing modality: the strata and targets
are the present modalities only.
Evaluation (protocols in mgmvae/base.py): ``embed`` is the mixture mean (a draw under ``sample``);
``generate`` decodes the target with w at the prior mean (``mean``) or drawn from p(w) = N(0, I)
(``sample``, as the reference); ``translate`` takes the style reference's w (base class).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.mmvae import check_importance_params
from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import DiagGaussian, MixtureOfExperts, log_mean_exp


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
    # (not the auxiliary prior r_d: the base ``private_prior``); ``unconditional_coherence_and_lr``
    # fits the latent classifier on posterior draws (``qu_x(...).rsample()``).
    reference_protocol = "sample"
    embeds_sample = True

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        check_importance_params(self.name, self.params)
        if self.private_dim < 1:
            raise ValueError(f"{self.name} needs private_dim >= 1")
        self.aux_logvar = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.private_dim)) for m in self.modalities})

    def joint_posterior(self, encoded) -> MixtureOfExperts:
        return MixtureOfExperts([q for q, _ in encoded.values()])

    def auxiliary_prior(self, modality: str, like: Tensor) -> DiagGaussian:
        return DiagGaussian(torch.zeros_like(like), self.aux_logvar[modality].clamp(-12, 8).expand_as(like))

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
