"""Baseline models. Importing this package registers each of them in ``mgmvae.base.MODELS``."""

from baselines import (  # noqa: F401  # noqa: F401
    dmvae,
    idmvae,
    mmvae,
    mmvae_plus,
    mopoe,
    mvae,  # noqa: F401
    mwbvae,
)
