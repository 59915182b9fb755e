"""Aggregation of per-run metrics into tables, against hand-made runs with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from mgmvae.io import save_json
from mgmvae.tables import build_tables, load_run_metrics

TABLE_DATASETS = {"table1": "digits_street", "table2": "digits_street", "table3": "digits_cdcb"}


def run(model, seed, dataset, modalities, v, study="quick"):
    m0, m1 = modalities
    return {
        "study": study, "dataset": dataset, "model": model, "seed": seed, "modalities": modalities,
        "metrics": {
            "cross_generation": {f"{m0}->{m1}": v, f"{m1}->{m0}": v / 2},
            "probe": {m0: v, m1: v / 2, "joint": v},
            "retrieval_top1": {f"{m0}->{m1}": v, f"{m1}->{m0}": v / 2},
            "clustering": {"accuracy": v, "nmi": v, "ari": v, "method": "mixture", "k": 10},
        },
    }


@pytest.fixture
def runs(tmp_path):
    specs = [("mgmvae", s, "digits_street", ["hand", "street"], v) for s, v in enumerate([0.8, 0.9, 1.0])]
    specs += [("mvae", 0, "digits_street", ["hand", "street"], 0.5)]
    specs += [("mgmvae", s, "digits_cdcb", ["cd", "cb"], v) for s, v in enumerate([0.8, 0.9, 1.0])]
    paths = []
    for model, seed, ds, mods, v in specs:
        paths.append(tmp_path / "runs" / f"{ds}_{model}_{seed}.json")
        save_json(run(model, seed, ds, mods, v), paths[-1])
    return paths


def test_build_tables(runs, tmp_path):
    df = load_run_metrics(runs)
    out = tmp_path / "tables"
    written = build_tables(df, TABLE_DATASETS, out)
    assert {p.name for p in written} == {f"{t}.{e}" for t in ("table1", "table2", "table3", "clustering") for e in ("csv", "md")}
    assert all(p.exists() for p in written)

    t1 = pd.read_csv(out / "table1.csv").set_index("model")
    assert t1.loc["mgmvae", "hand->street mean"] == pytest.approx(90.0)
    assert t1.loc["mgmvae", "hand->street std"] == pytest.approx(10.0)
    assert t1.loc["mgmvae", "street->hand mean"] == pytest.approx(45.0)
    assert t1.loc["mgmvae", "n_seeds"] == 3
    assert t1.loc["mgmvae", "paper MNIST->SVHN"] == pytest.approx(95.4)
    assert t1.loc["mgmvae", "paper SVHN->MNIST"] == pytest.approx(86.7)
    assert t1.loc["mvae", "n_seeds"] == 1 and pd.isna(t1.loc["mvae", "hand->street std"])

    md = (out / "table1.md").read_text().splitlines()
    assert md[0].startswith("Table 1") and "study `quick`" in md[0] and "dataset `digits_street`" in md[0]
    assert "stand-in for MNIST-SVHN" in md[0]
    mg = next(line for line in md if line.startswith("| MGMVAE"))
    assert "90.00 ± 10.00 | 95.4 |" in mg and "| 3 |" in mg
    mv = next(line for line in md if line.startswith("| MVAE"))
    assert "50.00 ± —" in mv and "31.8" in mv

    t2 = pd.read_csv(out / "table2.csv").set_index("model")
    assert t2.loc["mgmvae", "hand mean"] == pytest.approx(90.0)
    assert t2.loc["mgmvae", "paper MNIST"] == pytest.approx(98.62)
    assert t2.loc["mgmvae", "joint mean"] == pytest.approx(90.0) and "paper joint" not in t2.columns
    md2 = (out / "table2.md").read_text()
    assert "Oshima et al. 2024" in md2  # paper-only section

    t3 = pd.read_csv(out / "table3.csv").set_index("model")
    assert list(t3.index) == ["mgmvae"]
    assert t3.loc["mgmvae", "cd->cb mean"] == pytest.approx(90.0) and t3.loc["mgmvae", "paper CD->CB"] == pytest.approx(99.9)
    assert "dataset `digits_cdcb`" in (out / "table3.md").read_text().splitlines()[0]

    cl = pd.read_csv(out / "clustering.csv")
    row = cl[(cl["dataset"] == "digits_cdcb") & (cl["model"] == "mgmvae")].iloc[0]
    assert row["accuracy mean"] == pytest.approx(90.0) and row["method"] == "mixture" and row["n_seeds"] == 3
    assert "study `quick`" in (out / "clustering.md").read_text().splitlines()[0]


def test_missing_dataset_and_several_studies(runs, tmp_path):
    df = load_run_metrics(runs)
    build_tables(df, {"table1": "mnist_svhn", "table2": "mnist_svhn", "table3": "mnist_cdcb"}, tmp_path / "t")
    assert "No runs" in (tmp_path / "t" / "table1.md").read_text()

    other = tmp_path / "other.json"
    save_json(run("mgmvae", 0, "digits_street", ["hand", "street"], 0.7, study="paper"), other)
    both = load_run_metrics(runs + [other])
    with pytest.raises(ValueError, match="several studies"):
        build_tables(both, TABLE_DATASETS, tmp_path / "u")
    build_tables(both, TABLE_DATASETS, tmp_path / "u", study="paper")
    assert pd.read_csv(tmp_path / "u" / "table1.csv").set_index("model").loc["mgmvae", "n_seeds"] == 1


def test_duplicate_run_rejected(runs, tmp_path):
    df = load_run_metrics(runs + runs[:1])
    with pytest.raises(ValueError, match="duplicate run"):
        build_tables(df, TABLE_DATASETS, tmp_path / "d")
