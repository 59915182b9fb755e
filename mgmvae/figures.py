"""Figures: the paper's Figures 3–7 for every model, and more.

Like the paper (REFERENCES §1): cross-generation grids (the source row, then one generated row per
model), translation grids (content × style), retrieval panels (query, true partner, top-3).
Beyond it: a t-SNE of the shared latent coloured by label and by cluster, training curves per
loss term, bar charts of Tables 1–3 with seed intervals, and the ablation plot.

Every function writes one figure as PNG and PDF (atomically, ``save_figure``) and returns both
paths. Everything is deterministic: example pairs are fixed by ``example_pairs`` (the first test
pairs of each class, in class order), subsamples and t-SNE are seeded, and the files carry no
timestamps. Models are ``{model name: model}`` (the ``mgmvae.base`` interface); images come from
a ``PairedData``'s test split.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mgmvae import paper
from mgmvae.io import atomic_path

FORMATS = ("png", "pdf")
DPI = 150
CORRECT, WRONG = "#1a9850", "#d73027"  # frame colours: retrieved label right / wrong

# kind -> report subcategory; the caption is workflow/report/<kind>.rst
KINDS = {
    "cross_generation": "Cross-generation grids",
    "translation": "Translation grids",
    "retrieval": "Retrieval panels",
    "tsne": "t-SNE of the shared latent",
    "curves": "Training curves",
    "bars": "Tables 1–3 as bar charts",
}


# ------------------------------------------------------------------ naming
def figure_specs(
    dataset_modalities: Mapping[str, Sequence[str]],
    models: Sequence[str] | Mapping[str, Sequence[str]],
    bars: bool = True,
) -> list[dict]:
    """Every figure the ``figures`` stage writes, in a fixed order; ``models`` are the same for
    every dataset or given per dataset ({dataset: models}). ``bars``: include the bar charts of
    Tables 1–3 (they read every dataset's metrics; the pipeline draws them in a job of their own).

    Each is {"kind", "dataset", "model", "direction", "source", "target", "stem"}; the files are ``<stem>.png`` and
    ``<stem>.pdf`` under the figures folder (``stem`` has a sub-folder per kind). ``model`` and
    ``direction`` are "all" / "—" where a figure covers every model / no direction.
    """
    specs = []
    per_dataset = {
        d: paper.model_order(models[d] if isinstance(models, Mapping) else models) for d in dataset_modalities
    }

    def add(kind, dataset, model, stem, source=None, target=None):
        direction = f"{source} → {target}" if source else "—"
        specs.append(
            {
                "kind": kind,
                "dataset": dataset,
                "model": model,
                "direction": direction,
                "source": source,
                "target": target,
                "stem": f"{kind}/{stem}",
            }
        )

    for d, (m0, m1) in dataset_modalities.items():
        models = per_dataset[d]
        for s, t in ((m0, m1), (m1, m0)):
            add("cross_generation", d, "all", f"{d}_{s}_to_{t}", s, t)
        for m in models:
            for s, t in ((m0, m1), (m1, m0)):
                add("translation", d, m, f"{d}_{m}_{s}_to_{t}", s, t)
        for s, t in ((m0, m1), (m1, m0)):
            add("retrieval", d, "all", f"{d}_{s}_to_{t}", s, t)
        add("tsne", d, "all", d)
        for m in models:
            add("curves", d, m, f"{d}_{m}")
    for table in ("table1", "table2", "table3") if bars else ():
        add("bars", "—", "all", table)
    return specs


# ----------------------------------------------------------------- helpers
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str | Path) -> list[Path]:
    """Write ``fig`` as ``<out>.png`` and ``<out>.pdf`` (a .png/.pdf suffix on ``out`` is dropped)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lstrip(".") in FORMATS else out
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        written.append(path)
    _plt().close(fig)
    return written


def _name(model: str) -> str:
    return paper.display_name(model)


def _ordered(models: Mapping[str, object]) -> list[str]:
    return paper.model_order(models)


def _device_of(model) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def example_pairs(data, n: int, split: str = "test") -> Tensor:
    """``n`` fixed pair indices: the first pair of each class in class order, then the second, ..."""
    y = data.pair_labels(split).cpu()
    per = [torch.nonzero(y == c).flatten().tolist() for c in torch.unique(y).tolist()]
    out, r = [], 0
    while len(out) < n and any(r < len(p) for p in per):
        out += [p[r] for p in per if r < len(p)][: n - len(out)]
        r += 1
    return torch.tensor(out, dtype=torch.long)


def _rgb(x: Tensor) -> np.ndarray:
    """A [C, H, W] image in [0, 1] (C = 1 or 3) as an [H, W, 3] float array."""
    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def _mosaic(
    cells: Sequence[Sequence[Tensor | None]],
    frames: Sequence[Sequence[str | None]] | None = None,
    border: int = 4,
    gap: int = 3,
) -> tuple[np.ndarray, int]:
    """Images laid out on a white canvas, one slot per cell (centred, coloured frame optional).
    Returns the canvas and the slot pitch in pixels."""
    from matplotlib.colors import to_rgb

    size = max(max(c.shape[-2:]) for row in cells for c in row if c is not None)
    slot = size + 2 * border
    pitch = slot + gap
    nrows, ncols = len(cells), max(len(r) for r in cells)
    canvas = np.ones((nrows * pitch - gap, ncols * pitch - gap, 3))
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            if cell is None:
                continue
            y0, x0 = i * pitch, j * pitch
            frame = frames[i][j] if frames is not None else None
            if frame is not None:  # a coloured ring, then a white one, so it stands out on any background
                canvas[y0 : y0 + slot, x0 : x0 + slot] = to_rgb(frame)
                canvas[y0 + border - 1 : y0 + slot - border + 1, x0 + border - 1 : x0 + slot - border + 1] = 1.0
            img = _rgb(cell)
            h, w = img.shape[:2]
            oy, ox = y0 + border + (size - h) // 2, x0 + border + (size - w) // 2
            canvas[oy : oy + h, ox : ox + w] = img
    return canvas, pitch


def _grid_figure(
    cells,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    frames=None,
    groups: Sequence[tuple[int, int, str]] = (),
    inch: float = 0.62,
):
    """One axes showing the mosaic; row labels left, column labels on top, ``groups`` as
    (first column, last column, text) headers above the column labels."""
    plt = _plt()
    canvas, pitch = _mosaic(cells, frames)
    nrows, ncols = len(cells), max(len(r) for r in cells)
    fig, ax = plt.subplots(figsize=(inch * ncols + 1.4, inch * nrows + 0.9 + 0.25 * bool(groups)))
    ax.imshow(canvas, interpolation="nearest")
    centres = lambda n: [k * pitch + (pitch - 3) / 2 for k in range(n)]  # noqa: E731
    ax.set_yticks(centres(nrows), list(row_labels), fontsize=8)
    ax.set_xticks(centres(ncols), list(col_labels), fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for first, last, text in groups:
        x = (centres(ncols)[first] + centres(ncols)[last]) / 2
        ax.annotate(
            text,
            xy=(x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 24),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
        )
    # the title sits above the column labels (and the group headers)
    ax.set_title(title, fontsize=9, pad=18 if groups else 6)
    return fig


def _batch(data, idx: Tensor, device) -> dict[str, Tensor]:
    return {m: v.to(device) for m, v in data.batch("test", idx.to(data.device)).items()}


def _caption(fig, text: str) -> None:
    # 0.1 inch below the top edge whatever the figure's height (the default, 2% of it, is
    # 0.7 inch on a tall t-SNE column and lets tight_layout run the panels into the caption).
    fig.suptitle(text, fontsize=9, y=1 - 0.1 / fig.get_figheight(), va="top")


# --------------------------------------------------- paper-style figures
@torch.no_grad()
def cross_generation_grid(
    data, models: Mapping[str, object], source: str, target: str, out: str | Path, n: int = 10, title: str | None = None
) -> list[Path]:
    """Row 0: ``n`` fixed source test images (one per class); then one row per model: its
    ``target`` generation from each source image alone."""
    idx = example_pairs(data, n)
    names = _ordered(models)
    labels = data.pair_labels("test", idx.to(data.device)).tolist()
    src = data.batch("test", idx.to(data.device))[source]
    cells = [list(src)]
    for name in names:
        model = models[name]
        cells.append(list(model.generate({source: src.to(_device_of(model))}, source, target)))
    rows = [f"source ({source})"] + [f"{_name(name)} → {target}" for name in names]
    fig = _grid_figure(
        cells, rows, [f"label {y}" for y in labels], title or f"{data.name}: cross-generation {source} → {target}"
    )
    return save_figure(fig, out)


@torch.no_grad()
def translation_grid(
    data,
    model,
    source: str,
    target: str,
    out: str | Path,
    n_content: int = 6,
    n_style: int = 6,
    model_name: str | None = None,
    title: str | None = None,
) -> list[Path]:
    """Cell (i, j): content of source image i (left column) in the style of target image j (top row).

    Models without private latents have no style to take: ``translate`` falls back to ``generate``,
    so each row repeats one image, and the title says so.
    """
    idx = example_pairs(data, n_content + n_style)
    c_idx, s_idx = idx[:n_content], idx[n_content:]
    if len(s_idx) == 0:  # tiny data: take styles from the same pairs
        s_idx = c_idx
    device = _device_of(model)
    content = data.batch("test", c_idx.to(data.device))[source].to(device)
    style = data.batch("test", s_idx.to(data.device))[target].to(device)
    nc, ns = len(content), len(style)
    grid = model.translate(
        {source: content.repeat_interleave(ns, 0)}, {target: style.repeat(nc, 1, 1, 1)}, source, target
    )
    cells = [[None] + list(style)] + [[content[i]] + list(grid[i * ns : (i + 1) * ns]) for i in range(nc)]
    name = _name(model_name or getattr(model, "name", "model"))
    note = (
        ""
        if getattr(model, "private_dim", 0)
        else "\n(no private latent: falls back to cross-generation; style ignored)"
    )
    c_lab = data.pair_labels("test", c_idx.to(data.device)).tolist()
    s_lab = data.pair_labels("test", s_idx.to(data.device)).tolist()
    fig = _grid_figure(
        cells,
        [f"style ({target}) →"] + [f"content {i + 1} (label {c_lab[i]})" for i in range(nc)],
        [f"content\n({source})"] + [f"style {j + 1}\n(label {s_lab[j]})" for j in range(ns)],
        title or f"{data.name}, {name}: {source} content × {target} style{note}",
    )
    return save_figure(fig, out)


@torch.no_grad()
def retrieval_panel(
    data,
    models: Mapping[str, object],
    source: str,
    target: str,
    out: str | Path,
    n_queries: int = 6,
    k: int = 3,
    batch_size: int = 512,
    title: str | None = None,
) -> list[Path]:
    """Per query row: the query (``source``), its true partner (``target``), then each model's top-k
    from the ``target`` test gallery by Euclidean distance in the shared latent; green frame =
    same label as the query, red = another label."""
    from mgmvae.evaluation.retrieval import topk_indices
    from mgmvae.evaluation.run import embed_unimodal

    idx = example_pairs(data, n_queries)
    rows = data.pairs["test"][idx.to(data.device)].cpu()
    j_src, j_tgt = data.modalities.index(source), data.modalities.index(target)
    queries = data.unimodal(source, "test", rows[:, j_src].to(data.device))
    partners = data.unimodal(target, "test", rows[:, j_tgt].to(data.device))
    q_labels = data.labels[source]["test"][rows[:, j_src].to(data.device)].cpu()
    g_labels = data.labels[target]["test"].cpu()
    gallery = data.images[target]["test"]
    k = min(k, len(gallery))
    names = _ordered(models)
    cells, frames = [], []
    hits = {}
    for name in names:
        model = models[name]
        g = embed_unimodal(model, data, target, "test", batch_size, False)
        q = model.embed({source: queries.to(_device_of(model))}, [source])
        hits[name] = topk_indices(q, g, k=k).cpu()
    for i in range(len(idx)):
        cells.append([queries[i], partners[i]])
        frames.append([None, None])
        for name in names:
            for r in range(k):
                gi = int(hits[name][i, r])
                cells[-1].append(gallery[gi].float() / 255.0)
                frames[-1].append(CORRECT if int(g_labels[gi]) == int(q_labels[i]) else WRONG)
    cols = [f"query\n({source})", f"partner\n({target})"] + [f"top-{r + 1}" for _ in names for r in range(k)]
    groups = [(2 + m * k, 2 + m * k + k - 1, _name(name)) for m, name in enumerate(names)]
    fig = _grid_figure(
        cells,
        [f"label {int(y)}" for y in q_labels],
        cols,
        title or f"{data.name}: retrieval {source} → {target} (frame green: same label as the query, red: other)",
        frames=frames,
        groups=groups,
    )
    return save_figure(fig, out)


# ---------------------------------------------------- beyond the paper
@torch.no_grad()
def _assignments(model, data, idx: Tensor, z: Tensor, n_clusters: int, seed: int, batch_size: int):
    from mgmvae.evaluation.clustering import kmeans_assignments

    out = []
    for s in range(0, len(idx), batch_size):
        c = model.cluster(_batch(data, idx[s : s + batch_size], _device_of(model)), data.modalities)
        if c is None:
            return kmeans_assignments(z, min(n_clusters, len(z)), seed).numpy(), "k-means"
        out.append(c.cpu())
    return torch.cat(out).numpy(), "own mixture"


@torch.no_grad()
def tsne_plot(
    data,
    models: Mapping[str, object],
    out: str | Path,
    max_points: int = 2000,
    seed: int = 0,
    n_clusters: int = 10,
    batch_size: int = 512,
    title: str | None = None,
) -> list[Path]:
    """t-SNE (2-D, seeded) of the joint shared latent of ≤ ``max_points`` test pairs (seeded
    subsample), one row per model: coloured by label (left) and by cluster (right; the model's own
    assignment, else k-means with ``n_clusters``)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from mgmvae.evaluation.run import embed_pairs

    plt = _plt()
    n = data.num_pairs("test")
    idx = (
        torch.arange(n)
        if n <= max_points
        else torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
    )
    y = data.pair_labels("test", idx.to(data.device)).cpu().numpy()
    names = _ordered(models)
    fig, axes = plt.subplots(len(names), 2, figsize=(9.5, 4.2 * len(names) + 0.4), squeeze=False)
    size = float(min(20.0, max(2.0, 4000.0 / len(idx))))
    cmap = plt.get_cmap("tab10" if n_clusters <= 10 else "tab20")
    for i, name in enumerate(names):
        model = models[name]
        z = embed_pairs(model, data, "test", idx, batch_size, False).cpu()
        with threadpool_limits(1):
            clusters, method = _assignments(model, data, idx, z, n_clusters, seed, batch_size)
        perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))
        # one OpenMP thread: deterministic, and Barnes-Hut is far slower when threads are oversubscribed
        tsne = TSNE(
            n_components=2,
            init="pca",
            random_state=seed,
            perplexity=perplexity,
            method="exact" if len(z) < 200 else "barnes_hut",
        )
        with threadpool_limits(1):
            xy = tsne.fit_transform(z.double().numpy())
        for ax, colour, what in ((axes[i, 0], y, "label"), (axes[i, 1], clusters, f"cluster ({method})")):
            ax.scatter(xy[:, 0], xy[:, 1], c=colour % cmap.N, cmap=cmap, vmin=0, vmax=cmap.N - 1, s=size, linewidths=0)
            ax.set_title(f"{_name(name)}: coloured by {what}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        ids = np.unique(np.concatenate([y, np.asarray(clusters)]) % cmap.N)
        handles = [plt.Line2D([], [], marker="o", ls="", color=cmap(c), label=str(c)) for c in ids]
        axes[i, 1].legend(
            handles=handles,
            title="label /\ncluster id",
            fontsize=7,
            title_fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            frameon=False,
        )
    _caption(fig, title or f"{data.name}: t-SNE of the joint shared latent, {len(idx)} test pairs")
    fig.tight_layout()
    return save_figure(fig, out)


def training_curves(history: Sequence[Mapping[str, float]], out: str | Path, title: str = "") -> list[Path]:
    """One panel per loss term logged in ``history`` (a list of per-epoch dicts), against epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    terms = sorted(
        {k for h in history for k, v in h.items() if k != "epoch" and isinstance(v, (int, float))},
        key=lambda k: (k != "loss", k),
    )
    if not terms:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no history logged", ha="center", va="center")
        _caption(fig, title)
        return save_figure(fig, out)
    ncols = min(4, len(terms))
    nrows = math.ceil(len(terms) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[len(terms) :]:
        ax.axis("off")
    for ax, term in zip(axes.flat, terms, strict=False):
        points = [(h.get("epoch", i + 1), h[term]) for i, h in enumerate(history) if term in h]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, lw=1.2)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    _caption(fig, title)
    fig.tight_layout()
    return save_figure(fig, out)


# One tab10 colour per model, the same in every figure: the models run here, then the paper-only
# rows (no bars of their own, but ablation plots and user models may use the rest).
COLOUR_ORDER = ["mvae", "mmvae_plus", "mmvae", "mwbvae", "dmvae", "idmvae", "mopoe", "cmmd", "oshima2024", "mgmvae"]


def _colour(model: str | None, fallback: int):
    """The model's fixed colour (``COLOUR_ORDER``, by id or display name); another model (a plugin)
    a tab20b colour fixed by its name, none of tab10's; no model: by position."""
    cmap = _plt().get_cmap("tab10")
    names = {paper.display_name(m): i for i, m in enumerate(COLOUR_ORDER)}
    if model is not None and model not in COLOUR_ORDER and model not in names:
        return _plt().get_cmap("tab20b")(zlib.crc32(model.encode()) % 20)
    index = COLOUR_ORDER.index(model) if model in COLOUR_ORDER else names.get(model, fallback)
    return cmap(index % 10)


def _interval_bars(ax, frame, x: str, hue: str | None, value_col: str = "mean", paper_col: str | None = None) -> None:
    """Grouped bars of ``mean`` with 95% CI error bars, one dot per seed, the paper's number as ×."""
    xs = list(dict.fromkeys(frame[x]))
    hues = list(dict.fromkeys(frame[hue])) if hue else [None]
    width = 0.8 / len(hues)
    for h, hv in enumerate(hues):
        sub = frame if hue is None else frame[frame[hue] == hv]
        for i, xv in enumerate(xs):
            row = sub[sub[x] == xv]
            if row.empty:
                continue
            r = row.iloc[0]
            pos = i - 0.4 + width * (h + 0.5)
            err = None if not np.isfinite(r["ci95"]) else r["ci95"]
            ax.bar(
                pos,
                r[value_col],
                width * 0.9,
                color=_colour(hv if hue else None, h),
                yerr=err,
                capsize=3,
                label=hv if (i == 0 and hue) else None,
                alpha=0.85,
                error_kw={"lw": 1},
            )
            vals = list(r["values"])
            ax.scatter([pos] * len(vals), vals, s=10, color="black", zorder=3)
            if paper_col and np.isfinite(r.get(paper_col, np.nan)):
                ax.scatter(
                    [pos],
                    [r[paper_col]],
                    marker="x",
                    s=40,
                    color="black",
                    zorder=4,
                    label="paper" if not any(t.get_label() == "paper" for t in ax.collections) else None,
                )
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([str(v).replace("->", "→") for v in xs])
    ax.grid(axis="y", alpha=0.3)


def table_bars(df, table: str, dataset: str, out: str | Path, study: str | None = None) -> list[Path]:
    """Table 1, 2 or 3 as grouped bars: mean over seeds per model and column, 95% t-interval as
    error bar (none with one seed), one dot per seed, the paper's number as a black ×.
    ``df`` is ``mgmvae.tables.load_run_metrics`` output."""
    from mgmvae.tables import TITLES, table_summary

    plt = _plt()
    number, _, what = TITLES[table]
    summary = table_summary(df, table, dataset)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 1.6 * summary["column"].nunique() if len(summary) else 5.0), 3.6))
    if summary.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, f"no runs on {dataset}", ha="center", va="center")
    else:
        summary = summary.assign(model_name=summary["name"])
        _interval_bars(ax, summary, "column", "model_name", paper_col="paper")
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _caption(
        fig,
        f"{number} ({dataset}{', study ' + study if study else ''}): {what}\n"
        "bars: mean over seeds, error bars: 95% t-interval, dots: seeds, ×: paper",
    )
    fig.tight_layout()
    return save_figure(fig, out)


def ablation_plot(frame, out: str | Path, title: str = "Ablation") -> list[Path]:
    """A metric against variant: one panel per metric, bars of the mean over seeds with the 95%
    t-interval, one dot per seed. ``frame`` has columns variant, metric, value, seed; variants
    appear in their order of first appearance."""
    import pandas as pd

    from mgmvae.tables import seed_stats

    missing = {"variant", "metric", "value", "seed"} - set(frame.columns)
    if missing:
        raise ValueError(f"ablation_plot needs columns variant, metric, value, seed; missing {sorted(missing)}")
    plt = _plt()
    metrics = list(dict.fromkeys(frame["metric"]))
    # Panels wrap onto rows so that a study with many variants stays within a page's width (~16 in).
    panel_width = max(3.5, 0.4 * frame["variant"].nunique() + 1.5)
    ncols = max(1, min(len(metrics), int(16 // panel_width)))
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_width * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    for ax, metric in zip(axes.flat, metrics, strict=False):
        sub = frame[frame["metric"] == metric]
        rows = []
        for variant in dict.fromkeys(sub["variant"]):
            runs = sub[sub["variant"] == variant].sort_values("seed")
            rows.append({"variant": variant, **seed_stats(runs["value"]), "values": runs["value"].tolist()})
        _interval_bars(ax, pd.DataFrame(rows), "variant", None)
        ax.set_title(str(metric), fontsize=10)
        ax.tick_params(axis="x", rotation=30)
        for label in ax.get_xticklabels():
            label.set_ha("right")
    if not metrics:
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no ablation results", ha="center", va="center")
    _caption(fig, f"{title}\nbars: mean over seeds, error bars: 95% t-interval, dots: seeds")
    fig.tight_layout()
    return save_figure(fig, out)


# ---------------------------------------------------------------- driver
def render_all(
    datasets: Mapping[str, object],
    models: Mapping[str, Mapping[str, object]],
    histories: Mapping[str, Mapping[str, list]],
    metrics,
    table_datasets: Mapping[str, str],
    outdir: str | Path,
    study: str | None = None,
    seed: int = 0,
    tsne_points: int = 2000,
    n_clusters: int = 10,
    batch_size: int = 512,
    bars: bool = True,
) -> list[Path]:
    """Every figure of ``figure_specs``: ``datasets`` {name: PairedData}, ``models`` {dataset:
    {model: model}}, ``histories`` {dataset: {model: history}}, ``metrics`` the long frame of
    ``load_run_metrics``. Returns the written paths (PNG and PDF)."""
    outdir = Path(outdir)
    specs = figure_specs(
        {d: data.modalities for d, data in datasets.items()}, {d: list(models[d]) for d in datasets}, bars=bars
    )
    written = []
    for spec in specs:
        kind, d, m, out = spec["kind"], spec["dataset"], spec["model"], outdir / spec["stem"]
        data, src, tgt = datasets.get(d), spec["source"], spec["target"]
        tag = f" (seed {seed})"
        if kind == "cross_generation":
            written += cross_generation_grid(
                data, models[d], src, tgt, out, title=f"{d}: cross-generation {src} → {tgt}{tag}"
            )
        elif kind == "translation":
            note = (
                ""
                if getattr(models[d][m], "private_dim", 0)
                else "\n(no private latent: falls back to cross-generation; style ignored)"
            )
            written += translation_grid(
                data,
                models[d][m],
                src,
                tgt,
                out,
                model_name=m,
                title=f"{d}, {_name(m)}{tag}: {src} content × {tgt} style{note}",
            )
        elif kind == "retrieval":
            written += retrieval_panel(
                data,
                models[d],
                src,
                tgt,
                out,
                batch_size=batch_size,
                title=f"{d}: retrieval {src} → {tgt}{tag}\nframe green: same label as the query, red: other label",
            )
        elif kind == "tsne":
            written += tsne_plot(
                data,
                models[d],
                out,
                max_points=tsne_points,
                seed=seed,
                n_clusters=n_clusters,
                batch_size=batch_size,
                title=f"{d}: t-SNE of the joint shared latent{tag}, "
                f"{min(tsne_points, data.num_pairs('test'))} test pairs",
            )
        elif kind == "curves":
            written += training_curves(
                histories.get(d, {}).get(m, []), out, title=f"{d}, {_name(m)}{tag}: training loss terms per epoch"
            )
        elif kind == "bars":
            table = Path(spec["stem"]).name
            written += table_bars(metrics, table, table_datasets[table], out, study=study)
    return written
