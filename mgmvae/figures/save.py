"""Writing a figure: PNG and PDF, atomically, with no timestamp or software version in the files."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from matplotlib.figure import Figure

from mgmvae.io import atomic_path

FORMATS = ("png", "pdf")
DPI = 150
# Metadata that would differ between runs or library versions: left out, so the bytes repeat.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}


def pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def caption(fig: Figure, text: str) -> None:
    # 0.1 inch below the top edge whatever the figure's height (the default, 2% of it, is
    # 0.7 inch on a tall t-SNE column and lets tight_layout run the panels into the caption).
    fig.suptitle(text, fontsize=9, y=1 - 0.1 / fig.get_figheight(), va="top")


def save_figure(fig: Figure, out: str | Path) -> list[Path]:
    """Write ``fig`` as ``<out>.png`` and ``<out>.pdf`` (a .png/.pdf suffix on ``out`` is dropped)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lstrip(".") in FORMATS else out
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=METADATA[fmt])
        written.append(path)
    pyplot().close(fig)
    return written
