"""How much Table 2 moves with the probe's regularisation: a measurement on trained runs, not a stage.

``python -m mgmvae.evaluation.probe_sensitivity results/quick --dataset digits_cdcb --seed 0``

For every trained model of a study (``<study>/runs/<dataset>/<model>/seed<k>/model.pt``) it embeds
training pairs jointly and each modality's test images alone, as the evaluate stage does (protocol
``mean``), fits the standardised logistic probe once per C of the grid on the training latents,
and prints each Table 2 column's test accuracy per C, its range over the grid, and the C that
``evaluation.probe: logistic_cv`` picks by cross-validation on the training latents. Its ``--out`` CSV is
the snapshot ``probe-sensitivity`` that docs/results.md shows.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.probe import fit_logistic_cv
from mgmvae.evaluation.run import embed_pairs, embed_unimodal
from mgmvae.model_file import load_trained

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def column_accuracies(
    train: tuple[np.ndarray, np.ndarray], tests: dict[str, tuple[np.ndarray, np.ndarray]], c: float, seed: int
) -> dict[str, float]:
    """Test accuracy of each column for the probe fitted at inverse regularisation ``c``."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, random_state=seed))
    probe.fit(*train)
    return {name: float((probe.predict(z) == y).mean()) for name, (z, y) in tests.items()}


def model_sensitivity(model_file: Path, data: PairedData, seed: int, grid: Sequence[float], folds: int) -> pd.DataFrame:
    """One row per (column, C): accuracy in %; ``cv_pick`` marks the C cross-validation chooses."""
    model, _ = load_trained(model_file, torch.device("cpu"))
    numpy = lambda t: t.numpy().astype(np.float64)  # noqa: E731
    with torch.no_grad():
        train_idx = torch.arange(data.num_pairs("train"))
        z = numpy(embed_pairs(model, data, "train", train_idx, 1024, False))
        y = data.pair_labels("train", train_idx).numpy()
        tests = {
            m: (numpy(embed_unimodal(model, data, m, "test", 1024, False)), data.labels[m]["test"].numpy())
            for m in data.modalities
        }
        joint = numpy(embed_pairs(model, data, "test", torch.arange(data.num_pairs("test")), 1024, False))
    tests["joint"] = (joint, data.pair_labels("test").numpy())
    picked = fit_logistic_cv(z, y, seed, list(grid), folds).selection["C"]
    rows = [
        {"column": name, "C": c, "accuracy": 100 * acc, "cv_pick": c == picked}
        for c in grid
        for name, acc in column_accuracies((z, y), tests, c, seed).items()
    ]
    return pd.DataFrame(rows)


def study_sensitivity(study: Path, dataset: str, seed: int, grid: Sequence[float], folds: int) -> pd.DataFrame:
    data = PairedData.load(study / "data" / f"{dataset}.pt")
    files = sorted((study / "runs" / dataset).glob(f"*/seed{seed}/model.pt"))
    if not files:
        raise SystemExit(f"no trained runs under {study / 'runs' / dataset}/*/seed{seed}/model.pt: train them first")
    parts = [model_sensitivity(f, data, seed, grid, folds).assign(model=f.parent.parent.name) for f in files]
    return pd.concat(parts, ignore_index=True)


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
    parser.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="values of C")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds for the CV pick")
    parser.add_argument("--out", type=Path, help="also write every (model, column, C) accuracy here as CSV")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    frame = study_sensitivity(args.study, args.dataset, args.seed, args.grid, args.folds)
    if args.out:
        frame.to_csv(args.out, index=False)
    print(summary(frame).to_markdown(index=False))


if __name__ == "__main__":
    main()
