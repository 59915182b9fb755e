"""MGMVAE benchmark: multimodal Gaussian-mixture VAE (AAAI 2026) and its baselines."""

__version__ = "0.1.0"
