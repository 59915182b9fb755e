"""The ablation study: variants resolved in mgmvae.config, the aggregation and the DAG. The tiny ablation runs
end to end in tests/test_slurm.py (through SLURM) and, with a plugin as the ablated model, in the shared CI
study (tests/test_pipeline.py ``ci_study``)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from mgmvae import paths
from mgmvae.config import (
    ROOT,
    ConfigError,
    ablation_datasets,
    ablation_seeds,
    ablation_variants,
    load_config,
    settings_hash,
)
from mgmvae.contracts.model import validate_models
from mgmvae.registry import run_settings
from mgmvae.tracking import experiment_name
from tests.conftest import snakemake

ABLATION_QUICK = ROOT / "workflow" / "presets" / "ablation_quick.yaml"
ABLATION_CI = ROOT / "workflow" / "presets" / "ablation_ci.yaml"


# ------------------------------------------------------------------ config
def test_paper_ablation_declares_every_variant():
    config = load_config()
    validate_models(config)
    variants = ablation_variants(config)
    assert config["ablation"]["model"] == "mgmvae"
    assert {
        "full",
        "no_center",
        "no_alignment",
        "no_center_no_alignment",
        "gaussian_prior",
        "random_negatives",
        "tau_0.5",
        "tau_0.7",
        "tau_0.8",
        "tau_0.9",
        "k5",
        "k10",
        "k20",
    } <= set(variants)
    assert len([v for v in variants if v.startswith("margin_")]) >= 3
    assert len([v for v in variants if v.startswith("lambda3_")]) >= 3
    assert ablation_datasets(config) == ["mnist_svhn", "mnist_cdcb"]  # null: the study's datasets
    assert ablation_seeds(config) == [0, 1, 2]


def test_presets_are_valid_and_quick_runs_every_variant():
    paper = ablation_variants(load_config())
    quick = load_config(ROOT / "config.yaml", ABLATION_QUICK)
    validate_models(quick)
    assert ablation_variants(quick) == paper
    assert ablation_datasets(quick) == ["digits_street", "digits_cdcb"] and quick["device"] == "cpu"
    tiny = load_config(ROOT / "config.yaml", ABLATION_CI)
    validate_models(tiny)
    assert ablation_variants(tiny) == ["full", "no_center", "gaussian_prior"]  # declaration order
    assert tiny["device"] == "cpu"  # no GPU request on the CPU-only test cluster


def test_variant_overrides_go_on_top_of_the_resolved_settings():
    config = load_config()
    base = run_settings(config, "mnist_cdcb", "mgmvae")
    assert base["params"]["margin"] == 2.0  # by_dataset layer
    assert run_settings(config, "mnist_cdcb", "mgmvae", "margin_1.0")["params"]["margin"] == 1.0
    no_center = run_settings(config, "mnist_cdcb", "mgmvae", "no_center")
    assert no_center["params"]["beta"] == 0.0
    assert {k: v for k, v in no_center["params"].items() if k != "beta"} == {
        k: v for k, v in base["params"].items() if k != "beta"
    }
    assert run_settings(config, "mnist_svhn", "mgmvae", "gaussian_prior")["params"]["use_mixture_prior"] is False
    assert run_settings(config, "mnist_svhn", "mgmvae", "random_negatives")["params"]["semi_hard_from_epoch"] >= 10**6
    assert run_settings(config, "mnist_svhn", "mgmvae", "k20")["params"]["n_components"] == 20
    assert run_settings(config, "mnist_svhn", "mgmvae", "full") == run_settings(config, "mnist_svhn", "mgmvae")
    with pytest.raises(ConfigError, match="unknown ablation variant 'nope'"):
        run_settings(config, "mnist_svhn", "mgmvae", "nope")


def test_paper_literal_variant_trains_eq13_as_printed():
    """No cross/unimodal reconstructions, log-likelihoods summed and unweighted: the loss is
    −(Σ_m log p(m | z_s, h_m) − λ1·KL_mix − λ2·KL_private − λ3·KL_shared) + β·center + γ·align."""
    from mgmvae.registry import build_model
    from tests.conftest import synthetic_paired

    config = load_config()
    for dataset in ("mnist_svhn", "mnist_cdcb"):
        settings = run_settings(config, dataset, "mgmvae", "paper_literal")
        params = settings["params"]
        assert (params["extra_recon"], params["unimodal_recon"], params["recon_scale"]) == (False, False, 1.0)
        assert settings["likelihood_weights"] == "none"
    data = synthetic_paired(n_train=16, n_test=8)
    settings = {**run_settings(config, "mnist_svhn", "mgmvae", "paper_literal"), "shared_dim": 4, "private_dim": 2}
    settings["params"] = {**settings["params"], "mixture_init": "random"}  # the mixture terms in use at once
    torch.manual_seed(0)
    model = build_model("mgmvae", data.shapes, settings)
    assert model.recon_scale == 1.0 and model.weights == {"a": 1.0, "b": 1.0}
    terms = model.loss(data.batch("train", torch.arange(16)))
    p = model.params
    elbo = (
        terms["recon_a"]
        + terms["recon_b"]
        - p["lambda1"] * terms["kl_mixture"]
        - p["lambda2"] * terms["kl_private"]
        - p["lambda3"] * terms["kl_unimodal_shared"]
    )
    assert "recon_cross" not in terms
    torch.testing.assert_close(terms["elbo"], elbo)
    torch.testing.assert_close(terms["loss"], -elbo + p["beta"] * terms["center"] + p["gamma"] * terms["align"])


def test_config_hash_differs_per_variant():
    config = load_config()
    hashes = {settings_hash(run_settings(config, "mnist_svhn", "mgmvae", v), v) for v in ablation_variants(config)}
    assert len(hashes) == len(ablation_variants(config))  # even tau_0.8 (= the paper's τ) vs full
    assert settings_hash(run_settings(config, "mnist_svhn", "mgmvae")) not in hashes


def test_ablation_paths():
    config = load_config()
    assert paths.run_dir(config, "mnist_svhn", "mgmvae", 2, "tau_0.5") == Path(
        "results/paper/ablation/mnist_svhn/tau_0.5/seed2"
    )
    # the same function with wildcards is the Snakefile's pattern
    assert str(paths.run_dir(config, "{dataset}", "mgmvae", "{seed}", "{variant}")) == (
        "results/paper/ablation/{dataset}/{variant}/seed{seed}"
    )
    assert str(paths.run_log(config, "ablation/train", "{dataset}", "{variant}", "{seed}")) == (
        "results/paper/logs/ablation/train/{dataset}/{variant}/seed{seed}.log"
    )
    assert str(paths.log_file(config, "tables")) == "results/paper/logs/tables.log"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"ablation": {"variants": {"../up": {}}}}, "config key 'ablation.variants'"),
        ({"ablation": {"variants": {"a/b": {}}}}, "config key 'ablation.variants'"),
        ({"ablation": {"variants": {"x": {"epochz": 1}}}}, "config key 'ablation.variants.x'"),
        ({"ablation": {"unknown": 1}}, "config key 'ablation'"),
        ({"ablation": {"seeds": [-1]}}, "config key 'ablation.seeds'"),
        ({"ablation": {"datasets": ["digits_cdcb"]}}, "ablation.datasets.*digits_cdcb.*not one this study builds"),
        ({"ablation": {"select": ["full", "nope"]}}, "ablation.select.*no variant 'nope'"),
        ({"ablation": {"variants": {"x": {"by_dataset": {}}}}}, "ablation.variants.x.by_dataset"),
    ],
)
def test_bad_ablation_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=override)


def test_unknown_variant_param_is_refused():
    config = load_config(overrides={"ablation": {"variants": {"typo": {"params": {"betta": 0}}}}})
    with pytest.raises(ConfigError, match="ablation.variants.typo.params.*betta"):
        validate_models(config)


# ------------------------------------------------------------- aggregation
def _record(dataset, variant, seed, value):
    return {
        "study": "t",
        "dataset": dataset,
        "model": "mgmvae",
        "variant": variant,
        "seed": seed,
        "modalities": ["a", "b"],
        "config_hash": "x",
        "metrics": {
            "cross_generation": {"a->b": value, "b->a": value},
            "probe": {"a": value, "b": value, "joint": value},
            "retrieval_top1": {"a->b": value, "b->a": value},
            "clustering": {"accuracy": value, "nmi": value, "ari": value, "k": 10, "method": "mixture"},
        },
    }


def write_ablation(files, config, outdir):
    """What the `ablation` stage writes: the table through mgmvae.tables, the plots through mgmvae.figures."""
    from mgmvae.figures import ablation_plots
    from mgmvae.tables import load_run_metrics
    from mgmvae.tables.ablation import ablation_table

    frame = load_run_metrics(files)
    return ablation_table(frame, config, outdir) + ablation_plots(frame, outdir, "mgmvae", config["study"])


def test_write_ablation_table_and_plots(tmp_path):
    config = load_config()
    files = []
    for variant, value in (("full", 0.8), ("no_center", 0.6), ("tau_0.5", 0.7)):
        for seed in (0, 1):
            path = tmp_path / "runs" / f"{variant}-{seed}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(_record("mnist_svhn", variant, seed, value + 0.01 * seed)))
            files.append(path)
    written = write_ablation(files, config, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == [
        "ablation_plot_mnist_svhn.pdf",
        "ablation_plot_mnist_svhn.png",
        "ablation_table.csv",
        "ablation_table.html",
        "ablation_table.md",
        "ablation_table.tex",
    ]
    assert all(p.stat().st_size > 0 for p in written)
    table = pd.read_csv(tmp_path / "out" / "ablation_table.csv")
    assert list(dict.fromkeys(table["variant"])) == ["full", "no_center", "tau_0.5"]  # file order
    row = table[(table.variant == "no_center") & (table.metric == "probe") & (table.key == "joint")].iloc[0]
    assert row["mean"] == pytest.approx(0.605) and row["n_seeds"] == 2
    assert row["delta_vs_full"] == pytest.approx(-0.2)
    md = (tmp_path / "out" / "ablation_table.md").read_text()
    rows = {
        c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in md.splitlines() if "|" in line)
    }
    assert rows["no_center"][:3] == ["no_center", "beta=0.0", "2"] and rows["full"][:3] == ["full", "-", "2"]
    assert rows["no_center"][3] == "60.5 ± 0.7"  # coherence of the first direction: 60 and 61 %


def test_ablation_table_sections_formats_and_interval(tmp_path):
    """One table per dataset with its own modality columns, in all four formats; the CSV's ci95 is
    the 95% t half-width: t_{0.975, 2} · 0.01 / √3 for seeds at 0.80, 0.81, 0.82."""
    config = load_config()
    files = []
    for dataset, modalities in (("mnist_svhn", ["a", "b"]), ("mnist_cdcb", ["c", "d"])):
        for variant in ("full", "no_center"):
            for seed in (0, 1, 2):
                record = _record(dataset, variant, seed, 0.8 + 0.01 * seed)
                record["modalities"] = modalities
                if modalities == ["c", "d"]:
                    record["metrics"]["cross_generation"] = {"c->d": 0.5, "d->c": 0.5}
                path = tmp_path / f"{dataset}-{variant}-{seed}.json"
                path.write_text(json.dumps(record))
                files.append(path)
    write_ablation(files, config, tmp_path / "out")
    out = tmp_path / "out"
    table = pd.read_csv(out / "ablation_table.csv")
    row = table[(table.dataset == "mnist_svhn") & (table.variant == "full") & (table.key == "joint")].iloc[0]
    assert row["ci95"] == pytest.approx(4.302652729749462 * 0.01 / 3**0.5, abs=1e-4)
    assert list(dict.fromkeys(table["dataset"])) == ["mnist_cdcb", "mnist_svhn"]
    md = (out / "ablation_table.md").read_text()
    cdcb, svhn = md.split("### mnist_cdcb")[1].split("### mnist_svhn")
    assert "coherence c→d" in cdcb and "coherence a→b" not in cdcb
    assert "coherence a→b" in svhn and "coherence c→d" not in svhn
    tex = (out / "ablation_table.tex").read_text()
    assert tex.count("\\begin{table}") == 2 and "tab:paper-ablation-mnist_svhn" in tex
    page = (out / "ablation_table.html").read_text()
    assert page.count("<h3>") == 2 and "81.0 ± 1.0" in page


# -------------------------------------------------------------- local run
def test_default_target_has_no_ablation_and_ablation_target_lists_every_variant(tmp_path):
    default = snakemake(tmp_path, "-n", "--configfile", str(ABLATION_QUICK), timeout=300)
    assert default.returncode == 0, default.stderr[-3000:]
    assert "ablation" not in default.stdout.replace("ablation_quick", "")
    target = snakemake(tmp_path, "-n", "ablation", "--configfile", str(ABLATION_QUICK), timeout=300)
    assert target.returncode == 0, target.stderr[-3000:]
    for variant in ablation_variants(load_config()):
        for dataset in ("digits_street", "digits_cdcb"):
            run = paths.run_dir({"results_dir": "results", "study": "ablation_quick"}, dataset, "mgmvae", 0, variant)
            assert str(paths.metrics_file(run)) in target.stdout
    assert "train_ablation" in target.stdout and "evaluate_ablation" in target.stdout


def check_ablation_outputs(workdir: Path, study: str, variants, dataset: str = "digits_street") -> None:
    out = workdir / "results" / study / "ablation"
    for name in (
        "ablation_table.csv",
        "ablation_table.md",
        "ablation_table.tex",
        "ablation_table.html",
        f"ablation_plot_{dataset}.png",
        f"ablation_plot_{dataset}.pdf",
    ):
        assert (out / name).stat().st_size > 0, name
    for variant in variants:
        run = out / dataset / variant / "seed0"
        for file in (paths.model_file(run), paths.history_file(run), paths.metrics_file(run)):
            assert file.stat().st_size > 0, file
        record = json.loads(paths.metrics_file(run).read_text())
        assert record["variant"] == variant and record["model"] == "mgmvae"
        assert set(record["metrics"]) >= {"cross_generation", "probe", "retrieval_top1", "clustering"}
        assert record["protocol"] == "mean"
    table = pd.read_csv(out / "ablation_table.csv")
    assert list(dict.fromkeys(table["variant"])) == list(variants)
    md = (out / "ablation_table.md").read_text()
    rows = {line.strip("|").split("|")[0].strip() for line in md.splitlines() if line.startswith("|")}
    assert set(variants) <= rows
    assert not list(workdir.rglob("*.tmp")), "temporary files left behind"


def check_mlflow_runs(client, study: str, variants) -> None:
    experiment = experiment_name({"study": study, "mlflow": load_config()["mlflow"]})
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert {r.data.tags.get("study") for r in runs} == {study}  # the study's own experiment
    stages = sorted(r.data.tags["stage"] for r in runs)
    n = len(variants)
    assert stages == ["ablation"] + ["classifier"] * 2 + ["evaluate"] * n + ["prepare"] + ["train"] * n
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    hashes = {}
    for run in runs:
        tags = run.data.tags
        assert {"study", "stage", "git_commit"} <= set(tags)
        if tags["stage"] in ("train", "evaluate"):
            assert {"dataset", "model", "seed", "config_hash", "variant"} <= set(tags)
            assert tags["model"] == "mgmvae" and tags["variant"] in variants
            hashes.setdefault(tags["variant"], set()).add(tags["config_hash"])
        if tags["stage"] == "train":
            assert client.get_metric_history(run.info.run_id, "loss"), "no per-epoch loss"
        if tags["stage"] == "evaluate":
            assert "probe.joint" in run.data.metrics
        if tags["stage"] == "ablation":
            logged = {a.path for a in client.list_artifacts(run.info.run_id, "ablation")}
            assert "ablation/ablation_table.csv" in logged, logged
    assert sorted(hashes) == sorted(variants)
    assert all(len(h) == 1 for h in hashes.values())  # train and evaluate agree
    assert len({next(iter(h)) for h in hashes.values()}) == n  # one config_hash per variant


def test_unreachable_tracking_server_is_refused_fast(tmp_path):
    """A job whose http tracking server does not answer stops at once, naming the URI."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT))
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgmvae",
            "prepare",
            "--preset",
            "ablation_ci",
            "--dataset",
            "digits_street",
            "--out",
            str(tmp_path / "d.pt"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"http://127.0.0.1:{port}" in result.stderr and "MLFLOW_TRACKING_URI" in result.stderr
    assert time.monotonic() - start < 60  # imports included; MLflow's own retries would take minutes
    assert not (tmp_path / "d.pt").exists()


def test_ablation_table_reads_fractions_only(tmp_path):
    """The probe's chosen C, the joint-coherence sample count and log-likelihoods (nats) are not
    fractions: the table (in %) leaves them out and keeps joint and balanced coherence."""
    from mgmvae.tables import load_run_metrics
    from mgmvae.tables.ablation import fractions

    record = _record("mnist_svhn", "full", 0, 0.5)
    record["metrics"] |= {
        "cross_generation_balanced": {"a->b": 0.4, "b->a": 0.45},
        "joint_coherence": {"joint": 0.3, "samples": 2000},
        "probe_selection": {"method": "logistic_cv", "C": 100.0, "cv_accuracy": 0.9, "folds": 3},
        "log_likelihood": {"joint": -1200.5, "a": -600.0, "b": -700.0, "estimator": {"samples": 10}},
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    frame = fractions(load_run_metrics([path]))
    assert set(frame["metric"]) == {
        "cross_generation",
        "cross_generation_balanced",
        "joint_coherence",
        "probe",
        "retrieval_top1",
        "clustering",
    }
    assert frame[frame["metric"] == "joint_coherence"]["key"].tolist() == ["joint"]
    assert frame["value"].between(0, 1).all()
