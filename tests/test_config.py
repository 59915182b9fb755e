"""The schema stops bad configs before any job, naming the key."""

import pytest

from mgmvae.config import ROOT, ConfigError, load_config, settings_keys, studied_datasets
from mgmvae.contracts.dataset import validate_datasets
from mgmvae.contracts.model import validate_models
from mgmvae.registry import run_settings

QUICK = ROOT / "workflow" / "presets" / "quick.yaml"
CI = ROOT / "workflow" / "presets" / "ci.yaml"


def test_paper_config_and_presets_are_valid():
    """Each passes the schema and the models' own checks (both raise ConfigError), and every run it
    studies gets every setting the schema types, so none falls back to a value in the code."""
    typed = settings_keys() - {"by_dataset"}  # a layering key, not a setting
    for files in [(ROOT / "config.yaml",), (ROOT / "config.yaml", QUICK), (ROOT / "config.yaml", CI)]:
        config = load_config(*files)
        validate_models(config)
        runs = [(d, m) for d in studied_datasets(config) for m in config["models"]]
        assert runs
        for dataset, model in runs:
            assert set(run_settings(config, dataset, model)) == typed, (files[-1].name, dataset, model)


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


# ------------------------------------------------------- parameters: one home, on the class
def test_a_run_takes_its_classs_defaults_under_the_configs_overrides():
    """MMVAE's K: the class's reference value 30, config.yaml's 10 over it, the quick preset's 1 over that."""
    from baselines.mmvae import MMVAE
    from mgmvae.model import MGMVAE

    assert MMVAE.Params().k == 30
    assert run_settings(load_config(), "mnist_svhn", "mmvae")["params"] == {
        "objective": "dreg",
        "k": 10,
        "learn_prior": True,
    }
    assert run_settings(load_config(ROOT / "config.yaml", QUICK), "digits_street", "mmvae")["params"]["k"] == 1
    cdcb = run_settings(load_config(), "mnist_cdcb", "mgmvae")["params"]
    assert (cdcb["lambda3"], cdcb["margin"], cdcb["lambda1"]) == (0.001, 2.0, MGMVAE.Params().lambda1)
    # an IMPLICIT parameter: out of the resolved settings (and the hash) at its default, used by the model all the same
    assert "cross_private" not in cdcb and MGMVAE.resolve_params({})["cross_private"] == "prior"


@pytest.mark.parametrize(
    "model, params, message",
    [
        ("mmvae", {"objective": "vae"}, r"objective = 'vae': input should be 'elbo', 'iwae' or 'dreg'"),
        ("mmvae", {"k": 0}, r"k = 0: input should be greater than 0"),
        ("mopoe", {"prior_expert": "some"}, r"prior_expert = 'some': input should be 'full_set', 'none' or 'all'"),
        ("mvae", {"annealing_epochs": -1}, r"annealing_epochs = -1: input should be greater than or equal to 0"),
        ("mvae", {"unimodal_elbos": "yes"}, r"unimodal_elbos = 'yes': input should be a valid boolean"),
        ("idmvae", {"gen_aug_loss": "CL"}, r"gen_aug_loss = 'CL': input should be 'contrastive' or 'matching'"),
        (
            "mgmvae",
            {"recon_scale": 0},
            r"recon_scale = 0: input should be greater than 0 or input should be 'per_pixel'",
        ),
        ("mgmvae", {"cross_private": "mine"}, r"cross_private = 'mine': input should be 'prior' or 'own'"),
        ("mwbvae", {"weights": {"mnist": 1.0, "svhn": -1.0}}, r"weights = .*: input should be greater than 0"),
        ("dmvae", {"kl_shared_weight": "1"}, r"kl_shared_weight = '1': input should be a valid number"),
    ],
)
def test_one_check_names_the_parameter_the_value_and_the_choices(model, params, message):
    bad = load_config(overrides={"model_settings": {model: {"params": params}}})
    where = rf"model_settings\.{model}\.params' \(dataset mnist_svhn\): model '{model}'"
    with pytest.raises(ConfigError, match=rf"{where}: parameter {message}"):
        validate_models(bad)


def test_a_plain_default_params_dict_types_each_parameter_by_its_default():
    from mgmvae.params import ParamError, params_class, resolve

    class Plugin:
        default_params = {"n": 20, "scale": 0.5, "name": None}

    params = params_class(Plugin)
    assert resolve(params, {"scale": 1, "name": "x"}, "p") == {"n": 20, "scale": 1, "name": "x"}  # an int is a number
    with pytest.raises(ParamError, match=r"p: parameter n = 2.0: input should be a valid integer"):
        resolve(params, {"n": 2.0}, "p")


def test_config_show_prints_each_value_with_where_it_comes_from(capsys):
    from mgmvae.cli import main
    from mgmvae.config import settings_hash

    assert main(["config", "--show", "--preset", "quick", "--dataset", "digits_cdcb", "--model", "mmvae"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split(maxsplit=2)[1:] for line in out.splitlines() if line.startswith("  ")}
    assert lines["params.k"] == ["1", "workflow/presets/quick.yaml: model_settings.mmvae"]
    assert lines["params.objective"] == ['"dreg"', "class default (baselines.mmvae:MMVAE)"]
    assert lines["optimizer.lr"] == ["0.001", "workflow/presets/quick.yaml: settings"]
    assert lines["shared_dim"] == ["20", "config.yaml: settings"]
    assert lines["colourings"] == ["5", "workflow/presets/quick.yaml: datasets.digits_cdcb"]
    config = load_config(ROOT / "config.yaml", QUICK)
    assert f"config_hash {settings_hash(run_settings(config, 'digits_cdcb', 'mmvae'))}" in out
    assert main(["config", "--show", "--dataset", "mnist_cdcb", "--model", "mgmvae"]) == 0
    out = capsys.readouterr().out
    assert "config.yaml: model_settings.mgmvae.by_dataset.mnist_cdcb" in out.split("params.margin")[1].splitlines()[0]
    assert "class default (mgmvae.model:MGMVAE)" in out.split("params.cross_private")[1].splitlines()[0]


def test_optimizer_adamw_needs_its_weight_decay():
    with pytest.raises(ConfigError, match=r"config key 'settings.optimizer': 'weight_decay' is a required property"):
        load_config(overrides={"settings": {"optimizer": {"name": "adamw"}}})
    config = load_config(overrides={"settings": {"optimizer": {"name": "adamw", "weight_decay": 0.01}}})
    assert run_settings(config, "mnist_svhn", "mvae")["optimizer"]["weight_decay"] == 0.01
