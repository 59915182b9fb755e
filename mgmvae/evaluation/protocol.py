"""The evaluation protocol of a run.

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
