# Helpers shared by the rules: config validation, the study layout, the resolved settings.
# Every path comes from mgmvae.paths, called with wildcards ("{dataset}", ...) where a rule has them.
import json
import os
import sys

import yaml

sys.path.insert(0, workflow.basedir)  # the rules import mgmvae from this checkout

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from mgmvae import paper as _paper
from mgmvae import paths
from mgmvae.compat import rule_python_problem
from mgmvae.config import ConfigError, at_paper_budget, classifier_settings, studied_datasets, validate
from mgmvae.contracts.model import validate_models
from mgmvae.contracts.dataset import validate_datasets
from mgmvae.study_datasets import check_raw_data, dataset_modalities, dataset_spec
from mgmvae.gpu_slots import LeaseError, warn_loudly, workflow_gpus
from mgmvae.io import save_text
from mgmvae.registry import run_names, run_settings
from mgmvae.tracking import TrackingError
from mgmvae.tracking import check_uri as check_tracking_uri
from mgmvae.tracking import preflight as check_tracking
from mgmvae.figures import FORMATS as FIGURE_FORMATS
from mgmvae.figures import KINDS as FIGURE_KINDS
from mgmvae.figures import figure_specs

# Stop before any job if the config is wrong, naming the key.
try:
    validate(config)
    # Plugins: importable, a model or dataset, and (in the main process, not again in each SLURM job) the contract.
    validate_models(config, contract=workflow.is_main_process)
    validate_datasets(config, contract=workflow.is_main_process)
except (ConfigError, ValueError) as error:
    raise WorkflowError(str(error)) from None

# Before the study config is written: no password inside the tracking URI.
try:
    check_tracking_uri(config["mlflow"]["tracking_uri"], "mlflow.tracking_uri")
except TrackingError as error:
    raise WorkflowError(str(error)) from None


onstart:
    # Only when jobs are about to run (not for -n or --lint): the rules' python runs the stages.
    if workflow.local_exec and DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
        problem = rule_python_problem(workflow.basedir)
        if problem:
            raise WorkflowError(
                f"{problem}. Activate the project's environment first (source .venv/bin/activate, "
                "as `make` does), or run with --use-conda."
            )
    # Raw data present or downloadable.
    check_raw_data(config)
    # An http(s) tracking server answers and the credentials may edit the experiment (MLFLOW_TRACKING_*).
    check_tracking(config)
    if workflow.local_exec and not GPU_JOB:
        slow = at_paper_budget(config, [(d, m) for d in DATASETS for m in MODELS])
        if slow:
            warn_loudly(
                f"{len(slow)} training run(s) at the paper's epochs ({slow[0]}, ...) and no usable GPU "
                f"(device: {config['device']}): each takes hours on a CPU. To try the pipeline, use a preset "
                "(--configfile workflow/presets/quick.yaml); for the paper, a GPU machine or SLURM."
            )


# Each rule that runs on a GPU asks for gpu=GPU_JOB; on one machine the workflow's gpu total is the
# visible GPUs x gpu_slots.per_device unless --resources gpu=N says otherwise (mgmvae/gpu_slots.py).
try:
    GPU_JOB = workflow_gpus(workflow, config)
except LeaseError as error:
    raise WorkflowError(str(error)) from None

DATASETS = studied_datasets(config)
MODELS = run_names(config["models"])  # run names: a plugin's path entry becomes its class's `name`
SEEDS = list(config["seeds"])
CONDA_ENV = "../envs/mgmvae.yaml"
os.environ.update(MGMVAE_ROOT=workflow.basedir)  # the checkout the rules' conda env installs (its pins)
# `python` from PATH: the venv's, or the conda env's under --use-conda. PYTHONPATH lets the
# rules import this checkout's mgmvae from any working directory (snakemake -d).
MGMVAE = f'PYTHONPATH="{workflow.basedir}${{PYTHONPATH:+:$PYTHONPATH}}" python -m mgmvae'


def _write_study_config():
    """The merged config every job reads; rewritten only when it changes (mtimes stay put)."""
    target = paths.study_config(config)
    text = yaml.safe_dump(dict(config), sort_keys=True)
    if not target.exists() or target.read_text() != text:
        save_text(text, target)
    return str(target)


STUDY_CONFIG = _write_study_config()


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="[a-z0-9_]+",
    seed=r"\d+",
    modality="[a-z0-9_]+",


def modalities_of(dataset):
    return dataset_modalities(config, dataset)


def settings_json(wildcards):
    """The resolved training settings: a change reruns exactly the affected runs."""
    return json.dumps(run_settings(config, wildcards.dataset, wildcards.model), sort_keys=True)


def classifier_files(wildcards):
    return [paths.classifier_file(config, wildcards.dataset, m) for m in modalities_of(wildcards.dataset)]


DATA = paths.data_file(config, "{dataset}")
RUN = paths.run_dir(config, "{dataset}", "{model}", "{seed}")
RUNS = paths.study_runs(config, MODELS)
METRICS = paths.run_files(config, RUNS)  # under the study's first protocol: what the bar charts read
EVERY_PROTOCOL_METRICS = [f for r in RUNS for f in paths.metrics_files(config, paths.run_dir(config, **r))]


def all_benchmarks():
    """The benchmark files of every job upstream of the tables (the resources table)."""
    logs = [paths.log_file(config, "prepare", d) for d in DATASETS]
    logs += [paths.log_file(config, "classifiers", d, m) for d in DATASETS for m in modalities_of(d)]
    logs += [paths.run_log(config, stage, **r) for stage in ("train", "evaluate") for r in RUNS]
    logs += [paths.log_file(config, "figures", part) for part in [*DATASETS, "bars"]]
    return [paths.benchmark_file(log) for log in logs]


# ------------------------------------------------------------------ figures
def figure_pngs(specs):
    """(PNG path, arguments of its `report` flag: caption and labels) per figure."""
    return [
        (
            paths.figures_dir(config) / f"{spec['stem']}.png",
            dict(
                caption=f"../report/{spec['kind']}.rst",
                category="Figures",
                subcategory=FIGURE_KINDS[spec["kind"]],
                labels={
                    "dataset": spec["dataset"],
                    "model": _paper.display_name(spec["model"]),
                    "direction": spec["direction"],
                },
            ),
        )
        for spec in specs
    ]


def figure_pdfs(specs):
    return [paths.figures_dir(config) / f"{spec['stem']}.pdf" for spec in specs]


FIGURE_SPECS = {d: figure_specs({d: modalities_of(d)}, MODELS, bars=False) for d in DATASETS}
FIGURE_SPECS["bars"] = figure_specs({}, MODELS, bars=True, tables=config["tables"])
ALL_FIGURES = [
    paths.figures_dir(config) / f"{spec['stem']}.{ext}"
    for specs in FIGURE_SPECS.values()
    for spec in specs
    for ext in ("png", "pdf")
]
