"""IDMVAE (information-disentangled multimodal VAE; seed 003, code chatzikon/IDMVAE).

IDMVAE is MMVAE+ (its reference code builds on it: mixture of experts over the shared z, private
w per modality, auxiliary priors for cross reconstruction, the same β-weighted ELBO, but with the priors of 4.
below) plus three regularisers. Ours, written from the paper's description and the released objective:

1. Cross-view mutual information maximisation on the shared part (weight ``cross_mi_weight``):
   InfoNCE between the unimodal shared posterior means of every ordered pair of present
   modalities (i as queries, j as keys, cosine similarity over ``temperature``), summed over the
   ordered pairs and divided by M − 1 (as the code's ``compute_cross_mi_loss``). Zero with one
   modality present. ``mgmvae.contrastive.info_nce``. The code's estimator (C-DSVAE's
   ``ContrastiveLoss(tau=1, normalize=True)``) is NT-Xent over the 2B concatenated means (intra-
   and cross-view negatives); ours keeps cross-view negatives only. ``center: true`` (ours)
   subtracts each view's batch mean before the cosine: measured on digits_street, the shared
   means share one direction early in training (pairwise cosine ≈ 0.998) and the uncentred loss
   stays at log B for a whole epoch; centred, it falls within 60 steps.
2. Cycle consistency with generative augmentation (weight ``gen_aug_weight``), per present
   modality m, with fresh posterior draws z ~ q(z|x_m), w ~ q(w|x_m):
   - swap the private part: x' = dec_m(z, roll(w)) (w rolled by one along the batch, i.e. another
     sample's style); re-encode x' with enc_m; its shared mean must match the original shared
     mean of the same sample (shared content survives a style change);
   - swap the shared part: x'' = dec_m(roll(z), w); re-encode; its *private* mean must match the
     original private mean (the private code must not carry the content, which was replaced).
   "Match" is ``gen_aug_loss: contrastive`` (default, the code's "CL"): InfoNCE between the
   re-encoded and original means (as queries/keys), or ``matching`` (the code's "ML"): squared
   distance of the means summed over dimensions. Per modality 0.5·(shared + private), summed over
   modalities. Gradients flow through the decoder, the re-encoding and the original means (as
   the code). Both swaps share one decoder and one encoder call.
3. Latent diffusion prior on the shared latent (weight ``diffusion_weight``): a DDPM
   (Ho et al. 2020; linear β schedule 1e-4·1000/T … 0.02·1000/T, T = ``diffusion_steps``) whose
   small MLP denoiser ε_θ(z_t, t) is trained on the unimodal shared posterior means (detached by
   default, ``diffusion_stop_grad``; the released PolyMNIST script trains with it off) with the
   noise-prediction loss mean‖ε − ε_θ(√ᾱ_t z_0 + √(1−ᾱ_t) ε, t)‖². ``sample(n)`` draws z by
   ancestral sampling through all T steps (posterior variance β̃_t), w from ``private_prior``.
   The code also fits a diffusion prior to each private latent (``pws_diffusion``); we do not. Its DDPM
   module predicts x_0 (sigmoid schedule, SNR-weighted); we predict ε on the linear schedule.
4. Priors (``prior_scale``): ``softplus`` (default) is the reference's: p(z) = N(0, s²) and
   p(w_m) = N(0, s²) with s = softplus(0) + η = log 2 + 10⁻⁸ ≈ 0.693 (chatzikon/IDMVAE,
   src/models/idmvae.py, ``IDMVAE._init_prior_params`` sets a fixed zero "logvar" and
   ``_compute_prior_from_params`` maps it to the Normal's *scale* softplus(logvar) + η, η =
   ``Constants.eta`` = 1e-8 in src/utils.py; the ELBO in src/objectives.py reads them through
   ``get_simple_prior_z`` and ``get_simple_prior_w(aux=False)``), and the auxiliary prior
   r_d(w) = N(0, (softplus(ρ_d) + η)²) with a learnable ρ_d initialised at 0 (``pws_params_aux``,
   so it starts at the same scale 0.693). η enters only these scales (and the reference encoder's
   posterior scale, which ours parameterises by a log-variance as every model here). These are
   MMVAE+'s ``prior_scale`` choices (baselines/mmvae_plus.py) with IDMVAE's η; ``unit`` is N(0, I)
   and N(0, diag exp ρ_d).
``center`` applies to the gen-aug InfoNCE too. ``generate`` decodes the target with w at the
prior mean (0) under ``mean``; under ``sample`` w is drawn from ``private_prior``, N(0, 0.693²):
the code's plain prior, which its ``self_and_cross_modal_generation_forward`` (src/models/
idmvae.py) samples only with the diffusion weight at 0. With the weight on (the released script,
and our default) it samples w from the private diffusion prior, which we do not fit.
M modalities, as the reference's PolyMNIST code (chatzikon/IDMVAE, src/objectives.py): the cross-view
InfoNCE over the M(M − 1) ordered pairs divided by M − 1 (``compute_cross_mi_loss``); the gen-aug
cycle summed over the M modalities (``compute_gen_aug_loss``); the diffusion loss averaged over
them (``compute_diffusion_prior_loss``); the ELBO is MMVAE+'s. Cost per step: MMVAE+'s O(M² K)
decoder rows, M(M − 1) B × B InfoNCE terms, and per modality 2B more decoded and re-encoded rows.
The defaults (``IDMVAE.Params``) are the released PolyMNIST script's (paper App. B.1); T = 200 the
DDPM module's: we sample ancestrally through all T, so fewer steps keep ``sample`` cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor, nn

from baselines.mmvae_plus import MMVAEPlus
from mgmvae.base import Batch
from mgmvae.contrastive import info_nce


# ----------------------------------------------------------------- DDPM pieces
@dataclass
class NoiseSchedule:
    betas: Tensor  # [T]

    @property
    def alphas(self) -> Tensor:
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    def posterior_variance(self) -> Tensor:
        """β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), with ᾱ_{−1} = 1 (so β̃_0 = 0)."""
        ab = self.alpha_bars
        prev = torch.cat([ab.new_ones(1), ab[:-1]])
        return self.betas * (1.0 - prev) / (1.0 - ab)


def linear_beta_schedule(steps: int) -> NoiseSchedule:
    """DDPM's linear schedule, rescaled so that any T spans the same total noise as T = 1000."""
    if steps < 1:
        raise ValueError(f"diffusion needs at least one step, got {steps}")
    scale = 1000.0 / steps
    return NoiseSchedule(torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).float())


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), reparameterised with ``noise``."""
    ab = schedule.alpha_bars.to(x0.device)[t].unsqueeze(-1)
    return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise


def diffusion_loss(denoiser: nn.Module, schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Noise-prediction loss: the mean squared error between ε and ε_θ(x_t, t)."""
    return (denoiser(q_sample(schedule, x0, t, noise), t) - noise).pow(2).mean()


class Denoiser(nn.Module):
    """ε_θ(x_t, t): an MLP on [x_t, sinusoidal embedding of t]."""

    def __init__(self, dim: int, hidden: int = 256, time_dim: int = 64):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(
            nn.Linear(dim + time_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def time_embedding(self, t: Tensor) -> Tensor:
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / max(half - 1, 1))
        angles = t.float().unsqueeze(-1) * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, self.time_embedding(t)], dim=-1))


class LatentDiffusionPrior(nn.Module):
    betas: Tensor  # registered buffer

    def __init__(self, dim: int, steps: int, hidden: int = 256):
        super().__init__()
        self.dim = dim
        self.denoiser = Denoiser(dim, hidden)
        schedule = linear_beta_schedule(steps)
        self.register_buffer("betas", schedule.betas)

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.betas)

    def loss(self, x0: Tensor) -> Tensor:
        """One Monte Carlo draw of the noise-prediction loss: t ~ U{0..T−1}, ε ~ N(0, I)."""
        t = torch.randint(0, self.schedule.steps, (x0.shape[0],), device=x0.device)
        return diffusion_loss(self.denoiser, self.schedule, x0, t, torch.randn_like(x0))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling x_T ~ N(0, I) → x_0 through every step."""
        s = self.schedule
        device = self.betas.device
        betas, alphas, ab, var = s.betas, s.alphas, s.alpha_bars, s.posterior_variance()
        x = torch.randn(n, self.dim, device=device, generator=generator)
        for step in reversed(range(s.steps)):
            t = torch.full((n,), step, device=device, dtype=torch.long)
            eps = self.denoiser(x, t)
            x = (x - betas[step] / (1.0 - ab[step]).sqrt() * eps) / alphas[step].sqrt()
            if step > 0:
                x = x + var[step].sqrt() * torch.randn(n, self.dim, device=device, generator=generator)
        return x


# ---------------------------------------------------------------------- model
class IDMVAE(MMVAEPlus):
    name = "idmvae"
    label, colour = "IDMVAE", "tab:brown"

    # The released PolyMNIST script's values (paper App. B.1), with MMVAE+'s ELBO at K = 1 and beta 2.5
    class Params(MMVAEPlus.Params):
        cross_mi_weight: NonNegativeFloat = 80.0  # released script: cross_mi_loss_scale 80
        gen_aug_weight: NonNegativeFloat = 20.0  # released script: gen_aug_loss_scale 20
        gen_aug_loss: Literal["contrastive", "matching"] = "contrastive"  # released "CL" (InfoNCE); matching: "ML"
        temperature: PositiveFloat = 1.0  # released ContrastiveLoss(tau=1, normalize=True): cosine / 1
        center: bool = True  # ours: uncentred InfoNCE stayed at log B for an epoch here (the module docstring)
        diffusion_weight: NonNegativeFloat = 1.0  # released script: diffusion loss weight 1.0
        diffusion_steps: PositiveInt = 200  # the DDPM module's default T (its model class: 1000, sampled by 100 DDIM)
        diffusion_stop_grad: bool = True  # denoiser trained on detached shared means (released script: off)

    # Priors: MMVAE+'s ``prior_scale`` (baselines/mmvae_plus.py) with this η; the sampled evaluation
    # draws w from ``private_prior``, N(0, s²): chatzikon/IDMVAE, src/models/idmvae.py
    # ``get_simple_prior_w(aux=False)``, which ``self_and_cross_modal_generation_forward`` draws from
    # only with ``diffusion_loss_weight`` 0, otherwise from the private diffusion prior (not fitted here).
    eta = 1e-8  # chatzikon/IDMVAE src/utils.py, Constants.eta: added to every softplus scale

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        if self.params["prior_scale"] == "softplus" and self.posterior_family != "gaussian":
            raise ValueError("idmvae prior_scale softplus needs posterior: gaussian (the reference's Normal prior)")
        self.diffusion = LatentDiffusionPrior(self.shared_dim, int(self.params["diffusion_steps"]))

    # -------------------------------------------------------------- regularisers
    def cross_mi_loss(self, encoded) -> Tensor:
        means = {m: q.mean for m, (q, _) in encoded.items()}
        names = list(means)
        if len(names) < 2:
            return next(iter(means.values())).new_zeros(())
        tau = float(self.params["temperature"])
        center = bool(self.params["center"])
        total = sum(info_nce(means[i], means[j], tau, center) for i in names for j in names if i != j)
        return total / (len(names) - 1)  # type: ignore[return-value]  # sum() over >= 2 pairs: a Tensor

    def _match(self, rebuilt: Tensor, original: Tensor) -> Tensor:
        if self.params["gen_aug_loss"] == "contrastive":
            return info_nce(rebuilt, original, float(self.params["temperature"]), bool(self.params["center"]))
        return (rebuilt - original).pow(2).sum(-1).mean()

    def gen_aug_loss(self, encoded) -> Tensor:
        total: Tensor = 0.0  # type: ignore[assignment]  # 0.0 + the first Tensor term is a Tensor
        for m, (q_z, q_w) in encoded.items():
            z, w = q_z.rsample(), q_w.rsample()
            latents = torch.stack(
                [
                    torch.cat([z, w.roll(1, dims=0)], -1),  # other sample's style: keep content
                    torch.cat([z.roll(1, dims=0), w], -1),  # other sample's content: keep style
                ]
            )
            images = self.likelihood.mean(self.decoders[m](latents))  # [2, B, C, H, W]
            out = self.encoders[m](images.flatten(0, 1))
            b = z.shape[0]
            shared_again = out.shared_loc[:b]  # re-encoded shared mean after the style swap
            private_again = out.private_loc[b:]  # re-encoded private mean after the content swap
            total = total + 0.5 * (self._match(shared_again, q_z.mean) + self._match(private_again, q_w.mean))
        return total

    def diffusion_prior_loss(self, encoded) -> Tensor:
        means = [q.mean for q, _ in encoded.values()]
        if self.params["diffusion_stop_grad"]:
            means = [mu.detach() for mu in means]
        return sum(self.diffusion.loss(mu) for mu in means) / len(means)  # type: ignore[return-value]  # >= 1 term: a Tensor

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        encoded = self.encode(batch)
        terms, value = self.elbo_loss(batch, encoded)
        p = self.params
        cross_mi = self.cross_mi_loss(encoded)
        gen_aug = self.gen_aug_loss(encoded) if float(p["gen_aug_weight"]) > 0 else cross_mi.new_zeros(())
        diff = self.diffusion_prior_loss(encoded) if float(p["diffusion_weight"]) > 0 else cross_mi.new_zeros(())
        loss = (
            -value
            + float(p["cross_mi_weight"]) * cross_mi
            + float(p["gen_aug_weight"]) * gen_aug
            + float(p["diffusion_weight"]) * diff
        )
        return {"loss": loss, **terms, "cross_mi": cross_mi, "gen_aug": gen_aug, "diffusion": diff}

    # ------------------------------------------------------------ evaluation
    # chatzikon/IDMVAE, src/commands/run_PolyMNIST_experiment_train_and_checkpoint.sh passes
    # --use_mean_for_latent_clf: its probe (src/eval_functions_polyMNIST.py ``train_clf_lr``) reads means.
    embeds_sample = False

    def prior_name(self) -> str:
        """The test log-likelihood weighs z by ``prior``, the prior of the ELBO the model is trained on
        (``elbo_terms``): the latent diffusion prior, fitted to detached posterior means after the
        fact, has no tractable density (a probability-flow ODE or its variational bound would be needed)."""
        scale = "N(0, 0.693²)" if self.params["prior_scale"] == "softplus" else f"standard {self.posterior_family}"
        return f"{scale} (the ELBO's; the latent diffusion prior's density is intractable)"

    @torch.no_grad()
    def draw_shared_prior(self, n: int) -> Tensor:
        """Joint generation draws z from the diffusion prior."""
        return self.diffusion.sample(n)
