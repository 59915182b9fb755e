"""Shared fixtures: tiny synthetic paired data in the real on-disk format, the toy settings, one
factory for models and batches, the hand densities the loss tests write out, Snakemake in a working
directory, the plugin package installed as a user would, and the order the tests run in."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgmvae.config import ROOT, load_config
from mgmvae.data.paired import PairedData
from mgmvae.registry import build_model


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


# The toy runs' settings: config.yaml's `settings` (so a key added there reaches every test) with what
# makes them small and quick, and the Laplace likelihood that the hand computations write out.
TOY_OVERRIDES = {
    "shared_dim": 4,
    "private_dim": 2,
    "likelihood": {"family": "laplace", "scale": 0.75},
    "optimizer": {"lr": 1e-3},
    "epochs": 2,
    "batch_size": 16,
    "log_every": 2,
}
TOY_SETTINGS = load_config(overrides={"settings": TOY_OVERRIDES})["settings"]


# ------------------------------------------------------------------ models and batches
SHAPES = {"a": (1, 28, 28), "b": (3, 32, 32)}  # the sizes of MNIST and SVHN
THREE = {**SHAPES, "c": (3, 32, 32)}
WEIGHTS = {"a": 3 * 32 * 32 / (28 * 28), "b": 1.0, "c": 1.0}  # likelihood_weights: auto (largest / own size)


def make_model(name: str, params: dict | None = None, *, shapes: dict = SHAPES, seed: int = 0, **settings):
    """Model ``name`` on ``shapes`` with ``TOY_SETTINGS`` under ``settings`` and ``params``, its weights
    drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return build_model(name, shapes, {**TOY_SETTINGS, "params": params or {}, **settings})


def make_batch(shapes: dict = SHAPES, n: int = 4, seed: int = 123) -> dict:
    """``n`` uniform images per modality from a generator of their own (the global RNG untouched)."""
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(n, *s, generator=g) for m, s in shapes.items()}


def toy_batch(n: int = 16, seed: int = 0):
    """``synthetic_paired`` data and a batch of its first ``n`` training pairs."""
    data = synthetic_paired(n_train=n, n_test=n, seed=seed)
    return data, data.batch("train", torch.arange(n))


# ------------------------------------------------------------------ hand densities
def gauss_lp(z, mu, logvar):
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)


def kl_std(mu, logvar):
    return 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)


def laplace_ll(model, m, x, latent):
    """Weighted Laplace(sigmoid(logits), scale) log-likelihood of ``TOY_SETTINGS``, summed over pixels."""
    mean, scale = torch.sigmoid(model.decoders[m](latent)), TOY_OVERRIDES["likelihood"]["scale"]
    return WEIGHTS[m] * (-(mean - x).abs() / scale - math.log(2 * scale)).flatten(-3).sum(-1)


def evaluation_settings(**overrides) -> dict:
    """config.yaml's ``evaluation`` section (where every default is stated) with ``overrides``."""
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
