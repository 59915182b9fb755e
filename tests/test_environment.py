"""environment.yml and the rules' conda envs agree with the pip pins in pyproject.toml."""

import re

import tomllib
import yaml

from mgmvae.config import ROOT


def pip_pins(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert isinstance(env["dependencies"], list) and "pip" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return dict(line.split("==") for line in pip)


def project_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = project["dependencies"] + project["optional-dependencies"]["dev"]
    return dict(p.split("==") for p in pins)


def test_every_dependency_is_pinned_exactly():
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        assert "==" in spec, f"{spec} is not pinned"


def test_torch_and_torchvision_are_a_matching_pair():
    pins = project_pins()
    assert (pins["torch"], pins["torchvision"]) == ("2.13.0", "0.28.0")


def test_environment_yml_matches_pyproject():
    assert pip_pins(ROOT / "environment.yml") == project_pins()


def test_rule_envs_match_pyproject():
    pins = project_pins()
    envs = sorted((ROOT / "workflow" / "envs").glob("*.yaml"))
    assert envs, "no conda environments for the rules"
    for env in envs:
        for name, version in pip_pins(env).items():
            assert pins.get(name) == version, f"{env.name}: {name}=={version} but pyproject pins {pins.get(name)}"
        assert {"torch", "torchvision"} <= set(pip_pins(env))


def test_every_rule_has_a_conda_env_and_a_log():
    """Every rule that runs a command has both; a rule that inherits one (`use rule … with:`) keeps
    its conda env and sets a log of its own."""
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        commands = text.count("shell:")
        inherited = len(re.findall(r"^use rule \w+ as \w+ with:", text, re.M))
        assert commands == text.count("conda:"), smk.name
        assert commands + inherited == text.count("log:"), smk.name
