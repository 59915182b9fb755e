"""IDMVAE (information-disentangled multimodal VAE; code chatzikon/IDMVAE): MMVAE+ (its code builds
on it; ``baselines/mmvae_plus.py``) plus three regularisers, from the paper and src/objectives.py.
Departures from the code and why: docs/models.md, "IDMVAE against its official code".

1. Cross-view MI (``cross_mi_weight``): InfoNCE (``mgmvae.contrastive.info_nce``) between the unimodal
   shared posterior means of every ordered pair of present modalities (i queries, j keys, cosine over
   ``temperature``, each view centred with ``center``), summed and divided by M − 1
   (``compute_cross_mi_loss``); zero with one modality present.
2. Cycle consistency with generative augmentation (``gen_aug_weight``; ``compute_gen_aug_loss``), per
   present modality m, summed, with fresh draws z ~ q(z|x_m), w ~ q(w|x_m): x' = dec_m(z, roll(w))
   (another row's style) re-encoded must keep z's shared mean; x'' = dec_m(roll(z), w) re-encoded must
   keep w's private mean. "Keep" is ``gen_aug_loss``: ``contrastive`` (the code's "CL", InfoNCE of
   re-encoded against original means) or ``matching`` ("ML", squared distance); 0.5·(shared +
   private) per modality; gradients through decoder, re-encoding and the original means, as the code.
3. Latent diffusion prior on z (``diffusion_weight``; ``compute_diffusion_prior_loss``, averaged over
   the modalities): a DDPM (Ho et al. 2020; linear β from 1e-4·1000/T to 0.02·1000/T, T =
   ``diffusion_steps``) whose MLP ε_θ(z_t, t) learns the unimodal shared means (detached with
   ``diffusion_stop_grad``) by mean‖ε − ε_θ(√ᾱ_t z_0 + √(1−ᾱ_t) ε, t)‖²; ``sample(n)`` draws z
   ancestrally through all T steps (variance β̃_t), w from ``private_prior``.
Priors: MMVAE+'s ``prior_scale`` with η = 1e-8 (src/models/idmvae.py ``_init_prior_params``,
``_compute_prior_from_params``: scale softplus(0) + η ≈ 0.693; ``pws_params_aux``: r_d learnable from
ρ_d = 0). Defaults (``IDMVAE.Params``): the released PolyMNIST script's (paper App. B.1).
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
        center: bool = True  # ours: uncentred InfoNCE stayed at log B for an epoch here (docs/models.md)
        diffusion_weight: NonNegativeFloat = 1.0  # released script: diffusion loss weight 1.0
        diffusion_steps: PositiveInt = 200  # the DDPM module's default T (its model class: 1000, sampled by 100 DDIM)
        diffusion_stop_grad: bool = True  # denoiser trained on detached shared means (released script: off)

    # The ELBO's priors (src/objectives.py ``get_simple_prior_z``, ``get_simple_prior_w(aux=False)``):
    # MMVAE+'s ``prior_scale`` with this η; the sampled evaluation draws w from the latter (docs/evaluation.md).
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
        """The test log-likelihood weighs z by the ELBO's ``prior``: the diffusion prior's density is intractable."""
        scale = "N(0, 0.693²)" if self.params["prior_scale"] == "softplus" else f"standard {self.posterior_family}"
        return f"{scale} (the ELBO's; the latent diffusion prior's density is intractable)"

    @torch.no_grad()
    def draw_shared_prior(self, n: int) -> Tensor:
        """Joint generation draws z from the diffusion prior."""
        return self.diffusion.sample(n)
