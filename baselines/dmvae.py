"""DMVAE (Lee & Pavlovic, CVPR Workshops 2021): private-shared disentangled multimodal VAE.

Each modality m has a private latent h_m ~ q(h|x_m) and a unimodal shared posterior q(z|x_m);
the joint shared posterior is their product with an N(0, I) prior expert (code: ``apply_poe``).
Per modality m three ELBO terms, each with its own KLs (code: ``elbo`` in mnist_svhn/main.py):

    self:  E[log p(x_m | z ~ q(z|x_m), h_m)] − β_s KL(q(z|x_m)) − β_p KL(q(h_m|x_m))
    cross: E[log p(x_m | z ~ q(z|x_n), h_m)] − β_s KL(q(z|x_n)) − β_p KL(q(h_m|x_m))   (n ≠ m)
    poe:   E[log p(x_m | z ~ q_PoE(z),  h_m)] − β_s KL(q_PoE)     − β_p KL(q(h_m|x_m))

all KLs against N(0, I), in closed form (the code's β-TCVAE split, all three weights 1 by default,
equals it in expectation). ``poe_reconstruction``: the paper writes the PoE reconstruction term, the
released code (seqam-lab/DMVAE) sets ``reconst_loss_poeA = reconst_loss_poeB = 0`` and keeps the PoE
KLs; default false, as the code behind the published numbers. One draw each of h_m, z_m and z_PoE
serves every term that uses it. With a modality missing: the present one's self and PoE terms.
``embed`` from one modality uses its unimodal shared posterior (the code decodes cross-generations
from it too), from several the PoE.

M modalities (the code has two; the paper defines the terms per modality): per modality its self
term, one cross term from each other modality (summed) and its PoE term of all M experts. MultiVae's
DMVAE (AgatheSenellart/MultiVae, src/multivae/models/dmvae/dmvae_model.py ``DMVAE.forward``) sums the
same reconstructions but charges each shared KL once per source, not once per (target, source) term
as the released code does.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat
from torch import Tensor

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import DiagGaussian, product_of_experts


class DMVAE(MultimodalVAE):
    name = "dmvae"
    label, colour = "DMVAE", "tab:purple"
    uses_private = True

    class Params(MultimodalVAE.Params):  # the module docstring
        poe_reconstruction: bool = False  # the released code zeroes the PoE reconstruction terms the paper writes
        kl_shared_weight: NonNegativeFloat = 1.0  # the code's beta = (1, 1, 1): a β-TCVAE split with unit weights,
        kl_private_weight: NonNegativeFloat = 1.0  # the plain KL in expectation

    # seqam-lab/DMVAE, mnist_svhn/main.py ``cross_acc_prior``: a posterior draw, h from N(0, I); no probe.
    reference_protocol = "sample"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        if self.posterior_family != "gaussian":
            raise ValueError("dmvae needs posterior: gaussian (its product of experts is Gaussian)")

    def joint_posterior(self, encoded) -> DiagGaussian:
        experts = [q for q, _ in encoded.values()]
        return experts[0] if len(experts) == 1 else product_of_experts(experts, prior_expert=True)

    @staticmethod
    def term_sources(present: list[str], m: str) -> list[tuple[str, str]]:
        """(term, shared latent it decodes from) for modality m: self, one cross per other, poe."""
        return [("self", m)] + [(f"cross_{n}", n) for n in present if n != m] + [("poe", "poe")]

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        present = list(encoded)
        shared = {m: encoded[m][0] for m in present}
        shared["poe"] = product_of_experts(list(shared.values()), prior_expert=True)
        z = {s: q.rsample() for s, q in shared.items()}
        kl_shared = {s: q.kl_standard_normal() for s, q in shared.items()}
        beta_s, beta_p = float(self.params["kl_shared_weight"]), float(self.params["kl_private_weight"])
        total, terms = 0.0, {}
        for m in present:
            q_h = encoded[m][1]
            h, kl_h = q_h.rsample(), q_h.kl_standard_normal()
            sources = self.term_sources(present, m)
            decoded = [(t, s) for t, s in sources if t != "poe" or self.params["poe_reconstruction"]]
            zs = torch.stack([z[s] for _, s in decoded])  # one decoder call for all terms
            stacked = self.log_likelihood(m, batch[m], zs, h.expand(len(decoded), *h.shape))  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
            recon = dict(zip([t for t, _ in decoded], stacked.unbind(0), strict=True))
            for term, s in sources:
                rec = recon.get(term, torch.zeros_like(kl_h))  # the code's zeroed PoE reconstruction
                total = total + (rec - beta_s * kl_shared[s] - beta_p * kl_h).mean()
                terms[f"{m}/{term}/recon"] = rec.mean()
                terms[f"{m}/{term}/kl_shared"] = kl_shared[s].mean()
            terms[f"{m}/kl_private"] = kl_h.mean()
        return {"loss": -total, **terms}  # type: ignore[dict-item]  # total: a Tensor (>= 1 modality present)
