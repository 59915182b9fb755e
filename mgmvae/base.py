"""The interface every model implements, the machinery they share, and the model registry.

Metrics never see model internals: they call ``embed``, ``generate``, ``cluster`` (and the
figures ``translate`` and ``sample``). A batch is ``{modality: Tensor or None}``; a missing
modality is ``None`` or absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mgmvae.distributions import (
    DiagGaussian,
    Likelihood,
    posterior,
    product_of_experts,
    standard_prior,
)
from mgmvae.nets import Decoder, Encoder, Shape, compute_dtype

Batch = Mapping[str, Tensor | None]
MODELS: dict[str, type[MultimodalVAE]] = {}
# Modules whose import registers models; looked up lazily so baselines/ can import mgmvae.
_MODEL_MODULES = ("mgmvae.model", "baselines")


def register(name: str):
    def decorate(cls):
        cls.name = name
        MODELS[name] = cls
        return cls

    return decorate


def model_names() -> list[str]:
    for module in _MODEL_MODULES:
        importlib.import_module(module)
    return sorted(MODELS)


def get_model_class(name: str) -> type[MultimodalVAE]:
    names = model_names()
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(names)}")
    return MODELS[name]


def build_model(name: str, shapes: Mapping[str, Shape], settings: Mapping[str, Any]) -> MultimodalVAE:
    return get_model_class(name)(dict(shapes), settings)


def likelihood_weights(shapes: Mapping[str, Shape], spec: Any) -> dict[str, float]:
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
    """Shared encoders/decoders per modality, likelihoods and the evaluation surface.

    Subclasses set ``uses_private`` (private latents per modality) and implement ``loss``; they
    override ``joint_posterior`` when they aggregate other than by a product of experts.
    """

    name: ClassVar[str] = "base"
    uses_private: ClassVar[bool] = False
    default_params: ClassVar[dict[str, Any]] = {}  # the objective's hyperparameters and defaults

    def __init__(self, shapes: dict[str, Shape], settings: Mapping[str, Any]):
        super().__init__()
        self.modalities = list(shapes)
        self.shapes = {m: tuple(s) for m, s in shapes.items()}
        self.settings = dict(settings)
        self.params = self.resolve_params(settings.get("params", {}))
        self.shared_dim = int(settings["shared_dim"])
        self.private_dim = int(settings["private_dim"]) if self.uses_private else 0
        self.posterior_family = settings.get("posterior", "gaussian")
        dtype = compute_dtype(settings.get("precision", "float32"))
        self.encoders = nn.ModuleDict(
            {m: Encoder(s, self.shared_dim, self.private_dim, dtype) for m, s in shapes.items()}
        )
        latent = self.shared_dim + self.private_dim
        self.decoders = nn.ModuleDict({m: Decoder(s, latent, dtype) for m, s in shapes.items()})
        lik = settings.get("likelihood", {"family": "laplace", "scale": 0.75})
        self.likelihood = Likelihood(lik["family"], lik.get("scale", 0.75))
        self.weights = likelihood_weights(self.shapes, settings.get("likelihood_weights", "auto"))

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(cls.default_params))
        if unknown:
            raise ValueError(
                f"model {cls.name!r} has no parameter(s) {unknown}; its parameters are {sorted(cls.default_params)}"
            )
        return {**cls.default_params, **given}

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one run's resolved settings before any work; return the resolved params.
        Models whose params constrain other keys (e.g. epochs) override it."""
        return cls.resolve_params(settings.get("params", {}))

    # -------------------------------------------------------------- building blocks
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def present(self, batch: Batch, modalities: Sequence[str] | None = None) -> list[str]:
        names = self.modalities if modalities is None else modalities
        return [m for m in names if batch.get(m) is not None]

    def encode(self, batch: Batch, modalities: Sequence[str] | None = None) -> dict[str, tuple[Any, Any]]:
        """Unimodal posteriors ``{m: (q_shared, q_private or None)}`` for the present modalities."""
        out = {}
        for m in self.present(batch, modalities):
            e = self.encoders[m](batch[m])
            private = None if e.private_loc is None else DiagGaussian(e.private_loc, e.private_scale.clamp(-12, 8))
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

    # ------------------------------------------------------------ training hooks
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        """``{"loss": scalar to minimise, <term>: scalar, ...}`` (batch means)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def on_epoch_start(self, epoch: int, data, split: str = "train") -> None:
        """Called by the loop before each epoch (mixture initialisation, negative mining...)."""

    # ------------------------------------------------------- evaluation surface
    @torch.no_grad()
    def embed(self, batch: Batch, modalities: Sequence[str]) -> Tensor:
        """Shared representation (posterior mean) from a non-empty subset of modalities."""
        encoded = self.encode(batch, modalities)
        if not encoded:
            raise ValueError(f"embed needs at least one of {list(modalities)} in the batch")
        return self.joint_posterior(encoded).mean

    @torch.no_grad()
    def generate(self, batch: Batch, source: str, target: str) -> Tensor:
        """Cross-modal generation: decoder mean of ``target`` from ``source``'s shared latent mean,
        with the target's private latent at its prior mean."""
        z = self.embed(batch, [source])
        return self.likelihood.mean(self.decode(target, z))

    @torch.no_grad()
    def translate(self, content: Batch, style: Batch, source: str, target: str) -> Tensor:
        """Content from ``source``'s shared latent, style from the ``target`` reference's private
        latent; models without private latents fall back to ``generate``."""
        if not self.private_dim:
            return self.generate(content, source, target)
        z = self.embed(content, [source])
        _, h = self.encode(style, [target])[target]
        return self.likelihood.mean(self.decode(target, z, h.mean))

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        """Joint generation from the prior."""
        z = self.prior(torch.zeros(n, self.shared_dim, device=self.device)).rsample()
        h = torch.randn(n, self.private_dim, device=self.device) if self.private_dim else None
        return {m: self.likelihood.mean(self.decode(m, z, h)) for m in self.modalities}

    @torch.no_grad()
    def cluster(self, batch: Batch, modalities: Sequence[str]) -> Tensor | None:
        """The model's own cluster assignment, or None (metrics then run k-means on ``embed``)."""
        return None
