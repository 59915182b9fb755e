"""The numbers in README.md and docs/*.md against their snapshots (mgmvae/docs/).

The live checks read the repository's pages and docs/snapshots/; the rest use the fixture
tests/fixtures/snapshots/ci/, a snapshot of a real run of the CI preset
(`snakemake --cores 2 --configfile workflow/presets/ci.yaml`, then
`python -m mgmvae.docs --snapshots tests/fixtures/snapshots snapshot ci`): its numbers mean nothing.
"""

import argparse
import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mgmvae.config import ROOT
from mgmvae.docs import pages, snapshot
from mgmvae.docs.__main__ import main
from mgmvae.registry import run_settings
from mgmvae.stages import run_tags

FIXTURE = ROOT / "tests" / "fixtures" / "snapshots"


# ----------------------------------------------------------------------- the live pages
def test_every_region_of_the_docs_is_its_snapshot_rendered():
    assert pages.check_regions(pages.default_pages()) == []


def test_every_snapshot_was_made_by_the_config_the_current_code_resolves():
    assert snapshot.check_hashes() == []


def test_prose_that_quotes_a_snapshot_number_names_the_snapshot():
    assert pages.check_prose(pages.default_pages()) == []


def test_every_view_the_pages_show_is_declared_and_every_page_is_in_the_site():
    recipes = snapshot.load_recipes()
    refs = [m["ref"] for page in pages.default_pages() for m in pages.REGION.finditer(page.read_text())]
    assert refs, "no generated regions in the docs"
    for ref in refs:
        name, view = ref.split("/")
        assert view in recipes[name]["views"], ref
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    in_nav = {page for entry in nav for page in entry.values()}
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert on_disk <= in_nav, f"pages missing from mkdocs.yml's nav: {sorted(on_disk - in_nav)}"


def test_the_readme_links_to_files_that_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert missing == []


# ------------------------------------------------------------------- rendering a region
def page_with(tmp_path: Path, *refs: str, prose: str = "") -> Path:
    page = tmp_path / "page.md"
    regions = "\n\n".join(f"<!-- snapshot: {ref} -->\n<!-- /snapshot -->" for ref in refs)
    page.write_text(f"# A page\n\n{prose}\n\n{regions}\n")
    return page


def render(page: Path, snapshots: Path = FIXTURE) -> str:
    pages.render_pages([page], snapshots)
    return page.read_text()


def test_a_region_shows_the_snapshot_csv_numbers_and_names_the_snapshot(tmp_path):
    text = render(page_with(tmp_path, "ci/table1"))
    with open(FIXTURE / "ci" / "table1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    for row in rows:  # one seed: no interval, the mean alone, one decimal
        line = next(line for line in text.splitlines() if line.startswith(f"| {row['name']} "))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{float(row['hand->street mean']):.1f}"
        assert cells[3] == f"{float(row['joint mean']):.1f}"
    meta = yaml.safe_load((FIXTURE / "ci" / "snapshot.yaml").read_text())
    assert "Snapshot [`ci`](" in text and meta["commit"][:12] in text and meta["command"] in text
    assert pages.check_regions([tmp_path / "page.md"], FIXTURE) == []


def test_a_region_that_differs_from_its_snapshot_fails_naming_the_page_the_number_and_the_command(tmp_path, capsys):
    page = page_with(tmp_path, "ci/summary")
    text = render(page)
    line = next(line for line in text.splitlines() if line.startswith("| MGMVAE "))
    shown = line.strip("|").split("|")[1].strip()
    page.write_text(text.replace(line, line.replace(shown, "99.9", 1)))
    problems = pages.check_regions([page], FIXTURE)
    assert len(problems) == 1
    assert str(page) in problems[0] and "ci/summary" in problems[0]
    assert f"the page has 99.9 where the snapshot gives {shown}" in problems[0]
    assert "python -m mgmvae.docs render" in problems[0]
    assert main(["--snapshots", str(FIXTURE), "--pages", str(page), "check"]) == 1
    assert "99.9" in capsys.readouterr().out
    pages.render_pages([page], FIXTURE)
    assert pages.check_regions([page], FIXTURE) == []


def test_a_region_without_its_snapshot_says_how_to_make_it(tmp_path):
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    shutil.copy(FIXTURE / "recipes.yaml", snapshots / "recipes.yaml")  # the recipe, no snapshot taken
    text = render(page_with(tmp_path, "ci/table1"), snapshots)
    assert "Not yet regenerated" in text
    assert "`snakemake --cores 2 --configfile workflow/presets/ci.yaml`" in text
    assert f"`python -m mgmvae.docs --snapshots {snapshots} snapshot ci`" in text
    assert not re.search(r"\d\.\d", text.split("<!-- snapshot: ci/table1 -->")[1])  # no number shown


def test_an_unknown_view_or_an_unclosed_marker_is_refused(tmp_path):
    page = page_with(tmp_path, "ci/no_such_view")
    assert "no view 'no_such_view'" in pages.check_regions([page], FIXTURE)[0]
    page.write_text("<!-- snapshot: ci/table1 -->\nno end marker\n")
    assert "without its `<!-- /snapshot -->`" in pages.check_regions([page], FIXTURE)[0]


# ------------------------------------------------------------------------------- cells
def cells_of(table: str) -> list[list[str]]:
    """The body cells of a Markdown table."""
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_cells_show_mean_and_interval_then_std_and_scale_pivots_and_json(tmp_path):
    (tmp_path / "wide.csv").write_text("name,acc mean,acc std,acc ci95\nA,73.94,1.0,2.46\nB,50.0,4.0,\nC,12.34,,\n")
    view = {"file": "wide.csv", "columns": {"model": "name", "acc": "acc"}}
    assert cells_of(pages.render_table(tmp_path, view, "test")) == [
        ["A", "73.9 ± 2.5"],
        ["B", "50.0 ± 4.0"],  # no interval (one seed): the std
        ["C", "12.3"],
    ]
    (tmp_path / "long.csv").write_text(
        "dataset,variant,metric,key,mean\n"
        "d,full,probe,joint,0.905\nd,full,retrieval_top1,a->b,0.5\n"
        "d,lit,probe,joint,0.25\nd,lit,retrieval_top1,a->b,0.125\ne,full,probe,joint,0.0\n"
    )
    pivot = {
        "file": "long.csv",
        "where": {"dataset": "d"},
        "pivot": {"index": "variant", "columns": ["metric", "key"], "values": "mean"},
        "scale": 100,
        "columns": {"variant": "variant", "probe": "probe joint", "retrieval": "retrieval_top1 a->b | 2"},
    }
    assert cells_of(pages.render_table(tmp_path, pivot, "test")) == [
        ["full", "90.5", "50.00"],
        ["lit", "25.0", "12.50"],
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"models": {"m": {"model": "m", "rate": 1244.4}}}))
    json_view = {"file": "summary.json", "records": "models", "decimals": 0, "columns": {"model": "model", "r": "rate"}}
    assert "1,244" in pages.render_table(tmp_path, json_view, "test")
    with pytest.raises(snapshot.SnapshotError, match="no column 'nope'"):
        pages.render_table(tmp_path, {"file": "wide.csv", "columns": {"x": "nope"}}, "test")


# ------------------------------------------------------------------------------- hashes
def copied_fixture(tmp_path: Path) -> Path:
    snapshots = tmp_path / "snapshots"
    shutil.copytree(FIXTURE, snapshots)
    return snapshots


def edit_meta(snapshots: Path, change) -> None:
    path = snapshots / "ci" / "snapshot.yaml"
    meta = yaml.safe_load(path.read_text())
    change(meta)
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))


def pipeline_hash(config, run) -> str:
    """The hash the pipeline tags a run with (mgmvae.stages.run_tags)."""
    args = argparse.Namespace(dataset=run["dataset"], model=run["model"], seed=run["seed"], variant=None)
    return run_tags(args, run_settings(config, run["dataset"], run["model"]))["config_hash"]


def test_a_snapshot_with_the_pipelines_hashes_passes(tmp_path):
    snapshots = copied_fixture(tmp_path)
    config = snapshot.resolve_config(["workflow/presets/ci.yaml"], None)

    def current(meta):
        for run in meta["runs"]:
            run["config_hash"] = pipeline_hash(config, run)

    edit_meta(snapshots, current)
    assert snapshot.check_hashes(snapshots) == []


def test_a_run_whose_hash_the_code_no_longer_resolves_fails_naming_the_snapshot_and_the_commands(tmp_path):
    snapshots = copied_fixture(tmp_path)
    config = snapshot.resolve_config(["workflow/presets/ci.yaml"], None)

    def stale(meta):
        for run in meta["runs"]:
            run["config_hash"] = pipeline_hash(config, run)
        meta["runs"][3]["config_hash"] = "0123456789abcdef"

    edit_meta(snapshots, stale)
    problems = snapshot.check_hashes(snapshots)
    assert len(problems) == 1
    run = yaml.safe_load((snapshots / "ci" / "snapshot.yaml").read_text())["runs"][3]
    assert "snapshot ci" in problems[0] and snapshot.run_label(run) in problems[0]
    assert "0123456789abcdef" in problems[0] and pipeline_hash(config, run) in problems[0]
    assert "`snakemake --cores 2 --configfile workflow/presets/ci.yaml`" in problems[0]
    assert f"`python -m mgmvae.docs --snapshots {snapshots} snapshot ci`" in problems[0]


def test_a_config_that_moved_makes_every_run_stale(tmp_path):
    snapshots = copied_fixture(tmp_path)
    config = snapshot.resolve_config(["workflow/presets/ci.yaml"], None)

    def moved(meta):
        for run in meta["runs"]:
            run["config_hash"] = pipeline_hash(config, run)
        meta["overrides"] = {"settings": {"shared_dim": 7}}  # as if config.yaml's default had changed

    edit_meta(snapshots, moved)
    assert len(snapshot.check_hashes(snapshots)) == 16


# ------------------------------------------------------------------------------- prose
def test_prose_quoting_a_snapshot_number_must_name_the_snapshot(tmp_path):
    shown = pages.snapshot_numbers(FIXTURE, snapshot.load_recipes(FIXTURE))["ci"]
    number = next(n for n in sorted(shown) if pages.significant(n) >= 3)
    page = page_with(tmp_path, "ci/table1", prose=f"MVAE reaches {number} here.")
    render(page)
    problems = pages.check_prose([page], FIXTURE)
    assert len(problems) == 1 and number in problems[0] and "snapshot ci" in problems[0]
    assert f"{page}:3:" in problems[0]
    for named in (f"MVAE reaches {number} here (snapshot `ci`).", f"MVAE reaches `{number}` here."):
        page = page_with(tmp_path, "ci/table1", prose=named)
        render(page)
        assert pages.check_prose([page], FIXTURE) == [], named


def test_a_number_two_snapshots_show_is_covered_by_naming_either(tmp_path):
    snapshots = tmp_path / "snapshots"
    shutil.copytree(FIXTURE, snapshots)
    shutil.copytree(snapshots / "ci", snapshots / "ci_again")
    recipes = yaml.safe_load((snapshots / "recipes.yaml").read_text())
    recipes["ci_again"] = recipes["ci"]
    (snapshots / "recipes.yaml").write_text(yaml.safe_dump(recipes))
    shown = pages.snapshot_numbers(snapshots, snapshot.load_recipes(snapshots))["ci"]
    number = next(n for n in sorted(shown) if pages.significant(n) >= 3)
    page = page_with(tmp_path, prose=f"MVAE reaches {number} here.")
    (problem,) = pages.check_prose([page], snapshots)
    assert "snapshot ci or ci_again" in problem
    for name in ("ci", "ci_again"):
        page = page_with(tmp_path, prose=f"MVAE reaches {number} here (snapshot `{name}`).")
        assert pages.check_prose([page], snapshots) == [], name


def test_quoted_numbers_are_those_with_three_significant_digits_outside_code():
    assert pages.quoted_numbers("lr 0.01, 4 epochs, 73.9 and 1,244 pairs, 0.69 scale, `12.34` in code") == [
        "73.9",
        "1,244",
    ]


# ----------------------------------------------------------------------------- snapshot
def fake_study(tmp_path: Path, wrong: int | None = None) -> Path:
    """A CI-preset study folder: the fixture's tables and a metrics.json per run."""
    study = tmp_path / "study"
    (study / "tables").mkdir(parents=True)
    for name in ("table1.csv", "table3.csv", "clustering.csv"):
        shutil.copy(FIXTURE / "ci" / name, study / "tables" / name)
    config = snapshot.resolve_config(["workflow/presets/ci.yaml"], None)
    for i, run in enumerate(snapshot.expected_runs(config, "study")):
        path = snapshot.metrics_file(study, run)
        path.parent.mkdir(parents=True)
        value = "ffffffffffffffff" if i == wrong else pipeline_hash(config, run)
        path.write_text(json.dumps({**run, "config_hash": value, "metrics": {}}))
    return study


def test_snapshot_copies_the_files_and_records_each_runs_hash(tmp_path):
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    shutil.copy(FIXTURE / "recipes.yaml", snapshots / "recipes.yaml")
    out = snapshot.take_snapshot("ci", snapshots, fake_study(tmp_path))
    meta = yaml.safe_load((out / "snapshot.yaml").read_text())
    assert len(meta["runs"]) == 16 and {r["model"] for r in meta["runs"]} >= {"mvae", "mgmvae"}
    assert meta["command"] == "snakemake --cores 2 --configfile workflow/presets/ci.yaml"
    assert meta["machine"]["logical_cores"] and meta["commit"]
    assert (out / "table1.csv").read_bytes() == (FIXTURE / "ci" / "table1.csv").read_bytes()
    assert snapshot.check_hashes(snapshots) == []


def test_snapshot_refuses_a_run_made_by_another_config(tmp_path):
    snapshots = tmp_path / "snapshots"
    snapshots.mkdir()
    shutil.copy(FIXTURE / "recipes.yaml", snapshots / "recipes.yaml")
    with pytest.raises(snapshot.SnapshotError, match="made with config_hash ffffffffffffffff"):
        snapshot.take_snapshot("ci", snapshots, fake_study(tmp_path, wrong=5))
    assert not (snapshots / "ci").exists()  # nothing half-written


def test_ablation_runs_are_hashed_with_their_variant_as_the_pipeline_tags_them():
    config = snapshot.resolve_config(["workflow/presets/ablation_ci.yaml"], None)
    runs = snapshot.expected_runs(config, "ablation")
    assert runs and all("variant" in run for run in runs)
    assert len({run["variant"] for run in runs}) == len(config["ablation"]["select"] or config["ablation"]["variants"])
    for run in runs:
        args = argparse.Namespace(**run)
        settings = run_settings(config, run["dataset"], run["model"], run["variant"])
        assert snapshot.current_hash(config, run) == run_tags(args, settings)["config_hash"]
    assert snapshot.metrics_file(Path("s"), runs[0]) == Path(
        f"s/ablation/{runs[0]['dataset']}/{runs[0]['variant']}/seed{runs[0]['seed']}/metrics.json"
    )
