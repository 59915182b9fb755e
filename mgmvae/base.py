"""The interface every model implements and the machinery they share.

Metrics never see model internals: they call ``embed``, ``generate``, ``cluster`` (the figures also
``translate`` and ``sample``). A batch is ``{modality: Tensor or None}``; a missing modality is
``None`` or absent. The evaluation protocols (``mean``, ``sample``) and the readings of a mixture of
experts given several modalities (``mixture_reading``), with their references: docs/evaluation.md.
Randomness comes from torch's global RNG, which the evaluation seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mgmvae.distributions import (
    DiagGaussian,
    Likelihood,
    MixtureOfExperts,
    posterior,
    product_of_experts,
    standard_prior,
)
from mgmvae.nets import Decoder, Encoder, Shape, compute_dtype
from mgmvae.params import Params as ParamsModel
from mgmvae.params import params_class, resolve

Batch = Mapping[str, Tensor | None]
PROTOCOLS = ("mean", "sample")  # evaluation protocols (docs/evaluation.md)
MIXTURE_READINGS = ("multivae", "mopoe", "average")  # evaluation.mixture_reading (docs/evaluation.md)


def likelihood_weights(shapes: Mapping[str, Sequence[int]], spec: Any) -> dict[str, float]:
    """``"auto"``: MMVAE's weighting, the largest pixel count over each modality's own
    (MNIST 3·32·32/(28·28) ≈ 3.92, SVHN 1); ``"none"``: all 1; or an explicit mapping."""
    if spec == "auto":
        sizes = {m: float(torch.tensor(s).prod()) for m, s in shapes.items()}
        return {m: max(sizes.values()) / n for m, n in sizes.items()}
    if spec == "none":
        return {m: 1.0 for m in shapes}
    missing = set(shapes) - set(spec)
    if missing:
        raise ValueError(f"likelihood_weights lacks modalities {sorted(missing)}")
    return {m: float(spec[m]) for m in shapes}


class MultimodalVAE(nn.Module):
    """Shared encoders/decoders per modality, likelihoods and the evaluation surface. Subclasses set
    ``uses_private`` (private latents per modality), implement ``loss`` and override
    ``joint_posterior`` when they aggregate other than by a product of experts."""

    name: ClassVar[str] = "base"
    label: ClassVar[str | None] = None  # the name tables and figures show (None: ``name``)
    colour: ClassVar[str | None] = None  # a matplotlib colour in every figure (None: one picked from ``name``)
    uses_private: ClassVar[bool] = False
    private_in_family: ClassVar[bool] = False  # private posteriors of the ``posterior`` family (else Gaussian)

    class Params(ParamsModel):
        """The objective's parameters, their types and defaults (mgmvae/params.py)."""

    default_params: ClassVar[Mapping[str, Any]] = {}  # a plugin's alternative to Params: {parameter: default}
    # The protocol of the model's reference evaluation code (``evaluation.protocol: reference``),
    # and whether under ``sample`` its probe embeds a posterior draw rather than the mean.
    reference_protocol: ClassVar[str] = "mean"
    embeds_sample: ClassVar[bool] = False
    max_modalities: ClassVar[int | None] = None  # None: any M >= 2; 2: refused on more (docs/models.md)
    mixture_reading: str = "multivae"  # the evaluation sets it from evaluation.mixture_reading

    def __init__(self, shapes: dict[str, Shape], settings: Mapping[str, Any]):
        super().__init__()
        if self.max_modalities is not None and len(shapes) > self.max_modalities:
            raise ValueError(
                f"model {self.name!r} is defined for at most {self.max_modalities} modalities (its class's "
                f"max_modalities); this dataset has {len(shapes)}: {list(shapes)}. Train it on a dataset of "
                f"{self.max_modalities} modalities, or choose a model defined for M modalities"
            )
        self.modalities = list(shapes)
        self.shapes = {m: tuple(s) for m, s in shapes.items()}
        self.settings = dict(settings)
        self.params = self.resolve_params(settings["params"])
        self.shared_dim = int(settings["shared_dim"])
        self.private_dim = int(settings["private_dim"]) if self.uses_private else 0
        self.posterior_family = settings["posterior"]
        dtype = compute_dtype(settings["precision"])
        self.encoders = nn.ModuleDict(
            {m: Encoder(s, self.shared_dim, self.private_dim, dtype) for m, s in shapes.items()}
        )
        latent = self.shared_dim + self.private_dim
        self.decoders = nn.ModuleDict({m: Decoder(s, latent, dtype) for m, s in shapes.items()})
        self.likelihood = Likelihood(**settings["likelihood"])
        self.weights = likelihood_weights(self.shapes, settings["likelihood_weights"])

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        return resolve(params_class(cls), given, f"model {cls.name!r}")

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one run's resolved settings before any work; return the resolved params.
        Models whose params constrain other keys (e.g. epochs) override it."""
        return cls.resolve_params(settings["params"])

    # -------------------------------------------------------------- building blocks
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def present(self, batch: Batch, modalities: Sequence[str] | None = None) -> list[str]:
        names = self.modalities if modalities is None else modalities
        return [m for m in names if batch.get(m) is not None]

    def encode(self, batch: Batch, modalities: Sequence[str] | None = None) -> dict[str, tuple[Any, Any]]:
        """Unimodal posteriors ``{m: (q_shared, q_private or None)}`` for the present modalities."""
        out, family = {}, self.posterior_family if self.private_in_family else "gaussian"
        for m in self.present(batch, modalities):
            e = self.encoders[m](batch[m])
            private = None if e.private_loc is None else posterior(family, e.private_loc, e.private_scale)
            out[m] = (posterior(self.posterior_family, e.shared_loc, e.shared_scale), private)
        return out

    def joint_posterior(self, encoded: Mapping[str, tuple[Any, Any]]):
        """Aggregate the shared posteriors: product of experts with an N(0, I) prior expert."""
        return product_of_experts([q for q, _ in encoded.values()], prior_expert=True)

    def decode(self, modality: str, z: Tensor, h: Tensor | None = None) -> Tensor:
        if self.private_dim:
            if h is None:  # no style given: the private prior's mean
                h = z.new_zeros(*z.shape[:-1], self.private_dim)
            z = torch.cat([z, h], dim=-1)
        return self.decoders[modality](z)

    def log_likelihood(self, modality: str, x: Tensor, z: Tensor, h: Tensor | None = None) -> Tensor:
        """Weighted log p(x_m | z, h) per sample (leading sample dims of z/h are kept)."""
        return self.weights[modality] * self.likelihood.log_prob(self.decode(modality, z, h), x)

    def prior(self, like: Tensor):
        return standard_prior(self.posterior_family, like)

    def private_prior(self, modality: str, like: Tensor) -> DiagGaussian:
        """p(h_m), shaped like ``like``: the one private prior a model trains against, the evaluation
        draws from and the test log-likelihood weighs by. N(0, I), as DMVAE's ``cross_acc_prior``
        (seqam-lab/DMVAE, mnist_svhn/main.py); MMVAE+ and IDMVAE override it."""
        return DiagGaussian(torch.zeros_like(like), torch.zeros_like(like))

    def draw_private(self, modality: str, n: int) -> Tensor | None:
        """n private latents from ``private_prior`` (None for models without private latents)."""
        if not self.private_dim:
            return None
        return self.private_prior(modality, torch.zeros(n, self.private_dim, device=self.device)).rsample()

    def draw_shared_prior(self, n: int) -> Tensor:
        """n shared latents from the model's prior (joint generation, joint coherence)."""
        return self.prior(torch.zeros(n, self.shared_dim, device=self.device)).rsample()

    # ------------------------------------------------ priors of the test log-likelihood
    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) of the shared latent (leading dims kept), which the test log-likelihood weighs by."""
        return self.prior(z).log_prob(z)

    def log_private_prior(self, modality: str, h: Tensor) -> Tensor:
        """log p(h_m) under ``private_prior`` (leading dims of h kept)."""
        return self.private_prior(modality, h).log_prob(h)

    def prior_name(self) -> str:
        """Which shared prior ``log_prior`` evaluates, recorded beside the estimate."""
        return f"standard {self.posterior_family}"

    # ------------------------------------------------------------ training hooks
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """``{"loss": scalar to minimise, <term>: scalar, ...}`` (batch means)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def on_epoch_start(self, epoch: int, data, split: str = "train") -> None:
        """Called by the loop before each epoch (mixture initialisation, negative mining...)."""

    # ------------------------------------------------------- evaluation surface
    def shared_posterior(self, batch: Batch, modalities: Sequence[str]):
        encoded = self.encode(batch, modalities)
        if not encoded:
            raise ValueError(f"need at least one of {list(modalities)} in the batch")
        return self.joint_posterior(encoded)

    @torch.no_grad()
    def embed(self, batch: Batch, modalities: Sequence[str], protocol: str = "mean") -> Tensor:
        """Shared representation from a non-empty subset of modalities: the posterior mean, or under
        ``sample`` a draw where the model's reference probe reads draws (``embeds_sample``)."""
        q = self.shared_posterior(batch, modalities)
        if check_protocol(protocol) == "sample" and self.embeds_sample:
            return posterior_draw(q)
        return self.posterior_mean(q, embedding=True)

    @torch.no_grad()
    def generate(self, batch: Batch, source: str | Sequence[str], target: str, protocol: str = "mean") -> Tensor:
        """The decoder mean of ``target`` from ``source`` alone, or from a list of modalities through
        ``joint_posterior``: from the posterior mean with h = 0 (``mean``), or a posterior draw with h
        from ``private_prior`` (``sample``)."""
        q = self.shared_posterior(batch, [source] if isinstance(source, str) else list(source))
        if check_protocol(protocol) == "mean":
            return self.likelihood.mean(self.decode(target, self.posterior_mean(q, embedding=False)))
        z = posterior_draw(q)
        return self.likelihood.mean(self.decode(target, z, self.draw_private(target, z.shape[0])))

    def posterior_mean(self, q, embedding: bool) -> Tensor:
        """``q.mean``, or for a mixture of several experts what ``mixture_reading`` reads."""
        if (reading := self.mixture_reading) not in MIXTURE_READINGS:
            raise ValueError(f"config key 'evaluation.mixture_reading': {reading!r} is not one of {MIXTURE_READINGS}")
        if isinstance(q, MixtureOfExperts) and len(q.experts) > 1 and reading != "average":
            if reading == "mopoe" or not embedding:
                return per_row_expert(torch.stack([e.mean for e in q.experts]))
        return q.mean

    @torch.no_grad()
    def translate(self, content: Batch, style: Batch, source: str, target: str, protocol: str = "mean") -> Tensor:
        """Content from ``source``'s shared latent, style from the ``target`` reference's private
        latent (posterior means, or draws under ``sample``); models without private latents fall
        back to ``generate``."""
        if not self.private_dim:
            return self.generate(content, source, target, protocol)
        q = self.shared_posterior(content, [source])
        _, h = self.encode(style, [target])[target]
        if check_protocol(protocol) == "sample":
            return self.likelihood.mean(self.decode(target, posterior_draw(q), h.rsample()))
        return self.likelihood.mean(self.decode(target, q.mean, h.mean))

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        """Joint generation: the shared latent from ``draw_shared_prior``, each private latent
        from ``private_prior``; the decoder mean of every modality (MMVAE's ``generate``)."""
        z = self.draw_shared_prior(n)
        return {m: self.likelihood.mean(self.decode(m, z, self.draw_private(m, n))) for m in self.modalities}

    @torch.no_grad()
    def cluster(self, batch: Batch, modalities: Sequence[str]) -> Tensor | None:
        """The model's own cluster assignment, or None (metrics then run k-means on ``embed``)."""
        return None


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {PROTOCOLS}")
    return protocol


def per_row_expert(stacked: Tensor) -> Tensor:
    """[M, B, D] -> [B, D]: row b of an expert drawn uniformly per row (torch's seeded RNG)."""
    pick = torch.randint(stacked.shape[0], (stacked.shape[1],), device=stacked.device)
    return stacked[pick, torch.arange(stacked.shape[1], device=stacked.device)]


def posterior_draw(q) -> Tensor:
    """One draw per row from a posterior; a mixture of experts picks its expert uniformly per row."""
    if not isinstance(q, MixtureOfExperts):
        return q.rsample()
    return per_row_expert(q.rsample_stratified(1)[:, 0])  # draws [M, B, D]
