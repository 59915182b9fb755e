"""MMVAE (Shi, Siddharth, Paige & Torr, NeurIPS 2019): mixture-of-experts posterior.

q(z | x_1:M) = (1/M) Σ_m q(z | x_m). Every objective samples stratified over the present
modalities (z_m ~ q(z | x_m), reconstructing all of them) and is the "looser" form of the
reference code (iffsid/mmvae, ``objectives.py``: ``m_iwae_looser``/``m_dreg_looser``), with the
average over modalities outside the log and the mixture density in the importance weight:

    log w(z) = Σ_d w_d log p(x_d | z) + log p(z) − log q_mix(z)
    elbo:  (1/M) Σ_m  log w(z_m),                     one z_m ~ q(z|x_m)   (KL by Monte Carlo)
    iwae:  (1/M) Σ_m  log (1/K) Σ_k w(z_mk),          K draws z_mk ~ q(z|x_m)
    dreg:  the iwae value; gradients by DReG (Tucker et al. 2019): log q_mix uses detached
           posterior parameters and the encoder's pathwise gradient is weighted by w̃², w̃ the
           normalised importance weights of a stratum; decoder and prior get the IWAE gradient.

Caveat (ours): DReG's identity needs the density in the weight to be the sampling density: so with
one modality present (unbiased), and with a mixture for K=1; biased for K>1, as in the reference code.
M modalities: M strata, each decoding all M modalities under the M-component mixture density
(``_m_dreg_looser`` and ``_m_iwae_looser`` loop over ``model.vaes`` and every decoder ``px_zs[r]``).
Prior: the posterior family's standard prior; ``learn_prior`` learns its scale (Gaussian log-variance,
Laplace softmax·D) with the location at 0, as MMVAE's ``pz_params``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveInt
from torch import Tensor, nn

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import MixtureOfExperts, log_mean_exp, posterior, standard_prior

Objective = Literal["elbo", "iwae", "dreg"]  # the module docstring


class MMVAE(MultimodalVAE):
    name = "mmvae"
    label, colour = "MMVAE", "tab:green"

    # MMVAE's MNIST-SVHN command: --obj dreg --K 30 --learn-prior --looser (iffsid/mmvae, README.md)
    class Params(MultimodalVAE.Params):
        objective: Objective = "dreg"  # DReG, "looser": the average over modalities outside the log
        k: PositiveInt = 30  # importance samples (elbo: 1)
        learn_prior: bool = True  # --learn-prior: a learned prior scale, location 0

    # iffsid/mmvae, src/report/analyse_ms.py: ``cross_coherence`` decodes a posterior draw,
    # ``classify_latents`` probes draws, ``joint_coherence`` decodes 10,000 draws of the learned prior.
    reference_protocol = "sample"
    embeds_sample = True

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        raw = torch.zeros(self.shared_dim)  # logvar 0 (Gaussian) / softmax(0)·D = 1 (Laplace)
        if self.params["learn_prior"]:
            self.prior_raw = nn.Parameter(raw)
        else:
            self.register_buffer("prior_raw", raw)

    # ------------------------------------------------------------------ pieces
    def prior(self, like: Tensor):
        if not self.params["learn_prior"]:
            return standard_prior(self.posterior_family, like)
        return posterior(self.posterior_family, torch.zeros_like(like), self.prior_raw.expand_as(like))

    def prior_name(self) -> str:
        return f"{self.posterior_family}, learned scale" if self.params["learn_prior"] else super().prior_name()

    def joint_posterior(self, encoded) -> MixtureOfExperts:
        """Uniform mixture of the present experts (one present: that expert alone)."""
        return MixtureOfExperts([q for q, _ in encoded.values()])

    def log_weights(self, batch: Batch, z: Tensor, q_density: MixtureOfExperts, present: list[str]):
        """log w for z [M, K, B, D] -> [M, K, B], and its parts."""
        recon = {m: self.log_likelihood(m, batch[m], z) for m in present}  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
        kl = q_density.log_prob(z) - self.prior(z).log_prob(z)  # single-sample log q/p
        return sum(recon.values()) - kl, recon, kl

    # ---------------------------------------------------------------- objective
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        present = list(encoded)
        q = self.joint_posterior(encoded)
        objective = self.params["objective"]
        k = 1 if objective == "elbo" else int(self.params["k"])
        z = q.rsample_stratified(k)  # [M, K, B, D]
        dreg = objective == "dreg"
        lw, recon, kl = self.log_weights(batch, z, q.detach() if dreg else q, present)
        bound = lw.mean(1) if objective == "elbo" else log_mean_exp(lw, dim=1)  # [M, B]
        bound = bound.mean(0)  # looser: average over strata outside the log
        value = self._dreg_objective(lw, z, bound) if dreg else bound.mean()
        terms = {f"recon_{m}": r.mean() for m, r in recon.items()}
        return {"loss": -value, "bound": bound.mean().detach(), **terms, "kl": kl.mean()}

    @staticmethod
    def _dreg_objective(lw: Tensor, z: Tensor, bound: Tensor) -> Tensor:
        """The IWAE value with the DReG gradient (as ``m_dreg_looser``): that of Σ_k w̃_k lw_k, w̃ fixed,
        z's incoming gradient scaled once more by w̃ (encoder path w̃², decoder and prior w̃)."""
        w = torch.softmax(lw.detach(), dim=1)  # normalised over the K samples of each stratum
        if z.requires_grad:
            z.register_hook(lambda grad: grad * w.unsqueeze(-1))
        surrogate = (w * lw).sum(1).mean()
        return bound.mean().detach() + surrogate - surrogate.detach()
