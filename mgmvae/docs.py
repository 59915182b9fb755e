"""Every number in the docs from a committed snapshot of the run that made it.

    python -m mgmvae.docs snapshot NAME    copy a study's results into docs/snapshots/NAME/ with their provenance
    python -m mgmvae.docs render           rewrite every generated region of README.md and docs/*.md
    python -m mgmvae.docs check            what tests/test_docs.py checks

``docs/snapshots/recipes.yaml`` says, per snapshot, how it is made (the run's ``command``, its
``config_files`` on top of config.yaml and ``overrides``, the ``results`` folder, the ``files`` taken
from it, which ``runs`` it holds) and its ``views``: the tables the docs show from it. ``snapshot``
writes ``docs/snapshots/NAME/``: the files, and ``snapshot.yaml`` with the command, the config, the
commit and the machine (of the checkout and machine the snapshot is taken on: take it where and
right after the study ran), and per run its dataset, model, seed, variant and ``config_hash`` (read
from its metrics.json; refused unless the recipe's config resolves the same hash).

A page shows a view between ``<!-- snapshot: NAME/VIEW -->`` and ``<!-- /snapshot -->``; ``render``
writes the table and a line naming the snapshot there, or, where no snapshot is made yet, a line
saying so with the commands that make it. ``check`` finds (1) a region whose text differs from its
rendering, (2) a snapshot run whose ``config_hash`` is not what the current code resolves for its
config, and (3) a paragraph outside the regions that quotes a number of a snapshot's tables without
naming the snapshot (``snapshot `NAME``` or a link into ``snapshots/NAME/``). Check (3) reads
numbers with a decimal point or thousands separators and at least three significant digits, outside
code; a number rounded otherwise than the table shows it is not caught.

A top-level tool beside ``mgmvae.bench``: it reads results and writes docs; no pipeline stage imports it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mgmvae import paths
from mgmvae.config import (
    DEFAULT_CONFIG,
    ROOT,
    ConfigError,
    ablation_datasets,
    ablation_seeds,
    ablation_variants,
    load_config,
    settings_hash,
    studied_datasets,
)
from mgmvae.provenance import git_commit, machine
from mgmvae.registry import run_settings

SNAPSHOTS = ROOT / "docs" / "snapshots"
RECIPES = "recipes.yaml"
RENDER = "python -m mgmvae.docs render"
REGION = re.compile(r"^<!-- snapshot: (?P<ref>[\w.-]+/[\w.-]+) -->\n(?P<body>.*?)^<!-- /snapshot -->", re.S | re.M)
# A quoted number: decimals (73.9, 1,244.5) or thousands-grouped integers (1,244).
NUMBER = re.compile(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+")
CODE = re.compile(r"`[^`\n]*`")


class SnapshotError(ValueError):
    """A snapshot that cannot be taken or rendered; the message names it and the fix."""


def default_pages(root: Path = ROOT) -> list[Path]:
    """README.md and the site's pages."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def load_recipes(snapshots: Path = SNAPSHOTS) -> dict[str, dict]:
    path = snapshots / RECIPES
    if not path.exists():
        raise SnapshotError(f"{path} does not exist: it declares how each snapshot is made and shown")
    return yaml.safe_load(path.read_text()) or {}


def recipe_of(recipes: Mapping[str, dict], name: str) -> dict:
    if name not in recipes:
        raise SnapshotError(f"no snapshot {name!r} in {RECIPES} (declared: {sorted(recipes)})")
    return recipes[name]


def remake_commands(name: str, recipe: Mapping[str, Any], snapshots: Path = SNAPSHOTS) -> str:
    """The commands that regenerate a snapshot and the regions showing it."""
    where = "" if snapshots == SNAPSHOTS else f" --snapshots {_shown(snapshots)}"
    return f"`{recipe['command']}`, then `python -m mgmvae.docs{where} snapshot {name}` and `{RENDER}`"


def _shown(path: Path) -> str:
    """A path as a command takes it: relative to the repository where it is inside it."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


# ------------------------------------------------------------------ the config and its runs
def resolve_config(config_files: Sequence[str], overrides: Mapping | None, root: Path = ROOT) -> dict:
    """config.yaml, then the config files (repository-relative), then the overrides, as Snakemake merges them."""
    return load_config(DEFAULT_CONFIG, *(root / f for f in config_files), overrides=overrides or None)


def expected_runs(config: Mapping, kind: str) -> list[dict]:
    """The runs a study holds: ``study`` (models × datasets × seeds), ``ablation`` (variants) or ``none``."""
    from mgmvae.registry import resolve, run_names

    if kind == "none":
        return []
    if kind == "study":
        models = run_names(config["models"])
        return [
            {"dataset": d, "model": m, "seed": s}
            for d in studied_datasets(config)
            for m in models
            for s in config["seeds"]
        ]
    if kind == "ablation":
        model = resolve(config["ablation"]["model"]).name
        return [
            {"dataset": d, "model": model, "seed": s, "variant": v}
            for d in ablation_datasets(config)
            for v in ablation_variants(config)
            for s in ablation_seeds(config)
        ]
    raise SnapshotError(f"runs: {kind!r} is not one of study, ablation, none")


def metrics_file(study: Path, run: Mapping) -> Path:
    """The run's metrics.json in the study folder ``study`` (the layout of ``mgmvae.paths``)."""
    where = {"results_dir": study.parent, "study": study.name}
    if "variant" in run:
        return paths.ablation_run_dir(where, run["dataset"], run["variant"], run["seed"]) / "metrics.json"
    return paths.run_dir(where, run["dataset"], run["model"], run["seed"]) / "metrics.json"


def current_hash(config: Mapping, run: Mapping) -> str:
    """The ``config_hash`` the current code gives the run (as ``mgmvae.stages.run_tags``)."""
    variant = run.get("variant")
    return settings_hash(run_settings(config, run["dataset"], run["model"], variant), variant)


def run_label(run: Mapping) -> str:
    middle = f"{run['model']}/{run['variant']}" if "variant" in run else run["model"]
    return f"{run['dataset']}/{middle}/seed{run['seed']}"


# --------------------------------------------------------------------------- snapshot
def recorded_runs(config: Mapping, recipe: Mapping, study: Path) -> list[dict]:
    """Each run of the recipe with the ``config_hash`` its metrics.json records; SnapshotError if a
    run is missing or was made by another config than the recipe's."""
    runs = []
    for run in expected_runs(config, recipe.get("runs", "none")):
        path = metrics_file(study, run)
        if not path.exists():
            raise SnapshotError(f"{path} does not exist: run `{recipe['command']}` first")
        recorded = json.loads(path.read_text())["config_hash"]
        expected = current_hash(config, run)
        if recorded != expected:
            raise SnapshotError(
                f"{path} was made with config_hash {recorded}, but the recipe's config resolves {expected}: "
                f"the results are from another config or older code; rerun `{recipe['command']}`"
            )
        runs.append({**run, "config_hash": recorded})
    return runs


def take_snapshot(name: str, snapshots: Path = SNAPSHOTS, study: Path | None = None, root: Path = ROOT) -> Path:
    """Write ``snapshots/<name>/``: the recipe's files from the study folder and ``snapshot.yaml``."""
    recipe = recipe_of(load_recipes(snapshots), name)
    study = study or root / recipe["results"]
    config_files = list(recipe.get("config_files") or [])
    overrides = dict(recipe.get("overrides") or {})
    runs = []
    if recipe.get("runs", "none") != "none":
        runs = recorded_runs(resolve_config(config_files, overrides, root), recipe, study)
    missing = [f for f in recipe["files"] if not (study / f).exists()]
    if missing:
        raise SnapshotError(f"{name}: {[str(study / f) for f in missing]} do not exist; run `{recipe['command']}`")
    meta = {
        "name": name,
        "command": recipe["command"],
        "config_files": config_files,
        "overrides": overrides,
        "results": recipe["results"],
        "commit": git_commit(root),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "files": [Path(f).name for f in recipe["files"]],
        "runs": runs,
    }
    out = snapshots / name
    with tempfile.TemporaryDirectory(dir=snapshots, prefix=f".{name}.") as tmp:
        staged = Path(tmp) / name
        staged.mkdir()
        for f in recipe["files"]:
            shutil.copyfile(study / f, staged / Path(f).name)
        (staged / "snapshot.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)  # the whole snapshot or none of it
    return out


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


def provenance(name: str, meta: Mapping[str, Any], link: str) -> str:
    m = meta["machine"]
    return (
        f"Snapshot [`{name}`]({link}): `{meta['command']}` at commit `{meta['commit'][:12]}`, "
        f"{m['cpu']}, {m['logical_cores']} logical cores, torch {m['torch']}; {meta['date']}."
    )


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
    link = Path(os.path.relpath(meta_file, page.resolve().parent)).as_posix()
    return f"{table}\n\n{provenance(name, meta, link)}\n"


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


# ----------------------------------------------------------------------------- checks
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
    """(1) Each region as its snapshot renders it."""
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


def check_hashes(snapshots: Path = SNAPSHOTS, root: Path = ROOT) -> list[str]:
    """(2) Each made snapshot's runs have the ``config_hash`` the current code resolves for its config."""
    recipes = load_recipes(snapshots)
    problems = []
    for name in recipes:
        meta_file = snapshots / name / "snapshot.yaml"
        if not meta_file.exists():
            continue
        meta = yaml.safe_load(meta_file.read_text())
        if not meta["runs"]:
            continue
        remake = remake_commands(name, recipes[name], snapshots)
        try:
            config = resolve_config(meta["config_files"], meta["overrides"], root)
        except ConfigError as error:
            problems.append(f"snapshot {name}: its config no longer loads ({error}); remake it: {remake}")
            continue
        for run in meta["runs"]:
            now = current_hash(config, run)
            if now != run["config_hash"]:
                problems.append(
                    f"snapshot {name} ({meta_file}): run {run_label(run)} was made with config_hash "
                    f"{run['config_hash']}; the current code resolves {now} for {meta['config_files']}: "
                    f"its numbers are stale; remake it: {remake}"
                )
    return problems


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
    """(3) A paragraph quoting a number that a snapshot's tables show names that snapshot."""
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


def check(pages: Sequence[Path], snapshots: Path = SNAPSHOTS, root: Path = ROOT) -> list[str]:
    return check_regions(pages, snapshots) + check_hashes(snapshots, root) + check_prose(pages, snapshots)


# -------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgmvae.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=Path, default=SNAPSHOTS, help="the snapshots folder (with recipes.yaml)")
    parser.add_argument("--pages", type=Path, action="append", help="a page (repeat; default: README.md and docs/*.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("snapshot", help="copy a study's results into the snapshots folder with their provenance")
    p.add_argument("name", help="a snapshot declared in recipes.yaml")
    p.add_argument("--from", dest="study", type=Path, help="the results folder (default: the recipe's)")
    sub.add_parser("render", help="rewrite the generated regions of the pages")
    sub.add_parser("check", help="regions, config hashes and prose against the snapshots")
    args = parser.parse_args(argv)
    pages = args.pages or default_pages()
    try:
        if args.command == "snapshot":
            print(f"wrote {take_snapshot(args.name, args.snapshots, args.study)}")
        elif args.command == "render":
            changed = render_pages(pages, args.snapshots)
            print("\n".join(f"rendered {p}" for p in changed) or "every region is up to date")
        else:
            problems = check(pages, args.snapshots)
            print("\n".join(problems) or "the docs match their snapshots")
            return 1 if problems else 0
    except (SnapshotError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
