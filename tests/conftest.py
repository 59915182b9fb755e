"""Shared fixtures: tiny synthetic paired data in the real on-disk format, and one end-to-end run
of the pipeline that the end-to-end tests share."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

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


@dataclass(frozen=True)
class Study:
    """A finished end-to-end run: its working directory, what it ran and how long it took."""

    workdir: Path
    models: list[str]
    ablation_model: str  # run name of the ablated model
    ablation_variants: list[str]
    seconds: float

    @property
    def results(self) -> Path:
        return self.workdir / "results" / "ci"


@pytest.fixture(scope="session")
def ci_study(plugin_site, tmp_path_factory) -> Study:
    """One run of the CI preset's whole DAG, shared by the end-to-end tests that check the same
    pipeline (tests/test_pipeline.py, tests/test_plugins.py): every built-in and the installed plugin
    ``tiny_vae`` (an entry point) through the default target, and the guide's template as a local
    file (``tiny_file_vae``) through the ablation target, four jobs at a time logging to the default
    MLflow store of the working directory."""
    workdir = tmp_path_factory.mktemp("ci_study")
    (workdir / "tiny.py").write_text(template_code("tiny_file_vae"))
    models = [*yaml.safe_load(CI_PRESET.read_text())["models"], "tiny_vae"]
    variants = {"full": {}, "kl_half": {"params": {"kl_weight": 0.5}}}
    ablation = {"model": f"{workdir / 'tiny.py'}:TinyVAE", "select": list(variants), "variants": variants}
    extra = workdir / "study.yaml"
    extra.write_text(yaml.safe_dump({"models": models, "ablation": ablation}))
    start = time.monotonic()
    result = snakemake(workdir, "all", "ablation", "--cores", "4", "--configfile", str(CI_PRESET), str(extra))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seconds = time.monotonic() - start
    print(f"shared CI study: {seconds:.0f} s")
    return Study(workdir, models, "tiny_file_vae", list(variants), seconds)
