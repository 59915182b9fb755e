"""The whole DAG end to end on the tiny CI preset, as Snakemake runs it, plus its refusals. The
end-to-end tests share one run of it (``ci_study``): the built-ins, a plugin installed as a package
beside them, and the plugin guide's template as a local file through the ablation."""

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from mgmvae.config import DEFAULT_CONFIG, ROOT, load_config
from mgmvae.tracking import experiment_name
from tests.conftest import CI_PRESET, SNAKEMAKE, snakemake, snakemake_env, template_code


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


CI_EXPERIMENT = experiment_name(load_config(DEFAULT_CONFIG, CI_PRESET))  # the CI study's MLflow experiment


@pytest.fixture(scope="module")
def ci_study(plugin_site, tmp_path_factory) -> Study:
    """One run of the CI preset's whole DAG, shared by the end-to-end tests below: every built-in
    and the installed plugin ``tiny_vae`` (an entry point) through the default target, and the
    guide's template as a local file (``tiny_file_vae``) through the ablation target, four jobs at a
    time logging to the default MLflow store of the working directory."""
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


@pytest.mark.slow
def test_ci_preset_end_to_end(ci_study):
    """≥ 4 concurrent jobs log to MLflow's default store (sqlite:///mlflow.db in the workdir)."""
    tmp_path, MODELS = ci_study.workdir, ci_study.models
    tables = tmp_path / "results" / "ci" / "tables"
    for name in ("table1", "table2", "table3", "loglik", "generative_quality", "clustering"):
        assert (tables / f"{name}.md").read_text().strip(), name
        assert "\\toprule" in (tables / f"{name}.tex").read_text(), name
        frame = pd.read_csv(tables / f"{name}.csv")
        assert set(MODELS) <= set(frame["model"]), name
    figures = sorted((tmp_path / "results" / "ci" / "figures").rglob("*.png"))
    assert figures and all(p.stat().st_size > 1000 for p in figures)
    assert {p.parent.name for p in figures} >= {
        "cross_generation",
        "translation",
        "retrieval",
        "tsne",
        "curves",
        "bars",
    }
    metrics = json.loads((tmp_path / "results/ci/runs/digits_street/mvae/seed0/metrics.json").read_text())
    assert set(metrics["metrics"]) == {
        "cross_generation",
        "cross_generation_balanced",
        "joint_coherence",
        "probe",
        "probe_selection",
        "retrieval_top1",
        "clustering",
        "log_likelihood",
        "conditional_coherence",
        "conditional_coherence_balanced",
        "conditional_coherence_targets",
        "probe_by_subset",
        "probe_by_subset_size",
        "retrieval_mean",
        "generative_quality",
    }
    assert metrics["protocol"] == "sample" and metrics["metrics"]["joint_coherence"]["samples"] == 200
    assert metrics["metrics"]["generative_quality"]["settings"] == {"samples": 200, "k": 3}
    likelihood = metrics["metrics"]["log_likelihood"]
    assert likelihood["estimator"]["samples"] == 2 and likelihood["joint"] < min(
        likelihood["hand"], likelihood["street"]
    )
    assert metrics["metrics"]["probe_selection"]["C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(CI_EXPERIMENT).experiment_id])
    stages = sorted(r.data.tags["stage"] for r in runs)
    n = 2 * len(MODELS) + 2 * len(ci_study.ablation_variants)  # 2 datasets × (models and ablation variants)
    # prepare ×2, classifier ×4 (2 modalities each), train and evaluate per run, tables, figures
    # per dataset and for the bar charts, the ablation table
    assert (
        stages
        == ["ablation"]
        + ["classifier"] * 4
        + ["evaluate"] * n
        + ["figures"] * 3
        + ["prepare"] * 2
        + ["tables"]
        + ["train"] * n
    )
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert {"study", "stage", "git_commit"} <= set(run.data.tags)
        if run.data.tags["stage"] == "train":
            assert {"dataset", "model", "seed", "config_hash"} <= set(run.data.tags)
            assert client.get_metric_history(run.info.run_id, "loss"), "no per-epoch loss"
        if run.data.tags["stage"] == "evaluate":
            assert run.data.tags["protocol"] == "sample"
            assert {"probe.joint", "joint_coherence.joint", "probe_selection.C"} <= set(run.data.metrics)
            assert "generative_quality.conditional.mean.recall" in run.data.metrics

    # The tables run holds every table and every figure.
    aggregate = next(r for r in runs if r.data.tags["stage"] == "tables")
    tables_logged = {Path(a.path).name for a in client.list_artifacts(aggregate.info.run_id, "tables")}
    assert {"table1.tex", "table3.md", "clustering.csv"} <= tables_logged
    for kind in ("cross_generation", "translation", "retrieval", "tsne", "curves", "bars"):
        logged = {Path(a.path).name for a in client.list_artifacts(aggregate.info.run_id, f"figures/{kind}")}
        on_disk = {p.name for p in (tmp_path / "results/ci/figures" / kind).iterdir()}
        assert logged == on_disk and logged, kind

    # Nothing to do on a second run: outputs are complete and up to date.
    again = snakemake(tmp_path, "-n", "all", "ablation", "--configfile", str(CI_PRESET), str(tmp_path / "study.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr

    # The CI study runs the sample protocol; one run evaluated again with mean covers the other
    # (MMVAE+: under sample it draws private latents and its probe reads posterior draws).
    study = tmp_path / "results/ci"
    run = study / "runs/digits_street/mmvae_plus/seed0"
    args = "evaluate --preset ci --dataset digits_street --model mmvae_plus --seed 0 --protocol mean"
    args += f" --no-mlflow --no-progress --out {tmp_path / 'mean.json'} --data {study / 'data/digits_street.pt'}"
    args += f" --model-file {run / 'model.pt'} --classifiers {study / 'classifiers/digits_street/hand.pt'}"
    args += f" {study / 'classifiers/digits_street/street.pt'}"
    result = subprocess.run(
        [sys.executable, "-m", "mgmvae", *args.split()], capture_output=True, text=True, env=snakemake_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    both = {
        "mean": json.loads((tmp_path / "mean.json").read_text()),
        "sample": json.loads((run / "metrics.json").read_text()),
    }
    assert {p: r["protocol"] for p, r in both.items()} == {"mean": "mean", "sample": "sample"}
    assert both["mean"]["metrics"] != both["sample"]["metrics"]


# ------------------------------------------------------------ plugins end to end
def check_plugin_mlflow_runs(workdir: Path, name: str, package: str, version: str, builtin: bool = True) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(CI_EXPERIMENT).experiment_id])
    mine = [r for r in runs if r.data.tags.get("model") == name]
    assert {"train", "evaluate"} <= {r.data.tags["stage"] for r in mine}
    for run in mine:
        assert run.data.tags["model_package"] == package
        assert re.fullmatch(version, run.data.tags["model_version"])
        assert run.data.tags["model_import_path"].endswith(":TinyVAE")
    if builtin:
        mvae = next(r for r in runs if r.data.tags.get("model") == "mvae" and r.data.tags["stage"] == "train")
        assert mvae.data.tags["model_import_path"] == "baselines.mvae:MVAE"


@pytest.mark.slow
def test_plugin_runs_through_the_ci_preset_beside_builtins(ci_study):
    """The installed plugin (entry point tiny_vae) beside the built-ins: tables, figures, MLflow."""
    study = ci_study.results
    for table in ("table1", "table2", "table3", "clustering"):
        frame = pd.read_csv(study / "tables" / f"{table}.csv")
        assert "tiny_vae" in set(frame["model"]), table
    row = next(line for line in (study / "tables" / "table1.md").read_text().splitlines() if "tiny_vae" in line)
    assert "—" in row  # the paper has no number for it
    assert (study / "runs/digits_street/tiny_vae/seed0/metrics.json").exists()
    for stem in ("translation/digits_street_tiny_vae_hand_to_street", "curves/digits_cdcb_tiny_vae"):
        assert (study / "figures" / f"{stem}.png").stat().st_size > 1000
    check_plugin_mlflow_runs(ci_study.workdir, "tiny_vae", "mgmvae-tiny-plugin", "0.3.1")


@pytest.mark.slow
def test_plugin_file_runs_through_the_ablation(ci_study):
    """The guide's template as a local file is the ablation's model, with variants of its own."""
    outdir = ci_study.results / "ablation"
    table = pd.read_csv(outdir / "ablation_table.csv")
    assert set(table["variant"]) == set(ci_study.ablation_variants) == {"full", "kl_half"}
    assert (outdir / "ablation_plot_digits_street.png").stat().st_size > 1000
    assert (outdir / "digits_street" / "kl_half" / "seed0" / "metrics.json").exists()
    check_plugin_mlflow_runs(ci_study.workdir, ci_study.ablation_model, "", r"sha256:[0-9a-f]{16}", builtin=False)


def test_paper_setting_dry_run_lists_the_paper_dag(tmp_path):
    result = snakemake(tmp_path, "-n")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "results/paper/data/mnist_svhn.pt" in out and "results/paper/data/mnist_cdcb.pt" in out
    assert "results/paper/runs/mnist_svhn/mvae/seed2/model.pt" in out


def test_paper_setting_offline_stops_at_once_naming_the_files(tmp_path):
    result = snakemake(tmp_path, "--cores", "1", "--config", "download=False", timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train-images-idx3-ubyte.gz" in out and "train_32x32.mat" in out
    assert "download: true" in out  # says how to provide them
    assert not (tmp_path / "results" / "paper" / "data").exists()


def test_bad_config_stops_before_any_job_naming_the_key(tmp_path):
    result = snakemake(tmp_path, "-n", "--config", "seeds=[]")
    assert result.returncode != 0
    assert "config key 'seeds'" in result.stdout + result.stderr


def test_lint_is_clean():
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, env=snakemake_env())
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout[-2000:]


def test_a_workflow_whose_python_cannot_run_the_stages_stops_before_any_job_naming_the_fix(tmp_path):
    """`.venv/bin/snakemake` without the venv active: the rules' `python` is another interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"  # a system python without torch, as a fresh machine has
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    python.chmod(0o755)
    env = {**snakemake_env(), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    cmd = [
        SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(tmp_path),
        "--cores",
        "1",
        "--configfile",
        str(CI_PRESET),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"the `python` on PATH ({python}) cannot run the stages: ModuleNotFoundError" in out
    assert "source .venv/bin/activate" in out and "--use-conda" in out
    assert not (tmp_path / "results" / "ci" / "data").exists()  # no job ran
