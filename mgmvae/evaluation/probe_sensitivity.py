"""How much Table 2 moves with the probe's regularisation: a measurement on trained runs, not a stage
(docs/evaluation.md says what it fits and prints; its ``--out`` CSV is the snapshot ``probe-sensitivity``).

``python -m mgmvae.evaluation.probe_sensitivity results/quick --dataset digits_cdcb --seed 0``
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.probe import fit_like, fit_linear_probe, probe_accuracy
from mgmvae.evaluation.run import embed_pairs, embed_unimodal
from mgmvae.model_file import load_trained, trained_study


def column_accuracies(
    train: tuple[Tensor, Tensor], tests: dict[str, tuple[Tensor, Tensor]], c: float, seed: int
) -> dict[str, float]:
    """Test accuracy of each column for the probe fitted at inverse regularisation ``c``."""
    return probe_accuracy(fit_like({"method": "logistic", "C": c}, *train, seed, {}), tests)


def model_sensitivity(model_file: Path, data: PairedData, seed: int, settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (column, C): accuracy in %; ``cv_pick`` marks the C cross-validation chooses."""
    model, _ = load_trained(model_file, torch.device("cpu"))
    size, train = int(settings["batch_size"]), torch.arange(data.num_pairs("train"))
    with torch.no_grad():
        z, y = embed_pairs(model, data, "train", train, size, False), data.pair_labels("train", train)
        tests = {
            m: (embed_unimodal(model, data, m, "test", size, False), data.labels[m]["test"]) for m in data.modalities
        }
        joint = embed_pairs(model, data, "test", torch.arange(data.num_pairs("test")), size, False)
    tests["joint"] = (joint, data.pair_labels("test"))
    picked = fit_linear_probe(z, y, seed, {**settings, "probe": "logistic_cv"}).selection["C"]
    rows = [
        {"column": name, "C": c, "accuracy": 100 * acc, "cv_pick": c == picked}
        for c in settings["probe_c_grid"]
        for name, acc in column_accuracies((z, y), tests, c, seed).items()
    ]
    return pd.DataFrame(rows)


def study_sensitivity(study: Path, dataset: str, seed: int, grid: Sequence[float] | None, folds: int | None):
    settings, data, runs = trained_study(study, dataset, seed)
    settings |= {"probe_c_grid": grid or settings["probe_c_grid"], "probe_folds": folds or settings["probe_folds"]}
    return pd.concat(
        [model_sensitivity(f, data, seed, settings).assign(model=m) for m, f in runs.items()], ignore_index=True
    )


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model and column: accuracy at the smallest and largest C, its range, and at the CV pick."""
    out = frame.groupby(["model", "column"], sort=False).agg(
        low=("accuracy", "min"), high=("accuracy", "max"), range=("accuracy", lambda a: a.max() - a.min())
    )
    out["cv_pick"] = frame[frame["cv_pick"]].set_index(["model", "column"])["accuracy"]
    out["C_picked"] = frame[frame["cv_pick"]].set_index(["model", "column"])["C"]
    return out.round(1).reset_index()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study's results folder, e.g. results/quick")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=float, nargs="+", help="values of C (default: the study's probe_c_grid)")
    parser.add_argument("--folds", type=int, help="cross-validation folds (default: the study's probe_folds)")
    parser.add_argument("--out", type=Path, help="also write every (model, column, C) accuracy here as CSV")
    args = parser.parse_args(argv)
    frame = study_sensitivity(args.study, args.dataset, args.seed, args.grid, args.folds)
    if args.out:
        frame.to_csv(args.out, index=False)
    print(summary(frame).to_markdown(index=False))


if __name__ == "__main__":
    main()
