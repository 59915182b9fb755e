"""Where each stage reads and writes: one definition for the CLI and the Snakefile alike.

results/<study>/
  config.yaml                          the merged configuration of the study
  data/<dataset>.pt                    paired uint8 tensors + pair indices
  classifiers/<dataset>/<modality>.pt  digit classifier (+ .json with its test accuracy)
  runs/<dataset>/<model>/seed<k>/      model.pt, checkpoint.pt, history.json, metrics.json
  tables/                              table1–3 and clustering as .csv and .md
  ablation/<dataset>/<variant>/seed<k>/  an ablation run (model.pt, checkpoint.pt, history.json, metrics.json)
  ablation/                            ablation_table.{csv,md}, ablation_plot_<dataset>.{png,pdf}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def study_dir(config: Mapping) -> Path:
    return Path(config["results_dir"]) / config["study"]


def data_file(config: Mapping, dataset: str) -> Path:
    return study_dir(config) / "data" / f"{dataset}.pt"


def classifier_file(config: Mapping, dataset: str, modality: str) -> Path:
    return study_dir(config) / "classifiers" / dataset / f"{modality}.pt"


def run_dir(config: Mapping, dataset: str, model: str, seed: int) -> Path:
    return study_dir(config) / "runs" / dataset / model / f"seed{seed}"


def tables_dir(config: Mapping) -> Path:
    return study_dir(config) / "tables"


def ablation_dir(config: Mapping) -> Path:
    return study_dir(config) / "ablation"


def ablation_run_dir(config: Mapping, dataset: str, variant: str, seed: int) -> Path:
    return ablation_dir(config) / dataset / variant / f"seed{seed}"


# Modality names per dataset source (fixed by the builders in mgmvae/data).
MODALITIES = {
    "mnist_svhn": ("mnist", "svhn"),
    "mnist_cdcb": ("cd", "cb"),
    "digits_street": ("hand", "street"),
    "digits_cdcb": ("cd", "cb"),
}


def modalities(config: Mapping, dataset: str) -> tuple[str, str]:
    return MODALITIES[config["datasets"][dataset]["source"]]
