"""Aggregation of per-run metrics into tables, against hand-made runs with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from mgmvae.io import save_json
from mgmvae.tables import build_tables, ci95_halfwidth, load_run_metrics, paired_test, rank_marks, seed_stats

TABLE_DATASETS = {"table1": "digits_street", "table2": "digits_street", "table3": "digits_cdcb"}


def run(model, seed, dataset, modalities, v, study="quick"):
    m0, m1 = modalities
    return {
        "study": study,
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "modalities": modalities,
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
    assert {p.name for p in written} == {
        f"{t}.{e}" for t in ("table1", "table2", "table3", "clustering") for e in ("csv", "md", "tex", "html")
    }
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
    # ours (best: bold) | 95% interval | paper | difference to the paper
    assert "**90.00 ± 10.00** | [65.16, 114.84] | 95.4 | -5.40 |" in mg and "| 3 |" in mg
    mv = next(line for line in md if line.startswith("| MVAE"))
    assert "<u>50.00 ± —</u> | — | 31.8 | +18.20 |" in mv  # second: underlined; one seed: no interval
    assert "n/a (fewer than 2 common seeds: 3 and 1)" in "\n".join(md)

    t2 = pd.read_csv(out / "table2.csv").set_index("model")
    assert t2.loc["mgmvae", "hand mean"] == pytest.approx(90.0)
    assert t2.loc["mgmvae", "paper MNIST"] == pytest.approx(98.62)
    assert t2.loc["mgmvae", "joint mean"] == pytest.approx(90.0) and "paper joint" not in t2.columns
    md2 = (out / "table2.md").read_text()
    assert "Oshima et al. 2024" in md2  # paper-only section

    t3 = pd.read_csv(out / "table3.csv").set_index("model")
    assert list(t3.index) == ["mgmvae"]
    assert t3.loc["mgmvae", "cd->cb mean"] == pytest.approx(90.0) and t3.loc["mgmvae", "paper CD->CB"] == pytest.approx(
        99.9
    )
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


# ----------------------------------------------------------------- statistics
T_975_2 = 4.302652729749462  # t_{0.975, 2}: Student t quantile for 3 seeds (tables)


@pytest.fixture
def three_seed_runs(tmp_path):
    """MGMVAE 80/90/100 %, DMVAE 70/75/90 % (3 common seeds), MVAE 50 % (one seed) on hand->street."""
    specs = [("mgmvae", s, v) for s, v in enumerate([0.8, 0.9, 1.0])]
    specs += [("dmvae", s, v) for s, v in enumerate([0.7, 0.75, 0.9])]
    specs += [("mvae", 0, 0.5)]
    paths = []
    for model, seed, v in specs:
        paths.append(tmp_path / "runs" / f"{model}_{seed}.json")
        save_json(run(model, seed, "digits_street", ["hand", "street"], v), paths[-1])
    for seed in range(3):  # table 3's dataset
        paths.append(tmp_path / "runs" / f"cdcb_{seed}.json")
        save_json(run("mgmvae", seed, "digits_cdcb", ["cd", "cb"], 0.9), paths[-1])
    return paths


def test_interval_and_paired_test_helpers():
    assert ci95_halfwidth([80.0, 90.0, 100.0]) == pytest.approx(T_975_2 * 10.0 / math.sqrt(3))
    assert math.isnan(ci95_halfwidth([90.0]))
    st = seed_stats([80.0, 90.0, 100.0])
    assert (st["mean"], st["std"], st["n"]) == (pytest.approx(90.0), pytest.approx(10.0), 3)
    assert st["low"] == pytest.approx(90.0 - 24.8414, abs=1e-4) and st["high"] == pytest.approx(114.8414, abs=1e-4)

    # differences 10, 15, 10: mean 35/3, sd 5/√3, so t = (35/3) / (5/√3 / √3) = 7 with 2 dof,
    # whose two-sided p-value has the closed form 1 - t / √(2 + t²).
    test = paired_test({0: 80.0, 1: 90.0, 2: 100.0}, {0: 70.0, 1: 75.0, 2: 90.0})
    assert test["t"] == pytest.approx(7.0) and test["n"] == 3
    assert test["p"] == pytest.approx(1 - 7 / math.sqrt(51))
    assert test["p"] == pytest.approx(stats.ttest_rel([80, 90, 100], [70, 75, 90]).pvalue)
    assert paired_test({0: 1.0, 1: 2.0}, {1: 1.0, 2: 2.0}) is None  # one common seed
    assert paired_test({0: 0.5, 1: 0.7, 5: 0.9}, {1: 0.6, 5: 0.7, 7: 0.1})["seeds"] == [1, 5]
    assert math.isnan(paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})["p"])

    assert rank_marks({"a": 90.0, "b": 80.0, "c": 70.0}) == {"a": "best", "b": "second"}
    assert rank_marks({"a": 90.0, "b": 90.001, "c": 70.0}) == {"a": "best", "b": "best", "c": "second"}
    assert rank_marks({"a": 90.0}) == {} and rank_marks({"a": 90.0, "b": math.nan}) == {}


def test_table_statistics_known_answers(three_seed_runs, tmp_path):
    out = tmp_path / "tables"
    build_tables(load_run_metrics(three_seed_runs), TABLE_DATASETS, out)
    t1 = pd.read_csv(out / "table1.csv").set_index("model")
    assert list(t1.index) == ["mvae", "dmvae", "mgmvae"]  # the paper's row order
    half = T_975_2 * 10.0 / math.sqrt(3)
    assert t1.loc["mgmvae", "hand->street ci95"] == pytest.approx(half, abs=1e-4)
    assert t1.loc["dmvae", "hand->street mean"] == pytest.approx(235 / 3, abs=1e-4)
    assert t1.loc["dmvae", "hand->street std"] == pytest.approx(10.4083, abs=1e-4)
    assert pd.isna(t1.loc["mvae", "hand->street ci95"])
    # difference to the paper: ours − reported (MGMVAE 95.4, DMVAE 91.6 on MNIST->SVHN)
    assert t1.loc["mgmvae", "hand->street diff paper"] == pytest.approx(90.0 - 95.4)
    assert t1.loc["dmvae", "hand->street diff paper"] == pytest.approx(235 / 3 - 91.6, abs=1e-4)
    assert t1.loc["mgmvae", "street->hand diff paper"] == pytest.approx(45.0 - 86.7)
    # paired test: MGMVAE against the best baseline of the column (DMVAE, not MVAE)
    assert t1.loc["mgmvae", "hand->street paired vs"] == "dmvae"
    assert t1.loc["mgmvae", "hand->street paired t"] == pytest.approx(7.0, abs=1e-4)
    assert t1.loc["mgmvae", "hand->street paired p"] == pytest.approx(1 - 7 / math.sqrt(51), abs=1e-4)
    assert t1.loc["mgmvae", "street->hand paired p"] == pytest.approx(1 - 7 / math.sqrt(51), abs=1e-4)  # halves
    assert pd.isna(t1.loc["dmvae", "hand->street paired p"])  # only on MGMVAE's row

    md = (out / "table1.md").read_text()
    assert "MGMVAE vs DMVAE: t = 7.000, p = 0.0198 (3 paired seeds)" in md
    assert "| **90.00 ± 10.00** | [65.16, 114.84] | 95.4 | -5.40 |" in md
    assert "| <u>78.33 ± 10.41</u> | [52.48, 104.19] | 91.6 | -13.27 |" in md

    tex = (out / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line}
    assert "\\textbf{90.00 $\\pm$ 10.00}" in rows["MGMVAE"] and "\\underline" not in rows["MGMVAE"]
    assert "\\underline{78.33 $\\pm$ 10.41}" in rows["DMVAE"] and "\\textbf" not in rows["DMVAE"]
    assert "\\textbf" not in rows["MVAE"] and "\\underline" not in rows["MVAE"]
    assert "[65.16, 114.84] & 95.4 & -5.40" in rows["MGMVAE"]
    assert "hand$\\rightarrow$street" in tex and "digits\\_street" in tex  # escaped
    assert rows["MGMVAE"].count(" & ") == rows["Model"].count(" & ")  # as many cells as headers

    # table 3: one model, so no marks and no test
    t3 = (out / "table3.md").read_text()
    assert "**" not in t3.split("Ours:")[0] and "n/a (no baseline in this study)" in t3
    cl = pd.read_csv(out / "clustering.csv")
    row = cl[(cl["dataset"] == "digits_street") & (cl["model"] == "mgmvae")].iloc[0]
    assert row["accuracy ci95"] == pytest.approx(half, abs=1e-4)
    assert "\\textbf{90.00 $\\pm$ 10.00}" in (out / "clustering.tex").read_text()
    page = (out / "table1.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<b>90.00 ± 10.00</b>" in page and "<u>78.33 ± 10.41</u>" in page
