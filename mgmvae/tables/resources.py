"""The resources table: what each stage's jobs needed, read from Snakemake's ``benchmark:`` files
(one TSV per job: wall seconds, peak resident memory of the job's processes, CPU seconds), for
sizing a cluster's requests (workflow/profiles/slurm) from measurement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mgmvae.tables.render import TableDoc, write_table
from mgmvae.tables.spec import EXTENSIONS

RESOURCES = "resources"


def stage_of(path: Path) -> str:
    """The stage of a benchmark file: the folders under ``benchmarks/`` before the job's own
    (``train``, ``evaluate``, ``ablation/train``, ...; paths.benchmark_file)."""
    parts = path.with_suffix("").parts[path.parts.index("benchmarks") + 1 :]
    return "/".join(parts[:2] if parts[0] == "ablation" and len(parts) > 2 else parts[:1])


def resources_table(files: Sequence[Path], study: str | None, outdir: Path) -> list[Path]:
    """``resources.{csv,md,tex,html}``: per stage, its jobs, their median and largest wall time and
    their largest peak memory and CPU time."""
    runs = pd.concat([pd.read_csv(f, sep="\t").assign(stage=stage_of(Path(f))) for f in files])
    g = runs.groupby("stage", sort=False)
    numbers = pd.DataFrame(
        {
            "jobs": g.size(),
            "wall s median": g["s"].median(),
            "wall s max": g["s"].max(),
            "peak RSS MiB max": g["max_rss"].max(),
            "CPU s max": g["cpu_time"].max(),
        }
    ).reset_index()
    cells = numbers.assign(**{c: numbers[c].map("{:,.0f}".format) for c in numbers.columns[1:]})
    cells.columns = pd.MultiIndex.from_tuples([("", c) for c in cells.columns])
    caption = f"Resources per stage, study `{study}`: Snakemake's benchmark of every job"
    notes = [
        "Wall time and CPU time in seconds; peak RSS: the largest resident memory of a job's processes "
        "(Snakemake's max_rss, MiB). Measured on the machine that ran the study: size a cluster's requests "
        "(workflow/profiles/slurm) from the largest, with headroom."
    ]
    marks = cells.map(lambda _: "")
    write_table(outdir, RESOURCES, TableDoc(caption, f"{study}-resources", numbers, cells, marks, 1, notes))
    return [outdir / f"{RESOURCES}.{ext}" for ext in EXTENSIONS]
