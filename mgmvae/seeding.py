"""Seeding: one seed fixes a job's random draws (Python, NumPy, torch), and deterministic kernels
make the same draws give the same numbers on one machine kind, GPUs included."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def make_deterministic() -> None:
    """Deterministic kernels wherever torch has them, for the rest of the process: cuDNN without
    autotuning and with deterministic convolutions, torch's deterministic algorithms (sort-based
    index accumulation instead of atomic adds; an op without one warns in the log), and cuBLAS with
    a fixed workspace (its documented condition, read when cuBLAS starts). CPU kernels are already
    deterministic: nothing changes there."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    make_deterministic()


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Torch's global RNG (and the device's) seeded for the block and restored after it, so each
    metric's draws depend on the seed only, not on what ran before."""
    device = torch.device(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
