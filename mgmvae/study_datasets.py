"""A study's datasets: from ``datasets.<name>`` (``{"source": <entry>, **parameters}``) to the dataset
class (through the registry; docs/datasets.md), its PairedData and its modalities, and, before any job,
whether its raw files are there or can be downloaded (``check_raw_data``: offline, a download would
fail only inside a job, minutes in; this names the missing files and how to provide them).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mgmvae.config import ConfigError, studied_datasets
from mgmvae.data.dataset import Dataset, ParamError
from mgmvae.data.paired import DataError, PairedData
from mgmvae.params import defaults, params_class
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


def dataset_spec(config: Mapping, dataset: str) -> dict[str, Any]:
    """``datasets.<dataset>`` with its class's defaults under it (but the ``IMPLICIT`` ones): what
    the dataset's file is built from."""
    ref, _ = config_source(config, dataset)
    return {**defaults(params_class(ref.cls), implicit=False), **config["datasets"][dataset]}


def dataset_modalities(config: Mapping, dataset: str) -> list[str]:
    """The modality names of the config's dataset, in order (what the rules' wildcards and paths use)."""
    return list(config_source(config, dataset)[1].modalities)


# ------------------------------------------------------------ before any job
def missing_raw_files(config: Mapping) -> dict[str, list[Path]]:
    """The studied datasets' missing raw files, by dataset."""
    missing: dict[str, list[Path]] = {}
    for dataset in studied_datasets(config):
        files = [p for p in config_source(config, dataset)[1].raw_files(Path(config["data_dir"])) if not p.exists()]
        if files:
            missing[dataset] = files
    return missing


def reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_raw_data(config: Mapping) -> None:
    missing = missing_raw_files(config)
    if not missing:
        return
    listing = "\n".join(f"  {p}" for p in dict.fromkeys(p for files in missing.values() for p in files))
    if config["download"]:
        try:
            urls = {dataset: config_source(config, dataset)[1].download_urls() for dataset in missing}
        except DataError as error:
            raise ConfigError(f"raw data files are missing:\n{listing}\n{error}") from None
        hosts = {dataset: sorted({urlparse(u).hostname or "" for u in us}) for dataset, us in urls.items()}
        if all(any(reachable(f"https://{h}") for h in hs) for hs in hosts.values()):
            return  # the prepare jobs will download and MD5-check them
        why = "they cannot be downloaded: no connection to " + ", ".join(
            dict.fromkeys(h for hs in hosts.values() for h in hs)
        )
    else:
        why = "download is false"
    raise ConfigError(
        f"raw data files are missing and {why}:\n{listing}\n"
        f"Copy these files there (torchvision's MNIST and SVHN files, checked by MD5; PolyMNIST's unpacked archive), "
        f"or run where the network is reachable with `download: true`, or use the offline preset: "
        f"--configfile workflow/presets/quick.yaml"
    )
