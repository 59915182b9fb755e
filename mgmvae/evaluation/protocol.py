"""The evaluation protocol of a run and the seeding of its random draws.

``evaluation.protocol`` (config.yaml):
  ``mean``       decode and embed posterior means, private latents at their prior mean (0);
  ``sample``     the reference code's protocol: decode a posterior draw with private latents drawn
                 from the model's ``private_prior``; embed a draw where the reference's probe does
                 (``embeds_sample``) — see ``mgmvae.base``;
  ``reference``  each model its own reference's protocol (``reference_protocol`` of its class,
                 with the reference file and function in its comment). Only the ``published`` study
                 uses it: a study comparing models under identical settings uses one protocol.
The resolved protocol (``mean`` or ``sample``) is written into every metrics file and MLflow run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mgmvae.base import PROTOCOLS, MultimodalVAE

SETTINGS = (*PROTOCOLS, "reference")


def resolve_protocol(setting: str, model_cls: type[MultimodalVAE]) -> str:
    """``mean`` or ``sample`` for one model: the setting itself, or under ``reference`` the
    protocol of the model's reference code."""
    if setting == "reference":
        return str(model_cls.reference_protocol)
    if setting not in PROTOCOLS:
        raise ValueError(f"config key 'evaluation.protocol': {setting!r} is not one of {SETTINGS}")
    return setting


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Torch's global RNG (and the device's) seeded for the block and restored after it, so each
    metric's draws depend on the seed only, not on what ran before."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
