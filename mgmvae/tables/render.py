"""One table written as .csv (numbers), .md, .tex and .html, typeset by pandas.

A table arrives as a ``TableDoc``: the cells as text under two-level column headers (group, column;
the leading columns have the group ""), the marks ("best", "second" or "") in a frame of the same
shape, a caption (with `code` spans), notes, and optionally a second, plain table. Several tables
(one per dataset, say) may share one file set, each under its heading (``write_sections``). Markdown is
``DataFrame.to_markdown`` (tabulate); LaTeX is ``Styler.to_latex`` (booktabs rules, multicolumn
group headers, best ``\\textbf``, second ``\\underline``); HTML is ``Styler.to_html`` in a page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandas.io.formats.style import Styler

from mgmvae.io import save_text
from mgmvae.tables.spec import DASH


@dataclass
class TableDoc:
    caption: str
    label: str  # LaTeX \label{tab:<label>}
    numbers: pd.DataFrame  # the .csv
    cells: pd.DataFrame  # text, two-level columns (group, column)
    marks: pd.DataFrame  # "best" / "second" / "" per cell
    lead: int  # leading (left-aligned except the last) columns
    notes: list[str] = field(default_factory=list)
    extra: tuple[str, pd.DataFrame] | None = None  # (heading, a plain text table) after the main one


# ------------------------------------------------------------------ LaTeX text
# Styler's escape="latex" escapes LaTeX's specials but leaves Unicode symbols, which pdflatex
# cannot typeset; one escaper for cells, headers, captions and notes.
_TEX_SPECIALS = str.maketrans(
    {
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
)
_TEX_SYMBOLS = {
    "->": r"$\rightarrow$",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    DASH: "---",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "≥": r"$\geq$",
    "√n": r"$\sqrt{n}$",
    "·": r"$\cdot$",
    "−": "-",
    "Σ": r"$\Sigma$",
    "²": r"$^2$",
    "†": r"$\dagger$",
    "<": r"$<$",
}


def tex_escape(text: object) -> str:
    """Plain text to LaTeX: special characters escaped, arrows, ± and — as LaTeX."""
    out = str(text).translate(_TEX_SPECIALS)
    for symbol, tex in _TEX_SYMBOLS.items():
        out = out.replace(symbol, tex)
    return out


def _spans(text: str, code: str, escape: Callable[[str], str]) -> str:
    """`code` spans in a caption: ``code`` is a template like "<code>{}</code>"."""
    parts = text.split("`")
    return "".join(code.format(escape(p)) if i % 2 else escape(p) for i, p in enumerate(parts))


# ---------------------------------------------------------------- renderers
def markdown(cells: pd.DataFrame, marks: pd.DataFrame | None, lead: int) -> str:
    """GitHub Markdown: ``group column`` headers, best **bold**, second <u>underlined</u>."""
    text = cells.copy()
    if marks is not None:
        text = text.mask(marks.eq("best"), "**" + cells + "**").mask(marks.eq("second"), "<u>" + cells + "</u>")
    if isinstance(text.columns, pd.MultiIndex):
        text.columns = [" ".join(part for part in col if part) for col in text.columns]
    align = ["left"] * (lead - 1) + ["right"] * (text.shape[1] - lead + 1)
    return text.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True) + "\n"


def _styler(doc: TableDoc, css: dict[str, str]) -> Styler:
    styler = Styler(doc.cells, uuid=doc.label.replace("-", "_"), cell_ids=False).hide(axis="index")
    return styler.apply(lambda _: doc.marks.replace(css), axis=None)


def latex(doc: TableDoc) -> str:
    """A booktabs float: caption, label, grouped headers with \\cmidrule, notes under the tabular."""
    styler = _styler(doc, {"best": "textbf:--rwrap;", "second": "underline:--rwrap;"})
    styler = styler.format(tex_escape).format_index(tex_escape, axis=1)
    styler.set_table_styles([{"selector": "small", "props": ":;"}])
    ncols = doc.cells.shape[1]
    tex = styler.to_latex(
        column_format="l" * (doc.lead - 1) + "r" * (ncols - doc.lead + 1),
        position="t",
        position_float="centering",
        hrules=True,
        label=f"tab:{doc.label}",
        caption=_spans(doc.caption, r"\texttt{{{}}}", tex_escape),
        multicol_align="c",
        environment="table",
    )
    # Rules under each group header (booktabs style), which Styler does not draw for column groups.
    groups = doc.cells.columns.get_level_values(0)
    starts = [i for i in range(doc.lead, ncols) if groups[i] != groups[i - 1]] + [ncols]
    rules = " ".join(rf"\cmidrule(lr){{{a + 1}-{b}}}" for a, b in zip(starts, starts[1:], strict=False))
    head, sep, rest = tex.partition("\\\\\n")  # after the group header row
    tex = head + sep + rules + "\n" + rest
    notes = r" \\ ".join(_spans(n, r"\texttt{{{}}}", tex_escape) for n in doc.notes)
    if notes:
        tex = tex.replace(
            "\\end{table}", f"\\par\\smallskip\n\\parbox{{\\linewidth}}{{\\footnotesize {notes}}}\n\\end{{table}}"
        )
    return "% Generated by mgmvae.tables; needs \\usepackage{booktabs}.\n" + tex


_HTML_CSS = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse}"
    "th,td{padding:3px 8px;text-align:right;white-space:nowrap}thead tr:last-child th{border-bottom:1px solid #000}"
    "thead tr:first-child th{border-top:2px solid #000}tbody tr:last-child td{border-bottom:2px solid #000}"
    "p.note{font-size:12px;color:#333}"
)


def html_table(doc: TableDoc) -> str:
    styler = _styler(doc, {"best": "font-weight: bold;", "second": "text-decoration: underline;"})
    styler = styler.format(escape="html").format_index(escape="html", axis=1)
    left = [{"selector": f".col{i}", "props": "text-align: left;"} for i in range(doc.lead - 1)]
    styler.set_table_styles(left + [{"selector": "th.col_heading.level0", "props": "text-align: center;"}])
    return styler.to_html()


def html_page(caption: str, body: str, notes: list[str]) -> str:
    cap = _spans(caption, "<code>{}</code>", html.escape)
    notes_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(caption)}</title>'
        f"<style>{_HTML_CSS}</style></head><body><p><b>{cap}</b></p>\n{body}{notes_html}</body></html>\n"
    )


# ------------------------------------------------------------------- writers
def write_table(outdir: Path, name: str, doc: TableDoc) -> None:
    """``<name>.{csv,md,tex,html}`` under ``outdir``, each written atomically."""
    save_text(doc.numbers.to_csv(index=False, float_format="%.4f"), outdir / f"{name}.csv")
    md = f"{doc.caption}\n\n{markdown(doc.cells, doc.marks, doc.lead)}\n" + "\n\n".join(doc.notes) + "\n"
    extra_md, extra_html = _extra(doc)
    save_text(md + extra_md, outdir / f"{name}.md")
    save_text(latex(doc), outdir / f"{name}.tex")
    save_text(html_page(doc.caption, html_table(doc) + extra_html, doc.notes), outdir / f"{name}.html")


def _extra(doc: TableDoc) -> tuple[str, str]:
    """The plain table after the main one, as Markdown and HTML ("" without one)."""
    if doc.extra is None:
        return "", ""
    heading, frame = doc.extra
    plain = Styler(frame, uuid=f"{doc.label}_extra".replace("-", "_"), cell_ids=False).hide(axis="index")
    return f"\n{heading}\n\n{markdown(frame, None, 2)}", f"<p>{html.escape(heading)}</p>" + plain.format(
        escape="html"
    ).to_html()


def write_sections(outdir: Path, name: str, caption: str, sections: dict[str, TableDoc]) -> None:
    """``<name>.{csv,md,tex,html}`` of several tables, each under its heading (the key): the .csv
    stacks their numbers, the .tex has each as a float of its own, .md and .html end with their notes
    and the first section's plain table, if any."""
    docs = list(sections.values())
    notes = list(dict.fromkeys(note for doc in docs for note in doc.notes))
    extra_md, extra_html = _extra(next((d for d in docs if d.extra is not None), docs[0]))
    save_text(pd.concat([d.numbers for d in docs]).to_csv(index=False, float_format="%.4f"), outdir / f"{name}.csv")
    md = "\n".join(f"### {h}\n\n{markdown(d.cells, d.marks, d.lead)}" for h, d in sections.items())
    save_text(f"{caption}\n\n{md}\n" + "\n\n".join(notes) + "\n" + extra_md, outdir / f"{name}.md")
    save_text("\n".join(latex(d) for d in docs), outdir / f"{name}.tex")
    body = "".join(f"<h3>{html.escape(h)}</h3>\n{html_table(d)}" for h, d in sections.items())
    save_text(html_page(caption, body + extra_html, notes), outdir / f"{name}.html")


def write_empty(outdir: Path, name: str, caption: str, message: str, columns: list[str]) -> None:
    save_text(pd.DataFrame(columns=columns).to_csv(index=False), outdir / f"{name}.csv")
    save_text(f"{caption}\n\n{message}\n", outdir / f"{name}.md")
    save_text(f"% {caption}\n% {message}\n", outdir / f"{name}.tex")
    save_text(html_page(caption, "", [message]), outdir / f"{name}.html")
