"""Deliberately broken models, one fault each; tests/test_plugins.py checks each is refused by name."""

import itertools

import torch
from torch import Tensor, nn

from mgmvae.base import Batch, MultimodalVAE
from tiny_plugin.model import TinyVAE


class NotAModel(nn.Module):
    name = "not_a_model"


def not_a_class() -> None:
    """A function where a class is expected."""


class NoLoss(MultimodalVAE):
    name = "no_loss"


class NoName(MultimodalVAE):
    def loss(self, batch: Batch) -> dict[str, Tensor]:
        return TinyVAE.loss(self, batch)  # type: ignore[arg-type]


class BadName(TinyVAE):
    name = "Tiny VAE"


class BuiltinName(TinyVAE):
    name = "mvae"


class SettingsParam(TinyVAE):
    name = "settings_param"
    default_params = {"kl_weight": 1.0, "epochs": 3}


class NonJsonParam(TinyVAE):
    name = "non_json_param"
    default_params = {"kl_weight": 1.0, "act": nn.ReLU()}


class NanLoss(TinyVAE):
    name = "nan_loss"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        terms = super().loss(batch)
        return {**terms, "loss": terms["loss"] * float("nan")}


class VectorLoss(TinyVAE):
    name = "vector_loss"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        z = self.joint_posterior(self.encode(batch)).rsample()
        return {"loss": -self.log_likelihood(self.modalities[0], batch[self.modalities[0]], z)}


class NoLossKey(TinyVAE):
    name = "no_loss_key"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        terms = super().loss(batch)
        return {"total": terms["loss"]}


class DecoderUnused(TinyVAE):
    name = "decoder_unused"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        kl = self.joint_posterior(self.encode(batch)).kl_standard_normal().mean()
        return {"loss": kl, "kl": kl}


class WrongShape(TinyVAE):
    name = "wrong_shape"

    @torch.no_grad()
    def generate(self, batch: Batch, source: str, target: str, protocol: str = "mean") -> Tensor:
        return super().generate(batch, source, target, protocol)[:, :, :8]


class Logits(TinyVAE):
    name = "logits"

    @torch.no_grad()
    def generate(self, batch: Batch, source: str, target: str, protocol: str = "mean") -> Tensor:
        return self.decode(target, self.embed(batch, [source], protocol)) * 100.0


class NeedsBoth(TinyVAE):
    name = "needs_both"

    @torch.no_grad()
    def embed(self, batch: Batch, modalities, protocol: str = "mean") -> Tensor:
        encoded = {m: self.encode({m: batch.get(m)})[m] for m in self.modalities}  # KeyError if one is None
        return self.joint_posterior(encoded).mean


class BadSample(TinyVAE):
    name = "bad_sample"

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        return {self.modalities[0]: super().sample(n)[self.modalities[0]]}


class FloatClusters(TinyVAE):
    name = "float_clusters"

    @torch.no_grad()
    def cluster(self, batch: Batch, modalities) -> Tensor | None:
        return self.embed(batch, modalities)[:, 0]


_calls = itertools.count()


class Unseeded(TinyVAE):
    name = "unseeded"

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        terms = super().loss(batch)
        return {**terms, "loss": terms["loss"] + 1e-3 * next(_calls)}


class NotSaved(TinyVAE):
    name = "not_saved"

    def __init__(self, shapes, settings):
        super().__init__(shapes, settings)
        self.shift = torch.randn(self.shared_dim)  # a plain attribute: not in the state dict

    @torch.no_grad()
    def embed(self, batch: Batch, modalities, protocol: str = "mean") -> Tensor:
        return super().embed(batch, modalities, protocol) + self.shift
