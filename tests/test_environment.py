"""pyproject.toml holds the one list of pins: environment.yml and the rules' conda env install the
project itself through pip, with the Python they name; every rule has a conda env and a log."""

import os
import re
import subprocess
import sys

import yaml

from mgmvae.config import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomllib's origin, in the dev extra for these versions
    import tomli as tomllib

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pip_section(env_file):
    """The pip requirements of a conda env file, once it is checked to be valid YAML with Python 3.11 and pip."""
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    assert "python=3.11" in dependencies and "pip" in dependencies, env_file
    (pip,) = [d["pip"] for d in dependencies if isinstance(d, dict)]
    return pip


def pins():
    return dict(spec.split(";")[0].split("==") for spec in PROJECT["dependencies"])


def test_every_dependency_is_pinned_exactly():
    for spec in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]:
        assert re.fullmatch(r"[\w.\[\]-]+==[\w.]+(; .+)?", spec), f"{spec} is not pinned exactly"


def test_torch_and_torchvision_are_a_matching_pair():
    """torchvision 0.N.p is built for torch 2.(N-15).p (the table in torchvision's README)."""
    torch, vision = (pins()[name].split(".") for name in ("torch", "torchvision"))
    assert (vision[0], int(vision[1]) - 15, vision[2]) == ("0", int(torch[1]), torch[2]) and torch[0] == "2"


def test_the_conda_envs_install_the_project_and_repeat_no_pin():
    """environment.yml: pip runs in its folder, the root. The rules' env: Snakemake copies the file under
    .snakemake/conda, so it names the checkout through MGMVAE_ROOT, which the workflow sets."""
    assert pip_section(ROOT / "environment.yml") == ["-e .[dev]"]
    assert (ROOT / "environment.yml").parent / "pyproject.toml" == ROOT / "pyproject.toml"
    (rule_env,) = sorted((ROOT / "workflow" / "envs").glob("*.yaml"))
    (requirement,) = pip_section(rule_env)
    assert requirement == "-e ${MGMVAE_ROOT}"
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert "os.environ.update(MGMVAE_ROOT=workflow.basedir)" in common
    assert f'CONDA_ENV = "../envs/{rule_env.name}"' in common
    expanded = requirement.replace("${MGMVAE_ROOT}", str(ROOT))  # workflow.basedir: the Snakefile's folder
    assert (ROOT / "Snakefile").exists() and os.path.isfile(os.path.join(expanded[3:], "pyproject.toml"))


def test_every_rule_has_a_conda_env_and_a_log():
    """Every rule that runs a command has both; a rule that inherits one (`use rule … with:`) keeps
    its conda env and sets a log of its own."""
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        commands = text.count("shell:")
        inherited = len(re.findall(r"^use rule \w+ as \w+ with:", text, re.M))
        assert commands == text.count("conda:"), smk.name
        assert commands + inherited == text.count("log:"), smk.name


def test_threads_option_limits_every_thread_pool_loaded_before_or_after():
    """``--threads 1`` (cli.limit_threads): torch and every BLAS/OpenMP pool at one thread, those of
    numpy and torch loaded before the call and those of scipy and scikit-learn loaded after it."""
    code = (
        "import numpy, torch\n"
        "from mgmvae.cli import limit_threads\n"
        "limit_threads(1)\n"
        "import scipy.linalg, sklearn.linear_model\n"
        "from threadpoolctl import threadpool_info\n"
        "print(torch.get_num_threads(), sorted({p['num_threads'] for p in threadpool_info()}))\n"
    )
    many = {var: "2" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    run = lambda code: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **many}, check=True
    ).stdout.split(maxsplit=1)
    threads, pools = run(code.replace("limit_threads(1)", "pass"))
    assert threads == "2" and pools.startswith("[2]"), f"the pools must start above one thread: {pools}"
    threads, pools = run(code)
    assert threads == "1" and pools.strip() == "[1]", pools
