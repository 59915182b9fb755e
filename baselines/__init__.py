"""Baseline models. Importing this package registers each of them in ``mgmvae.base.MODELS``."""

from baselines import mvae  # noqa: F401
from baselines import mmvae, dmvae  # noqa: F401
from baselines import mopoe, mwbvae, mmvae_plus, idmvae  # noqa: F401
