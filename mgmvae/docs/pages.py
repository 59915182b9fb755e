"""The pages' generated regions (``<!-- snapshot: NAME/VIEW -->`` … ``<!-- /snapshot -->``): rendering them
from their snapshots, and checking the regions and the prose that quotes their numbers. A regular
expression finds the regions: the tables must stand in the Markdown source, as GitHub shows it, which
no build-time extension of Markdown or MkDocs writes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mgmvae.config import ROOT
from mgmvae.docs.snapshot import RECIPES, RENDER, SNAPSHOTS, SnapshotError, load_recipes, recipe_of, remake_commands

REGION = re.compile(r"^<!-- snapshot: (?P<ref>[\w.-]+/[\w.-]+) -->\n(?P<body>.*?)^<!-- /snapshot -->", re.S | re.M)
# A quoted number: decimals (73.9, 1,244.5) or thousands-grouped integers (1,244).
NUMBER = re.compile(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+")
CODE = re.compile(r"`[^`\n]*`")


def default_pages(root: Path = ROOT) -> list[Path]:
    """README.md and the site's pages."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# ------------------------------------------------------------------------------ views
def _read(path: Path, records: str | None) -> pd.DataFrame:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data[records] if records else data
        return pd.json_normalize(list(rows.values()) if isinstance(rows, Mapping) else rows)
    return pd.read_csv(path)


def _where(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    for column, wanted in where.items():
        if column in frame.columns:
            allowed = wanted if isinstance(wanted, list) else [wanted]
            frame = frame[frame[column].isin(allowed)]
    return frame


def view_frame(snapshot: Path, view: Mapping[str, Any]) -> pd.DataFrame:
    """The view's rows: its file(s) filtered by ``where``, pivoted by ``pivot``; several files are
    joined on ``key`` (default ``name``) with their columns named ``<file stem>:<column>``."""
    files = view["file"] if isinstance(view["file"], list) else [view["file"]]
    frames = [_where(_read(snapshot / f, view.get("records")), view.get("where") or {}) for f in files]
    if "pivot" in view:
        p = view["pivot"]
        frame = frames[0].assign(_column=frames[0][p["columns"]].astype(str).agg(" ".join, axis=1))
        frame = frame.pivot_table(index=p["index"], columns="_column", values=p["values"], sort=False)
        return frame.reset_index().rename_axis(columns=None)
    if len(frames) == 1:
        return frames[0]
    key = view.get("key", "name")
    joined = frames[0].rename(columns=lambda c: c if c == key else f"{Path(files[0]).stem}:{c}")
    for f, frame in zip(files[1:], frames[1:], strict=True):
        joined = joined.merge(frame.rename(columns=lambda c, s=Path(f).stem: c if c == key else f"{s}:{c}"), on=key)
    return joined


def _number(value: Any, decimals: int, scale: float) -> str:
    if isinstance(value, str):
        return value
    if pd.isna(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    return f"{float(value) * scale:,.{decimals}f}"


def cell(row: pd.Series, spec: str, view: Mapping[str, Any], where: str) -> str:
    """One cell: the field itself, or ``<field> mean`` ± its ``ci95`` (else its ``std``) where present;
    ``"<field> | <decimals>"`` overrides the view's decimals."""
    field, _, places = spec.partition(" | ")
    decimals, scale = int(places or view.get("decimals", 1)), float(view.get("scale", 1.0))
    if field in row.index:
        return _number(row[field], decimals, scale)
    if f"{field} mean" in row.index:
        mean = _number(row[f"{field} mean"], decimals, scale)
        spread = next((row[f"{field} {s}"] for s in ("ci95", "std") if not pd.isna(row.get(f"{field} {s}"))), None)
        return mean if spread is None else f"{mean} ± {_number(spread, decimals, scale)}"
    raise SnapshotError(f"{where}: no column {field!r} (nor {field + ' mean'!r}); the snapshot has {list(row.index)}")


def render_table(snapshot: Path, view: Mapping[str, Any], where: str) -> str:
    frame = view_frame(snapshot, view)
    columns = view["columns"]
    rows = [[cell(row, field, view, where) for field in columns.values()] for _, row in frame.iterrows()]
    table = pd.DataFrame(rows, columns=list(columns))
    numeric = re.compile(r"[-−\d]")  # a column of numbers is right-aligned, one of text left-aligned
    align = ["right" if table[c].map(lambda v: bool(numeric.match(v))).any() else "left" for c in table.columns]
    return table.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)


# ---------------------------------------------------------------------------- regions
def render_region(ref: str, page: Path, snapshots: Path, recipes: Mapping[str, dict]) -> str:
    """The text between a region's markers: the view's table and its provenance, or the pending line."""
    name, view_name = ref.split("/", 1)
    where = f"{page.name}: snapshot: {ref}"
    recipe = recipe_of(recipes, name)
    if view_name not in (recipe.get("views") or {}):
        raise SnapshotError(f"{where}: no view {view_name!r} under {name} in {RECIPES}")
    meta_file = snapshots / name / "snapshot.yaml"
    if not meta_file.exists():
        commands = remake_commands(name, recipe, snapshots)
        return f"*Not yet regenerated from a run of the current code: run {commands}.*\n"
    meta = yaml.safe_load(meta_file.read_text())
    table = render_table(snapshots / name, recipe["views"][view_name], where)
    link, m = Path(os.path.relpath(meta_file, page.resolve().parent)).as_posix(), meta["machine"]
    return (
        f"{table}\n\nSnapshot [`{name}`]({link}): `{meta['command']}` at commit `{meta['commit'][:12]}`, "
        f"{m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']}; {meta['date']}.\n"
    )


def render_text(text: str, page: Path, snapshots: Path, recipes: Mapping[str, dict]) -> str:
    def body(match: re.Match) -> str:
        rendered = render_region(match["ref"], page, snapshots, recipes)
        return f"<!-- snapshot: {match['ref']} -->\n\n{rendered}\n<!-- /snapshot -->"

    return REGION.sub(body, text)


def render_pages(pages: Iterable[Path], snapshots: Path = SNAPSHOTS) -> list[Path]:
    """Rewrite each page's regions; return the pages that changed."""
    from mgmvae.io import save_text

    recipes = load_recipes(snapshots)
    changed = []
    for page in pages:
        text = page.read_text()
        new = render_text(text, page, snapshots, recipes)
        if new != text:
            save_text(new, page)
            changed.append(page)
    return changed


def _first_difference(have: str, want: str) -> str:
    """The first number (else line) in which a region differs from its rendering."""
    token = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
    for a, b in zip(token.findall(have), token.findall(want), strict=False):
        if a != b:
            return f"the page has {a} where the snapshot gives {b}"
    for line_no, (a, b) in enumerate(zip(have.splitlines(), want.splitlines(), strict=False), 1):
        if a != b:
            return f"line {line_no} of the region reads {a!r} where the snapshot gives {b!r}"
    return "the region's length differs from its rendering"


def check_regions(pages: Iterable[Path], snapshots: Path = SNAPSHOTS) -> list[str]:
    """Each region as its snapshot renders it."""
    recipes = load_recipes(snapshots)
    problems = []
    for page in pages:
        text = page.read_text()
        if len(re.findall(r"^<!-- snapshot:", text, re.M)) != len(REGION.findall(text)):
            problems.append(f"{page}: a `<!-- snapshot: NAME/VIEW -->` marker without its `<!-- /snapshot -->`")
        for match in REGION.finditer(text):
            try:
                want = render_region(match["ref"], page, snapshots, recipes)
            except SnapshotError as error:
                problems.append(str(error))
                continue
            have = match["body"].strip("\n")
            if have != want.strip("\n"):
                problems.append(
                    f"{page}: region `snapshot: {match['ref']}` is not its snapshot's: "
                    f"{_first_difference(have, want)}; regenerate it with `{RENDER}`"
                )
    return problems


# ------------------------------------------------------------------------------ prose
def _paragraphs(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, text) of each paragraph outside the generated regions and code blocks."""
    text = REGION.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for block in re.finditer(r"(?:^[^\S\n]*\S.*(?:\n|$))+", text, re.M):  # runs of non-blank lines
        yield text.count("\n", 0, block.start()) + 1, block.group(0)


def significant(number: str) -> int:
    return len(number.replace(",", "").replace(".", "").lstrip("0"))


def quoted_numbers(text: str) -> list[str]:
    """The numbers a paragraph quotes outside code, with at least three significant digits."""
    return [n for n in NUMBER.findall(CODE.sub(" ", text)) if significant(n) >= 3]


def snapshot_numbers(snapshots: Path, recipes: Mapping[str, dict]) -> dict[str, set[str]]:
    """Per made snapshot: every number its views show."""
    out: dict[str, set[str]] = {}
    for name, recipe in recipes.items():
        if not (snapshots / name / "snapshot.yaml").exists():
            continue
        shown: set[str] = set()
        for view_name, view in (recipe.get("views") or {}).items():
            shown.update(NUMBER.findall(render_table(snapshots / name, view, f"snapshot: {name}/{view_name}")))
        out[name] = shown
    return out


def names_snapshot(paragraph: str, name: str) -> bool:
    flowed = " ".join(paragraph.split())  # a name may wrap onto the next line
    return re.search(rf"snapshot `{re.escape(name)}`", flowed, re.I) is not None or f"snapshots/{name}/" in flowed


def check_prose(pages: Iterable[Path], snapshots: Path = SNAPSHOTS) -> list[str]:
    """A paragraph quoting a number that a snapshot's tables show names that snapshot."""
    numbers = snapshot_numbers(snapshots, load_recipes(snapshots))
    problems = []
    for page in pages:
        for line, paragraph in _paragraphs(page.read_text()):
            for number in quoted_numbers(paragraph):
                # A number several snapshots show is covered by naming any one of them.
                owners = [name for name, shown in numbers.items() if number in shown]
                if owners and not any(names_snapshot(paragraph, name) for name in owners):
                    problems.append(
                        f"{page}:{line}: the paragraph quotes {number}, a number of snapshot "
                        f"{' or '.join(owners)}, without naming it: write snapshot `{owners[0]}` "
                        "(the one it comes from) in the paragraph, or quote no number"
                    )
    return problems
