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
- ``gaussian``, srl-ethz/mmvaeplus's ``--priorposterior Normal`` (mmvaeplus/models/mmvaeplus_polyMNIST.py
  ``pz_params``, ``pw_params``; vae_polyMNIST_single_modality.py ``pw_params_aux``): Normal priors of
  scale softplus(·) + η (``prior_scale: softplus``): p(z) p(w_m) = N(0, 0.693²), r_d(w) = N(0,
  (softplus(ρ_d) + η)²), ρ_d learnable from 0; ``unit``: N(0, I) and N(0, exp ρ_d). Departure: the
  posterior's scale comes from the shared encoder's log-variance head (theirs: softplus(raw) + η).

Objective, sampled stratified over the present modalities m (as MMVAE, "looser": average over
strata outside the log): z_m ~ q(z | x_m), w_m ~ q(w_m | x_m), and for every target d

    self  (d = m):  x_m is decoded from (z_m, w_m);
    cross (d ≠ m):  x_d is decoded from (z_m, w̃_d) with w̃_d ~ r_d(w) (reparameterised, so ρ_d
                    learns through the cross reconstruction);

    log W_m = Σ_d w_d log p(x_d | z_m, ·) + β [log p(z_m) + log p(w_m) − log q_mix(z_m) − log q(w_m | x_m)]

  ``elbo``: (1/M) Σ_m mean_k log W_mk; ``iwae``: (1/M) Σ_m log mean_k W_mk; ``dreg``: what both
  official ``m_dreg`` compute (epalu/mmvaeplus src/objectives.py, srl-ethz/mmvaeplus
  mmvaeplus/objectives.py): densities attached, and a w̃ hook on a copy outside the loss's graph
  that never fires, so the iwae gradient (docs/models.md; our MMVAE's ``dreg`` is Tucker et al.'s).
  β multiplies the log-density ratio inside the weight, as the reference code (and IDMVAE's).
M modalities: as written, over the M present modalities: every stratum m decodes every target d,
cross targets with w̃_d from r_d (epalu/mmvaeplus, src/models/mmvae.py ``MMVAE.forward`` fills the
off-diagonal of ``px_us`` from each source's z and a draw of the target's ``pw``; src/objectives.py
``_m_iwae`` and ``_m_dreg`` sum over the targets and average over the strata; the PolyMNIST model,
src/models/mmvae_polymnist.py ``PolyMNIST_5modalities``, is that class with five VAEs). Cost per
step: O(M² K) decoder rows (M·K draws, each decoded by M decoders). Defaults: ``MMVAEPlus.Params``.
Missing modality: the strata and targets are the present modalities only.
Evaluation (protocols and ``evaluation.mixture_reading`` in mgmvae/base.py): ``generate`` decodes
the target with w at the prior mean (``mean``) or drawn from the unit prior p(w) (``sample``, as
srl-ethz/mmvaeplus ``self_and_cross_modal_generation_forward``); ``translate`` takes the style
reference's w (base class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

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
    posterior,
    softmax_scale,
    standard_prior,
)


class MMVAEPlus(MultimodalVAE):
    name = "mmvae_plus"
    label, colour = "MMVAE+", "tab:orange"
    uses_private = True

    class Params(MultimodalVAE.Params):  # the module docstring
        objective: Objective = "elbo"  # both references' released runs: --obj elbo --K 1 (their m_elbo = iwae at K=1)
        k: PositiveInt = 1  # larger K multiplies the cost
        beta: NonNegativeFloat = 2.5  # MMVAE+'s PolyMNIST value (also IDMVAE's)
        prior_scale: Literal["softplus", "unit"] = "softplus"  # srl-ethz/mmvaeplus's Normal priors; unit: N(0, I)

    eta = 1e-20  # srl-ethz/mmvaeplus mmvaeplus/utils.py, Constants.eta: added to every softplus scale
    # epalu/mmvaeplus, src/models/mmvae.py ``reconstruct_and_cross_reconstruct_forw`` (used by
    # ``cross_coherence`` in src/main_polymnist.py): z a posterior draw, w drawn from the unit prior
    # (not the auxiliary prior r_d: ``private_prior``); ``unconditional_coherence_and_lr``
    # fits the latent classifier on posterior draws (``qu_x(...).rsample()``).
    reference_protocol = "sample"
    embeds_sample = True

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
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

    def softplus_scales(self) -> bool:
        """Whether the priors are Normals of scale softplus(·) + η (``prior_scale: softplus`` under
        ``gaussian``); ``laplace`` keeps the reference's softmax·D scales whatever it says."""
        return self.params["prior_scale"] == "softplus" and self.posterior_family == "gaussian"

    def softplus_normal(self, raw: Tensor, like: Tensor) -> DiagGaussian:
        """N(0, (softplus(raw) + η)²), the references' Normal prior parameters (module docstring)."""
        std = F.softplus(raw) + self.eta
        return DiagGaussian(torch.zeros_like(like), (2.0 * std.log()).expand_as(like))

    def prior(self, like: Tensor):
        return self.softplus_normal(like.new_zeros(()), like) if self.softplus_scales() else super().prior(like)

    def private_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:  # type: ignore[override]  # Laplace family too
        """The unit prior p(w_m): N(0, s²) (``softplus``), N(0, I) (``unit``), or Laplace(0, 1) under
        ``laplace`` (the references' ``pw_params``/``pu``), which the sampled evaluation draws from."""
        if self.softplus_scales():
            return self.softplus_normal(like.new_zeros(()), like)
        return standard_prior(self.posterior_family, like)

    def auxiliary_prior(self, modality: str, like: Tensor) -> DiagGaussian | DiagLaplace:
        """r_d(w): N(0, (softplus(ρ_d) + η)²) (``softplus``), N(0, diag exp(ρ_d)) (``unit``), or
        Laplace(0, softmax(ρ_d)·D_w) under ``laplace`` (epalu/mmvaeplus ``pw_params``, no η)."""
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
