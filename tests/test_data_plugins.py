"""Datasets of your own: the registry's dataset kind (built-ins, entry points, import and file
paths), the dataset contract (check-dataset), config validation and the workflow's refusal.

The guide's template (docs/datasets.md) is the dataset of the tests' plugin package
(tests/plugin_pkg, entry point noisy_digits), installed with pip as a user would.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from mgmvae.cli import main
from mgmvae.config import ROOT, ConfigError, load_config
from mgmvae.contracts.dataset import check_dataset, validate_datasets
from mgmvae.data import DataError
from mgmvae.registry import DATASETS, PluginError, available, builtins, resolve
from mgmvae.study_datasets import build_dataset, dataset_modalities, source_of
from tests.conftest import PLUGIN_SRC, snakemake

GUIDE = ROOT / "docs" / "datasets.md"
BUILTINS = {"mnist_svhn", "mnist_cdcb", "digits_street", "digits_cdcb", "digits_poly", "polymnist"}


def template_code() -> str:
    """The guide's template dataset (its first python block)."""
    return re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)


# ------------------------------------------------------------------- registry
def test_builtin_datasets_go_through_the_registry():
    assert set(builtins(DATASETS)) == BUILTINS
    ref = resolve("digits_poly", DATASETS)
    assert (ref.kind, ref.target, ref.package) == ("builtin", "mgmvae.data.digits_poly:DigitsPoly", "mgmvae-benchmark")
    assert set(ref.tags()) == {"dataset_import_path", "dataset_package", "dataset_version"}
    assert resolve("mgmvae.data.digits_poly:DigitsPoly", DATASETS) == ref  # a path to a built-in is the built-in
    assert resolve("mvae").noun == "model" and "mvae" not in available(DATASETS)
    config = load_config()
    assert dataset_modalities(config, "digits_poly") == ["m0", "m1", "m2", "m3", "m4"]
    assert dataset_modalities(config, "mnist_svhn") == ["mnist", "svhn"]


def test_entry_point_dataset_resolves_with_its_package_version(plugin_site):
    ref = resolve("noisy_digits", DATASETS)
    assert (ref.name, ref.kind, ref.target) == ("noisy_digits", "entry point", "tiny_plugin.dataset:NoisyDigits")
    assert (ref.package, ref.version) == ("mgmvae-tiny-plugin", "0.3.1")
    assert "noisy_digits" in available(DATASETS) and "noisy_digits" not in available()  # not a model
    with pytest.raises(PluginError, match="unknown model 'noisy_digits'"):
        resolve("noisy_digits")


def test_guide_template_is_the_tested_plugin_and_passes_check_dataset(tmp_path, capsys):
    code = template_code()
    assert code == (PLUGIN_SRC / "tiny_plugin" / "dataset.py").read_text()
    assert 20 <= len(code.splitlines()) <= 40  # "about twenty lines"
    (tmp_path / "my_data.py").write_text(code)
    entry = f"{tmp_path / 'my_data.py'}:NoisyDigits"
    assert resolve(entry, DATASETS).kind == "file"
    assert main(["check-dataset", entry, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "keeps the dataset contract (train 1437 tuples, test 360 tuples" in out
    data = build_dataset("mine", {"source": entry, "noise": 0.0}, "unused", False, seed=0)
    assert torch.equal(data.images["clean"]["train"], data.images["noisy"]["train"])  # the parameter reaches build


BROKEN = """
import torch
from torch import nn

from mgmvae.data import Dataset, PairedData


def tiny(name, shapes, labels=None, n=20):
    labels = torch.arange(n) % 10 if labels is None else labels
    zeros = lambda shape: torch.zeros(n, *shape, dtype=torch.uint8)
    images = {m: {s: zeros(shape) for s in ("train", "test")} for m, shape in shapes.items()}
    ys = {m: {s: labels.clone() for s in ("train", "test")} for m in shapes}
    pairs = {s: torch.arange(n).unsqueeze(1).repeat(1, len(shapes)) for s in ("train", "test")}
    return PairedData(name, list(shapes), images, ys, pairs, {})


class Good(Dataset):
    name = "good_data"
    modalities = ("a", "b")
    shapes = {"a": (1, 28, 28), "b": (3, 32, 32)}
    default_params = {"n": 20}

    def build(self, name, seed, data_dir, download):
        return tiny(name, self.shapes, n=self.params["n"])


class NotADataset(nn.Module):
    name = "not_a_dataset"


class NoBuild(Dataset):
    name = "no_build"
    modalities = ("a", "b")
    shapes = {"a": (1, 28, 28), "b": (1, 28, 28)}


class OneModality(Good):
    name = "one_modality"
    modalities = ("a",)


class ShapesMismatch(Good):
    name = "shapes_mismatch"
    shapes = {"a": (1, 28, 28), "c": (1, 28, 28)}


class NoName(Good):
    name = "base"


class SourceParam(Good):
    name = "source_param"
    default_params = {"source": "x"}


class BuiltinName(Good):
    name = "digits_poly"


class NoNetwork(Good):
    name = "no_network"
    shapes = {"a": (1, 32, 32), "b": (3, 32, 32)}

    def build(self, name, seed, data_dir, download):
        return tiny(name, self.shapes)


class BuildsOtherShapes(Good):
    name = "builds_other_shapes"

    def build(self, name, seed, data_dir, download):
        return tiny(name, {"a": (1, 28, 28), "b": (1, 28, 28)})


class EleventhClass(Good):
    name = "eleventh_class"

    def build(self, name, seed, data_dir, download):
        return tiny(name, self.shapes, labels=torch.arange(20) % 11)


class Unseeded(Good):
    name = "unseeded"

    def build(self, name, seed, data_dir, download):
        data = tiny(name, self.shapes)
        data.images["a"]["train"] = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8)  # the global RNG
        return data


class Mislabelled(Good):
    name = "mislabelled"

    def build(self, name, seed, data_dir, download):
        data = tiny(name, self.shapes)
        data.labels["b"]["test"] = (data.labels["b"]["test"] + 1) % 10
        return data


class Crashes(Good):
    name = "crashes"

    def build(self, name, seed, data_dir, download):
        raise FileNotFoundError("no such file: data/mine.npz")
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("datasets") / "broken_data.py"
    path.write_text(textwrap.dedent(BROKEN))
    return path


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("NotADataset", r"is not a dataset: subclass mgmvae.data.dataset.Dataset \(see docs/datasets.md\)"),
        ("NoBuild", r"NoBuild lacks the method build\(name, seed, data_dir, download\)"),
        ("OneModality", r"`modalities` is \('a',\); give two or more distinct names"),
        ("ShapesMismatch", r"`shapes` must map each modality, in the order of `modalities`"),
        ("NoName", r"`name` is 'base'; set it to the source name"),
        ("SourceParam", r"parameter 'source' is the key datasets.<name>.source"),
        ("BuiltinName", r"its name 'digits_poly' is a built-in dataset's"),
        ("Missing", r"has no attribute 'Missing'"),
    ],
)
def test_bad_dataset_classes_are_refused_naming_the_problem(broken, cls, message):
    with pytest.raises(PluginError, match=message) as error:
        resolve(f"{broken}:{cls}", DATASETS)
    assert str(error.value).startswith(f"dataset plugin '{broken}:{cls}'")


def test_unknown_sources_and_parameters_name_the_problem(broken):
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; available datasets: .*'digits_poly'"):
        source_of({"source": "imagenet"})
    with pytest.raises(
        DataError, match=r"dataset source 'good_data' has no parameter\(s\) \['m'\]; its parameters are \['n'\]"
    ):
        source_of({"source": f"{broken}:Good", "m": 3})
    with pytest.raises(DataError, match=r"parameter n = '20': input should be a valid integer"):
        source_of({"source": f"{broken}:Good", "n": "20"})


# ---------------------------------------------------------------- the contract
def failures_of(broken: Path, cls: str) -> list:
    _, source = source_of({"source": f"{broken}:{cls}"})
    return check_dataset(source, "x", seed=0, data_dir="unused", download=False)[0]


@pytest.mark.parametrize(
    ("cls", "check", "expected", "got", "count"),
    [
        (
            "NoNetwork",
            "shapes of ['a']",
            "a shape the networks accept",
            "no network for images of shape (1, 32, 32)",
            1,
        ),
        ("BuildsOtherShapes", "shape of 'b'", "the declared (3, 32, 32)", "(1, 28, 28)", 1),
        ("EleventhClass", "labels['a']['train']", "int64 in 0..9", "in [0, 10]", 4),  # both modalities, splits
        ("Unseeded", "seed", "bitwise the same tensors", "images['a']['train']", 1),
        ("Mislabelled", "tuples of test", "'b' of each tuple labelled as 'a'", "20 not", 1),
        ("Crashes", "build", "a PairedData, no exception", "FileNotFoundError: no such file: data/mine.npz", 1),
    ],
)
def test_check_dataset_names_the_broken_part(broken, cls, check, expected, got, count):
    failures = failures_of(broken, cls)
    assert len(failures) == count, failures
    assert any(f.method == check and expected in f.expected and got in f.got for f in failures), failures


@pytest.mark.parametrize(
    "spec",
    [
        {"source": "digits_street", "pairings": 2, "street_per_class_train": 6, "street_per_class_test": 4},
        {"source": "digits_cdcb", "colourings": 2},
        {"source": "digits_poly", "pairings": 2},
    ],
)
def test_embedded_builtins_keep_the_dataset_contract(spec):
    _, source = source_of(spec)
    failures, data = check_dataset(source, "x", seed=0, data_dir="unused", download=False)
    assert failures == [] and data is not None and data.meta["source"] == spec["source"]


def test_check_dataset_passes_a_good_dataset_and_the_cli_reports_failures(broken, capsys):
    assert failures_of(broken, "Good") == []
    assert main(["check-dataset", f"{broken}:Mislabelled", "--no-progress"]) == 2
    assert "mislabelled breaks the dataset contract in 1 place(s)" in capsys.readouterr().err
    assert main(["check-dataset", "imagenet", "--no-progress"]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


# ---------------------------------------------------------- config validation
def studying(dataset: str, spec: dict) -> dict:
    tables = {"table1": dataset, "table2": dataset, "table3": dataset}
    return load_config(overrides={"datasets": {dataset: spec}, "tables": tables})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"datasets": {"x": {"source": "digits_poly", "pairing": 2}}}, "datasets.x.pairing"),
        ({"datasets": {"x": {"source": "tiny_plugin.dataset:Nope"}}}, "datasets.x.source"),
        ({"datasets": {"mnist_cdcb": {"source": "mnist_cdcb", "size": 30}}}, "datasets.mnist_cdcb.source"),
    ],
)
def test_bad_dataset_config_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        validate_datasets(load_config(overrides=override))


def test_config_takes_a_plugin_dataset_and_checks_its_contract(plugin_site, broken):
    validate_datasets(studying("mine", {"source": "noisy_digits", "noise": 0.5}), contract=True)
    with pytest.raises(ConfigError, match=r"config key 'datasets.mine.noise': noise must be >= 0"):
        validate_datasets(studying("mine", {"source": "noisy_digits", "noise": -1.0}))
    with pytest.raises(ConfigError, match=r"dataset 'mine' \(.*:Unseeded\) breaks the dataset contract; nothing"):
        validate_datasets(studying("mine", {"source": f"{broken}:Unseeded"}), contract=True)
    validate_datasets(studying("mine", {"source": f"{broken}:Unseeded"}))  # without the contract: resolves


def test_broken_dataset_stops_snakemake_before_any_job(broken, tmp_path):
    extra = tmp_path / "extra.yaml"
    tables = {"table1": "mine", "table2": "mine", "table3": "mine"}
    extra.write_text(yaml.safe_dump({"datasets": {"mine": {"source": f"{broken}:Mislabelled"}}, "tables": tables}))
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(ROOT / "workflow/presets/ci.yaml"), str(extra))
    assert result.returncode != 0
    assert "dataset 'mine'" in result.stderr and "breaks the dataset contract" in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
