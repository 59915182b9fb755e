"""MVAE (Wu & Goodman, NeurIPS 2018): product-of-experts posterior with an N(0, I) prior expert.

Training objective (the "subsampled" form): the joint ELBO, each unimodal ELBO and, with M > 2, the
ELBOs of ``random_subsets`` random subsets of 2 … M − 1 modalities drawn afresh each step, summed:
ELBO(x_S) = E_{q_S(z)}[Σ_{m∈S} w_m log p(x_m | z)] − a_t β KL(q_S(z) || N(0, I)), q_S the product of
the present experts in S and the prior expert. The subsets are drawn as the reference's M-modality
script (mhw32/multimodal-vae-public, celeba19/train.py: ``sample_combinations`` over
``enumerate_combinations``, ``--approx-m`` of them): each of the k a size uniform among 2 … M − 1,
then for each size drawn c times c distinct subsets of it uniformly (all of them if it has fewer),
by torch's global RNG where the reference uses numpy's; none with M = 2.

KL annealing a_t, per mini-batch as the reference (mnist/train.py, ``train``):
``(batch_idx + (epoch − 1)·N + 1) / (annealing_epochs·N)`` for 1-based epochs below ``annealing_epochs``,
1 from then on (0: off), N the steps per epoch of our loop, ⌊n/B⌋ (``mgmvae.train.steps_per_epoch``).
The step comes from the epoch ``on_epoch_start`` receives, so a resumed run continues the schedule
bitwise. The choice of ``annealing_epochs``: docs/models.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import torch
from pydantic import NonNegativeFloat, NonNegativeInt
from torch import Tensor

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import product_of_experts


def annealing_factor(step: int, steps_per_epoch: int, annealing_epochs: int) -> float:
    """The reference's KL weight at 0-based global step ``step`` (mnist/train.py, ``train``):
    linear in the step over epochs 1 … A − 1 (1-based), then 1; A = 0 means no annealing."""
    if annealing_epochs <= 0 or step // steps_per_epoch + 1 >= annealing_epochs:
        return 1.0
    return (step + 1) / (annealing_epochs * steps_per_epoch)


def random_subsets(names: Sequence[str], k: int) -> list[list[str]]:
    """k distinct subsets of 2 … M − 1 of ``names``, drawn as the reference's
    ``sample_combinations`` (the module docstring); [] without a random draw when M ≤ 2 or k = 0."""
    sizes = list(range(2, len(names)))
    if not sizes or k == 0:
        return []
    counts = torch.bincount(torch.randint(len(sizes), (k,)), minlength=len(sizes)).tolist()
    drawn = []
    for size, count in zip(sizes, counts, strict=True):
        if count:
            pool = list(combinations(names, size))
            drawn += [list(pool[i]) for i in torch.randperm(len(pool))[:count].tolist()]
    return drawn


class MVAE(MultimodalVAE):
    name = "mvae"
    label, colour = "MVAE", "tab:blue"

    class Params(MultimodalVAE.Params):  # the module docstring
        kl_weight: NonNegativeFloat = 1.0
        unimodal_elbos: bool = True  # Wu & Goodman's subsampled objective: the joint and each unimodal ELBO
        annealing_epochs: NonNegativeInt = 8  # A/E = 0.4 as the reference's MNIST script (200 of 500); 0: off
        random_subsets: NonNegativeInt = 1  # M > 2: ELBOs of this many random subsets (celeba19/train.py --approx-m 1)

    # mhw32/multimodal-vae-public: ``reparametrize`` returns the posterior mean in eval mode.
    reference_protocol = "mean"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        self._step = 0  # global training step; reset from the epoch in on_epoch_start
        self._steps_per_epoch = 1

    def on_epoch_start(self, epoch: int, data: Any, split: str = "train") -> None:
        """Derive the annealing step from the epoch (so resuming after epoch k continues at k·N)."""
        self._steps_per_epoch = data.steps_per_epoch(int(self.settings["batch_size"]), split)
        self._step = int(epoch) * self._steps_per_epoch

    def kl_annealing(self) -> float:
        return annealing_factor(self._step, self._steps_per_epoch, int(self.params["annealing_epochs"]))

    def elbo(self, batch: Batch, encoded: dict, subset: list[str], kl_scale: float) -> tuple[Tensor, dict[str, Tensor]]:
        q = product_of_experts([encoded[m][0] for m in subset], prior_expert=True)
        z = q.rsample()
        recon = {m: self.log_likelihood(m, batch[m], z) for m in subset}  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
        kl = q.kl_standard_normal()
        return sum(recon.values()) - kl_scale * kl, {**{f"recon_{m}": r for m, r in recon.items()}, "kl": kl}

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        present = list(encoded)
        subsets = [present]
        if self.params["unimodal_elbos"] and len(present) > 1:
            subsets += [[m] for m in present]
        annealing = self.kl_annealing()
        if self.training:
            self._step += 1
        kl_scale = float(self.params["kl_weight"]) * annealing
        terms: dict[str, Tensor] = {}
        elbos = []
        for subset in subsets:
            elbo, parts = self.elbo(batch, encoded, subset, kl_scale)
            elbos.append(elbo.mean())
            tag = "joint" if len(subset) > 1 else subset[0]
            terms.update({f"{tag}/{k}": v.mean() for k, v in parts.items()})
        k = int(self.params["random_subsets"])
        if k and len(self.modalities) > 2:  # drawn after the others, as the reference
            drawn = [self.elbo(batch, encoded, s, kl_scale)[0].mean() for s in random_subsets(present, k)]
            terms["subsets/elbo"] = torch.stack(drawn).mean() if drawn else elbos[0].new_zeros(())
            elbos += drawn
        loss = -torch.stack(elbos).sum()
        # torch.full passes the weight to a kernel; new_tensor would copy it from the host (a GPU sync).
        return {"loss": loss, **terms, "kl_annealing": torch.full((), annealing, dtype=loss.dtype, device=loss.device)}
