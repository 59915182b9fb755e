"""Where each stage reads and writes: one definition for the CLI and the Snakefile alike.

results/<study>/
  config.yaml                          the merged configuration of the study
  data/<dataset>.pt                    paired uint8 tensors + pair indices
  classifiers/<dataset>/<modality>.pt  digit classifier (+ .json with its test accuracy)
  runs/<dataset>/<model>/seed<k>/      model.pt, checkpoint.pt, history.json, metrics.json
                                       (+ metrics_<protocol>.json per further evaluation protocol)
  tables/                              table1–3, loglik and clustering as .csv, .md, .tex and .html
  figures/<kind>/                      every figure as .png and .pdf
  ablation/<dataset>/<variant>/seed<k>/  an ablation run (model.pt, checkpoint.pt, history.json, metrics.json)
  ablation/                            ablation_table.{csv,md,tex,html}, ablation_plot_<dataset>.{png,pdf}
  logs/<stage>/.../<job>.log           each Snakemake job's output, named like what it writes
  benchmarks/<stage>/.../<job>.tsv     each job's wall time and peak memory (Snakemake's benchmark)

The CLI calls these with concrete names; the Snakefile calls them with wildcards ("{dataset}",
"{model}", "{seed}", ...), which pass through unchanged and make the rules' path patterns.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def study_dir(config: Mapping) -> Path:
    return Path(config["results_dir"]) / config["study"]


def study_config(config: Mapping) -> Path:
    return study_dir(config) / "config.yaml"


def data_file(config: Mapping, dataset: str) -> Path:
    return study_dir(config) / "data" / f"{dataset}.pt"


def classifier_file(config: Mapping, dataset: str, modality: str) -> Path:
    return study_dir(config) / "classifiers" / dataset / f"{modality}.pt"


def _run(dataset: str, model: str, seed: int | str) -> Path:
    return Path(dataset, model, f"seed{seed}")


def run_dir(config: Mapping, dataset: str, model: str, seed: int | str) -> Path:
    return study_dir(config) / "runs" / _run(dataset, model, seed)


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
    return [protocol_file(run / "metrics.json", p, settings) for p in settings]


def tables_dir(config: Mapping) -> Path:
    return study_dir(config) / "tables"


def figures_dir(config: Mapping) -> Path:
    return study_dir(config) / "figures"


def ablation_dir(config: Mapping) -> Path:
    return study_dir(config) / "ablation"


def ablation_run_dir(config: Mapping, dataset: str, variant: str, seed: int | str) -> Path:
    return ablation_dir(config) / _run(dataset, variant, seed)


def log_file(config: Mapping, *parts: str) -> Path:
    """``logs/<parts[0]>/.../<parts[-1]>.log``."""
    *folders, name = parts
    return study_dir(config).joinpath("logs", *folders, f"{name}.log")


def run_log(config: Mapping, stage: str, dataset: str, model: str, seed: int | str) -> Path:
    """``logs/<stage>/<dataset>/<model>/seed<k>.log``: the log of one run's stage (``model`` is the
    variant for an ablation run, under the stage ``ablation/<stage>``)."""
    return log_file(config, stage, *_run(dataset, model, seed).parts)


def benchmark_file(log: Path) -> Path:
    """The benchmark TSV of the job whose log is ``log``: ``logs/…/<job>.log`` → ``benchmarks/…/<job>.tsv``."""
    parts = list(log.parts)
    at = len(parts) - 1 - parts[::-1].index("logs")
    return Path(*parts[:at], "benchmarks", *parts[at + 1 :]).with_suffix(".tsv")
