"""MoPoE-VAE (Sutter, Daunhawer & Vogt, ICLR 2021): mixture of products of experts.

The joint posterior is a uniform mixture over all 2^M − 1 non-empty subsets S of the present
modalities, by size then in the modalities' order (thomassutter/MoPoE, utils/BaseExperiment.py
``set_subsets``), each component the product of the unimodal Gaussian experts in S:

    q(z | x_1:M) = 1/(2^M − 1) Σ_S q_S(z),     q_S = PoE({q(z | x_m) : m ∈ S}).

- ``prior_expert``: ``full_set`` (default) adds an N(0, I) expert to the product of the model's full
  modality set only, as the reference code (utils/BaseMMVae.py ``BaseMMVae.poe_fusion`` appends a
  zero-mean, zero-log-variance expert when ``mus.shape[0] == len(self.modalities)``; MultiVae's MoPoE
  copies it); ``none`` is the paper's q_S, ``all`` adds it to every q_S (MVAE's convention).
- Objective: the mixture's ELBO with its KL replaced by the mixture-weighted component KLs to N(0, I)
  in closed form (an upper bound on KL(q_mix || p), as ``moe_fusion`` with
  ``calc_group_divergence_moe``), the reconstruction sampled stratified, one z_S ~ q_S per subset:

      L = (1/|S|) Σ_S [ Σ_m w_m log p(x_m | z_S) − β KL(q_S || N(0, I)) ].

  ``stratified: false`` is the reference's cheaper estimator: row i decodes only z_{S(i)}, the subsets
  taking contiguous blocks of ⌊B/|S|⌋ rows in order, the last the rest (utils/utils.py
  ``mixture_component_selection`` with the uniform weights of ``BaseMMVae.inference``;
  ``subset_blocks``); the batch is shuffled, so the same expectation with more variance.
- ``embed`` / ``generate`` from a set of modalities use q_S of exactly that set (as the reference
  evaluation reads ``mus[s_key]``), not the mixture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import NonNegativeFloat
from torch import Tensor

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import DiagGaussian, MixtureOfExperts, nonempty_subsets, product_of_experts


def subset_blocks(rows: int, n_subsets: int, device: torch.device | None = None) -> Tensor:
    """The subset index of each row: contiguous blocks of ⌊rows/n⌋, the last block holding the
    remainder (all rows when rows < n), as ``mixture_component_selection`` with weights 1/n."""
    # Arithmetic on the device: no host data, no data-dependent shape, so no sync on a GPU.
    block = rows // n_subsets
    if block == 0:
        return torch.full((rows,), n_subsets - 1, device=device)
    return (torch.arange(rows, device=device) // block).clamp_(max=n_subsets - 1)


class MoPoE(MultimodalVAE):
    name = "mopoe"
    label, colour = "MoPoE", "tab:pink"

    class Params(MultimodalVAE.Params):  # the module docstring
        beta: NonNegativeFloat = 2.5  # the published MNIST-SVHN-Text value
        prior_expert: Literal["full_set", "none", "all"] = "full_set"  # where an N(0, I) expert joins the product
        stratified: bool = True  # every subset's z decodes every modality; false: the reference's one subset a row

    # thomassutter/MoPoE: utils/BaseMMVae.py ``cond_generation`` decodes a draw of the subset posterior;
    # eval_metrics/representation.py ``train_clf_lr_all_subsets`` probes the subset posterior means.
    reference_protocol = "sample"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        if self.posterior_family != "gaussian":
            raise ValueError(f"{self.name} needs posterior: gaussian (its subset posteriors are Gaussian)")

    # ------------------------------------------------------------- aggregation
    def aggregate(self, encoded, subset: Sequence[str]) -> DiagGaussian:
        """q_S: the product of the subset's experts, with N(0, I) where ``prior_expert`` puts one."""
        return product_of_experts([encoded[m][0] for m in subset], prior_expert=self.has_prior_expert(subset))

    def has_prior_expert(self, subset: Sequence[str]) -> bool:
        """``full_set``: only a subset holding every modality of the model (not merely every present
        one: with a modality missing, the reference builds no full-set product at all)."""
        choice = self.params["prior_expert"]
        return choice == "all" or (choice == "full_set" and set(subset) == set(self.modalities))

    def training_subsets(self, present: list[str]) -> list[list[str]]:
        return nonempty_subsets(present)

    def subset_mixture(self, encoded) -> tuple[list[list[str]], MixtureOfExperts]:
        """The training posterior: uniform mixture of q_S over the subsets of the present modalities."""
        subsets = self.training_subsets(list(encoded))
        return subsets, MixtureOfExperts([self.aggregate(encoded, s) for s in subsets])

    def joint_posterior(self, encoded) -> DiagGaussian:
        """q_S for S = exactly the modalities given (what embed/generate read)."""
        return self.aggregate(encoded, list(encoded))

    # ---------------------------------------------------------------- objective
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        present = list(encoded)
        subsets, mixture = self.subset_mixture(encoded)
        z = torch.stack([q.rsample() for q in mixture.experts])  # [S, B, D], one draw per stratum
        if not self.params["stratified"]:  # one subset per batch element: z [B, D]
            rows = torch.arange(z.shape[1], device=z.device)
            z = z[subset_blocks(z.shape[1], len(subsets), z.device), rows]
        recon = {m: self.log_likelihood(m, batch[m], z) for m in present}  # type: ignore[arg-type]  # [S, B] or [B] each; m is present
        kl = torch.stack([q.kl_standard_normal() for q in mixture.experts])  # type: ignore[union-attr]  # [S, B]; aggregate() gives DiagGaussians
        beta = float(self.params["beta"])
        value = sum(r.mean() for r in recon.values()) - beta * kl.mean()
        terms = {f"recon_{m}": r.mean() for m, r in recon.items()}
        terms["kl"] = kl.mean()
        for s, k in zip(subsets, kl, strict=True):
            terms[f"kl_{'_'.join(s)}"] = k.mean()  # MLflow-safe key
        return {"loss": -value, **terms}
