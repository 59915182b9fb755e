"""MoPoE-VAE (Sutter, Daunhawer & Vogt, ICLR 2021): mixture of products of experts.

The joint posterior is a uniform mixture over all 2^M − 1 non-empty subsets S of the modalities,
each component the product of the unimodal Gaussian experts in S:

    q(z | x_1:M) = 1/(2^M − 1) Σ_S q_S(z),     q_S = PoE({q(z | x_m) : m ∈ S}).

Choices (ours where the paper leaves room):
- Prior expert (``prior_expert``): ``full_set`` (default) adds an N(0, I) expert to the product of
  the full modality set only, as the reference code: thomassutter/MoPoE, utils/BaseMMVae.py,
  ``BaseMMVae.poe_fusion`` appends a zero-mean, zero-log-variance expert when the subset holds
  every modality of the model (``mus.shape[0] == len(self.modalities)``), and MultiVae's MoPoE
  copies it. The other subsets are the product of their experts alone. ``none`` is the paper's
  definition of q_S (no prior expert anywhere); ``all`` adds it to every q_S (MVAE's convention).
- Objective: the ELBO of the mixture with its KL replaced by the mixture-weighted sum of
  component KLs (an upper bound on KL(q_mix || p), as the reference code's ``moe_fusion`` with
  ``calc_group_divergence_moe``), and the reconstruction expectation taken by stratified
  sampling: one z_S ~ q_S per subset, every present modality reconstructed from it,

      L = (1/|S|) Σ_S [ Σ_m w_m log p(x_m | z_S) − β KL(q_S || N(0, I)) ].

  ``stratified: false`` is the reference code's cheaper estimator: batch element i decodes only
  z_{S(i)}, the subsets taking contiguous blocks of rows in the order of ``nonempty_subsets`` (by
  size, as utils/BaseExperiment.py ``set_subsets``), ⌊B/|S|⌋ rows each and the last subset the rest
  (thomassutter/MoPoE, utils/utils.py, ``mixture_component_selection`` with the uniform weights
  of ``BaseMMVae.inference``; ``subset_blocks``). The batch is shuffled, so a row's subset is
  random; same expectation, more variance, |S|× fewer decoder passes. The KL term is the same in
  both.
- KL to N(0, I) in closed form; β: ``MoPoE.Params``.
- Missing modalities: the subsets are those of the present modalities.
- M modalities: all 2^M − 1 subsets, by size and then in the modalities' order, as the reference's
  ``set_subsets`` (thomassutter/MoPoE, utils/BaseExperiment.py) and ``BaseMMVae.inference``; the N(0, I)
  expert joins the full set's product only. Cost per step: 2^M − 1 products of experts and
  closed-form KLs; stratified, (2^M − 1)·M decoder passes over the batch, O(M 2^M); with
  ``stratified: false`` M passes over B rows.
- ``embed`` / ``generate`` from a set of modalities use q_S for exactly that set (the subset
  posterior, as the reference evaluation reads ``mus[s_key]``), not the mixture.
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

    # thomassutter/MoPoE, utils/BaseMMVae.py ``cond_generation``: decodes a reparameterised draw of
    # the subset posterior; eval_metrics/representation.py ``train_clf_lr_all_subsets`` fits the
    # probe (sklearn LogisticRegression) on the subset posterior means.
    reference_protocol = "sample"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        if self.posterior_family != "gaussian":
            raise ValueError(f"{self.name} needs posterior: gaussian (its subset posteriors are Gaussian)")

    # ------------------------------------------------------------- aggregation
    def aggregate(self, encoded, subset: Sequence[str]) -> DiagGaussian:
        """The posterior q_S of one subset: product of its experts (MoPoE), with the N(0, I)
        expert where ``prior_expert`` puts one."""
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
