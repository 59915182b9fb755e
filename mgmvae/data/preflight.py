"""Before any job runs: are the raw files there, or can they be downloaded?

The paper setting downloads MNIST and SVHN through torchvision. Offline, that would fail only
inside a job, minutes in; this check stops the workflow at once instead, naming the missing
files and how to provide them. Each dataset class names its raw files and download URLs
(``Dataset.raw_files``, ``Dataset.download_urls``; none for the embedded datasets).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from mgmvae.config import ConfigError, studied_datasets
from mgmvae.data.build import config_source
from mgmvae.data.paired import DataError


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
