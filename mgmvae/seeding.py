"""Seeding: one seed fixes a job's random draws (Python, NumPy, torch, cuDNN's algorithm choice)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # cuDNN: no autotuning by timing, deterministic convolution algorithms. Remaining GPU
    # nondeterminism (atomic adds) is within tests/test_train.py's GPU_TOLERANCE.
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Torch's global RNG (and the device's) seeded for the block and restored after it, so each
    metric's draws depend on the seed only, not on what ran before."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
