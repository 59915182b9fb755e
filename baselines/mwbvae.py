"""MWB-VAE (Qiu et al., AAAI 2025, "Multimodal Variational Autoencoder: a barycentric view").

The paper shows that PoE and MoE are barycenters of the unimodal posteriors under (the two
directions of) the weighted KL divergence, and replaces them by the 2-Wasserstein barycenter

    q*(z | x_S) = argmin_q Σ_{m∈S} λ_m W2²(q, q(z | x_m)),

for diagonal Gaussians μ* = Σ λ_m μ_m, σ* = Σ λ_m σ_m (``mgmvae.distributions.wasserstein_barycenter``).
No public code exists; this is our reading of the formulation. Choices:

- ``subsets: true`` (default): the MoPoE-style mixture of barycenters over all 2^M − 1 non-empty
  subsets S of the present modalities (the "M" of MWB), q_mix = 1/|S| Σ_S q*_S; a single modality's
  barycenter is that expert, so the unimodal posteriors train as mixture components.
  ``subsets: false``: the barycenter of the present modalities is the only posterior (WB-VAE);
  single-modality inference then uses an expert never trained on its own.
- Weights λ_m: uniform (``weights: null``) or ``{modality: λ}``, renormalised within each subset.
- Objective and ``stratified``: our MoPoE's (``baselines/mopoe.py``) with q*_S for q_S,
      L = (1/|S|) Σ_S [ Σ_m w_m log p(x_m | z_S) − β KL(q*_S || N(0, I)) ].
- ``embed`` / ``generate`` from a set of modalities use the barycenter of exactly that set.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import NonNegativeFloat, PositiveFloat

from baselines.mopoe import MoPoE
from mgmvae.base import MultimodalVAE
from mgmvae.distributions import DiagGaussian, wasserstein_barycenter


class MWBVAE(MoPoE):
    name = "mwbvae"
    label, colour = "MWB-VAE", "tab:red"

    class Params(MultimodalVAE.Params):  # no public code: our reading (the module docstring)
        beta: NonNegativeFloat = 1.0  # plain ELBO; the paper's value is not in our sources
        subsets: bool = True  # a mixture of barycenters over all non-empty subsets (MoPoE-style); false: one of all
        weights: dict[str, PositiveFloat] | None = None  # barycenter weights λ_m; None: uniform (renormalised)
        stratified: bool = True  # as MoPoE's

    reference_protocol = "mean"  # no public code: the project's own protocol (not MoPoE's)

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        weights = self.params["weights"]
        if weights is not None and set(self.modalities) - set(weights):
            raise ValueError(f"mwbvae weights need a positive value for each of {self.modalities}, got {weights}")

    def barycenter_weights(self, subset: Sequence[str]) -> list[float]:
        given = self.params["weights"]
        raw = [1.0 if given is None else float(given[m]) for m in subset]
        return [w / sum(raw) for w in raw]

    def aggregate(self, encoded, subset: Sequence[str]) -> DiagGaussian:
        """The 2-Wasserstein barycenter of the subset's experts."""
        experts = [encoded[m][0] for m in subset]
        if len(experts) == 1:
            return experts[0]
        return wasserstein_barycenter(experts, self.barycenter_weights(subset))

    def training_subsets(self, present: list[str]) -> list[list[str]]:
        return super().training_subsets(present) if self.params["subsets"] else [present]
