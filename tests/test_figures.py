"""Every figure function writes a non-empty PNG and PDF from tiny synthetic data and untrained models;
the ``figures`` stage writes every figure of ``figure_specs``; figures are deterministic."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import torch

from mgmvae import figures as F
from mgmvae.base import build_model
from mgmvae.io import save_json, save_torch
from tests.conftest import TOY_SETTINGS, synthetic_paired

MODELS = ("mvae", "mgmvae")  # without and with private latents


@pytest.fixture(scope="module")
def data():
    return synthetic_paired(n_train=40, n_test=24)


@pytest.fixture(scope="module")
def models(data):
    torch.manual_seed(0)
    return {m: build_model(m, data.shapes, TOY_SETTINGS).eval() for m in MODELS}


def assert_images(paths):
    from matplotlib.image import imread

    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = paths
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(png)
    assert image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, f"{png.name} is blank"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not list(png.parent.glob("*.tmp"))


def test_example_pairs_fixed_one_per_class(data):
    idx = F.example_pairs(data, 12)
    assert torch.equal(idx, F.example_pairs(data, 12))
    labels = data.pair_labels("test", idx).tolist()
    assert labels[:10] == list(range(10)) and len(set(idx.tolist())) == 12


def test_paper_style_figures(data, models, tmp_path):
    assert_images(F.cross_generation_grid(data, models, "a", "b", tmp_path / "cg.png"))
    for name, model in models.items():  # mvae falls back to cross-generation
        assert_images(F.translation_grid(data, model, "b", "a", tmp_path / f"tr_{name}", model_name=name))
    assert_images(F.retrieval_panel(data, models, "a", "b", tmp_path / "ret"))


def test_tsne_curves_bars_ablation(data, models, tmp_path):
    assert_images(F.tsne_plot(data, models, tmp_path / "tsne", max_points=20, seed=0))
    history = [{"epoch": e, "loss": 10.0 / e, "a/kl": 1.0 / e, "b/recon_b": -5.0 * e} for e in (1, 2, 3)]
    assert_images(F.training_curves(history, tmp_path / "curves", title="toy"))
    frame = pd.DataFrame(
        [
            {"variant": v, "metric": m, "value": x + 0.01 * s, "seed": s}
            for v, x in (("full", 0.9), ("no center", 0.8))
            for m in ("cross", "probe")
            for s in range(3)
        ]
    )
    assert_images(F.ablation_plot(frame, tmp_path / "ablation"))
    with pytest.raises(ValueError, match="variant"):
        F.ablation_plot(frame.drop(columns="seed"), tmp_path / "bad")


def test_deterministic(data, models, tmp_path):
    a = F.cross_generation_grid(data, models, "b", "a", tmp_path / "one")
    b = F.cross_generation_grid(data, models, "b", "a", tmp_path / "two")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()


def test_figures_stage_writes_every_figure(data, models, tmp_path):
    """The stage on files laid out as the pipeline writes them: data, model files, per-run metrics."""
    from mgmvae.stages import figures

    data.save(tmp_path / "toy.pt")
    model_files, metric_files = [], []
    for name, model in models.items():
        model_files.append(tmp_path / f"{name}.pt")
        history = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
        save_torch(
            {
                "model": name,
                "dataset": "toy",
                "seed": 0,
                "shapes": {m: list(s) for m, s in data.shapes.items()},
                "settings": TOY_SETTINGS,
                "config_hash": "x",
                "history": history,
                "state_dict": model.state_dict(),
            },
            model_files[-1],
        )
        for seed in (0, 1):
            v = 0.5 + 0.1 * seed + (0.2 if name == "mgmvae" else 0.0)
            metric_files.append(tmp_path / f"metrics_{name}_{seed}.json")
            save_json(
                {
                    "study": "t",
                    "dataset": "toy",
                    "model": name,
                    "seed": seed,
                    "modalities": ["a", "b"],
                    "metrics": {
                        "cross_generation": {"a->b": v, "b->a": v},
                        "probe": {"a": v, "b": v, "joint": v},
                        "retrieval_top1": {"a->b": v, "b->a": v},
                        "clustering": {"accuracy": v, "nmi": v, "ari": v, "method": "kmeans", "k": 10},
                    },
                },
                metric_files[-1],
            )
    config = {
        "study": "t",
        "results_dir": str(tmp_path),
        "device": "cpu",
        "seeds": [0, 1],
        "tables": {"table1": "toy", "table2": "toy", "table3": "toy"},
        "evaluation": {"batch_size": 512, "n_clusters": 10},
        "mlflow": {"experiment": "x", "tracking_uri": None},
    }
    args = argparse.Namespace(
        data=[tmp_path / "toy.pt"],
        model_files=model_files,
        metrics=metric_files,
        seed=None,
        tsne_points=20,
        outdir=tmp_path / "figures",
        no_mlflow=True,
    )
    figures(config, args)
    specs = F.figure_specs({"toy": ["a", "b"]}, list(MODELS))
    kinds = {s["kind"] for s in specs}
    assert kinds == set(F.KINDS)
    assert sum(s["kind"] == "translation" for s in specs) == 2 * len(MODELS)
    for spec in specs:
        png = tmp_path / "figures" / f"{spec['stem']}.png"
        assert_images([png, png.with_suffix(".pdf")])


def test_every_model_has_a_colour_of_its_own():
    """Bars, dots and curves of different models must never share a colour."""
    import baselines  # noqa: F401  (registers the baselines)
    from mgmvae.base import model_names

    names = model_names()
    assert len({F._colour(m, i) for i, m in enumerate(names)}) == len(names)
    assert F._colour("mgmvae", 0) == F._colour("MGMVAE", 3)  # by id or by display name
