"""The schema stops bad configs before any job, naming the key."""

import pytest

from mgmvae.config import ROOT, ConfigError, load_config, run_settings, studied_datasets
from mgmvae.contract import validate_models
from mgmvae.dataset_contract import validate_datasets

QUICK = ROOT / "workflow" / "presets" / "quick.yaml"
CI = ROOT / "workflow" / "presets" / "ci.yaml"


def test_paper_config_and_presets_are_valid():
    for files in [(ROOT / "config.yaml",), (ROOT / "config.yaml", QUICK), (ROOT / "config.yaml", CI)]:
        config = load_config(*files)
        validate_models(config)


def test_paper_setting_values():
    config = load_config()
    assert studied_datasets(config) == ["mnist_svhn", "mnist_cdcb"]
    svhn, cdcb = run_settings(config, "mnist_svhn", "mvae"), run_settings(config, "mnist_cdcb", "mvae")
    assert (svhn["epochs"], svhn["batch_size"]) == (20, 128)  # paper: Experiment Settings
    assert (cdcb["epochs"], cdcb["batch_size"]) == (50, 64)
    assert svhn["shared_dim"] == 20 and svhn["optimizer"]["lr"] == 1e-4


def test_presets_point_tables_at_embedded_data():
    config = load_config(ROOT / "config.yaml", QUICK)
    assert studied_datasets(config) == ["digits_street", "digits_cdcb"]


@pytest.mark.parametrize(
    "override, key",
    [
        ({"settings": {"epochz": 3}}, "settings"),
        ({"settings": {"epochs": 0}}, "settings.epochs"),
        ({"settings": {"batch_size": "64"}}, "settings.batch_size"),
        ({"classifier": {"min_accuracy": 1.5}}, "classifier.min_accuracy"),
        ({"device": "gpu"}, "device"),
        ({"settings": {"precision": "float16"}}, "settings.precision"),
        ({"seeds": []}, "seeds"),
        ({"tables": {"table3": "nope"}}, "tables.table3"),
        ({"datasets": {"mnist_svhn": {"source": "mnist_svhn", "pairings": 0}}}, "datasets.mnist_svhn.pairings"),
        ({"datasets": {"x": {"source": "imagenet"}}}, "datasets.x.source"),
        ({"unknown_top_level": 1}, "<top level>"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        validate_datasets(load_config(overrides=override))  # the schema, then each dataset class its parameters


def test_unknown_model_and_param_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        validate_models(load_config(overrides={"models": ["nope"]}))
    bad = {"model_settings": {"mvae": {"params": {"kl_wieght": 2.0}}}}
    with pytest.raises(ConfigError, match="kl_wieght"):
        validate_models(load_config(overrides=bad))


def test_layers_resolve_in_order():
    config = load_config(
        overrides={"model_settings": {"mvae": {"batch_size": 32, "by_dataset": {"mnist_cdcb": {"batch_size": 16}}}}}
    )
    assert run_settings(config, "mnist_svhn", "mvae")["batch_size"] == 32
    assert run_settings(config, "mnist_cdcb", "mvae")["batch_size"] == 16


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_published_study_uses_each_baselines_own_settings():
    config = load_config(ROOT / "config.yaml", ROOT / "workflow" / "presets" / "published.yaml")
    validate_models(config)
    assert config["study"] == "published"
    mmvae = run_settings(config, "mnist_svhn", "mmvae")
    assert mmvae["posterior"] == "laplace" and mmvae["params"]["k"] == 30 and mmvae["optimizer"]["amsgrad"]
    dmvae = run_settings(config, "mnist_svhn", "dmvae")
    assert (dmvae["shared_dim"], dmvae["batch_size"], dmvae["likelihood_weights"]["mnist"]) == (10, 100, 50.0)
    # MGMVAE keeps its paper settings: identical to the paper study's
    assert run_settings(config, "mnist_svhn", "mgmvae") == run_settings(load_config(), "mnist_svhn", "mgmvae")
