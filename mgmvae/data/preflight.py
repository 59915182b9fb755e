"""Before any job runs: are the raw files there, or can they be downloaded?

The paper setting downloads MNIST and SVHN through torchvision. Offline, that would fail only
inside a job, minutes in; this check stops the workflow at once instead, naming the missing
files and how to provide them.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from mgmvae.config import ConfigError, studied_datasets

NEEDS = {"mnist_svhn": ("mnist", "svhn"), "mnist_cdcb": ("mnist",)}


def missing_raw_files(config: Mapping) -> dict[str, list[Path]]:
    from mgmvae.data.sources import raw_files

    missing: dict[str, list[Path]] = {}
    for dataset in studied_datasets(config):
        for source in NEEDS.get(config["datasets"][dataset]["source"], ()):
            files = [p for p in raw_files(source, config["data_dir"]) if not p.exists()]
            if files:
                missing[source] = files
    return missing


def reachable(url: str, timeout: float = 3.0) -> bool:
    host = urlparse(url).hostname
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_raw_data(config: Mapping) -> None:
    from mgmvae.data.sources import download_urls

    missing = missing_raw_files(config)
    if not missing:
        return
    listing = "\n".join(f"  {p}" for files in missing.values() for p in files)
    if config["download"]:
        hosts = {source: sorted({urlparse(u).hostname or "" for u in download_urls(source)}) for source in missing}
        if all(any(reachable(f"https://{h}") for h in hs) for hs in hosts.values()):
            return  # the prepare jobs will download and MD5-check them
        why = "they cannot be downloaded: no connection to " + ", ".join(h for hs in hosts.values() for h in hs)
    else:
        why = "download is false"
    raise ConfigError(
        f"raw data files are missing and {why}:\n{listing}\n"
        f"Copy these files there (torchvision's MNIST and SVHN files, checked by MD5), or run where "
        f"the network is reachable with `download: true`, or use the offline preset: "
        f"--configfile workflow/presets/quick.yaml"
    )
