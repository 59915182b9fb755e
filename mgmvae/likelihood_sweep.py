"""How far each test log-likelihood still is from converging: a K sweep on trained runs, not a stage
(docs/evaluation.md says what it estimates, prints and writes).

``python -m mgmvae.likelihood_sweep results/quick --dataset digits_street --seed 0``
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mgmvae.data.paired import PairedData
from mgmvae.evaluation.run import run_log_likelihood
from mgmvae.io import save_text
from mgmvae.model_file import load_trained, trained_study


def model_sweep(
    model_file: Path, data: PairedData, settings: Mapping, seed: int, ks: Sequence[int], scales: Sequence[float]
) -> pd.DataFrame:
    """One row per (proposal scale, K, estimate): log p̂ (mean over pairs), mean ESS, fraction under the floor."""
    model, _ = load_trained(model_file, torch.device("cpu"))
    rows = []
    for scale in scales:
        for k in ks:
            out = run_log_likelihood(
                model, data, {**settings, "likelihood_samples": k, "likelihood_proposal_scale": scale}, seed, False
            )
            if out is None:
                raise ValueError(f"K = {k}: the sweep needs K >= 1")
            for estimate in ["joint", *data.modalities]:
                q = out["quality"][estimate]
                rows.append(
                    {"proposal_scale": scale, "samples": k, "estimate": estimate, "log_likelihood": out[estimate]}
                    | {"draws": q["draws"], "ess_mean": q["ess_mean"], "ess_under_floor": q["ess_under_floor"]}
                    | {"pairs": out["estimator"]["pairs"]}
                )
    return pd.DataFrame(rows)


def study_sweep(
    study: Path,
    dataset: str,
    seed: int,
    ks: Sequence[int],
    scales: Sequence[float] | None,
    models: Sequence[str] | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sweep of every trained model (or of ``models``), and the study's ``evaluation`` settings it used."""
    settings, data, runs = trained_study(study, dataset, seed, models)
    scales = scales or [float(settings["likelihood_proposal_scale"])]
    parts = [model_sweep(f, data, settings, seed, ks, scales).assign(model=m) for m, f in runs.items()]
    return pd.concat(parts, ignore_index=True), settings


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, scale, estimate): log p̂ at each K, the rise over the last tenfold, ESS at the largest K."""
    keys = ["model", "proposal_scale", "estimate"]
    wide = frame.pivot_table(index=keys, columns="samples", values="log_likelihood", sort=False)
    ks = sorted(wide.columns)
    wide.columns = [f"K={k}" for k in ks]
    last = frame[frame["samples"] == ks[-1]].set_index(keys)
    if len(ks) > 1:
        wide[f"rise {ks[-2]}→{ks[-1]}"] = wide[f"K={ks[-1]}"] - wide[f"K={ks[-2]}"]
    wide[f"ESS at K={ks[-1]}"] = last["ess_mean"]
    wide["< floor"] = last["ess_under_floor"]
    return wide.reset_index()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study's results folder, e.g. results/quick")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10, 100, 1000], help="importance draws per pair")
    parser.add_argument("--proposal-scale", type=float, nargs="+", help="default: the study's")
    parser.add_argument("--models", nargs="+", help="run names to sweep (default: every trained run)")
    parser.add_argument("--out", type=Path, help="write <out>.csv, <out>.md and the figure <out>.png/.pdf")
    args = parser.parse_args(argv)
    if min(args.k) < 1:
        parser.error("every K must be at least 1")
    frame, settings = study_sweep(args.study, args.dataset, args.seed, args.k, args.proposal_scale, args.models)
    table = summary(frame).to_markdown(index=False, floatfmt=".2f")
    print(table)
    if args.out:
        from mgmvae.figures.likelihood_against_k import save_sweep_figure

        save_text(frame.to_csv(index=False), args.out.with_suffix(".csv"))
        floor = float(settings["likelihood_ess_floor"])
        pairs = int(frame["pairs"].iloc[0])
        where = f"{args.study.name}, {args.dataset}, seed {args.seed}, {pairs} test pairs"
        heading = f"Test log-likelihood against K ({where}); ESS floor {floor:g}"
        save_text(f"{heading}\n\n{table}\n", args.out.with_suffix(".md"))
        if frame["samples"].nunique() > 1:  # a figure against K needs two values of K
            save_sweep_figure(frame, args.out, f"Test log-likelihood against K: {where}", floor)


if __name__ == "__main__":
    main()
