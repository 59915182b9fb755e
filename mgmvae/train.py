"""The one training loop every model uses.

Data stay on the training device as uint8; a batch is an index gather plus a float conversion.
Loss terms are accumulated on the device and read back once per ``log_every`` steps (progress
bar) and once per epoch (metrics): no host sync every step. A checkpoint is written atomically
after every epoch (model, optimiser, RNG states, history, config hash), and a rerun resumes from it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mgmvae.data.paired import PairedData
from mgmvae.io import load_torch, save_torch

if TYPE_CHECKING:
    from mgmvae.base import MultimodalVAE

EpochCallback = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or inf; the last good checkpoint is kept."""


class CheckpointMismatchError(ValueError):
    pass


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
    return torch.device(name)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # settings.optimizer.name


def make_optimizer(model: torch.nn.Module, settings: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer ``settings.optimizer.name`` names, with the section's other keys as its arguments."""
    options = dict(settings["optimizer"])
    return OPTIMIZERS[options.pop("name")](model.parameters(), **options)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),  # type: ignore[index]  # numpy stub: legacy tuple typed as dict
        "numpy_pos": int(np.random.get_state()[2]),  # type: ignore[index]  # numpy stub: legacy tuple typed as dict
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint's state, on the CPU whatever device wrote it (``resume`` places it)."""
    if not path.exists():
        return None
    state = load_torch(path)
    if state.get("config_hash") != config_hash:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written for another configuration (hash {state.get('config_hash')}, "
            f"this run {config_hash}); delete it to start this run afresh"
        )
    return state


def resume(state: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device):
    """Restore a checkpoint loaded on the CPU into a run on ``device``; return (history, epochs done).
    ``load_state_dict`` copies the model's tensors onto its parameters' device and moves the
    optimiser's state beside them; the RNG states stay CPU tensors, as torch's setters require."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_state(state["rng"], device)
    return list(state["history"]), int(state["epoch"])


def train_model(
    model: MultimodalVAE,
    data: PairedData,
    settings: Mapping[str, Any],
    *,
    seed: int,
    checkpoint: Path | None = None,
    config_hash: str = "",
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``model`` on ``data``'s train pairs; return per-epoch mean loss terms."""
    device = data.device
    model.to(device)
    optimizer = make_optimizer(model, settings)
    history: list[dict[str, float]] = []
    start = 0
    state = load_checkpoint(checkpoint, config_hash) if checkpoint else None
    if state is not None:
        history, start = resume(state, model, optimizer, device)
        print(f"resuming from {checkpoint} after epoch {start}", file=sys.stderr, flush=True)

    n, batch_size = data.num_pairs("train"), int(settings["batch_size"])
    steps, epochs = data.steps_per_epoch(batch_size), int(settings["epochs"])
    log_every = int(settings["log_every"])
    bar = tqdm(
        total=(epochs - start) * steps,
        desc=f"train {getattr(model, 'name', '')}",
        unit="step",
        disable=not progress,
        mininterval=2.0,
        dynamic_ncols=True,
    )
    for epoch in range(start, epochs):
        model.train()
        model.on_epoch_start(epoch, data)
        # Data order depends on (seed, epoch) only, so a resumed run sees the same batches.
        generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator, device=device)
        order = order[: steps * batch_size] if n >= batch_size else order
        keys, sums = None, None
        for step, index in enumerate(order.split(batch_size)):
            terms = model.loss(data.batch("train", index))
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            values = torch.stack([v.detach().float() for v in terms.values()])
            keys, sums = list(terms), values if sums is None else sums + values
            if (step + 1) % log_every == 0:
                bar.set_postfix(epoch=epoch + 1, loss=f"{values[0].item():.4g}", refresh=False)
            bar.update()
        assert keys is not None and sums is not None  # every epoch runs >= 1 step (steps >= 1)
        metrics = dict(zip(keys, (sums / steps).tolist(), strict=True))
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(
                f"loss term(s) {bad} became non-finite in epoch {epoch + 1}; the last good checkpoint "
                f"(after epoch {epoch}) is kept. Lower the learning rate or check the input data."
            )
        metrics["epoch"] = epoch + 1
        history.append(metrics)
        if checkpoint:
            save_torch(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(device),
                    "history": history,
                    "epoch": epoch + 1,
                    "config_hash": config_hash,
                },
                checkpoint,
            )
        if on_epoch:
            on_epoch(epoch + 1, metrics)
    bar.close()
    return history
