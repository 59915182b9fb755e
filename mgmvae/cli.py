"""``python -m mgmvae <stage>``: one subcommand per pipeline stage.

Each Snakemake rule runs exactly one of these with explicit inputs and outputs, so a stage runs
the same by hand, on a laptop, a GPU box or a SLURM node. Paths default to the study layout
(mgmvae/paths.py), so ``python -m mgmvae train --model mvae --dataset digits_street`` works alone.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mgmvae import mlflow_provisioning, stages
from mgmvae.config import DEFAULT_CONFIG, ROOT, ConfigError, load_config
from mgmvae.data.paired import DataError
from mgmvae.model_file import ModelFileError
from mgmvae.process_supervision import ServerError
from mgmvae.tracking import TrackingError


def common_arguments() -> tuple[argparse.ArgumentParser, ...]:
    """Parent parsers: the config (every command: the study), a stage's options, and a run's."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", nargs="+", metavar="YAML", help="config files, merged in order (default: config.yaml)"
    )
    config.add_argument("--preset", help="a preset name from workflow/presets (e.g. quick)")
    stage = argparse.ArgumentParser(add_help=False, parents=[config])
    stage.add_argument("--threads", type=int, help="CPU threads for torch, BLAS and OpenMP")
    stage.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    stage.add_argument("--no-progress", action="store_true", help="hide progress bars")
    dataset = argparse.ArgumentParser(add_help=False, parents=[stage])
    dataset.add_argument("--dataset", required=True)
    run = argparse.ArgumentParser(add_help=False, parents=[dataset])
    run.add_argument("--model", required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--data", type=Path)
    run.add_argument("--variant", help="an ablation variant (config ablation.variants): its overrides, its own folder")
    return config, stage, dataset, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mgmvae", description=__doc__.splitlines()[0])
    parser.set_defaults(threads=None)  # for the commands that are not stages
    sub = parser.add_subparsers(dest="command", required=True)
    config, common, dataset, run = common_arguments()

    def stage(name: str, func: Callable, parent: argparse.ArgumentParser, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[parent], help=help_)
        p.set_defaults(func=func)
        return p

    p = stage("prepare", stages.prepare_dataset, dataset, "build a paired dataset")
    p.add_argument("--out", type=Path)

    p = stage("classifier", stages.train_digit_classifier, dataset, "train the digit classifier of one modality")
    p.add_argument("--modality", required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path)

    p = stage("train", stages.train_run, run, "train one model on one dataset with one seed")
    p.add_argument("--out", type=Path, help="final model file (default: the run folder's)")

    p = stage("evaluate", stages.evaluate_run, run, "evaluate a trained run: Tables 1–3 metrics and clustering")
    p.add_argument("--model-file", type=Path)
    p.add_argument("--classifiers", type=Path, nargs="*", help="classifier files, one per modality")
    p.add_argument("--out", type=Path)
    p.add_argument("--protocol", choices=("mean", "sample", "reference"), help="default: config evaluation.protocol")

    p = stage("tables", stages.write_tables, common, "the tables from the per-run metrics")
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--outdir", type=Path)
    p.add_argument("--figures", type=Path, nargs="*", default=[], help="figures to attach to the tables run")
    p.add_argument("--benchmarks", type=Path, nargs="*", default=[], help="Snakemake benchmark files: resources table")

    p = stage("ablation", stages.write_ablation_table, common, "the ablation table and plots from its runs' metrics")
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--outdir", type=Path)

    p = stage("figures", stages.draw_figures, common, "figures: cross-generation, translation, retrieval, t-SNE, ...")
    p.add_argument("--data", type=Path, nargs="*", help="dataset files, named <dataset>.pt")
    p.add_argument("--model-files", type=Path, nargs="*", help="trained model files (one seed; default: the first)")
    p.add_argument("--metrics", type=Path, nargs="*", help="per-run metrics of every seed (for the bar charts)")
    p.add_argument("--seed", type=int, help="the seed whose models are shown (default: the first)")
    p.add_argument("--tsne-points", type=int, help="test pairs in the t-SNE (default: config figures.tsne_points)")
    help_ = "datasets: the given models' datasets' figures; bars: the bar charts only (needs --metrics); all: both"
    p.add_argument("--part", choices=("all", "datasets", "bars"), default="all", help=help_)
    p.add_argument("--outdir", type=Path)

    help_ = "check that a model (a name, pkg.module:Class or file.py:Class) keeps the model contract"
    p = stage("check-model", stages.check_model_contract, common, help_)
    p.add_argument("model", help="a built-in or entry-point name, pkg.module:Class, or path/to/file.py:Class")

    help_ = "check that a dataset (a config dataset, a source, pkg.module:Class or file.py:Class) keeps the contract"
    p = stage("check-dataset", stages.check_dataset_contract, common, help_)
    help_ = "a dataset of the config, or a source: a built-in or entry-point name, pkg.module:Class or file.py:Class"
    p.add_argument("dataset", help=help_)

    p = stage("config", stages.show_config, config, "print the resolved settings of runs and where each value is set")
    p.add_argument("--show", action="store_true", required=True, help="print them (the command's one action)")
    p.add_argument("--dataset", help="one dataset (default: the study's)")
    p.add_argument("--model", help="one model's runs (default: the study's models)")
    p.add_argument("--variant", help="an ablation variant's overrides on top")

    mlflow_provisioning.add_parser(sub, [config])  # not a stage: an authenticated MLflow server for the jobs
    return parser


def load_stage_config(args: argparse.Namespace) -> dict:
    files = list(args.config or [DEFAULT_CONFIG])
    if args.preset:
        files.append(ROOT / "workflow" / "presets" / f"{args.preset}.yaml")
    args.config_files = files  # where each value comes from (config --show)
    return load_config(*files)


OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # EFBIG: a file-size limit (ulimit -f)


def limit_threads(n: int) -> None:
    """Torch's threads and the BLAS and OpenMP pools of numpy, scipy and scikit-learn, which otherwise
    take every core: two one-thread jobs on two cores then spin on each other (the probes ~3x the CPU).
    The pools loaded now are limited at once, those loaded later read the variables."""
    import torch
    from threadpoolctl import threadpool_limits

    os.environ.update({var: str(n) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    torch.set_num_threads(n)
    threadpool_limits(n)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_stage_config(args)
        if args.threads:
            limit_threads(args.threads)
        args.func(config, args)
    except (ConfigError, DataError, ModelFileError, stages.StageError, TrackingError, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in OUT_OF_SPACE:
            raise
        # Every output is written to a temporary file and renamed (mgmvae.io), so nothing partial is left.
        print(
            f"error: out of disk space ({error.strerror}) while writing {error.filename or 'an output'}; "
            "no partial output was kept. Free space (or point results_dir/data_dir elsewhere) and rerun: "
            "finished stages and the last training checkpoint are reused.",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
