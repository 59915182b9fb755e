"""The log-likelihood's quality (effective sample size, floor, normalised density, widened proposal),
the evaluate stage under several protocols, and the K sweep, on hand-built cases."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import yaml

from mgmvae import paths
from mgmvae.config import DEFAULT_CONFIG, ConfigError, load_config
from mgmvae.distributions import DiagGaussian, DiagLaplace, MixtureOfExperts
from mgmvae.evaluation.likelihood import (
    effective_sample_size,
    evaluate_log_likelihood,
    quality,
    widened,
)
from mgmvae.registry import build_model, resolve
from tests.conftest import TOY_SETTINGS, synthetic_paired
from tests.test_likelihood import SUBSETS, LinearGaussian, closed_forms, estimate_log_likelihood


# ----------------------------------------------------------------- the ESS formula
def test_effective_sample_size_by_hand():
    """Kish's (Σw)²/Σw² per pair (a column): equal weights K; one weight 1; (2,1,1,0): 16/6; any scale."""
    weights = torch.tensor([[1.0, 1.0, 2.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    lw = weights.log()
    assert effective_sample_size(lw).tolist() == pytest.approx([4.0, 1.0, 16 / 6])
    assert effective_sample_size(lw + 900.0).tolist() == pytest.approx([4.0, 1.0, 16 / 6])  # exp(900) overflows
    assert effective_sample_size(lw - 900.0).tolist() == pytest.approx([4.0, 1.0, 16 / 6])


def test_quality_counts_the_pairs_under_the_floor():
    ess = torch.tensor([1.0, 2.0, 5.0, 10.0])
    half = {"ess_mean": 4.5, "ess_under_floor": 0.5, "reliable": True, "draws": 12}  # half under: still reliable
    assert quality(ess, 5.0, 12) == half
    assert quality(ess, 6.0, 12) == {"ess_mean": 4.5, "ess_under_floor": 0.75, "reliable": False, "draws": 12}
    assert quality(ess, 1.0, 12)["ess_under_floor"] == 0.0


def _evaluate(model, batch, samples, floor, scale=1.0):
    n = len(next(iter(batch.values())))
    fetch = lambda i: {m: x[i] for m, x in batch.items()}  # noqa: E731
    return evaluate_log_likelihood(
        model, fetch, n, samples, 10**6, seed=0, ess_floor=floor, proposal_scale=scale, progress=False
    )


def test_the_exact_posterior_has_every_draw_effective():
    """Every weight equals p(x_S): ESS = K on every pair and estimate, none under a floor just below K."""
    model = LinearGaussian()
    out = _evaluate(model, model.sample_pairs(6, seed=1), samples=16, floor=15.9)
    assert out["quality"]["normalised"] is True and out["quality"]["ess_floor"] == 15.9
    for key in SUBSETS:
        assert out["quality"][key]["ess_mean"] == pytest.approx(16.0)
        assert out["quality"][key]["ess_under_floor"] == 0.0 and out["quality"][key]["reliable"]


def test_an_inexact_proposal_has_fewer_effective_draws_and_the_floor_flags_it():
    model = LinearGaussian(private_dim=1)
    out = _evaluate(model, model.sample_pairs(40, seed=2), samples=50, floor=45)
    for key in SUBSETS:
        q = out["quality"][key]
        assert 1.0 <= q["ess_mean"] < 45.0, (key, q)
        assert q["ess_under_floor"] > 0.5 and not q["reliable"], (key, q)


def test_the_draws_an_ess_is_out_of():
    """A two-component mixture proposal draws K rounded up to a multiple of 2 for the joint."""
    model = LinearGaussian(proposal="mixture")
    out = _evaluate(model, model.sample_pairs(4, seed=3), samples=3, floor=1)
    assert [out["quality"][key]["draws"] for key in SUBSETS] == [4, 3, 3]
    assert all(1.0 <= out["quality"][key]["ess_mean"] <= out["quality"][key]["draws"] for key in SUBSETS)


# ---------------------------------------------------------------- widened proposal
def test_widened_scales_every_factor():
    g = DiagGaussian(torch.zeros(2, 3), torch.full((2, 3), 0.4))
    wide = widened(g, 2.0)
    assert torch.allclose(wide.std, 2.0 * g.std) and torch.equal(wide.mu, g.mu)
    lap = widened(DiagLaplace(torch.ones(2, 3), torch.full((2, 3), 0.5)), 3.0)
    assert torch.allclose(lap.scale, torch.full((2, 3), 1.5))
    mix = widened(MixtureOfExperts([g, g]), 2.0)
    assert all(torch.allclose(e.std, 2.0 * g.std) for e in mix.experts)
    assert widened(g, 1.0) is g
    with pytest.raises(TypeError, match="likelihood_proposal_scale"):
        widened(object(), 2.0)


def test_a_widened_proposal_stays_unbiased():
    """Rises to the closed form as K grows (as the posterior's does), and the exact posterior widened
    is no longer exact: ESS < K."""
    model = LinearGaussian(private_dim=1)
    batch = model.sample_pairs(500, seed=2)
    truth = closed_forms(model, batch)
    for key, subset in SUBSETS.items():
        torch.manual_seed(0)
        gap = float(
            (estimate_log_likelihood(model, batch, subset, 2000, 10**6, proposal_scale=1.5) - truth[key]).mean()
        )
        assert -0.01 < gap < 0.005, (key, gap)
    exact = LinearGaussian()
    out = _evaluate(exact, exact.sample_pairs(6, seed=1), samples=16, floor=16, scale=2.0)
    assert out["estimator"]["proposal_scale"] == 2.0
    assert all(out["quality"][key]["ess_mean"] < 15.0 for key in SUBSETS)


# ---------------------------------------------------------- normalised density
@pytest.mark.parametrize(
    "family, normalised", [("bernoulli", False), ("continuous_bernoulli", True), ("laplace", True)]
)
def test_the_estimate_says_whether_its_density_is_normalised(family, normalised):
    torch.manual_seed(0)
    shapes = {"a": (1, 28, 28), "b": (3, 32, 32)}
    settings = {**TOY_SETTINGS, "likelihood": {"family": family, "scale": 0.75}}
    model = build_model("mvae", shapes, settings).eval()
    batch = {m: torch.rand(3, *s, generator=torch.Generator().manual_seed(1)) for m, s in shapes.items()}
    assert _evaluate(model, batch, samples=2, floor=1)["quality"]["normalised"] is normalised


# --------------------------------------------------------------------- config
def test_config_takes_one_protocol_or_a_list():
    assert load_config(overrides={"evaluation": {"protocol": ["mean", "sample"]}})["evaluation"]["protocol"] == [
        "mean",
        "sample",
    ]
    for bad in (["mean", "reference"], ["mean", "mean"], [], "median"):
        with pytest.raises(ConfigError, match="evaluation.protocol"):
            load_config(overrides={"evaluation": {"protocol": bad}})
    with pytest.raises(ConfigError, match="evaluation.likelihood_ess_floor"):
        load_config(overrides={"evaluation": {"likelihood_ess_floor": 0.5}})


def test_metrics_files_one_per_protocol_the_first_at_the_usual_path(tmp_path):
    config = {"evaluation": {"protocol": ["sample", "mean"]}}
    assert paths.metrics_files(config, tmp_path) == [tmp_path / "metrics.json", tmp_path / "metrics_mean.json"]
    assert paths.metrics_files({"evaluation": {"protocol": "mean"}}, tmp_path) == [tmp_path / "metrics.json"]
    assert paths.protocol_file(tmp_path / "m.json", "sample", ["mean", "sample"]) == tmp_path / "m_sample.json"


# ------------------------------------------------------------- the evaluate stage
@pytest.fixture
def trained_run(tmp_path):
    """A toy MVAE model file, its data and classifiers, as the evaluate stage reads them."""
    from mgmvae.evaluation.classifiers import save_classifier
    from mgmvae.model_file import save_trained
    from mgmvae.nets import digit_classifier

    data = synthetic_paired(n_train=40, n_test=20)
    data.save(tmp_path / "toy.pt")
    torch.manual_seed(0)
    settings = {**TOY_SETTINGS, "likelihood": {"family": "bernoulli", "scale": 0.75}}
    model = build_model("mvae", data.shapes, settings)
    save_trained(
        paths.model_file(tmp_path),
        model,
        resolve("mvae"),
        dataset="mnist_svhn",
        seed=0,
        variant=None,
        settings=settings,
        config_hash="toy",
        history=[],
    )
    for m in data.modalities:
        save_classifier(digit_classifier(data.shape(m), "mmvae"), {}, tmp_path / f"{m}.pt")
    return tmp_path


def _evaluate_stage(run, protocol, out):
    from mgmvae.cli import main

    small = {
        "batch_size": 16,
        "probe_max_train": 40,
        "probe_folds": 2,
        "max_cluster": 20,
        "joint_coherence_samples": 20,
    }
    small |= {"likelihood_samples": 3, "likelihood_pairs": 5, "probe_c_grid": [1.0], "protocol": protocol}
    config = out.parent / "config.yaml"
    config.write_text(yaml.safe_dump({"device": "cpu", "evaluation": small}))
    args = ["evaluate", "--config", str(DEFAULT_CONFIG), str(config), "--dataset", "mnist_svhn", "--model", "mvae"]
    args += ["--data", str(run / "toy.pt"), "--model-file", str(paths.model_file(run)), "--out", str(out)]
    args += ["--classifiers", str(run / "a.pt"), str(run / "b.pt"), "--no-mlflow", "--no-progress"]
    assert main(args) == 0


def test_two_protocols_write_two_files_with_one_likelihood_estimate(trained_run, monkeypatch):
    import mgmvae.evaluation.run as run_module

    calls = []
    original = run_module.evaluate_log_likelihood
    monkeypatch.setattr(run_module, "evaluate_log_likelihood", lambda *a, **k: calls.append(1) or original(*a, **k))
    both = paths.metrics_file(trained_run / "both")
    both.parent.mkdir()
    _evaluate_stage(trained_run, ["mean", "sample"], both)
    assert len(calls) == 1  # the estimate does not depend on the protocol: made once
    first = json.loads(both.read_text())
    second = json.loads(paths.protocol_file(both, "sample", ["mean", "sample"]).read_text())
    assert (first["protocol"], first["protocol_setting"]) == ("mean", "mean")
    assert (second["protocol"], second["protocol_setting"]) == ("sample", "sample")
    assert second["metrics"]["log_likelihood"] == first["metrics"]["log_likelihood"]

    # The first protocol's file is the one a one-protocol study writes.
    one = paths.metrics_file(trained_run / "one")
    one.parent.mkdir()
    _evaluate_stage(trained_run, "mean", one)
    assert json.loads(one.read_text()) == first
    assert sorted(p.name for p in one.parent.iterdir()) == ["config.yaml", one.name]


# ----------------------------------------------------------------------- K sweep
def test_the_k_sweep_reads_every_trained_run_on_the_same_pairs(trained_run):
    from mgmvae.likelihood_sweep import main

    study = trained_run / "study"
    where, run = paths.study_at(study), paths.run_dir(paths.study_at(study), "mnist_svhn", "mvae", 0)
    run.mkdir(parents=True)
    paths.model_file(trained_run).rename(paths.model_file(run))
    paths.data_file(where, "mnist_svhn").parent.mkdir()
    (trained_run / "toy.pt").rename(paths.data_file(where, "mnist_svhn"))
    evaluation = {"likelihood_pairs": 4, "likelihood_ess_floor": 2}
    paths.study_config(where).write_text(yaml.safe_dump({"evaluation": evaluation}))
    main(
        [
            str(study),
            "--dataset",
            "mnist_svhn",
            "--k",
            "1",
            "3",
            "--proposal-scale",
            "1",
            "2",
            "--out",
            str(study / "s"),
        ]
    )
    frame = pd.read_csv(study / "s.csv")
    assert len(frame) == 2 * 2 * 3 and set(frame["estimate"]) == {"joint", "a", "b"}
    assert (frame[frame["samples"] == 1]["ess_mean"] == 1.0).all()  # one draw: ESS 1
    assert (frame["pairs"] == 4).all()
    # K = 1 at scale 1 is the evaluate stage's estimate with K = 1 (same pairs, same seed)
    from mgmvae.data.paired import PairedData
    from mgmvae.evaluation.run import run_log_likelihood
    from mgmvae.model_file import load_trained

    model, _ = load_trained(paths.model_file(run), "cpu")
    settings = load_config(overrides={"evaluation": evaluation | {"likelihood_samples": 1}})["evaluation"]
    expected = run_log_likelihood(model, PairedData.load(paths.data_file(where, "mnist_svhn")), settings, 0, False)
    got = frame[(frame["samples"] == 1) & (frame["proposal_scale"] == 1.0)].set_index("estimate")["log_likelihood"]
    assert got["joint"] == pytest.approx(expected["joint"]) and got["a"] == pytest.approx(expected["a"])
    assert "K=1" in (study / "s.md").read_text() and (study / "s.png").stat().st_size > 1000
    assert math.isfinite(frame["log_likelihood"].sum())


def test_the_sweep_figure_measures_each_estimate_from_its_value_at_the_largest_k():
    from mgmvae.figures.likelihood_against_k import below_largest_k

    frame = pd.DataFrame(
        {
            "model": ["m"] * 4 + ["n"] * 2,
            "estimate": ["joint"] * 6,
            "proposal_scale": [1.0, 1.0, 2.0, 2.0, 1.0, 1.0],
            "samples": [1, 10, 1, 10, 1, 10],
            "log_likelihood": [-12.0, -10.0, -15.0, -9.0, -103.0, -100.0],
        }
    )
    # each against the first scale's value at the largest K: m's -10, n's -100
    assert below_largest_k(frame).tolist() == [-2.0, 0.0, -5.0, 1.0, -3.0, 0.0]
