"""Shared fixtures: tiny synthetic paired data in the real on-disk format, Snakemake in a working
directory, the plugin package installed as a user would, and the order the tests run in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgmvae.config import ROOT
from mgmvae.data.paired import PairedData


def synthetic_paired(n_train: int = 64, n_test: int = 32, seed: int = 0) -> PairedData:
    """Class-coded toy images: modality a is 1×28×28, b is 3×32×32; pair k = (k, k)."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.arange(n) % 10
        a = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
        b = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
        for c in range(10):  # a bright stripe whose position encodes the class
            a[labels == c, :, 2 * c : 2 * c + 3, :] = 255
            b[labels == c, c % 3, :, 3 * c : 3 * c + 3] = 255
        a = (a.int() + torch.randint(0, 30, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        b = (b.int() + torch.randint(0, 30, b.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        return a, b, labels

    images, labels = {"a": {}, "b": {}}, {"a": {}, "b": {}}
    pairs = {}
    for name, n in (("train", n_train), ("test", n_test)):
        a, b, y = split(n)
        images["a"][name], images["b"][name] = a, b
        labels["a"][name], labels["b"][name] = y, y.clone()
        pairs[name] = torch.stack([torch.arange(n), torch.arange(n)], 1)
    return PairedData("toy", ["a", "b"], images, labels, pairs, {"synthetic": True})


# A test that needs a GPU: skipped without one, run by `make gpu-check` (bench/gpu_check.py) on one.
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")]


@pytest.fixture
def toy_data() -> PairedData:
    return synthetic_paired()


TOY_SETTINGS = {
    "shared_dim": 4,
    "private_dim": 2,
    "posterior": "gaussian",
    "likelihood": {"family": "laplace", "scale": 0.75},
    "likelihood_weights": "auto",
    "optimizer": {"name": "adam", "lr": 1e-3, "amsgrad": False},
    "epochs": 2,
    "batch_size": 16,
    "log_every": 2,
    "precision": "float32",
    "params": {},
}


def evaluation_settings(**overrides) -> dict:
    """config.yaml's ``evaluation`` section (where every default is stated) with ``overrides``."""
    from mgmvae.config import load_config

    return {**load_config()["evaluation"], **overrides}


def pytest_collection_modifyitems(config, items):
    """The modules that hold a slow test first. ``make test`` runs two pytest-xdist workers that
    take a module at a time (``--dist loadfile``: module-scoped fixtures and servers stay on one
    worker): so the longest work starts at once and the quick modules fill in beside it."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within a module is kept


# ------------------------------------------------------------------ end to end
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake_env() -> dict:
    """No MLFLOW_* from the caller (runs go to the workdir's store); this venv's tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def snakemake(workdir: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """This checkout's Snakefile run in ``workdir`` (-d)."""
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True,
        text=True,
        env=snakemake_env(),
        timeout=timeout,
    )


PLUGIN_SRC = ROOT / "tests" / "plugin_pkg"
GUIDE = ROOT / "docs" / "plugins.md"
CI_PRESET = ROOT / "workflow" / "presets" / "ci.yaml"


def template_code(name: str = "tiny_vae") -> str:
    """The template model of the guide (its first python block), its run name set to ``name``."""
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    return code.replace('name = "tiny_vae"', f'name = "{name}"')


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory):
    """``pip install`` the plugin package into a fresh folder and put it on sys.path and PYTHONPATH."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(PLUGIN_SRC, root / "src")  # setuptools writes build files beside the sources
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--target", str(site), str(root / "src")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sys.path.insert(0, str(site))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{site}:{old}" if old else str(site)
    yield site
    sys.path.remove(str(site))
    os.environ.pop("PYTHONPATH") if old is None else os.environ.update(PYTHONPATH=old)
    for name in [m for m in sys.modules if m == "tiny_plugin" or m.startswith("tiny_plugin.")]:
        del sys.modules[name]
