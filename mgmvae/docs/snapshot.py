"""Snapshots: taking one (a study's files, the commit, the machine, each run's ``config_hash``) as
``docs/snapshots/recipes.yaml`` declares it, and checking that the current code still resolves its hashes."""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mgmvae import paths
from mgmvae.config import DEFAULT_CONFIG, ROOT, ConfigError, load_config, settings_hash
from mgmvae.provenance import git_commit, machine
from mgmvae.registry import run_settings

SNAPSHOTS = ROOT / "docs" / "snapshots"
RECIPES = "recipes.yaml"
RENDER = "python -m mgmvae.docs render"


class SnapshotError(ValueError):
    """A snapshot that cannot be taken or rendered; the message names it and the fix."""


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
    """The runs a study holds: ``study`` (``paths.study_runs``), ``ablation`` (``paths.ablation_runs``) or ``none``."""
    from mgmvae.registry import resolve, run_names

    if kind == "study":
        return paths.study_runs(config, run_names(config["models"]))
    if kind == "ablation":
        return paths.ablation_runs(config, resolve(config["ablation"]["model"]).name)
    if kind == "none":
        return []
    raise SnapshotError(f"runs: {kind!r} is not one of study, ablation, none")


def metrics_file(study: Path, run: Mapping) -> Path:
    """The run's first metrics file in the study folder ``study``."""
    return paths.run_files(paths.study_at(study), [run])[0]


def current_hash(config: Mapping, run: Mapping) -> str:
    """The ``config_hash`` the current code gives the run (as ``mgmvae.stages.run_tags``)."""
    variant = run.get("variant")
    return settings_hash(run_settings(config, run["dataset"], run["model"], variant), variant)


def run_label(run: Mapping) -> str:
    middle = f"{run['model']}/{run['variant']}" if "variant" in run else run["model"]
    return f"{run['dataset']}/{middle}/seed{run['seed']}"


# --------------------------------------------------------------------------- snapshot
def recorded_runs(config: Mapping, recipe: Mapping, study: Path) -> list[dict]:
    """Each run of the recipe with the ``config_hash`` its metrics file records; SnapshotError if a
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


def check_hashes(snapshots: Path = SNAPSHOTS, root: Path = ROOT) -> list[str]:
    """Each made snapshot's runs have the ``config_hash`` the current code resolves for its config."""
    recipes = load_recipes(snapshots)
    problems = []
    for name in recipes:
        meta_file = snapshots / name / "snapshot.yaml"
        meta = yaml.safe_load(meta_file.read_text()) if meta_file.exists() else {"runs": []}
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
