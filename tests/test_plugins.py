"""Model plugins: the registry (built-ins, entry points, import and file paths), the model
contract (check-model), config validation. A plugin through the whole pipeline: tests/test_pipeline.py.

The plugin is a separate package, tests/plugin_pkg (distribution mgmvae-tiny-plugin 0.3.1, entry
point tiny_vae), installed with pip into a folder put on the path, as a user would install it.
"""

from __future__ import annotations

import re

import pytest
import yaml

from mgmvae.cli import main
from mgmvae.config import ROOT, ConfigError, load_config
from mgmvae.contracts.model import check_model, validate_models
from mgmvae.registry import PluginError, available, builtin_model_names, resolve, run_names, run_settings
from tests.conftest import PLUGIN_SRC, snakemake, template_code

BASE = load_config()


# ---------------------------------------------------------------- the registry
def test_builtins_go_through_the_same_registry():
    ref = resolve("mvae")
    assert (ref.kind, ref.target, ref.package) == ("builtin", "baselines.mvae:MVAE", "mgmvae-benchmark")
    assert resolve("baselines.mvae:MVAE") == ref  # a path to a built-in class is the built-in
    assert set(builtin_model_names()) <= set(available())
    assert len(builtin_model_names()) == 8


def test_entry_point_plugin_resolves_with_its_package_version(plugin_site):
    ref = resolve("tiny_vae")
    assert (ref.name, ref.kind, ref.target) == ("tiny_vae", "entry point", "tiny_plugin.model:TinyVAE")
    assert ref.tags() == {
        "model_import_path": "tiny_plugin.model:TinyVAE",
        "model_package": "mgmvae-tiny-plugin",
        "model_version": "0.3.1",
    }
    assert "tiny_vae" in available()


def test_import_path_plugin_resolves_to_the_class_name(plugin_site):
    ref = resolve("tiny_plugin.model:TinyVAE")
    assert (ref.name, ref.kind, ref.package, ref.version) == ("tiny_vae", "import path", "mgmvae-tiny-plugin", "0.3.1")
    assert ref.cls is resolve("tiny_vae").cls


def test_guide_template_is_the_tested_plugin_and_passes_check_model(tmp_path, capsys):
    """The guide's template, written outside the repository, keeps the contract (CLI, status 0)."""
    code = template_code()
    assert code == (PLUGIN_SRC / "tiny_plugin" / "model.py").read_text()
    assert 20 <= len(code.splitlines()) <= 60  # "tens of lines"
    (tmp_path / "my_model.py").write_text(code)
    entry = f"{tmp_path / 'my_model.py'}:TinyVAE"
    ref = resolve(entry)
    assert (ref.name, ref.kind, ref.package) == ("tiny_vae", "file", "")
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", ref.version)
    assert main(["check-model", entry, "--no-progress"]) == 0
    assert "keeps the model contract" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("tiny_plugin.broken:NotAModel", r"is not a model: subclass mgmvae.base.MultimodalVAE"),
        ("tiny_plugin.broken:not_a_class", r"<function not_a_class.*is not a model"),
        ("tiny_plugin.broken:NoLoss", r"NoLoss lacks the method loss"),
        ("tiny_plugin.broken:NoName", r"`name` is 'base'; set it to the run name"),
        ("tiny_plugin.broken:BadName", r"`name` is 'Tiny VAE'"),
        ("tiny_plugin.broken:BuiltinName", r"its name 'mvae' is a built-in model's"),
        ("tiny_plugin.broken:SettingsParam", r"parameter 'epochs' is a settings key"),
        ("tiny_plugin.broken:NonJsonParam", r"the default of parameter 'act', ReLU\(\), is not a JSON value"),
        ("tiny_plugin.broken_import:Model", r"cannot import module 'tiny_plugin.broken_import' \(ModuleNotFoundError"),
        ("tiny_plugin.model:Missing", r"module 'tiny_plugin.model' has no attribute 'Missing'"),
        ("no_such_model", r"unknown model 'no_such_model'; available models: .*tiny_vae"),
        ("nowhere/model.py:Model", r"file .*nowhere/model.py does not exist"),
        ("a:b:c", r"neither pkg.module:Class nor path/to/file.py:Class"),
    ],
)
def test_bad_plugins_are_refused_naming_the_problem(plugin_site, entry, message):
    with pytest.raises(PluginError, match=message) as error:
        resolve(entry)
    assert entry.split(":")[0] in str(error.value) or "entry" in str(error.value)


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", builtin_model_names())
def test_check_model_passes_for_every_builtin(name):
    assert check_model(resolve(name), BASE) == []


# translate falls back to generate, and generate calls embed: their failures follow.
@pytest.mark.parametrize(
    ("cls", "method", "expected", "got", "blamed"),
    [
        ("NanLoss", "loss [mnist_svhn shapes]", "term 'loss' finite", "nan", {"loss"}),
        ("VectorLoss", "loss [mnist_svhn shapes]", "0-dim float tensor", "shape (6,)", {"loss"}),
        ("NoLossKey", "loss [mnist_svhn shapes]", 'the key "loss"', "['total']", {"loss"}),
        (
            "DecoderUnused",
            "loss [mnist_svhn shapes] (backward)",
            "every encoder and decoder",
            "decoders.mnist",
            {"loss"},
        ),
        (
            "WrongShape",
            "generate [mnist_svhn shapes] mnist->svhn (svhn missing)",
            "a float tensor of shape (6, 3, 32, 32)",
            "shape (6, 3, 8, 32)",
            {"generate", "translate"},
        ),
        (
            "Logits",
            "generate [mnist_svhn shapes] mnist->svhn",
            "values in [0, 1]",
            "values in [",
            {"generate", "translate"},
        ),
        (
            "NeedsBoth",
            "embed [mnist_svhn shapes] protocol=mean from mnist",
            "no exception",
            "KeyError",
            {"embed"},  # generate and translate go through shared_posterior, not embed
        ),
        ("BadSample", "sample [mnist_svhn shapes]", "keys ['mnist', 'svhn']", "keys ['mnist']", {"sample"}),
        (
            "FloatClusters",
            "cluster [mnist_svhn shapes] (both)",
            "an integer tensor of shape (6,)",
            "float32",
            {"cluster"},
        ),
        ("Unseeded", "loss [mnist_svhn shapes]", "the same value for the same seed", " then ", {"loss"}),
        (
            "NotSaved",
            "state_dict [mnist_svhn shapes]",
            "the same embed and generate outputs",
            "different",
            {"state_dict"},
        ),
    ],
)
def test_check_model_names_the_broken_method(plugin_site, cls, method, expected, got, blamed):
    failures = check_model(resolve(f"tiny_plugin.broken:{cls}"), BASE)
    assert any(f.method.startswith(method) and expected in f.expected and got in f.got for f in failures), failures
    assert {f.method.split()[0] for f in failures} == blamed, failures


def test_check_model_cli_fails_with_the_report(plugin_site, capsys):
    assert main(["check-model", "tiny_plugin.broken:WrongShape", "--no-progress"]) == 2
    err = capsys.readouterr().err
    # generate and translate × 3 shape sets (the issue adds the three-modality set: 4 with two)
    assert "wrong_shape breaks the model contract in 6 place(s)" in err
    assert "generate [three_modalities shapes] mnist->svhn (svhn missing) protocol=mean: " in err
    assert (
        "generate [mnist_cdcb shapes] cd->cb (cb missing) protocol=mean: "
        "expected a float tensor of shape (6, 3, 32, 32)" in err
    )
    assert main(["check-model", "tiny_vae", "--no-progress"]) == 0


def test_a_plugin_gets_a_colour_of_its_own():
    """A model the figures do not know: a colour none of the built-ins has, the same in every figure."""
    from mgmvae.figures.palette import model_palette
    from mgmvae.paper import display_name

    builtins = builtin_model_names()
    colours = model_palette([*builtins, "tiny_vae", "my_vae"])
    assert colours["tiny_vae"] not in {colours[display_name(m)] for m in builtins}
    assert colours["tiny_vae"] != colours["my_vae"]
    assert model_palette(["tiny_vae", *builtins])["tiny_vae"] == colours["tiny_vae"]  # not by position


# ---------------------------------------------------------- config validation
def with_models(*extra: str, **overrides) -> dict:
    return load_config(overrides={"models": [*BASE["models"], *extra], **overrides})


def test_config_accepts_plugins_beside_builtins(plugin_site):
    """By entry point and by import path (validate_models raises ConfigError on a refusal): the
    plugin runs under its own name beside the built-ins, with its params from model_settings."""
    config = with_models("tiny_vae", model_settings={"tiny_vae": {"params": {"kl_weight": 0.5}}})
    validate_models(config, contract=True)
    assert run_settings(config, "mnist_svhn", "tiny_vae")["params"] == {"kl_weight": 0.5}
    by_path = with_models("tiny_plugin.model:TinyVAE")
    validate_models(by_path, contract=True)
    assert run_names(by_path["models"]) == [*BASE["models"], "tiny_vae"]
    assert run_settings(by_path, "mnist_svhn", "tiny_plugin.model:TinyVAE")["params"] == {"kl_weight": 1.0}


@pytest.mark.parametrize(
    ("models", "overrides", "message"),
    [
        (["Tiny VAE"], {}, r"config key 'models.8': 'Tiny VAE' is not valid"),  # the schema: no loosening
        (["mvae2"], {}, r"config key 'models': unknown model 'mvae2'"),  # a near-built-in name
        (["tiny_vae", "tiny_plugin.model:TinyVAE"], {}, r"both have the run name 'tiny_vae'"),
        (["tiny_plugin.broken:BuiltinName"], {}, r"config key 'models': .*'mvae' is a built-in model's"),
        (["tiny_vae"], {"model_settings": {"tiny_vae": {"params": {"kl": 1}}}}, r"tiny_vae.params.*no parameter"),
        (["tiny_plugin.broken:NanLoss"], {}, r"'tiny_plugin.broken:NanLoss' .*breaks the model contract.*loss \["),
        ([], {"ablation": {"model": "tiny_plugin.broken:NoLoss"}}, r"config key 'ablation.model': .*lacks the method"),
        ([], {"ablation": {"model": "tiny_vae"}}, r"ablation.variants.full.params|ablation.variants.no_center.params"),
    ],
)
def test_bad_plugin_config_is_refused(plugin_site, models, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_models(with_models(*models, **overrides), contract=True)


def test_broken_plugin_stops_snakemake_before_any_job(plugin_site, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"models": ["mvae", "tiny_plugin.broken:WrongShape"]}))
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(ROOT / "workflow/presets/ci.yaml"), str(extra))
    assert result.returncode != 0
    assert "'tiny_plugin.broken:WrongShape' (run name 'wrong_shape') breaks the model contract" in result.stderr
    assert "generate [mnist_svhn shapes] hand" not in result.stderr  # the checks use the shape pairs' names
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
