"""A trained model's file (``paths.model_file``): what rebuilds the model and what it was trained on.

    {"model": run name, "model_entry": what resolves to its class again (mgmvae.registry),
     "dataset", "seed", "variant", "shapes", "settings" (resolved), "config_hash", "history",
     "state_dict"}

Loaded with ``weights_only=True`` (``mgmvae.io.load_torch``): no code is unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mgmvae import paths
from mgmvae.base import MultimodalVAE
from mgmvae.config import DEFAULT_CONFIG, load_config
from mgmvae.data.paired import PairedData
from mgmvae.io import load_torch, save_torch
from mgmvae.registry import PluginRef, resolve


class ModelFileError(FileNotFoundError):
    """A model file that is missing; the message names the stage that writes it."""


def save_trained(
    path: Path,
    model: MultimodalVAE,
    ref: PluginRef,
    *,
    dataset: str,
    seed: int,
    variant: str | None,
    settings: Mapping[str, Any],
    config_hash: str,
    history: Sequence[Mapping[str, float]],
) -> None:
    record = {
        "model": ref.name,
        "model_entry": ref.entry,
        "dataset": dataset,
        "seed": seed,
        "variant": variant,
        "shapes": {m: list(s) for m, s in model.shapes.items()},
        "settings": dict(settings),
        "config_hash": config_hash,
        "history": list(history),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
    }
    save_torch(record, path)


def load_trained(path: Path, device: torch.device | str) -> tuple[MultimodalVAE, dict[str, Any]]:
    """The model in eval mode on ``device``, and the file's record (plus ``model_tags``: its class's provenance)."""
    if not Path(path).exists():
        raise ModelFileError(f"model file {path} does not exist: run the 'train' stage first")
    saved = load_torch(path)
    ref = resolve(saved.get("model_entry") or saved["model"])
    saved["model_tags"] = ref.tags()
    model = ref.cls({m: tuple(s) for m, s in saved["shapes"].items()}, saved["settings"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), saved


def trained_study(
    study: Path, dataset: str, seed: int, models: Sequence[str] | None = None
) -> tuple[dict[str, Any], PairedData, dict[str, Path]]:
    """What a measurement on trained runs reads from the study folder ``study``: its ``evaluation``
    settings, ``dataset``'s data and the model file of each trained run of ``dataset`` and ``seed`` (of
    ``models`` if given) by run name; SystemExit naming where it looked if there is none."""
    where = paths.study_at(study)
    pattern = paths.model_file(paths.run_dir(where, dataset, "*", seed))
    found = {f.parent.parent.name: f for f in sorted(study.glob(str(pattern.relative_to(study))))}
    found = {name: f for name, f in found.items() if models is None or name in models}
    if not found:
        raise SystemExit(f"no trained runs {pattern}{f' of {list(models)}' if models else ''}: train them first")
    settings = load_config(DEFAULT_CONFIG, paths.study_config(where))["evaluation"]
    return settings, PairedData.load(paths.data_file(where, dataset)), found
