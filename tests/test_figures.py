"""Every figure function writes a non-empty PNG and PDF from tiny synthetic data and untrained models;
the ``figures`` stage writes every figure of ``figure_specs``; figures are deterministic."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest
import torch

from mgmvae.figures import KINDS, figure_specs
from mgmvae.figures.ablation import ablation_plot
from mgmvae.figures.bars import table_bars
from mgmvae.figures.cross_generation import cross_generation_grid
from mgmvae.figures.curves import training_curves
from mgmvae.figures.grid import example_pairs
from mgmvae.figures.palette import model_palette
from mgmvae.figures.retrieval import retrieval_panel
from mgmvae.figures.translation import translation_grid
from mgmvae.figures.tsne import tsne_plot
from mgmvae.io import save_json, save_torch
from mgmvae.registry import build_model
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
    idx = example_pairs(data, 12)
    assert torch.equal(idx, example_pairs(data, 12))
    labels = data.pair_labels("test", idx).tolist()
    assert labels[:10] == list(range(10)) and len(set(idx.tolist())) == 12


def test_paper_style_figures(data, models, tmp_path):
    assert_images(cross_generation_grid(data, models, "a", "b", tmp_path / "cg.png"))
    for name, model in models.items():  # mvae falls back to cross-generation
        assert_images(translation_grid(data, model, "b", "a", tmp_path / f"tr_{name}", model_name=name))
    assert_images(retrieval_panel(data, models, "a", "b", tmp_path / "ret", batch_size=64, chunk=4))


def test_tsne_curves_bars_ablation(data, models, tmp_path):
    assert_images(tsne_plot(data, models, tmp_path / "tsne", max_points=20, seed=0, n_clusters=10, batch_size=64))
    history = [{"epoch": e, "loss": 10.0 / e, "a/kl": 1.0 / e, "b/recon_b": -5.0 * e} for e in (1, 2, 3)]
    assert_images(training_curves(history, tmp_path / "curves", title="toy"))
    frame = pd.DataFrame(
        [
            {"variant": v, "metric": m, "value": x + 0.01 * s, "seed": s}
            for v, x in (("full", 0.9), ("no center", 0.8))
            for m in ("cross", "probe")
            for s in range(3)
        ]
    )
    assert_images(ablation_plot(frame, tmp_path / "ablation"))
    with pytest.raises(ValueError, match="variant"):
        ablation_plot(frame.drop(columns="seed"), tmp_path / "bad")


def test_deterministic(data, models, tmp_path):
    a = cross_generation_grid(data, models, "b", "a", tmp_path / "one")
    b = cross_generation_grid(data, models, "b", "a", tmp_path / "two")
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()


def test_figures_stage_writes_every_figure(data, models, tmp_path):
    """The stage on files laid out as the pipeline writes them: data, model files, per-run metrics."""
    from mgmvae.config import load_config
    from mgmvae.stages import draw_figures as figures

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
                        "conditional_coherence": {"1": v},
                    },
                },
                metric_files[-1],
            )
    config = load_config() | {
        "study": "t",
        "results_dir": str(tmp_path),
        "device": "cpu",
        "seeds": [0, 1],
        "tables": {"table1": "toy", "table2": "toy", "table3": "toy", "polymnist": "toy"},
    }
    args = argparse.Namespace(
        data=[tmp_path / "toy.pt"],
        model_files=model_files,
        metrics=metric_files,
        seed=None,
        tsne_points=20,
        outdir=tmp_path / "figures",
        part="all",
        no_mlflow=True,
    )
    figures(config, args)
    specs = figure_specs({"toy": ["a", "b"]}, list(MODELS))
    kinds = {s["kind"] for s in specs}
    assert kinds == set(KINDS)
    assert sum(s["kind"] == "translation" for s in specs) == 2 * len(MODELS)
    for spec in specs:
        png = tmp_path / "figures" / f"{spec['stem']}.png"
        assert_images([png, png.with_suffix(".pdf")])


def test_every_model_has_a_colour_of_its_own():
    """Bars, dots and curves of different models never share a colour; a model unknown in advance
    (a plugin) gets one of its own, from its name, whatever the other models."""
    import baselines  # noqa: F401  (registers the baselines)
    from mgmvae.registry import builtin_model_names as model_names

    names = model_names() + ["my_plugin", "another_plugin"]
    palette = model_palette(names)
    assert len(set(palette.values())) == len(names) == len(palette)
    assert palette["MGMVAE"] == model_palette(["MGMVAE"])["MGMVAE"]  # by id or by display name
    assert palette["my_plugin"] == model_palette(["my_plugin", "mvae"])["my_plugin"]
    assert palette["my_plugin"] not in model_palette(model_names()).values()


def test_a_model_class_gives_its_label_and_colour_to_tables_and_figures(tmp_path):
    """The label and colour on a model's class, a plugin's too; the paper's rows no model implements
    keep their names from mgmvae/paper.py."""
    from matplotlib.colors import to_rgb

    from mgmvae.paper import display_name
    from mgmvae.registry import resolve

    plugin = tmp_path / "named.py"
    plugin.write_text('from baselines.mvae import MVAE\n\n\nclass Named(MVAE):\n    name = "named_vae"\n'
                      '    label, colour = "Named VAE", "tab:olive"\n')  # fmt: skip
    resolve(f"{plugin}:Named")  # as the stages resolve the config's models first
    assert [display_name(m) for m in ("named_vae", "mmvae_plus", "cddn")] == ["Named VAE", "MMVAE+", "CdDN"]
    assert model_palette(["named_vae", "mvae"]) == {"Named VAE": to_rgb("tab:olive"), "MVAE": to_rgb("tab:blue")}


def error_spans(ax, decimals: int) -> set[tuple[float, float]]:
    """(low, high) of every error bar (seaborn draws each, caps included, as one line)."""
    import numpy as np

    return {
        (round(np.nanmin(y), decimals), round(np.nanmax(y), decimals)) for y in (line.get_ydata() for line in ax.lines)
    }


def _metrics(tmp_path, models=("mvae", "dmvae", "my_plugin", "mgmvae"), seeds=(0, 1, 2)):
    from mgmvae.tables import load_run_metrics

    paths = []
    for i, model in enumerate(models):
        for seed in seeds:
            v = 0.5 + 0.1 * i + 0.01 * seed
            paths.append(tmp_path / f"{model}_{seed}.json")
            metrics = {"cross_generation": {"a->b": v, "b->a": v / 2}, "probe": {"a": v, "b": v, "joint": v}}
            metrics |= {"cross_generation_balanced": {"a->b": 0.9 * v, "b->a": 0.4 * v}}
            metrics |= {"joint_coherence": {"joint": 0.8 * v, "samples": 100}}
            metrics |= {"generative_quality": {"prior": {"mean": {"label_entropy": 0.9 * v}}}}
            record = {"study": "t", "dataset": "toy", "model": model, "seed": seed, "modalities": ["a", "b"]}
            save_json(record | {"metrics": metrics}, paths[-1])
    return load_run_metrics(paths)


def test_table_bars_show_means_intervals_seeds_and_paper(tmp_path):
    """The bar chart of Table 1 carries the table's numbers: a bar per (column, model) at its mean,
    an error bar over its 95% interval, a dot per seed, a × per paper number, the model's colour."""
    from matplotlib.colors import to_rgb

    from mgmvae.figures.bars import table_bars_figure
    from mgmvae.tables import TABLE_SPECS, table_summary

    df = _metrics(tmp_path)
    summary = table_summary(df, TABLE_SPECS["table1"], "toy")
    ax = table_bars_figure(df, "table1", "toy", study="t").axes[0]
    patches = [bar for container in ax.containers for bar in container]
    bars = sorted((round(p.get_x() + p.get_width() / 2, 3), p.get_height(), p.get_facecolor()[:3]) for p in patches)
    assert len(bars) == len(summary) == 24  # 6 columns × 4 models, by column then model
    palette = model_palette(summary["model"])
    order = {c: i for i, c in enumerate(dict.fromkeys(summary["column"]))}  # the spec's column order
    by_column = summary.sort_values("column", key=lambda c: c.map(order), kind="stable")
    for (_, height, colour), row in zip(bars, by_column.itertuples(), strict=True):
        assert height == pytest.approx(row.mean) and colour == pytest.approx(to_rgb(palette[row.name]))
    spans = error_spans(ax, 2)
    for row in summary.itertuples():
        assert (round(row.low, 2), round(row.high, 2)) in spans
    dots = [c.get_offsets() for c in ax.collections]
    seeds = sorted(y for o in dots for _, y in o if len(o) and o.shape[0])
    paper_numbers = summary["paper"].dropna().tolist()
    assert sorted(seeds) == pytest.approx(sorted(sum(summary["values"], []) + paper_numbers))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MVAE", "DMVAE", "my_plugin", "MGMVAE", "paper"]
    labels = ["a→b", "b→a", "a→b\nbalanced", "b→a\nbalanced", "joint", "label\nentropy"]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels


def test_curves_and_bars_deterministic(tmp_path):
    history = [{"epoch": e, "loss": 10.0 / e, "a/kl": 1.0 / e} for e in (1, 2, 3)]
    df = _metrics(tmp_path)
    for name in ("one", "two"):
        training_curves(history, tmp_path / name / "curves", title="toy")
        table_bars(df, "table2", "toy", tmp_path / name / "bars")
    for file in ("curves.png", "curves.pdf", "bars.png", "bars.pdf"):
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes(), file


def test_curves_and_ablation_show_their_numbers():
    """A panel per loss term (loss first) with the logged values; ablation bars at the seed means."""
    from mgmvae.figures.ablation import ablation_figure
    from mgmvae.figures.curves import curves_figure

    history = [{"epoch": e, "loss": 10.0 / e, "a/kl": 1.0 / e, "b/recon_b": -5.0 * e} for e in (1, 2, 3)]
    axes = [ax for ax in curves_figure(history, "toy").axes if ax.get_visible() and ax.lines]
    assert [ax.get_title() for ax in axes] == ["loss", "a/kl", "b/recon_b"]
    assert list(axes[0].lines[0].get_ydata()) == pytest.approx([10.0, 5.0, 10.0 / 3])
    assert list(axes[2].lines[0].get_xdata()) == [1, 2, 3]

    frame = pd.DataFrame(
        [
            {"variant": v, "metric": "probe", "value": x + s, "seed": s}
            for v, x in (("full", 90), ("no center", 80))
            for s in range(3)
        ]
    )
    ax = ablation_figure(frame).axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([91.0, 81.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full", "no center"]
    half = 4.302652729749462 / 3**0.5  # t_{0.975, 2} · std 1 / √3
    spans = error_spans(ax, 3)
    assert (round(91 - half, 3), round(91 + half, 3)) in spans


def test_coherence_figure_shows_seed_means_intervals_and_published_numbers(tmp_path):
    """A line per model through its seed means at 1..M−1 given modalities, a t-interval band, the
    model's colour; MoPoE's published 66/77/81/83 as ×."""
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.colors import to_rgb

    from mgmvae.figures.coherence import coherence_figure
    from mgmvae.tables import load_run_metrics

    paths = []
    for model, base in (("mopoe", 0.5), ("mgmvae", 0.7)):
        for seed in range(3):
            paths.append(tmp_path / f"{model}_{seed}.json")
            coherence = {str(k): base + k / 20 + seed / 100 for k in range(1, 5)}
            record = {"study": "t", "dataset": "poly", "model": model, "seed": seed, "modalities": list("abcde")}
            save_json(record | {"metrics": {"conditional_coherence": coherence}}, paths[-1])
    ax = coherence_figure(load_run_metrics(paths), "poly", study="t").axes[0]
    palette = model_palette(["mopoe", "mgmvae"])
    drawn = [line for line in ax.lines if len(line.get_xdata())]  # the legend's proxies are empty
    assert len(drawn) == 2
    for name, base in (("MoPoE", 50.0), ("MGMVAE", 70.0)):
        (line,) = [x for x in drawn if to_rgb(x.get_color()) == pytest.approx(to_rgb(palette[name]))]
        assert list(line.get_xdata()) == [1, 2, 3, 4]
        assert list(line.get_ydata()) == pytest.approx([base + 5 * k + 1 for k in range(1, 5)])  # seeds +0, 1, 2
    half = 4.302652729749462 / 3**0.5  # t_{0.975, 2} · std 1 / √3, in percent
    bands = [c.get_paths()[0].vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection)]
    assert any(min(y) == pytest.approx(56.0 - half) and max(y) == pytest.approx(71.0 + half) for y in bands)
    crosses = [c.get_offsets() for c in ax.collections if type(c) is PathCollection]
    assert sorted(float(y) for o in crosses for _, y in o) == [66.0, 77.0, 81.0, 83.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MoPoE", "MGMVAE", "published"]


def test_coherence_figure_follows_the_tables_config():
    """The figures of the tables: bar charts for the tables naming a dataset, the coherence figure
    where tables.polymnist names one."""
    stems = lambda tables: [s["stem"] for s in figure_specs({}, ["mgmvae"], tables=tables)]  # noqa: E731
    assert stems({"table1": "d", "table2": "d", "table3": "e", "polymnist": None}) == [
        "bars/table1",
        "bars/table2",
        "bars/table3",
    ]
    assert stems({"table1": None, "table2": None, "table3": None, "polymnist": "p"}) == ["coherence/polymnist"]
    five = figure_specs({"p": list("abcde")}, ["mgmvae"], bars=False)
    assert {s["direction"] for s in five if s["kind"] == "cross_generation"} == {"a → b", "b → a"}
