"""MGMVAE (Chen et al., "Multimodal Gaussian Mixture Variational Autoencoder with Consistency
Regularizations", AAAI 2026): a PoE multimodal VAE with a Gaussian-mixture prior on the shared
latent, a cluster-guided center loss and a triplet alignment loss. Equation numbers are the paper's.

- Eq. 5:  q(z_s|x_1:M) ∝ N(0,I)·Π_m q(z_m|x_m) over the present modalities; z_s ~ q(z_s|x_1:M),
          h_m ~ q(h_m|x_m), one reparameterised draw each.
- Eq. 6:  ELBO = Σ_m E[log p(x_m|z_s,h_m)]
                 − λ1 (KL(q(c|z_s)||p(c)) + Σ_c q(c|z_s) KL(q(z_s|x_1:M)||p(z_s|c)))
                 − λ2 Σ_m KL(q(h_m|x_m)||N(0,I)) − λ3 Σ_m KL(q(z_m|x_m)||N(0,I)),
          q(c|z_s) by Bayes' rule under the mixture at the sampled z_s (VaDE), with gradient.
- Eq. 7–9: ĉ_i = argmax_k q(c=k|z_s_i), conf_i = max_k q(c=k|z_s_i) (no gradient), H = {i: conf_i > τ};
          L_center = 1/|H| Σ_{i∈H} Σ_m ||z_m_i − c_ĉ||² (0 when H is empty), z_m the unimodal posterior
          mean (``center_on``); the centers {c_k} are parameters of their own, not the mixture means.
- Eq. 11–12: L_align = Σ over ordered pairs (m, m') of L_triplet(m, m', negatives in m') on the unimodal
          posterior means (Euclidean, margin α, K negatives from the batch's other instances), divided
          by M − 1 (``align_normaliser``); at M = 2, L(x, y, y') + L(y, x, x').
- Eq. 13: loss = −ELBO + β L_center + γ L_align (batch means); β = 0 or γ = 0 skips the term.
The paper is bimodal: each term is summed over the modalities (alignment as above), so that M = 2 is
the paper's. Where the paper is silent (warm-up before the k-means fit, ``recon_scale``, the extra
reconstructions, the reading of Eq. 12, the normaliser): ``Params`` and docs/models.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor, nn

from mgmvae.base import Batch, MultimodalVAE
from mgmvae.distributions import DiagGaussian, GaussianMixturePrior, product_of_experts
from mgmvae.params import IMPLICIT

VAR_FLOOR = 1e-4  # smallest component variance the k-means initialisation sets


def triplet_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, margin: float) -> Tensor:
    """Eq. 11 per anchor: max(||a − p|| − mean_k ||a − n_k|| + α, 0); a, p [B, D], n [B, K, D] -> [B]."""
    d_pos = (anchor - positive).norm(dim=-1)
    d_neg = (anchor.unsqueeze(1) - negatives).norm(dim=-1).mean(-1)
    return F.relu(d_pos - d_neg + margin)


@torch.no_grad()
def select_negatives(anchor: Tensor, candidates: Tensor, k: int, semi_hard: bool) -> tuple[Tensor, Tensor]:
    """Indices [B, K'] of negatives for each anchor among ``candidates`` (row j, the partner of
    anchor j, never), K' = min(k, B − 1), drawn without replacement by torch's global RNG, and the
    [B, K'] mask of those farther from the anchor than its positive. Semi-hard: those come first in
    random order, the remaining slots filled with random others (hard negatives keep the alignment
    signal for anchors whose partner is not yet the nearest)."""
    b = anchor.shape[0]
    dist = torch.cdist(anchor, candidates)
    farther = dist > dist.diagonal().unsqueeze(1)
    score = torch.rand(b, b, device=anchor.device, dtype=anchor.dtype)
    if semi_hard:
        score = score + farther.to(score.dtype)  # valid ones in [1, 2), the rest in [0, 1)
    score = score.masked_fill(torch.eye(b, dtype=torch.bool, device=anchor.device), -float("inf"))
    index = score.topk(min(k, b - 1), dim=1).indices
    return index, farther.gather(1, index)


def center_loss(shared: Sequence[Tensor], centers: Tensor, gamma: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Eq. 7–9 on the present unimodal shared latents [B, D], ``gamma`` = q(c|z_s) [B, K]: (L_center,
    |H|/B); pseudo-labels and mask carry no gradient; L_center is 0 (no NaN) when H is empty."""
    conf, label = gamma.detach().max(dim=-1)
    mask = (conf > tau).to(centers.dtype)
    target = centers[label]
    per_sample = sum((z - target).pow(2).sum(-1) for z in shared)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1.0), mask.mean()


def _refresh_after_load(module: MGMVAE, _incompatible_keys: Any) -> None:
    module.refresh_ready()


class MGMVAE(MultimodalVAE):
    name = "mgmvae"
    label, colour = "MGMVAE", "tab:cyan"
    uses_private = True
    mixture_ready: Tensor  # registered buffer

    # The paper's "Experiment Settings" for MNIST-SVHN (config.yaml sets MNIST-CDCB's)
    class Params(MultimodalVAE.Params):
        lambda1: NonNegativeFloat = 0.01  # mixture KL weight (both datasets)
        lambda2: NonNegativeFloat = 0.01  # private KL weight (both datasets)
        lambda3: NonNegativeFloat = 0.0025  # MNIST-SVHN 0.0025; MNIST-CDCB 0.001
        beta: NonNegativeFloat = 1.0  # center-loss weight β
        gamma: NonNegativeFloat = 1.0  # alignment weight γ
        tau: Annotated[float, Field(ge=0, le=1)] = 0.8  # confidence threshold τ of the center loss
        margin: NonNegativeFloat = 1.7  # triplet margin α: MNIST-SVHN 1.7; MNIST-CDCB 2.0
        negatives: PositiveInt = 1  # K = 1 negative per triplet
        n_components: PositiveInt = 10  # paper silent; 10 digit classes
        semi_hard_from_epoch: NonNegativeInt = 5  # paper silent ("as training progresses"); a quarter of 20 epochs
        mixture_init: Literal["kmeans", "random"] = "kmeans"  # paper silent; VaDE-style k-means on joint means
        # Epoch at whose start k-means runs; earlier epochs are warm-up (N(0, I) prior, no center loss).
        # 2, not 1: fitted after one epoch, the center loss collapsed the mixture (docs/models.md).
        mixture_init_epoch: NonNegativeInt = 2
        mixture_init_samples: PositiveInt = 5000  # train pairs embedded for the k-means fit (seeded subsample)
        center_on: Literal["mean", "sample"] = "mean"  # Eq. 9's z_x, z_y: unimodal posterior means, or draws
        use_mixture_prior: bool = True  # ablation: False = N(0, I) prior on z_s, no center loss, no clusters
        # Paper silent on extra reconstructions; without both, retrieval stayed at chance (docs/models.md).
        extra_recon: bool = True  # cross-reconstructions from the other modalities' shared latents
        unimodal_recon: bool = True  # with extra_recon, also log p(m | z_m, h_m): MVAE's unimodal ELBO terms
        # The target's private latent in a cross term: "prior" N(0, I) (MMVAE+) or its "own" posterior sample.
        cross_private: Literal["prior", "own"] = Field("prior", json_schema_extra=IMPLICIT)
        # Paper silent on the likelihood's normalisation: a factor on every log-likelihood term;
        # "per_pixel" = 1 / largest pixel count. 0.1 measured best on digits_street (docs/models.md).
        recon_scale: PositiveFloat | Literal["per_pixel"] = 0.1
        # M > 2, paper silent: Eq. 12's ordered-pair sum over M − 1 ("modalities") or M(M − 1)/2 ("pairs")
        align_normaliser: Literal["modalities", "pairs"] = "modalities"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        p = self.params
        self.recon_scale = self.resolve_recon_scale(p["recon_scale"])
        self.use_mixture = bool(p["use_mixture_prior"])
        if self.use_mixture:
            k = int(p["n_components"])
            self.mixture = GaussianMixturePrior(k, self.shared_dim)
            self.centers = nn.Parameter(self.mixture.means.detach().clone())
        # Checkpointed: whether the mixture has been fitted (random init needs no fit). The loss reads
        # a host copy (no device sync per step), which a loaded state must refresh.
        self.register_buffer("mixture_ready", torch.tensor(p["mixture_init"] == "random"))
        self._ready = bool(self.mixture_ready)
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self._epoch = 0

    def refresh_ready(self) -> None:
        self._ready = bool(self.mixture_ready)

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Refuse a run whose epochs never reach the k-means fit (``mixture_init_epoch`` ≥ ``epochs``):
        it would train only the warm-up objective, and a mixture fitted after training was never part
        of the objective the run reports."""
        params = super().check_settings(settings)
        fits = params["use_mixture_prior"] and params["mixture_init"] == "kmeans"
        if fits and int(params["mixture_init_epoch"]) >= int(settings["epochs"]):
            raise ValueError(
                f"params.mixture_init_epoch = {params['mixture_init_epoch']} is not below epochs = "
                f"{settings['epochs']} (the run's epochs: settings, dataset_settings or model_settings.mgmvae): "
                "the mixture would never be fitted (k-means runs at the start of epoch "
                "mixture_init_epoch, counted from 0). Lower params.mixture_init_epoch or raise epochs."
            )
        return params

    def resolve_recon_scale(self, spec) -> float:
        """``recon_scale``: a positive number, or "per_pixel" = 1 / the largest pixel count."""
        return 1.0 / max(float(np.prod(s)) for s in self.shapes.values()) if spec == "per_pixel" else float(spec)

    def log_likelihood(self, modality: str, x: Tensor, z: Tensor, h: Tensor | None = None) -> Tensor:
        return self.recon_scale * super().log_likelihood(modality, x, z, h)

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, epoch: int, data, split: str = "train") -> None:
        """Record the epoch (negative mining); fit the mixture by k-means once, at the start of epoch
        ``mixture_init_epoch`` (a resumed run keeps the fitted state)."""
        self._epoch = int(epoch)
        self._ready = bool(self.mixture_ready)
        p = self.params
        if self.use_mixture and not self._ready and epoch >= int(p["mixture_init_epoch"]):
            self.init_mixture_kmeans(data, split)

    @torch.no_grad()
    def init_mixture_kmeans(self, data, split: str = "train") -> None:
        """k-means on the joint posterior means of a seeded subsample (torch's global RNG); the mixture
        by moment matching: π_k the cluster share, μ_k the centroid (also the centers' start), σ²_k the
        within-cluster variance of the means + mean posterior variance (the cluster's aggregate posterior)."""
        from sklearn.cluster import KMeans

        n = data.num_pairs(split)
        index = torch.randperm(n)[: int(self.params["mixture_init_samples"])].to(data.device)
        mus, variances = [], []
        for chunk in index.split(1024):
            batch = {m: x.to(self.device) for m, x in data.batch(split, chunk).items()}
            q = self.joint_posterior(self.encode(batch))
            mus.append(q.mu.float().cpu())
            variances.append(q.var.float().cpu())
        mu, var = torch.cat(mus), torch.cat(variances)
        k = self.mixture.n_components
        if len(mu) < k:
            raise ValueError(f"mgmvae: k-means initialisation needs at least {k} pairs, got {len(mu)}")
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(mu.numpy().astype(np.float64))
        label = torch.from_numpy(km.labels_).long()
        onehot = F.one_hot(label, k).float()  # [N, K]
        count = onehot.sum(0).clamp_min(1.0)  # [K]
        mean = onehot.T @ mu / count[:, None]
        spread = onehot.T @ (mu.pow(2) + var) / count[:, None] - mean.pow(2)
        dev, dtype = self.mixture.means.device, self.mixture.means.dtype
        self.mixture.means.copy_(mean.to(dev, dtype))
        self.mixture.logvars.copy_(spread.clamp_min(VAR_FLOOR).log().to(dev, dtype))
        self.mixture.logits.copy_((count / count.sum()).log().to(dev, dtype))
        self.centers.copy_(mean.to(dev, dtype))
        self.mixture_ready.fill_(True)
        self._ready = True

    # ------------------------------------------------------------ objective
    def alignment(self, *means: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 12 over the unimodal shared means (module docstring): (L_align, fraction of chosen
        negatives farther than the positive)."""
        k, margin = int(self.params["negatives"]), float(self.params["margin"])
        semi_hard = self._epoch >= int(self.params["semi_hard_from_epoch"])
        total, valid = means[0].new_zeros(()), []
        for anchor, positive in permutations(means, 2):
            index, ok = select_negatives(anchor.detach(), positive.detach(), k, semi_hard)
            total = total + triplet_loss(anchor, positive, positive[index], margin).mean()
            valid.append(ok.float().mean())
        n = len(means) - 1
        return total / (n * (n + 1) / 2 if self.params["align_normaliser"] == "pairs" else n), torch.stack(valid).mean()

    def mixture_term(self, q: DiagGaussian, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """The λ1 bracket of Eq. 6 per sample, and q(c|z_s) at z; KL(q(z_s)||N(0,I)) and None without
        a fitted mixture (warm-up, or the ablation ``use_mixture_prior: false``)."""
        if not (self.use_mixture and self._ready):
            return q.kl_standard_normal(), None
        gamma = self.mixture.responsibilities(z)
        return self.mixture.mixture_kl(q, gamma), gamma

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        p = self.params
        encoded = self.encode(batch)
        present = list(encoded)
        q_s = self.joint_posterior(encoded)
        z_s = q_s.rsample()
        terms: dict[str, Tensor] = {}
        h = {m: encoded[m][1].rsample() for m in present}
        recon = {m: self.log_likelihood(m, batch[m], z_s, h[m]) for m in present}  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
        for m in self.modalities:
            terms[f"recon_{m}"] = recon[m].mean() if m in recon else z_s.new_zeros(())
        kl_mix, gamma = self.mixture_term(q_s, z_s)
        kl_private = sum(encoded[m][1].kl_standard_normal() for m in present)
        kl_shared = sum(encoded[m][0].kl_standard_normal() for m in present)
        elbo = sum(recon.values()) - p["lambda1"] * kl_mix - p["lambda2"] * kl_private - p["lambda3"] * kl_shared
        if p["extra_recon"]:
            cross = self.cross_reconstruction(batch, encoded, h)
            elbo = elbo + cross
            terms["recon_cross"] = cross.mean()
        loss = -elbo.mean()
        means = [encoded[m][0].mu for m in present]

        center, confident = z_s.new_zeros(()), z_s.new_zeros(())
        if p["beta"] != 0 and gamma is not None:
            shared = means if p["center_on"] == "mean" else [encoded[m][0].rsample() for m in present]
            center, confident = center_loss(shared, self.centers, gamma, float(p["tau"]))
            loss = loss + p["beta"] * center
        elif gamma is not None:
            confident = (gamma.detach().max(-1).values > p["tau"]).float().mean()

        align, semi_hard = z_s.new_zeros(()), z_s.new_zeros(())
        if p["gamma"] != 0 and len(means) >= 2 and z_s.shape[0] > 1:
            align, semi_hard = self.alignment(*means)
            loss = loss + p["gamma"] * align

        active = (
            z_s.new_zeros(())
            if gamma is None
            else F.one_hot(gamma.detach().argmax(-1), gamma.shape[-1]).amax(0).sum().to(z_s.dtype)
        )
        return {
            "loss": loss,
            **terms,
            "elbo": elbo.mean(),
            "kl_mixture": kl_mix.mean(),
            "kl_private": kl_private.mean(),
            "kl_unimodal_shared": kl_shared.mean(),
            "center": center,
            "align": align,
            "confident_fraction": confident,
            "negatives_farther_fraction": semi_hard,
            "active_components": active,
        }

    def cross_reconstruction(self, batch: Batch, encoded: dict, h: dict[str, Tensor]) -> Tensor:
        """``extra_recon``: Σ_m mean_{o ≠ m} log p(x_m | z_o, h) per sample, z_o a fresh draw of o's
        unimodal posterior with the prior expert (the path ``generate`` takes), h drawn from N(0, I)
        (``cross_private: prior``, as MMVAE+) or m's own posterior sample (``own``); averaged over the
        sources as MMVAE+ (epalu/mmvaeplus src/objectives.py ``_m_iwae``). ``unimodal_recon`` adds
        log p(x_m | z_m, h_m) from m's own posterior: MVAE's unimodal ELBO terms. Why: docs/models.md."""
        present = list(encoded)
        if len(present) < 2 and not self.params["unimodal_recon"]:
            return next(iter(h.values())).new_zeros(next(iter(h.values())).shape[0])
        total: Tensor = 0.0  # type: ignore[assignment]  # 0.0 + the first Tensor term is a Tensor
        for m in present:
            for o in present:
                if o == m and not self.params["unimodal_recon"]:
                    continue
                z_o = product_of_experts([encoded[o][0]], prior_expert=True).rsample()
                h_m = h[m] if o == m or self.params["cross_private"] == "own" else torch.randn_like(h[m])
                ll = self.log_likelihood(m, batch[m], z_o, h_m)  # type: ignore[arg-type]  # m is present: batch[m] is a Tensor
                total = total + (ll if o == m else ll / (len(present) - 1))
        return total

    # --------------------------------------------------------- evaluation
    @torch.no_grad()
    def cluster(self, batch: Batch, modalities: Sequence[str]) -> Tensor | None:
        """argmax_k q(c=k|z) at the shared embedding (posterior mean); None without a mixture."""
        if not self.use_mixture:
            return None
        return self.mixture.responsibilities(self.embed(batch, modalities)).argmax(-1)

    def uses_fitted_mixture(self) -> bool:
        """Whether z_s's prior is the fitted mixture (the checkpointed buffer, not the host copy)."""
        return self.use_mixture and bool(self.mixture_ready)

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z_s) = log Σ_c π_c N(z_s; μ_c, σ²_c), the generative model's prior (paper, Eq. 1)."""
        return self.mixture.log_prob(z) if self.uses_fitted_mixture() else super().log_prior(z)

    def prior_name(self) -> str:
        if self.uses_fitted_mixture():
            return f"gaussian mixture, {self.mixture.n_components} components"
        return "standard gaussian (" + ("mixture not fitted" if self.use_mixture else "use_mixture_prior false") + ")"

    @torch.no_grad()
    def draw_shared_prior(self, n: int) -> Tensor:
        """z_s from the mixture prior (N(0,I) without it); h from the base ``private_prior``, the paper's p(h)."""
        if not self.use_mixture:
            return super().draw_shared_prior(n)
        return self.mixture.sample(n)[0]
