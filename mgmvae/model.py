"""MGMVAE (AAAI 2026): a PoE multimodal VAE with a Gaussian-mixture prior on the shared latent,
a cluster-guided center loss and a triplet alignment loss. Equation numbers follow the paper
(Chen et al., "Multimodal Gaussian Mixture Variational Autoencoder with Consistency Regularizations", AAAI 2026).

Per pair (x, y) with shared/private unimodal posteriors q(z_x|x), q(h_x|x), q(z_y|y), q(h_y|y):

- Eq. 5:  q(z_s|x,y) ∝ N(0,I)·q(z_x|x)·q(z_y|y) (product of experts; a missing modality is left out);
          z_s ~ q(z_s|x,y), h_m ~ q(h_m|m) reparameterised, one sample each.
- Eq. 6:  ELBO = Σ_m E[log p(m|z_s,h_m)]
                 − λ1 (KL(q(c|z_s)||p(c)) + Σ_c q(c|z_s) KL(q(z_s|x,y)||p(z_s|c)))
                 − λ2 Σ_m KL(q(h_m|m)||N(0,I)) − λ3 Σ_m KL(q(z_m|m)||N(0,I)),
          q(c|z_s) by Bayes' rule under the mixture at the sampled z_s (VaDE), with gradient.
- Eq. 7–9: ĉ_i = argmax_k q(c=k|z_s_i), conf_i = max_k q(c=k|z_s_i) (both without gradient),
          H = {i: conf_i > τ}; L_center = 1/|H| Σ_{i∈H} Σ_m ||z_m_i − c_ĉ||², 0 when H is empty.
          z_m here is the unimodal posterior MEAN μ_m(m) (``center_on: mean``; ``sample`` uses a
          reparameterised draw instead): the paper writes z_x, z_y; the mean avoids pulling on
          sampling noise and matches the triplet loss, which the paper states on means. The centers
          {c_k} are their own parameters, separate from the mixture means.
- Eq. 11–12: L_align = L_triplet(x, y, y') + L_triplet(y, x, x') on the unimodal posterior means,
          Euclidean distance, margin α, K negatives per anchor taken from the other instances of
          the batch, in the modality of the positive (the printed Eq. 12 swaps x'/y'; we read it as
          anchor x against y-negatives and anchor y against x-negatives, as the paper's text describes). Batch mean.
- Eq. 13: loss = −ELBO + β L_center + γ L_align (batch means); β = 0 or γ = 0 skips the term.

M modalities (the paper is bimodal; the generalisation keeps each term per modality, or per pair
averaged over pairs, so that M = 2 is the paper's, bit for bit):
- Eq. 5: q(z_s|x_1:M) ∝ N(0,I) Π_m q(z_m|x_m), the product of the M experts (of those present).
- Eq. 6: the reconstruction and the private and unimodal-shared KL terms are summed over the M modalities.
- Eq. 9: L_center sums ||z_m − c_ĉ||² over the M modalities' shared latents (the paper's x and y).
- Eq. 12: the triplet term L_triplet(m, m', negatives in m') of every ordered pair (m, m'), summed
  and divided by M − 1 (``align_normaliser: modalities``) or by the M(M − 1)/2 pairs (``pairs``; its
  weight then falls as 2/M). Both are Eq. 12 at M = 2 (``alignment``; the choice: docs/models.md).
- ``extra_recon``: each modality m is reconstructed from every other modality's shared latent, these
  M − 1 cross terms averaged (``cross_reconstruction``), so m's cross term weighs what it does at M = 2.
Cost per step grows as M² in decoder passes with ``extra_recon`` (M joint, M unimodal, M(M − 1) cross)
and as M² in triplet terms, each a B × B distance matrix; M without ``extra_recon``.

Choices where the paper is silent are documented in ``Params`` and in the methods. Among them:
warm-up epochs before the k-means fit (``mixture_init_epoch``) use KL(q(z_s)||N(0,I)) in place of the
λ1 term and no center loss; the ablation ``use_mixture_prior: False`` does the same throughout
(and ``cluster`` returns None). Log-likelihoods are multiplied by ``recon_scale``. With
``extra_recon`` (default on) the ELBO also gets cross-reconstructions log p(m | z_o, h_m ~ N(0,I)) and,
with ``unimodal_recon``, unimodal ones log p(m | z_m, h_m) (see ``cross_reconstruction``).
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
    """Eq. 11 per anchor: max(||a − p|| − mean_k ||a − n_k|| + α, 0).

    anchor, positive [B, D]; negatives [B, K, D] -> [B].
    """
    d_pos = (anchor - positive).norm(dim=-1)
    d_neg = (anchor.unsqueeze(1) - negatives).norm(dim=-1).mean(-1)
    return F.relu(d_pos - d_neg + margin)


@torch.no_grad()
def select_negatives(anchor: Tensor, candidates: Tensor, k: int, semi_hard: bool) -> tuple[Tensor, Tensor]:
    """Indices [B, K'] of negatives for each anchor among ``candidates`` (row j is the partner of
    anchor j, never chosen), K' = min(k, B − 1), drawn without replacement with torch's global RNG.

    Random mode: a uniform draw. Semi-hard mode: negatives farther from the anchor than its
    positive (d(a_i, c_j) > d(a_i, c_i)) come first in random order; if fewer than K are valid, the
    remaining slots are filled with random other instances (then hard negatives: they keep the
    alignment signal for anchors whose partner is not yet the nearest). Also returns the boolean
    [B, K'] mask of which chosen negatives satisfy the semi-hard condition.
    """
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
    """Eq. 7–9. ``shared``: the unimodal shared latents [B, D] present; ``gamma`` = q(c|z_s) [B, K].

    Pseudo-labels and the confidence mask carry no gradient. Returns (L_center, |H|/B); L_center
    is 0 (with a gradient path, no NaN) when H is empty.
    """
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
        # 2, not 1: fitted after one epoch (digits_street, recon_scale 0.1) the center loss pulled
        # everything onto 2 of the 10 components and cross-generation fell to 0.24/0.21; fitted after
        # two, 9 stay active and it reaches 0.49/0.44 at 3 epochs (0.69/0.76 at 4).
        mixture_init_epoch: NonNegativeInt = 2
        mixture_init_samples: PositiveInt = 5000  # train pairs embedded for the k-means fit (seeded subsample)
        center_on: Literal["mean", "sample"] = "mean"  # Eq. 9's z_x, z_y: unimodal posterior means, or draws
        use_mixture_prior: bool = True  # ablation: False = N(0, I) prior on z_s, no center loss, no clusters
        # Paper silent on extra reconstructions. Measured (digits_cdcb, 3 epochs, Bernoulli, summed):
        # cross terms alone leave the cd posterior broad (variance 2.8) and retrieval at chance (0.11/0.14);
        # cross + unimodal terms give retrieval 0.55/0.41 and cross-generation 0.38/0.34.
        extra_recon: bool = True  # cross-reconstructions from the other modalities' shared latents
        unimodal_recon: bool = True  # with extra_recon, also log p(m | z_m, h_m): MVAE's unimodal ELBO terms
        # The target's private latent in a cross term: "prior" N(0, I) (MMVAE+) or its "own" posterior sample.
        cross_private: Literal["prior", "own"] = Field("prior", json_schema_extra=IMPLICIT)
        # Paper silent on the likelihood's normalisation. A factor on every log-likelihood term;
        # "per_pixel" = 1 / largest pixel count (per-pixel means under auto weights). Measured with
        # Bernoulli likelihoods, 3–4 epochs, lr 1e-3: per_pixel collapses (unimodal shared means
        # identical, align stuck at 2α, everything at chance: reconstruction cannot pay for the KL and
        # center terms); 1.0 (summed) leaves γ·L_align ~1000× weaker than reconstruction, so the
        # unimodal means align late (digits_street cross-generation 0.31/0.27 at 3 epochs); 0.1 puts
        # β, γ = 1 within an order of magnitude of reconstruction: digits_street 0.69/0.76 at 4 epochs.
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
        # Persistent (in checkpoints): whether the mixture has been fitted. Random init needs no fit.
        self.register_buffer("mixture_ready", torch.tensor(p["mixture_init"] == "random"))
        self._ready = bool(self.mixture_ready)  # host copy: no device sync per step
        # The loss reads the host copy, so a loaded state must refresh it (a fitted checkpoint
        # would otherwise train and evaluate with the warm-up objective until on_epoch_start).
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self._epoch = 0

    def refresh_ready(self) -> None:
        self._ready = bool(self.mixture_ready)

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Refuse a run whose epochs never reach the k-means fit (``mixture_init_epoch`` ≥ ``epochs``):
        it would train only the warm-up objective and ``cluster``/``sample`` would read the random
        initial mixture. Refused rather than fitted after training, because a mixture fitted once
        training is over was never part of the objective the run reports."""
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
        """The base class's weighted log p(x_m | z, h), times ``recon_scale``."""
        return self.recon_scale * super().log_likelihood(modality, x, z, h)

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, epoch: int, data, split: str = "train") -> None:
        """Records the epoch (negative mining switch); fits the mixture by k-means once, at the
        start of epoch ``mixture_init_epoch`` (resumed runs keep the fitted state)."""
        self._epoch = int(epoch)
        self._ready = bool(self.mixture_ready)
        p = self.params
        if self.use_mixture and not self._ready and epoch >= int(p["mixture_init_epoch"]):
            self.init_mixture_kmeans(data, split)

    @torch.no_grad()
    def init_mixture_kmeans(self, data, split: str = "train") -> None:
        """Fit k-means to joint posterior means of a seeded subsample (torch's global RNG) and set
        the mixture by moment matching: π_k = cluster share, μ_k = centroid, σ²_k = within-cluster
        variance of the means + mean posterior variance (the aggregate posterior of the cluster).
        The centers {c_k} start at the same μ_k."""
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
    def negatives_are_semi_hard(self) -> bool:
        return self._epoch >= int(self.params["semi_hard_from_epoch"])

    def alignment(self, *means: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 12 over the unimodal shared means of M ≥ 2 modalities, negatives from
        ``select_negatives``: Σ over ordered pairs (m, m') of L_triplet(m, m', negatives in m'),
        divided by M − 1 or (``align_normaliser: pairs``) M(M − 1)/2: at M = 2, L(x, y, y') + L(y, x, x').
        Returns (L_align, fraction of chosen negatives farther than the positive)."""
        k, semi_hard, margin = (
            int(self.params["negatives"]),
            self.negatives_are_semi_hard(),
            float(self.params["margin"]),
        )
        total, valid = means[0].new_zeros(()), []
        for anchor, positive in permutations(means, 2):
            index, ok = select_negatives(anchor.detach(), positive.detach(), k, semi_hard)
            total = total + triplet_loss(anchor, positive, positive[index], margin).mean()
            valid.append(ok.float().mean())
        n = len(means) - 1
        return total / (n * (n + 1) / 2 if self.params["align_normaliser"] == "pairs" else n), torch.stack(valid).mean()

    def mixture_term(self, q: DiagGaussian, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """The λ1 bracket of Eq. 6 per sample and q(c|z_s) at the sample z (None without a usable
        mixture: the ablation, or warm-up before the k-means fit, use KL(q(z_s)||N(0,I)))."""
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
        terms.update(
            {
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
        )
        return {"loss": loss, **terms}

    def cross_reconstruction(self, batch: Batch, encoded: dict, h: dict[str, Tensor]) -> Tensor:
        """``extra_recon`` (paper silent): Σ_m mean_{o ≠ m} log p(m | z_o, h) per sample, z_o drawn
        from another modality o's unimodal posterior with the prior expert (the path ``generate``
        takes for Table 1), a fresh draw per (m, o), and h the target's private latent drawn from its
        prior N(0, I) (``cross_private: prior``, as MMVAE+ draws it from a prior) or its own posterior
        sample (``own``). Averaged over the M − 1 sources o, each target's cross term weighs as at
        M = 2 (MMVAE+, epalu/mmvaeplus src/objectives.py ``_m_iwae``, decodes every target from every
        source's z too, and averages over the sources). With ``prior``
        the content must go through the shared latent: measured on the embedded digits, without
        it the decoders read the digit from the private latent and cross-generation stays at chance.
        ``unimodal_recon`` (paper silent) also adds, for each m, log p(m | z_m, h_m) with z_m from m's
        own unimodal posterior (with the prior expert) and h_m its own posterior sample: MVAE's
        unimodal ELBO terms. Without them one modality's shared posterior went broad (variance 2.8 on
        digits_cdcb, 5 on digits_street, summed likelihoods) and added nothing to the product.
        """
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
        """Whether z_s's prior is the mixture: not in the ablation, nor before the k-means fit (the
        warm-up trains against N(0, I)). Reads the checkpointed buffer, not the per-epoch host copy."""
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
        """z_s from the mixture prior (N(0,I) without it); private latents come from the base
        ``private_prior``, N(0, I), the paper's p(h_x), p(h_y)."""
        if not self.use_mixture:
            return super().draw_shared_prior(n)
        return self.mixture.sample(n)[0]
