"""Aggregation of per-run metrics into tables, against hand-made runs with known answers."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

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
            "cross_generation_balanced": {f"{m0}->{m1}": 0.9 * v, f"{m1}->{m0}": 0.45 * v},
            "joint_coherence": {"joint": 0.8 * v, "samples": 100},
            "probe_selection": {"method": "logistic_cv", "C": 1.0, "cv_accuracy": v, "folds": 3},
            "log_likelihood": {
                "joint": -1000.0 * (2 - v),
                m0: -400.0 * (2 - v),
                m1: -600.0 * (2 - v),
                "estimator": {"samples": 10, "pairs": 50, "prior": "standard gaussian", "weighted": False},
            },
            "generative_quality": {
                "prior": {"mean": {"fd_classifier": 10 * (2 - v), "precision": v, "recall": v / 2, "label_entropy": v}},
                "conditional": {"mean": {"fd_classifier": 20 * (2 - v), "precision": v, "recall": v / 2}},
                "settings": {"samples": 100, "k": 3},
            },
        },
    }


def md_row(text: str, first: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r}")


def html_marked(page: str, css: str) -> set[str]:
    """Texts of the HTML cells that Styler's CSS rules give ``css`` (e.g. bold)."""
    import re

    ids = set()
    for selectors, props in re.findall(r"([^{}]+)\{([^{}]*)\}", page):
        if css in props:
            ids |= {s.strip().lstrip("#") for s in selectors.split(",")}
    return {text for cell_id, text in re.findall(r'<td id="([^"]+)"[^>]*>([^<]*)</td>', page) if cell_id in ids}


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
        f"{t}.{e}"
        for t in ("table1", "table2", "table3", "loglik", "polymnist", "generative_quality", "clustering")
        for e in ("csv", "md", "tex", "html")
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
    # balanced coherence and joint coherence beside the paper's columns; no paper number for them
    assert t1.loc["mgmvae", "hand->street balanced mean"] == pytest.approx(81.0)
    assert t1.loc["mgmvae", "street->hand balanced mean"] == pytest.approx(40.5)
    assert t1.loc["mgmvae", "joint mean"] == pytest.approx(72.0)
    assert t1.loc["mgmvae", "label entropy mean"] == pytest.approx(90.0)  # beside joint coherence, in %
    assert "paper joint" not in t1.columns
    # the test log-likelihood in nats (not percent), one column per estimate
    ll = pd.read_csv(out / "loglik.csv").set_index("model")
    assert ll.loc["mgmvae", "joint mean"] == pytest.approx(-1100.0)
    assert ll.loc["mgmvae", "hand mean"] == pytest.approx(-440.0)
    assert ll.loc["mvae", "street mean"] == pytest.approx(-900.0)

    text = (out / "table1.md").read_text()
    md = text.splitlines()
    assert md[0].startswith("Table 1") and "study `quick`" in md[0] and "dataset `digits_street`" in md[0]
    assert "stand-in for MNIST-SVHN" in md[0]
    header = md_row(text, "Model")
    assert header[:6] == ["Model", "Seeds", "hand→street Ours", "hand→street 95% CI"] + [
        "hand→street Paper (MNIST→SVHN)",
        "hand→street Δ paper",
    ]
    # ours (best: bold) | 95% interval | paper | difference to the paper
    assert md_row(text, "MGMVAE")[1:6] == ["3", "**90.00 ± 10.00**", "[65.16, 114.84]", "95.4", "-5.40"]
    # second: underlined; one seed: no interval
    assert md_row(text, "MVAE")[1:6] == ["1", "<u>50.00 ± —</u>", "—", "31.8", "+18.20"]
    assert "n/a (fewer than 2 common seeds: 3 and 1)" in text

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
    assert md_row(md, "MGMVAE")[2:6] == ["**90.00 ± 10.00**", "[65.16, 114.84]", "95.4", "-5.40"]
    assert md_row(md, "DMVAE")[2:6] == ["<u>78.33 ± 10.41</u>", "[52.48, 104.19]", "91.6", "-13.27"]

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
    assert page.startswith("<!DOCTYPE html>") and "MGMVAE vs DMVAE: t = 7.000" in page
    bold = {"90.00 ± 10.00", "45.00 ± 5.00", "81.00 ± 9.00", "40.50 ± 4.50", "72.00 ± 8.00"}  # + balanced, joint
    assert html_marked(page, "font-weight: bold") == bold
    second = {"78.33 ± 10.41", "39.17 ± 5.20", "70.50 ± 9.37", "35.25 ± 4.68", "62.67 ± 8.33"}
    assert html_marked(page, "text-decoration: underline") == second
    assert '<th class="col_heading level0 col2" colspan="4">hand→street</th>' in page  # grouped header


# ------------------------------------------------------------ LaTeX, specs, plugin models
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (.ci/run installs texlive-latex-base)")
def test_latex_compiles(three_seed_runs, tmp_path):
    """Every table's .tex compiles inside a document with booktabs (pdflatex, halting on the first error)."""
    out = tmp_path / "tables"
    build_tables(load_run_metrics(three_seed_runs), TABLE_DATASETS, out)
    for name in ("table1", "table2", "table3", "clustering"):
        doc = tmp_path / f"doc_{name}.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage{booktabs}\\usepackage[landscape,margin=1cm]{geometry}\n"
            f"\\begin{{document}}\\input{{{out / name}}}\\end{{document}}\n"
        )
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-2000:]
        assert (tmp_path / f"doc_{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_latex_structure(three_seed_runs, tmp_path):
    """booktabs rules, grouped headers with \\cmidrule, caption and label, notes under the tabular."""
    out = tmp_path / "tables"
    build_tables(load_run_metrics(three_seed_runs), TABLE_DATASETS, out)
    tex = (out / "table1.tex").read_text()
    lines = tex.splitlines()
    assert lines.index("\\toprule") < lines.index("\\midrule") < lines.index("\\bottomrule")
    group = next(line for line in lines if "\\multicolumn{4}{c}{hand$\\rightarrow$street}" in line)
    assert "\\multicolumn{4}{c}{street$\\rightarrow$hand}" in group
    rules = "\\cmidrule(lr){3-6} \\cmidrule(lr){7-10} \\cmidrule(lr){11-12} \\cmidrule(lr){13-14} \\cmidrule(lr){15-16}"
    rules += " \\cmidrule(lr){17-18}"
    assert lines[lines.index(group) + 1] == rules
    assert "\\label{tab:quick-table1}" in tex and "\\caption{Table 1 --- cross-modal generation" in tex
    assert tex.index("\\end{tabular}") < tex.index("MGMVAE vs DMVAE: t = 7.000") < tex.index("\\end{table}")
    again = build_tables(load_run_metrics(three_seed_runs), TABLE_DATASETS, tmp_path / "again")
    for path in again:  # same inputs, same bytes (Styler's ids are fixed, not random)
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def test_a_column_and_a_table_are_spec_entries(three_seed_runs, tmp_path, monkeypatch):
    """A new metric key joins Table 1 (CSV, Markdown, bar chart) by one Column; a new table by one TableSpec."""
    from mgmvae.figures import figure_specs
    from mgmvae.figures.bars import table_bars_figure
    from mgmvae.tables import TABLE_SPECS, Column, TableSpec, spec

    paths = []
    for i, path in enumerate(three_seed_runs):
        record = json.loads(path.read_text())
        ours = record["model"] == "mgmvae"
        record["metrics"]["extra_metric"] = {"accuracy": 0.5 + 0.1 * ours + 0.01 * record["seed"]}
        record["metrics"]["test_ll"] = {"joint": -100.0 - i}
        paths.append(tmp_path / f"ext_{i}.json")
        save_json(record, paths[-1])
    table1 = TABLE_SPECS["table1"]
    extended = {
        "table1": dataclasses.replace(
            table1, columns=(*table1.columns, Column("extra_metric", "accuracy", None, "extra"))
        ),
        "table4": TableSpec(
            "table4",
            "Table 4",
            "test log-likelihood",
            (Column("test_ll", "joint"),),
            scale=1.0,
            unit="nats",
            reads="table1",
        ),
    }
    for name, table in extended.items():  # the one registry every table and bar chart reads
        monkeypatch.setitem(spec.TABLE_SPECS, name, table)
    out = tmp_path / "tables"
    written = build_tables(load_run_metrics(paths), TABLE_DATASETS, out)
    assert out / "table4.tex" in written and (out / "table4.tex").exists()

    t1 = pd.read_csv(out / "table1.csv").set_index("model")
    assert t1.loc["mgmvae", "extra mean"] == pytest.approx(61.0)  # seeds 0-2: 60, 61, 62 %
    assert "paper extra" not in t1.columns and "hand->street mean" in t1.columns
    md = (out / "table1.md").read_text()
    assert md_row(md, "Model")[-2:] == ["extra Ours", "extra 95% CI"]
    assert md_row(md, "MGMVAE")[-2] == "**61.00 ± 1.00**"
    t4 = pd.read_csv(out / "table4.csv").set_index("model")
    assert t4.loc["mgmvae", "joint mean"] == pytest.approx(-101.0)  # scale 1: not percent
    assert "Paper:" not in (out / "table4.md").read_text()  # no paper column, no paper note

    fig = table_bars_figure(load_run_metrics(paths), "table1", "digits_street")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[-4:] == ["street→hand\nbalanced", "joint", "label\nentropy", "extra"]
    assert "bars/table4" in {s["stem"] for s in figure_specs({}, ["mgmvae"])}


def test_generative_quality_one_section_per_dataset_with_smaller_distances_best(three_seed_runs, tmp_path):
    """The generative-quality table: a section per dataset the study's tables name, fractions and
    distances as they are (scale 1), the smallest Fréchet distance in bold, Inception FID "—" when
    not computed."""
    out = tmp_path / "tables"
    build_tables(load_run_metrics(three_seed_runs), TABLE_DATASETS, out)
    csv = pd.read_csv(out / "generative_quality.csv")
    assert list(csv["dataset"].unique()) == ["digits_street", "digits_cdcb"]
    street = csv[csv["dataset"] == "digits_street"].set_index("model")
    assert street.loc["mgmvae", "prior classifier FD mean"] == pytest.approx(11.0)  # 10 · (2 − v), v = 0.8, 0.9, 1
    assert street.loc["dmvae", "prior label entropy mean"] == pytest.approx((0.7 + 0.75 + 0.9) / 3, abs=1e-4)
    assert street.loc["mvae", "conditional recall mean"] == pytest.approx(0.25)
    assert street["prior Inception FID mean"].isna().all()
    md = (out / "generative_quality.md").read_text()
    assert md.index("### digits_street") < md.index("### digits_cdcb")
    header = md_row(md, "Model")
    fd, inception = header.index("prior classifier FD Ours"), header.index("prior Inception FID Ours")
    assert md_row(md, "MGMVAE")[fd] == "**11.00 ± 1.00**"  # smallest: best
    assert md_row(md, "DMVAE")[fd].startswith("<u>12.17")  # 13, 12.5, 11: second
    assert md_row(md, "MVAE")[fd] == "15.00 ± —" and md_row(md, "MVAE")[inception] == "—"
    assert md_row(md, "MGMVAE")[header.index("prior label entropy Ours")] == "**0.90 ± 0.10**"
    assert "prior classifier FD: MGMVAE vs DMVAE: t = " in md  # the best baseline: the smallest distance
    assert "`evaluation.inception_weights: null`" in md


def test_unknown_model_gets_dashes_in_paper_columns(tmp_path):
    """A model the paper does not list (a plugin) runs through every table, with "—" for the paper."""
    paths = []
    for model, v in (("my_plugin", 0.6), ("mgmvae", 0.9)):
        paths.append(tmp_path / f"{model}.json")
        save_json(run(model, 0, "digits_street", ["hand", "street"], v), paths[-1])
    out = tmp_path / "tables"
    build_tables(load_run_metrics(paths), TABLE_DATASETS, out)
    md = (out / "table1.md").read_text()
    assert md_row(md, "my_plugin")[1:6] == ["1", "<u>60.00 ± —</u>", "—", "—", "—"]
    assert list(pd.read_csv(out / "table1.csv")["model"]) == ["my_plugin", "mgmvae"]  # before MGMVAE
    assert "\\underline{60.00 $\\pm$ ---} & --- & --- & ---" in (out / "table1.tex").read_text()
    assert md_row((out / "clustering.md").read_text(), "digits_street")[1] == "my_plugin"


# ------------------------------------------------------------------ protocols
def protocol_run(model, seed, v, protocol, setting=None, ess=(2.0, 0.9), normalised=False):
    """``run`` evaluated under ``protocol`` (from ``setting``), its log-likelihood with its quality."""
    record = run(model, seed, "digits_street", ["hand", "street"], v)
    record |= {"protocol": protocol, "protocol_setting": setting or protocol}
    estimate = {"ess_mean": ess[0], "ess_under_floor": ess[1], "reliable": ess[1] <= 0.5}
    record["metrics"]["log_likelihood"]["estimator"] |= {"proposal_scale": 1.0}
    record["metrics"]["log_likelihood"]["quality"] = {"normalised": normalised, "ess_floor": 10} | {
        key: estimate for key in ("joint", "hand", "street")
    }
    return record


def write_runs(tmp_path, records):
    paths = []
    for i, record in enumerate(records):
        paths.append(tmp_path / "runs" / f"{i}.json")
        save_json(record, paths[-1])
    return paths


def test_every_table_names_its_protocol(tmp_path):
    runs = [protocol_run("mgmvae", s, v, "sample") for s, v in enumerate([0.8, 0.9])]
    runs += [protocol_run("mvae", 0, 0.5, "sample")]
    out = tmp_path / "tables"
    build_tables(load_run_metrics(write_runs(tmp_path, runs)), TABLE_DATASETS, out)
    for name in ("table1", "table2", "clustering"):
        assert (out / f"{name}.md").read_text().splitlines()[0].endswith(", protocol `sample`"), name
        frame = pd.read_csv(out / f"{name}.csv")
        assert list(frame.columns).index("protocol") == list(frame.columns).index("name") + 1, name
        assert set(frame["protocol"]) == {"sample"}, name
    assert "### Protocol" not in (out / "table1.md").read_text()
    assert "the same under every evaluation protocol" in (out / "loglik.md").read_text().splitlines()[0]
    assert "protocol" not in pd.read_csv(out / "loglik.csv").columns


def test_two_protocols_give_a_table_each(tmp_path):
    """mean 10 points above sample: each section ranks and tests its own runs; the CSV stacks them."""
    runs = []
    for protocol, shift in (("mean", 0.1), ("sample", 0.0)):
        runs += [protocol_run("mgmvae", s, v + shift, protocol) for s, v in enumerate([0.7, 0.8, 0.9])]
        runs += [protocol_run("dmvae", s, v + shift, protocol) for s, v in enumerate([0.6, 0.65, 0.8])]
    out = tmp_path / "tables"
    build_tables(load_run_metrics(write_runs(tmp_path, runs)), TABLE_DATASETS, out)
    md = (out / "table1.md").read_text()
    assert md.splitlines()[0].endswith("protocols `mean`, `sample`")
    mean_part, sample_part = md.split("### Protocol `sample`")
    assert "### Protocol `mean`" in mean_part
    assert (
        md_row(mean_part, "MGMVAE")[2] == "**90.00 ± 10.00**"
        and md_row(sample_part, "MGMVAE")[2] == "**80.00 ± 10.00**"
    )
    assert md.count("MGMVAE vs DMVAE: t = 7.000") == 2 or "MGMVAE vs DMVAE" in md
    assert md.count("Reported in the paper only") == 1
    t1 = pd.read_csv(out / "table1.csv")
    assert list(zip(t1["model"], t1["protocol"], strict=True)) == [
        ("dmvae", "mean"),
        ("mgmvae", "mean"),
        ("dmvae", "sample"),
        ("mgmvae", "sample"),
    ]
    assert t1.set_index(["model", "protocol"]).loc[("mgmvae", "mean"), "hand->street mean"] == pytest.approx(90.0)
    tex = (out / "table1.tex").read_text()
    assert "\\label{tab:quick-table1-mean}" in tex and "\\label{tab:quick-table1-sample}" in tex
    cl = pd.read_csv(out / "clustering.csv")
    assert len(cl) == 4 and set(cl["protocol"]) == {"mean", "sample"}
    ll = pd.read_csv(out / "loglik.csv")  # the same estimate under both: shown once
    assert list(ll["model"]) == ["dmvae", "mgmvae"]


def test_reference_lists_each_models_protocol(tmp_path):
    runs = [protocol_run("mvae", 0, 0.5, "mean", "reference"), protocol_run("mmvae", 0, 0.6, "sample", "reference")]
    runs += [protocol_run("mgmvae", 0, 0.9, "mean", "reference")]
    out = tmp_path / "tables"
    build_tables(load_run_metrics(write_runs(tmp_path, runs)), TABLE_DATASETS, out)
    first = (out / "table1.md").read_text().splitlines()[0]
    assert first.endswith("protocol `reference` (each model its reference code's: mean: MVAE, MGMVAE; sample: MMVAE)")
    t1 = pd.read_csv(out / "table1.csv").set_index("model")
    assert t1.loc["mmvae", "protocol"] == "sample" and t1.loc["mvae", "protocol"] == "mean"


def test_loglik_shows_the_estimators_quality(tmp_path):
    runs = [protocol_run("mgmvae", s, 0.9, "mean", ess=(2.5, 0.9)) for s in range(2)]
    runs += [protocol_run("mvae", 0, 0.5, "mean", ess=(40.0, 0.2), normalised=True)]
    out = tmp_path / "tables"
    build_tables(load_run_metrics(write_runs(tmp_path, runs)), TABLE_DATASETS, out)
    ll = pd.read_csv(out / "loglik.csv").set_index("model")
    assert ll.loc["mgmvae", "samples"] == 10 and ll.loc["mgmvae", "pairs"] == 50
    assert ll.loc["mgmvae", "normalised"] == "no" and ll.loc["mvae", "normalised"] == "yes"
    assert ll.loc["mgmvae", "joint ess"] == pytest.approx(2.5) and ll.loc["mgmvae", "joint under floor"] == 0.9
    assert not ll.loc["mgmvae", "joint reliable"] and ll.loc["mvae", "joint reliable"]
    columns = list(ll.columns)
    assert columns.index("joint ess") == columns.index("joint ci95") + 1
    md = (out / "loglik.md").read_text()
    assert md_row(md, "Model")[:5] == ["Model", "Seeds", "K", "Pairs", "Normalised"]
    assert md_row(md, "MGMVAE")[2:5] == ["10", "50", "no"]
    row = md_row(md, "MGMVAE")
    assert "†" in row[5] and row[7:9] == ["2.5", "90%"]  # Ours †, 95% CI, ESS, < floor
    assert "†" not in md_row(md, "MVAE")[5]
    assert "pairs with ESS under 10" in md and "Normalised no" in md
    assert "\\dagger" in (out / "loglik.tex").read_text()


def test_the_same_run_under_two_protocols_is_not_a_duplicate(tmp_path):
    runs = [protocol_run("mgmvae", 0, 0.9, "mean"), protocol_run("mgmvae", 0, 0.8, "sample")]
    build_tables(load_run_metrics(write_runs(tmp_path, runs)), TABLE_DATASETS, tmp_path / "t")
    with pytest.raises(ValueError, match="duplicate run.*protocol 'mean'"):
        build_tables(load_run_metrics(write_runs(tmp_path, runs + runs[:1])), TABLE_DATASETS, tmp_path / "u")


# ------------------------------------------------------------- the M-modality table
def polymnist_run(model, seed, v, study="poly", given_included=None, dataset="digits_poly"):
    """A five-modality run: coherence k given = v + k/100 (k ≤ 4, or ≤ 5 with ``given_included``; a
    run that does not record its targets when None), probe k given = v + k/50, retrieval v / 2."""
    mods = [f"m{i}" for i in range(5)]
    targets = {} if given_included is None else {"conditional_coherence_targets": {"given_included": given_included}}
    return {
        "study": study,
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "modalities": mods,
        "metrics": {
            "cross_generation": {"m0->m1": v, "m1->m0": v, "m0,m1->m2": v},
            "conditional_coherence": {str(k): v + k / 100 for k in range(1, 5 + bool(given_included))},
            "joint_coherence": {"joint": 0.5 * v, "samples": 100},
            "probe": {"m0": v, "joint": v},
            "probe_by_subset_size": {str(k): v + k / 50 for k in range(1, 6)},
            "retrieval_mean": {"top1": v / 2},
            "clustering": {"accuracy": v, "nmi": v, "ari": v, "method": "kmeans", "k": 10},
        }
        | targets,
    }


def test_polymnist_table_columns_follow_the_modalities_and_show_the_published_numbers(tmp_path):
    """Five modalities: coherence with 1–4 given, joint coherence, the probe with 1–5 given and
    retrieval; seed means in percent; on the released data (`polymnist`) MoPoE's published
    66/77/81/83 beside its coherence columns, on the stand-in none, and a note saying why."""
    paths = {"polymnist": [], "digits_poly": []}
    for dataset, files in paths.items():
        for model, values in (("mopoe", [0.6, 0.7]), ("mgmvae", [0.8, 0.9])):
            for seed, v in enumerate(values):
                files.append(tmp_path / f"{dataset}_{model}_{seed}.json")
                save_json(polymnist_run(model, seed, v, dataset=dataset), files[-1])
    out = tmp_path / "tables"
    build_tables(load_run_metrics(paths["polymnist"]), TABLE_DATASETS | {"polymnist": "polymnist"}, out)
    csv = pd.read_csv(out / "polymnist.csv").set_index("model")
    means = [c for c in csv.columns if c.endswith(" mean")]
    assert means == [f"coherence {k} given → others mean" for k in range(1, 5)] + [
        "joint coherence mean",
        "label entropy mean",
    ] + [f"probe {k} given mean" for k in range(1, 6)] + ["retrieval mean"]
    assert csv.loc["mgmvae", "coherence 2 given → others mean"] == pytest.approx(87.0)  # (82 + 92) / 2
    assert csv.loc["mgmvae", "probe 5 given mean"] == pytest.approx(95.0)  # (90 + 100) / 2
    assert csv.loc["mopoe", "retrieval mean"] == pytest.approx(32.5)
    assert [csv.loc["mopoe", f"paper coherence {k}"] for k in range(1, 5)] == [66.0, 77.0, 81.0, 83.0]
    assert csv.loc["mopoe", "coherence 1 given → others diff paper"] == pytest.approx(66.0 - 66.0)
    assert math.isnan(csv.loc["mgmvae", "paper coherence 1"])  # the MGMVAE paper has no PolyMNIST number
    md = (out / "polymnist.md").read_text()
    assert "scored by ClfImg with the released weights" in md and "Paper (coherence 1)" in md
    assert md_row(md, "MGMVAE")[2] == "**86.00 ± 7.07**"  # (81 + 91) / 2, best of the study's models
    assert md_row(md, "MoPoE")[4] == "66.0"  # the published number, as printed
    assert "targets: the modalities outside the given ones, as MultiVae" in md

    build_tables(load_run_metrics(paths["digits_poly"]), TABLE_DATASETS | {"polymnist": "digits_poly"}, out)
    csv, md = pd.read_csv(out / "polymnist.csv"), (out / "polymnist.md").read_text()
    assert not [c for c in csv.columns if "paper" in c] and "Paper (coherence" not in md
    assert "embedded stand-in for PolyMNIST, scored by ClfImg trained here" in md
    assert "stands beside ours only on dataset `polymnist`" in md and "data and classifiers differ" in md


def test_polymnist_table_names_coherence_on_every_target_and_refuses_mixed_runs(tmp_path):
    """Runs that scored every target (MoPoE's): coherence with 1–5 given, headers and caption say
    so, no published number beside it; runs of both settings on one dataset are refused."""
    paths = []
    for seed, v in enumerate([0.6, 0.7]):
        paths.append(tmp_path / f"mopoe_{seed}.json")
        save_json(polymnist_run("mopoe", seed, v, given_included=True), paths[-1])
    out = tmp_path / "tables"
    build_tables(load_run_metrics(paths), TABLE_DATASETS | {"polymnist": "digits_poly"}, out)
    csv = pd.read_csv(out / "polymnist.csv").set_index("model")
    assert [c for c in csv.columns if c.startswith("coherence") and c.endswith(" mean")] == [
        f"coherence {k} given → all mean" for k in range(1, 6)
    ]
    assert csv.loc["mopoe", "coherence 5 given → all mean"] == pytest.approx(70.0)  # (65 + 75) / 2
    assert not [c for c in csv.columns if c.startswith("paper")]
    assert "targets: every modality, as MoPoE" in (out / "polymnist.md").read_text()
    save_json(polymnist_run("mgmvae", 0, 0.8, given_included=False), tmp_path / "mixed.json")
    with pytest.raises(ValueError, match="evaluation.coherence_targets"):
        build_tables(load_run_metrics([*paths, tmp_path / "mixed.json"]), {"polymnist": "digits_poly"}, out)


def test_a_table_without_a_dataset_says_so(runs, tmp_path):
    """tables.<name>: null (or absent): the table's files say the study names no dataset for it."""
    out = tmp_path / "tables"
    written = build_tables(load_run_metrics(runs), TABLE_DATASETS | {"table3": None}, out)
    assert out / "polymnist.csv" in written
    for name in ("table3", "polymnist"):
        assert list(pd.read_csv(out / f"{name}.csv").columns) == ["model", "name", "n_seeds"]
        assert f"config `tables.{name}: null`" in (out / f"{name}.md").read_text()
    assert md_row((out / "table1.md").read_text(), "MGMVAE")[2].startswith("**90.00 ± 10.00")


def test_resources_table_sums_up_each_stage_from_its_benchmarks(tmp_path):
    from mgmvae.paths import benchmark_file
    from mgmvae.tables.resources import resources_table

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    jobs = {  # log -> (wall s, peak RSS MiB, CPU s)
        Path("logs/train/d/mvae/seed0.log"): (10.0, 500.0, 9.0),
        Path("logs/train/d/mvae/seed1.log"): (30.0, 700.0, 25.0),
        Path("logs/train/d/mmvae/seed0.log"): (20.0, 600.0, 18.0),
        Path("logs/ablation/train/d/full/seed0.log"): (5.0, 100.0, 4.0),
        Path("logs/tables.log"): (1.0, 80.0, 0.5),
    }
    files = []
    for log, (wall, rss, cpu) in jobs.items():
        files.append(tmp_path / benchmark_file(log))
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        files[-1].write_text(header + f"{wall}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    assert files[0] == tmp_path / "benchmarks/train/d/mvae/seed0.tsv"
    resources_table(files, "s", tmp_path / "tables")
    table = pd.read_csv(tmp_path / "tables" / "resources.csv").set_index("stage")
    assert list(table.index) == ["train", "ablation/train", "tables"]
    assert table.loc["train"].to_dict() == {
        "jobs": 3,
        "wall s median": 20.0,
        "wall s max": 30.0,
        "peak RSS MiB max": 700.0,
        "CPU s max": 25.0,
    }
    assert md_row((tmp_path / "tables" / "resources.md").read_text(), "train")[:2] == ["train", "3"]
