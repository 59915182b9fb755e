"""From a dataset spec ``{"source": <entry>, **parameters}`` (a config's ``datasets.<name>``) to
its dataset class (through the registry) and its PairedData.

The source is a built-in's name (``mgmvae.registry.DATASET_BUILTINS``) or a dataset of your own
(docs/datasets.md); every parameter is optional, with the class's ``default_params``, and an
unknown one is an error rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mgmvae.config import ConfigError
from mgmvae.data.dataset import Dataset, ParamError
from mgmvae.data.paired import DataError, PairedData
from mgmvae.registry import DATASETS, PluginError, PluginRef, resolve


def source_of(spec: Mapping[str, Any]) -> tuple[PluginRef, Dataset]:
    """The spec's dataset class (resolved) and an instance on the spec's parameters; DataError
    (ParamError for a parameter) naming the problem otherwise."""
    try:
        ref = resolve(spec.get("source"), DATASETS)  # type: ignore[arg-type]  # resolve names a non-string
    except PluginError as error:
        raise DataError(f"dataset source: {error}") from None
    params = {key: value for key, value in spec.items() if key != "source"}
    return ref, ref.cls(params)


def build_dataset(name: str, spec: Mapping[str, Any], data_dir: str | Path, download: bool, seed: int) -> PairedData:
    """Build dataset ``name`` from ``spec`` (raw files, if the source reads any, under ``data_dir``)."""
    _, source = source_of(spec)
    return source.build(name, seed, Path(data_dir), download)


def config_source(config: Mapping, dataset: str) -> tuple[PluginRef, Dataset]:
    """``source_of`` the config's ``datasets.<dataset>``; ConfigError naming the config key."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"unknown dataset {dataset!r}; defined under 'datasets': {sorted(config['datasets'])}")
    try:
        return source_of(config["datasets"][dataset])
    except ParamError as error:
        raise ConfigError(f"config key 'datasets.{dataset}.{error.key}': {error}") from None
    except DataError as error:
        raise ConfigError(f"config key 'datasets.{dataset}.source': {error}") from None


def dataset_modalities(config: Mapping, dataset: str) -> list[str]:
    """The modality names of the config's dataset, in order (what the rules' wildcards and paths use)."""
    return list(config_source(config, dataset)[1].modalities)
