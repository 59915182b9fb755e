"""Aggregating per-run metrics into the paper's tables: mean ± std over seeds with a 95% t-interval,
the paper's number and our difference to it, a paired test of MGMVAE against the best baseline.

Each run writes one JSON file::

    {"study": s, "dataset": d, "model": m, "seed": k, "modalities": [m0, m1], "metrics": <evaluate_model output>}

Our direction m0->m1 is matched with the paper's first column (MNIST->SVHN, CD->CB) and the
probe on m0 with the paper's MNIST column, by position, because the quick preset's stand-in
datasets name their modalities differently.

Statistics, per cell (model × column), over the seeds of the study, in percent:
  mean; sample std (ddof=1); 95% interval mean ± t_{0.975, n-1} · std / √n (Student t, n−1
  degrees of freedom), "—" with one seed; difference to the paper = our mean − the paper's number.
Per column: a paired t-test (``scipy.stats.ttest_rel``, paired by seed) of MGMVAE against the
best baseline of this study (the other model with the highest mean in that column), on the
seeds both have; "n/a" with fewer than two common seeds.
Marks, per column among the models of this study (as in the paper): best in bold, second
underlined, ranked on the mean as printed (2 decimals); none with a single model.

Outputs per table: ``.csv`` (numbers), ``.md`` (Markdown), ``.tex`` (LaTeX, booktabs) and ``.html``
(a self-contained page, for ``snakemake --report``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from mgmvae import paper
from mgmvae.io import save_text

COLUMNS = ["study", "dataset", "model", "seed", "m0", "m1", "metric", "key", "slot", "value", "method", "k"]

TITLES = {
    "table1": ("Table 1", "cross_generation", "cross-modal generation accuracy (%)"),
    "table2": ("Table 2", "probe", "linear-probe accuracy (%) on the shared latent"),
    "table3": ("Table 3", "retrieval_top1", "cross-modal retrieval top-1 accuracy (%)"),
}

DATASET_NOTES = {
    "digits_street": "embedded stand-in for MNIST-SVHN",
    "digits_cdcb": "embedded stand-in for MNIST-CDCB",
    "mnist_svhn": "MNIST-SVHN, as in the paper",
    "mnist_cdcb": "MNIST-CDCB, as in the paper",
}

DASH = "—"
OURS = "mgmvae"  # the model the paired test compares with the best baseline
CLUSTER_KEYS = ("accuracy", "nmi", "ari")
TABLE_NAMES = ("table1", "table2", "table3", "clustering")
EXTENSIONS = ("csv", "md", "tex", "html")


# ------------------------------------------------------------------ loading
def _slot(metric: str, key: str, m0: str, m1: str) -> int:
    """Position of a metric key among the paper's columns (0, 1), or -1 where the paper has none."""
    if metric == "probe":
        return {m0: 0, m1: 1}.get(key, -1)
    if metric in ("cross_generation", "retrieval_top1"):
        return {f"{m0}->{m1}": 0, f"{m1}->{m0}": 1}.get(key, -1)
    return -1


def _run_rows(run: dict) -> list[dict]:
    m0, m1 = run["modalities"]
    base = {k: run[k] for k in ("study", "dataset", "model")} | {"seed": int(run["seed"]), "m0": m0, "m1": m1}
    rows = []
    for metric, values in run["metrics"].items():
        extra = {"method": values.get("method"), "k": values.get("k")} if metric == "clustering" else {}
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "k":
                rows.append(
                    base
                    | extra
                    | {"metric": metric, "key": key, "slot": _slot(metric, key, m0, m1), "value": float(value)}
                )
    return rows


def load_run_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long table, one row per (run, metric, key): columns ``COLUMNS``; values are fractions."""
    rows = []
    for path in paths:
        try:
            rows += _run_rows(json.loads(Path(path).read_text()))
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a per-run metrics file ({error!r})") from error
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------- statistics
def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ci95_halfwidth(values: Iterable[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean: t_{0.975, n-1} · s / √n; NaN for n < 2."""
    from scipy import stats

    v = [float(x) for x in values]
    n = len(v)
    if n < 2:
        return math.nan
    s = pd.Series(v).std(ddof=1)
    return float(stats.t.ppf(0.975, n - 1) * s / math.sqrt(n))


def seed_stats(values: Iterable[float]) -> dict:
    """{"mean", "std" (ddof=1), "n", "ci95" (half-width), "low", "high"} of per-seed values."""
    v = [float(x) for x in values]
    n = len(v)
    mean = sum(v) / n if n else math.nan
    std = float(pd.Series(v).std(ddof=1)) if n >= 2 else math.nan
    half = ci95_halfwidth(v)
    return {"mean": mean, "std": std, "n": n, "ci95": half, "low": mean - half, "high": mean + half}


def paired_test(ours: Mapping[int, float], theirs: Mapping[int, float]) -> dict | None:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds both mappings have.

    Returns {"t", "p", "n", "seeds"}, or None with fewer than two common seeds. ``p`` is NaN when
    the differences are all zero (the test is undefined).
    """
    from scipy import stats

    seeds = sorted(set(ours) & set(theirs))
    if len(seeds) < 2:
        return None
    a = [float(ours[s]) for s in seeds]
    b = [float(theirs[s]) for s in seeds]
    if all(x == y for x, y in zip(a, b, strict=True)):
        return {"t": math.nan, "p": math.nan, "n": len(seeds), "seeds": seeds}
    result = stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue), "n": len(seeds), "seeds": seeds}


def rank_marks(means: Mapping[str, float], decimals: int = 2) -> dict[str, str]:
    """{model: "best" | "second"} by mean as printed (ties share a mark); {} with under two models."""
    valid = {m: round(v, decimals) for m, v in means.items() if not _isnan(v)}
    if len(valid) < 2:
        return {}
    levels = sorted(set(valid.values()), reverse=True)
    marks = {m: "best" for m, v in valid.items() if v == levels[0]}
    if len(levels) > 1:
        marks |= {m: "second" for m, v in valid.items() if v == levels[1]}
    return marks


# --------------------------------------------------------------- formatting
def _model_order(models: Iterable[str]) -> list[str]:
    # unlisted models go before MGMVAE, which the paper puts last
    return paper.model_order(models)


def _pm(mean: float, std: float) -> str:
    if _isnan(mean):
        return DASH
    return f"{mean:.2f} ± {DASH if _isnan(std) else f'{std:.2f}'}"


def _interval(low: float, high: float) -> str:
    return DASH if _isnan(low) or _isnan(high) else f"[{low:.2f}, {high:.2f}]"


def _num(value, decimals: int) -> str:
    return DASH if _isnan(value) else f"{value:.{decimals}f}"


def _diff(value) -> str:
    return DASH if _isnan(value) else f"{value:+.2f}"


def _md_mark(text: str, mark: str | None) -> str:
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)


def _markdown(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align] + rows
    return "\n".join("| " + " | ".join(r) + " |" for r in lines) + "\n"


def _caption(number: str, what: str, study: str | None, dataset: str) -> str:
    note = DATASET_NOTES.get(dataset)
    return f"{number} — {what}, study `{study}`, dataset `{dataset}`" + (f" ({note})" if note else "")


def _stats(sub: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for one seed), seed count and 95% half-width, in percent."""
    g = sub.groupby(by)["value"]
    return pd.DataFrame(
        {
            "mean": g.mean() * 100,
            "std": g.std(ddof=1) * 100,
            "n": g.count(),
            "ci95": g.apply(lambda v: ci95_halfwidth(v * 100)),
        }
    )


def _test_text(test: dict | None, ours: str, best: str | None, n_ours: int, n_best: int) -> str:
    if best is None:
        return "n/a (no baseline in this study)"
    name = f"{paper.display_name(ours)} vs {paper.display_name(best)}"
    if test is None:
        return f"{name}: n/a (fewer than 2 common seeds: {n_ours} and {n_best})"
    if _isnan(test["p"]):
        return f"{name}: n/a (identical on all {test['n']} common seeds)"
    constant = " — the same difference on every seed" if math.isinf(test["t"]) else ""
    return f"{name}: t = {test['t']:.3f}, p = {test['p']:.3g} ({test['n']} paired seeds{constant})"


# ------------------------------------------------------------------- LaTeX
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Plain text to LaTeX: special characters escaped, arrows, ± and — as LaTeX."""
    out = "".join(_TEX_ESCAPES.get(c, c) for c in str(text))
    for a, b in (
        ("->", r"$\rightarrow$"),
        ("→", r"$\rightarrow$"),
        ("±", r"$\pm$"),
        (DASH, "---"),
        ("×", r"$\times$"),
        ("Δ", r"$\Delta$"),
        ("≥", r"$\geq$"),
        ("√n", r"$\sqrt{n}$"),
        ("·", r"$\cdot$"),
        ("−", "-"),
    ):
        out = out.replace(a, b)
    return out


def _tex_caption(text: str) -> str:
    parts = str(text).split("`")  # `code` spans -> \texttt
    return "".join(rf"\texttt{{{tex_escape(p)}}}" if i % 2 else tex_escape(p) for i, p in enumerate(parts))


def _tex_mark(text: str, mark: str | None) -> str:
    body = tex_escape(text)
    return {"best": rf"\textbf{{{body}}}", "second": rf"\underline{{{body}}}"}.get(mark, body)


def _latex(
    caption: str,
    label: str,
    groups: list[tuple[str, list[str]]],
    lead: list[str],
    rows: list[list[str]],
    notes: list[str],
) -> str:
    """A booktabs table: ``lead`` columns (left), then column groups with sub-headers; rows already LaTeX."""
    ncols = len(lead) + sum(len(sub) for _, sub in groups)
    spec = "l" * (len(lead) - 1) + "r" + "".join("r" * len(sub) for _, sub in groups)
    top, mid, rules, start = [], [tex_escape(h) for h in lead], [], len(lead) + 1
    top += [""] * len(lead)
    for name, sub in groups:
        top.append(rf"\multicolumn{{{len(sub)}}}{{c}}{{{tex_escape(name)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(sub) - 1}}}")
        mid += [tex_escape(s) for s in sub]
        start += len(sub)
    lines = [
        "% Generated by mgmvae.tables; needs \\usepackage{booktabs}.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{_tex_caption(caption)}}}",
        rf"\label{{tab:{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(top) + r" \\",
        " ".join(rules),
        " & ".join(mid) + r" \\",
        r"\midrule",
        *[" & ".join(r) + r" \\" for r in rows],
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if notes:
        lines += [
            r"\par\smallskip",
            r"\parbox{\linewidth}{\footnotesize " + r" \\ ".join(_tex_caption(n) for n in notes) + "}",
        ]
    lines.append(r"\end{table}")
    assert all(len(r) == ncols for r in rows)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- tables
def _columns(table: str, m0: str, m1: str) -> list[tuple[str, str, str | None]]:
    """(our column label, metric key, paper column or None) in display order."""
    paper_cols = paper.COLUMNS[table]
    if TITLES[table][1] == "probe":
        return [(m0, m0, paper_cols[0]), (m1, m1, paper_cols[1]), ("joint", "joint", None)]
    return [(f"{m0}->{m1}", f"{m0}->{m1}", paper_cols[0]), (f"{m1}->{m0}", f"{m1}->{m0}", paper_cols[1])]


def table_summary(df: pd.DataFrame, table: str, dataset: str) -> pd.DataFrame:
    """One row per (model, column) of a paper table, in percent.

    Columns: model, name, column, key, paper_column, n, mean, std, ci95, low, high, paper, diff,
    seeds (list), values (list, per seed), mark ("best", "second" or ""). Empty when no run.
    """
    metric = TITLES[table][1]
    sub = df[(df["dataset"] == dataset) & (df["metric"] == metric)]
    out_cols = [
        "model",
        "name",
        "column",
        "key",
        "paper_column",
        "n",
        "mean",
        "std",
        "ci95",
        "low",
        "high",
        "paper",
        "diff",
        "seeds",
        "values",
        "mark",
    ]
    if sub.empty:
        return pd.DataFrame(columns=out_cols)
    pairs = sub[["m0", "m1"]].drop_duplicates()
    if len(pairs) > 1:
        raise ValueError(
            f"{table}: runs on dataset {dataset!r} disagree on the modality order: {pairs.values.tolist()}"
        )
    m0, m1 = pairs.iloc[0]
    rows = []
    models = _model_order(sub["model"].unique())
    for label, key, pcol in _columns(table, m0, m1):
        cell = sub[sub["key"] == key]
        for model in models:
            runs = cell[cell["model"] == model].sort_values("seed")
            st = seed_stats(runs["value"] * 100)
            reported = paper.paper_value(table, model, pcol) if pcol else None
            rows.append(
                {
                    "model": model,
                    "name": paper.display_name(model),
                    "column": label,
                    "key": key,
                    "paper_column": pcol,
                    **st,
                    "paper": math.nan if reported is None else float(reported),
                    "diff": math.nan if reported is None or _isnan(st["mean"]) else st["mean"] - reported,
                    "seeds": runs["seed"].astype(int).tolist(),
                    "values": (runs["value"] * 100).tolist(),
                }
            )
    frame = pd.DataFrame(rows)
    frame["mark"] = ""
    for label, group in frame.groupby("column", sort=False):
        for model, mark in rank_marks(dict(zip(group["model"], group["mean"], strict=True))).items():
            frame.loc[(frame["column"] == label) & (frame["model"] == model), "mark"] = mark
    return frame[out_cols]


def column_tests(summary: pd.DataFrame, ours: str = OURS) -> dict[str, dict]:
    """Per column: {"best": best baseline or None, "test": paired_test(...) or None, "text": str}."""
    out = {}
    for label, group in summary.groupby("column", sort=False):
        by_model = {r.model: r for r in group.itertuples()}
        if ours not in by_model:
            out[label] = {"best": None, "test": None, "text": f"n/a ({paper.display_name(ours)} not in this study)"}
            continue
        baselines = {m: r for m, r in by_model.items() if m != ours and not _isnan(r.mean)}
        best = max(baselines, key=lambda m: (baselines[m].mean, m), default=None)
        test = None
        if best is not None:
            a, b = by_model[ours], baselines[best]
            test = paired_test(dict(zip(a.seeds, a.values, strict=True)), dict(zip(b.seeds, b.values, strict=True)))
        text = _test_text(test, ours, best, int(by_model[ours].n), int(baselines[best].n) if best else 0)
        out[label] = {"best": best, "test": test, "text": text}
    return out


# ------------------------------------------------------------------- HTML
_HTML_STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse}"
    "th,td{padding:3px 8px;text-align:right;white-space:nowrap}th{border-bottom:1px solid #000}"
    "thead tr:first-child th{border-top:2px solid #000}tbody tr:last-child td{border-bottom:2px solid #000}"
    "td.l,th.l{text-align:left}p.note{font-size:12px;color:#333}"
)


def _html_mark(text: str, mark: str | None) -> str:
    body = html.escape(text)
    return {"best": f"<b>{body}</b>", "second": f"<u>{body}</u>"}.get(mark, body)


def _html_table(
    header: list[str], rows: list[list[tuple[str, str | None]]], lead: int, groups: list[tuple[str, int]] | None = None
) -> str:
    """``lead`` columns before the groups; all but the last of them (the seed count) left-aligned."""
    cls = lambda i: ' class="l"' if i < lead - 1 else ""  # noqa: E731
    head = ""
    if groups:
        head += (
            "<tr>"
            + f'<th colspan="{lead}"></th>'
            + "".join(
                f'<th colspan="{span}" style="text-align:center">{html.escape(name)}</th>' for name, span in groups
            )
            + "</tr>"
        )
    head += "<tr>" + "".join(f"<th{cls(i)}>{html.escape(h)}</th>" for i, h in enumerate(header)) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{_html_mark(t, m)}</td>" for i, (t, m) in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _html_page(caption: str, tables: list[str], notes: list[str]) -> str:
    parts = str(caption).split("`")
    cap = "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(caption)}</title>'
        f"<style>{_HTML_STYLE}</style></head><body><p><b>{cap}</b></p>{''.join(tables)}{notes_html}</body></html>\n"
    )


def _write(
    outdir: Path,
    name: str,
    caption: str,
    csv_frame: pd.DataFrame,
    header: list[str],
    lead: int,
    rows: list[list[tuple[str, str | None]]],
    groups: list[tuple[str, list[str]]],
    notes: list[str],
    label: str,
    extra_md: str = "",
    extra_html: str = "",
) -> None:
    """One table as .csv (numbers), .md, .tex and .html from cells (text, mark)."""
    save_text(csv_frame.to_csv(index=False, float_format="%.4f"), outdir / f"{name}.csv")
    md = _markdown(header, [[_md_mark(t, m) for t, m in r] for r in rows], numeric_from=lead - 1)
    save_text(f"{caption}\n\n{md}\n" + "\n\n".join(notes) + "\n" + extra_md, outdir / f"{name}.md")
    tex_rows = [[_tex_mark(t, m) for t, m in r] for r in rows]
    save_text(_latex(caption, label, groups, header[:lead], tex_rows, notes), outdir / f"{name}.tex")
    sub_header = header[:lead] + [h for _, sub in groups for h in sub]
    table = _html_table(sub_header, rows, lead, [(g, len(sub)) for g, sub in groups])
    save_text(_html_page(caption, [table, extra_html], notes), outdir / f"{name}.html")


def _write_empty(outdir: Path, name: str, caption: str, message: str, columns: list[str]) -> None:
    save_text(pd.DataFrame(columns=columns).to_csv(index=False), outdir / f"{name}.csv")
    save_text(f"{caption}\n\n{message}\n", outdir / f"{name}.md")
    save_text(f"% {caption}\n% {message}\n", outdir / f"{name}.tex")
    save_text(_html_page(caption, [], [message]), outdir / f"{name}.html")


def _paper_table(df: pd.DataFrame, table: str, study: str | None, dataset: str, outdir: Path) -> None:
    number, metric, what = TITLES[table]
    caption = _caption(number, what, study, dataset)
    paper_cols, paper_rows, dec = paper.COLUMNS[table], paper.TABLES[table], paper.DECIMALS[table]
    summary = table_summary(df, table, dataset)
    if summary.empty:
        _write_empty(outdir, table, caption, "No runs of this study on this dataset.", ["model", "name", "n_seeds"])
        return
    m0, m1 = df[(df["dataset"] == dataset) & (df["metric"] == metric)][["m0", "m1"]].iloc[0]
    cols = _columns(table, m0, m1)
    tests = column_tests(summary)
    cell = {(r.model, r.column): r for r in summary.itertuples()}
    models = _model_order(summary["model"].unique())

    csv_rows, rows = [], []
    for model in models:
        n = max(int(cell[(model, label)].n) for label, _, _ in cols)
        row = {"model": model, "name": paper.display_name(model), "n_seeds": n}
        cells = [(paper.display_name(model), None), (str(n), None)]
        for label, _, pcol in cols:
            c = cell[(model, label)]
            row |= {f"{label} mean": c.mean, f"{label} std": c.std, f"{label} ci95": c.ci95}
            cells += [(_pm(c.mean, c.std), c.mark or None), (_interval(c.low, c.high), None)]
            if pcol is not None:
                row |= {f"paper {pcol}": c.paper, f"{label} diff paper": c.diff}
                cells += [(_num(c.paper, dec), None), (_diff(c.diff), None)]
            if model == OURS:
                t = tests[label]
                row |= {
                    f"{label} paired vs": t["best"] or "",
                    f"{label} paired t": t["test"]["t"] if t["test"] else math.nan,
                    f"{label} paired p": t["test"]["p"] if t["test"] else math.nan,
                }
        csv_rows.append(row)
        rows.append(cells)

    header = ["Model", "Seeds"]
    groups = []
    for label, _, pcol in cols:
        header += [f"{label.replace('->', '→')} (ours)", "95% CI"]
        sub = ["Ours", "95% CI"]
        if pcol:
            header += [f"{pcol.replace('->', '→')} (paper)", "Δ paper"]
            sub += [f"Paper ({pcol})", "Δ"]
        groups.append((label.replace("->", "→"), sub))
    on = "MNIST-CDCB" if table == "table3" else "MNIST-SVHN"
    notes = [
        f"Ours: mean ± sample std (ddof=1) over seeds; 95% CI: mean ± t(0.975, n−1)·std/√n; {DASH} with one seed. "
        "Best of this study's models in bold, second underlined (per column).",
        f"Paper: as reported on {on}; matched to our columns by position. Δ paper = our mean − the paper's number.",
    ] + [f"Paired t-test over seeds, {label}: {tests[label]['text']}." for label, _, _ in cols]
    extra_md = extra_html = ""
    paper_only = [m for m in _model_order(paper_rows) if m not in models]
    if paper_only:
        only_header = ["Model"] + [c.replace("->", "→") for c in paper_cols]
        only_rows = [
            [paper.display_name(m)] + [_num(paper_rows[m].get(c), dec) for c in paper_cols] for m in paper_only
        ]
        extra_md = "\nReported in the paper only (not run here):\n\n" + _markdown(only_header, only_rows)
        extra_html = "<p>Reported in the paper only (not run here):</p>" + _html_table(
            only_header, [[(t, None) for t in r] for r in only_rows], 2
        )
    _write(
        outdir,
        table,
        caption,
        pd.DataFrame(csv_rows),
        header,
        2,
        rows,
        groups,
        notes,
        f"{study}-{table}",
        extra_md,
        extra_html,
    )


def _clustering_table(df: pd.DataFrame, study: str | None, outdir: Path) -> None:
    sub = df[df["metric"] == "clustering"]
    caption = (
        f"Clustering of the joint shared latent of test pairs — Hungarian accuracy (%), NMI and ARI (×100), "
        f"study `{study}`, datasets " + ", ".join(f"`{d}`" for d in sorted(sub["dataset"].unique()))
    )
    if sub.empty:
        _write_empty(outdir, "clustering", caption, "No clustering results in this study.", ["dataset", "model"])
        return
    stats = _stats(sub, ["dataset", "model", "key"])
    csv_rows, rows = [], []
    for dataset in sorted(sub["dataset"].unique()):
        ds = sub[sub["dataset"] == dataset]
        order = _model_order(ds["model"].unique())
        marks = {
            key: rank_marks(
                {m: stats.loc[(dataset, m, key), "mean"] for m in order if (dataset, m, key) in stats.index}
            )
            for key in CLUSTER_KEYS
        }
        for model in order:
            runs = ds[ds["model"] == model]
            method = "/".join(sorted(runs["method"].dropna().astype(str).unique()))
            k = "/".join(str(int(v)) for v in sorted(runs["k"].dropna().unique()))
            n = int(runs["seed"].nunique())
            row = {
                "dataset": dataset,
                "model": model,
                "name": paper.display_name(model),
                "method": method,
                "k": k,
                "n_seeds": n,
            }
            cells = [(x, None) for x in (dataset, paper.display_name(model), method, k, str(n))]
            for key in CLUSTER_KEYS:
                if (dataset, model, key) in stats.index:
                    mean, std, half = stats.loc[(dataset, model, key), ["mean", "std", "ci95"]]
                else:
                    mean, std, half = math.nan, math.nan, math.nan
                row |= {f"{key} mean": mean, f"{key} std": std, f"{key} ci95": half}
                cells += [(_pm(mean, std), marks[key].get(model)), (_interval(mean - half, mean + half), None)]
            csv_rows.append(row)
            rows.append(cells)
    header = ["Dataset", "Model", "Method", "k", "Seeds"]
    for name in ("Accuracy", "NMI", "ARI"):
        header += [name, "95% CI"]
    notes = [
        f"Mean ± sample std (ddof=1) over seeds; 95% CI: mean ± t(0.975, n−1)·std/√n; {DASH} with one seed. "
        "Per dataset, best in bold, second underlined."
    ]
    groups = [(name, ["Mean ± std", "95% CI"]) for name in ("Accuracy", "NMI", "ARI")]
    _write(outdir, "clustering", caption, pd.DataFrame(csv_rows), header, 5, rows, groups, notes, f"{study}-clustering")


def build_tables(
    df: pd.DataFrame, table_datasets: dict[str, str], outdir: str | Path, study: str | None = None
) -> list[Path]:
    """Write table{1,2,3} and clustering as .csv, .md, .tex and .html under ``outdir``; return their paths.

    ``table_datasets`` names the dataset each table reads, e.g. {"table1": "mnist_svhn",
    "table2": "mnist_svhn", "table3": "mnist_cdcb"}. ``df`` must hold a single study unless
    ``study`` selects one.
    """
    studies = sorted(df["study"].unique())
    if study is None:
        if len(studies) > 1:
            raise ValueError(f"metrics from several studies {studies}: pass study= to choose one")
        study = studies[0] if studies else None
    else:
        df = df[df["study"] == study]
    dup = df.duplicated(["dataset", "model", "seed", "metric", "key"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(
            f"duplicate run: study {study!r}, dataset {first['dataset']!r}, "
            f"model {first['model']!r}, seed {first['seed']}"
        )
    outdir = Path(outdir)
    for table in ("table1", "table2", "table3"):
        _paper_table(df, table, study, table_datasets[table], outdir)
    _clustering_table(df, study, outdir)
    return [outdir / f"{name}.{ext}" for name in TABLE_NAMES for ext in EXTENSIONS]
