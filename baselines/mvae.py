"""MVAE (Wu & Goodman, NeurIPS 2018): product-of-experts posterior with an N(0, I) prior expert.

Training objective (the "subsampled" form): the joint ELBO plus each unimodal ELBO,
ELBO(x_S) = E_{q_S(z)}[Σ_{m∈S} w_m log p(x_m | z)] − β KL(q_S(z) || N(0, I)), where q_S is the
product of the experts in S and the prior expert. Missing modalities are left out of both.
"""

from __future__ import annotations

from torch import Tensor

from mgmvae.base import Batch, MultimodalVAE, register
from mgmvae.distributions import product_of_experts


@register("mvae")
class MVAE(MultimodalVAE):
    default_params = {"kl_weight": 1.0, "unimodal_elbos": True}
    # mhw32/multimodal-vae-public: ``reparametrize`` returns the posterior mean in eval mode.
    reference_protocol = "mean"

    def elbo(self, batch: Batch, encoded: dict, subset: list[str]) -> tuple[Tensor, dict[str, Tensor]]:
        q = product_of_experts([encoded[m][0] for m in subset], prior_expert=True)
        z = q.rsample()
        recon = {m: self.log_likelihood(m, batch[m], z) for m in subset}  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
        kl = q.kl_standard_normal()
        beta = float(self.params["kl_weight"])
        return sum(recon.values()) - beta * kl, {**{f"recon_{m}": r for m, r in recon.items()}, "kl": kl}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        present = list(encoded)
        subsets = [present]
        if self.params["unimodal_elbos"] and len(present) > 1:
            subsets += [[m] for m in present]
        terms: dict[str, Tensor] = {}
        total: Tensor = 0.0  # type: ignore[assignment]  # 0.0 + the first Tensor term is a Tensor
        for subset in subsets:
            elbo, parts = self.elbo(batch, encoded, subset)
            total = total + elbo.mean()
            tag = "joint" if len(subset) > 1 else subset[0]
            terms.update({f"{tag}/{k}": v.mean() for k, v in parts.items()})
        return {"loss": -total, **terms}
