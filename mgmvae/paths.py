"""Where each stage reads and writes, every file name and the list of a study's runs: one definition
for the CLI, the Snakefile, the docs tools and the measurements on trained runs.

results/<study>/
  config.yaml                          the merged configuration of the study
  data/<dataset>.pt                    paired uint8 tensors + pair indices
  classifiers/<dataset>/<modality>.pt  digit classifier (+ .json with its test accuracy)
  runs/<dataset>/<model>/seed<k>/      model.pt, checkpoint.pt, history.json, metrics.json
                                       (+ metrics_<protocol>.json per further evaluation protocol)
  tables/                              table1–3, loglik and clustering as .csv, .md, .tex and .html
  figures/<kind>/                      every figure as .png and .pdf
  ablation/<dataset>/<variant>/seed<k>/  an ablation run (the files of a run)
  ablation/                            ablation_table.{csv,md,tex,html}, ablation_plot_<dataset>.{png,pdf}
  logs/<stage>/.../<job>.log           each Snakemake job's output, named like what it writes
  benchmarks/<stage>/.../<job>.tsv     each job's wall time and peak memory (Snakemake's benchmark)

The CLI calls these with concrete names; the Snakefile calls them with wildcards ("{dataset}",
"{model}", "{seed}", ...), which pass through unchanged and make the rules' path patterns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import product
from pathlib import Path

from mgmvae.config import ablation_datasets, ablation_seeds, ablation_variants, studied_datasets


def study_dir(config: Mapping) -> Path:
    return Path(config["results_dir"]) / config["study"]


def study_at(folder: Path) -> dict:
    """The layout keys of the study folder ``folder``: what these functions take as ``config``."""
    return {"results_dir": folder.parent, "study": folder.name}


def study_config(config: Mapping) -> Path:
    return study_dir(config) / "config.yaml"


def data_file(config: Mapping, dataset: str) -> Path:
    return study_dir(config) / "data" / f"{dataset}.pt"


def classifier_file(config: Mapping, dataset: str, modality: str) -> Path:
    return study_dir(config) / "classifiers" / dataset / f"{modality}.pt"


def classifier_record(weights: Path) -> Path:
    """The JSON beside a classifier's weights: its accuracy (and the released weights' MD5)."""
    return Path(weights).with_suffix(".json")


# ------------------------------------------------------------------------------ runs
def run_dir(config: Mapping, dataset: str, model: str, seed: int | str, variant: str | None = None) -> Path:
    """runs/<dataset>/<model>/seed<k>, or for an ablation ``variant`` ablation/<dataset>/<variant>/seed<k>."""
    if variant is None:
        return study_dir(config) / "runs" / dataset / model / f"seed{seed}"
    return ablation_dir(config) / dataset / variant / f"seed{seed}"


def model_file(run: Path) -> Path:
    return Path(run) / "model.pt"


def checkpoint_file(run: Path) -> Path:
    return Path(run) / "checkpoint.pt"


def history_file(run: Path) -> Path:
    return Path(run) / "history.json"


def metrics_file(run: Path) -> Path:
    """The run's metrics under the study's first evaluation protocol (``metrics_files``: every protocol's)."""
    return Path(run) / "metrics.json"


def protocols(config: Mapping) -> list[str]:
    """The study's evaluation protocols: ``evaluation.protocol``, one or a list."""
    setting = config["evaluation"]["protocol"]
    return [setting] if isinstance(setting, str) else list(setting)


def protocol_file(first: Path, protocol: str, settings: list[str]) -> Path:
    """The metrics file of ``protocol`` among ``settings``: ``first`` for the first protocol (the
    path of a one-protocol study), ``<first's stem>_<protocol>.json`` beside it for the others."""
    return first if protocol == settings[0] else first.with_name(f"{first.stem}_{protocol}{first.suffix}")


def metrics_files(config: Mapping, run: Path) -> list[Path]:
    """A run folder's metrics files, one per protocol of the study, the first protocol's first."""
    settings = protocols(config)
    return [protocol_file(metrics_file(run), p, settings) for p in settings]


def study_runs(config: Mapping, models: Sequence[str], seeds: Iterable[int] | None = None) -> list[dict]:
    """Every run of the study, datasets × ``models`` (run names) × seeds (default: the study's), as
    ``run_dir``'s keyword arguments."""
    runs = product(studied_datasets(config), models, config["seeds"] if seeds is None else seeds)
    return [{"dataset": d, "model": m, "seed": s} for d, m, s in runs]


def ablation_runs(config: Mapping, model: str) -> list[dict]:
    """Every run of the ablation study of ``model`` (its run name), datasets × variants (in declaration
    order: the table lists them so) × seeds, as ``run_dir``'s keyword arguments."""
    runs = product(ablation_datasets(config), ablation_variants(config), ablation_seeds(config))
    return [{"dataset": d, "model": model, "seed": s, "variant": v} for d, v, s in runs]


def run_files(config: Mapping, runs: Iterable[Mapping], file: Callable[[Path], Path] = metrics_file) -> list[Path]:
    """``file`` (a function above: ``metrics_file``, ``model_file``, ...) of each run's folder."""
    return [file(run_dir(config, **run)) for run in runs]


# ------------------------------------------------------------------- study outputs
def tables_dir(config: Mapping) -> Path:
    return study_dir(config) / "tables"


def figures_dir(config: Mapping) -> Path:
    return study_dir(config) / "figures"


def ablation_dir(config: Mapping) -> Path:
    return study_dir(config) / "ablation"


def log_file(config: Mapping, *parts: str) -> Path:
    """``logs/<parts[0]>/.../<parts[-1]>.log``."""
    *folders, name = parts
    return study_dir(config).joinpath("logs", *folders, f"{name}.log")


def run_log(config: Mapping, stage: str, dataset: str, model: str, seed: int | str) -> Path:
    """``logs/<stage>/<dataset>/<model>/seed<k>.log``: the log of one run's stage (``model`` is the
    variant for an ablation run, under the stage ``ablation/<stage>``)."""
    return log_file(config, stage, dataset, model, f"seed{seed}")


def benchmark_file(log: Path) -> Path:
    """The benchmark TSV of the job whose log is ``log``: ``logs/…/<job>.log`` → ``benchmarks/…/<job>.tsv``."""
    parts = list(log.parts)
    at = len(parts) - 1 - parts[::-1].index("logs")
    return Path(*parts[:at], "benchmarks", *parts[at + 1 :]).with_suffix(".tsv")
