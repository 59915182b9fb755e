"""``python -m mgmvae <stage>``: one subcommand per pipeline stage.

Each Snakemake rule runs exactly one of these with explicit inputs and outputs, so a stage runs
the same by hand, on a laptop, a GPU box or a SLURM node. Paths default to the study layout
(mgmvae/paths.py), so ``python -m mgmvae train --model mvae --dataset digits_street`` works alone.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

from mgmvae import stages, tracking_server
from mgmvae.config import DEFAULT_CONFIG, ROOT, ConfigError, load_config
from mgmvae.data.paired import DataError
from mgmvae.model_file import ModelFileError
from mgmvae.tracking import TrackingError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", nargs="+", default=None, metavar="YAML", help="config files, merged in order (default: config.yaml)"
    )
    parser.add_argument("--preset", default=None, help="a preset name from workflow/presets (e.g. quick)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mgmvae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("prepare", help="build a paired dataset")
    p.set_defaults(func=stages.prepare_dataset)
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", type=Path)

    p = sub.add_parser("classifier", help="train the digit classifier of one modality")
    p.set_defaults(func=stages.train_digit_classifier)
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--modality", required=True)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path)

    p = sub.add_parser("train", help="train one model on one dataset with one seed")
    p.set_defaults(func=stages.train_run)
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path)
    p.add_argument("--out", type=Path, help="final model file (default: the run folder's model.pt)")
    p.add_argument(
        "--variant",
        default=None,
        help="an ablation variant (config ablation.variants): its overrides on top, its own run folder",
    )

    p = sub.add_parser("evaluate", help="evaluate a trained run: Tables 1–3 metrics and clustering")
    p.set_defaults(func=stages.evaluate_run)
    _common(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path)
    p.add_argument("--model-file", type=Path)
    p.add_argument("--classifiers", type=Path, nargs="*", help="classifier files, one per modality")
    p.add_argument("--out", type=Path)
    p.add_argument("--variant", default=None, help="the ablation variant of the run (its folder and tags)")
    p.add_argument(
        "--protocol",
        choices=("mean", "sample", "reference"),
        default=None,
        help="evaluation protocol for this run (default: config evaluation.protocol)",
    )

    p = sub.add_parser("aggregate", help="tables from the per-run metrics")
    p.set_defaults(func=stages.write_tables)
    _common(p)
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--outdir", type=Path)
    p.add_argument(
        "--figures",
        type=Path,
        nargs="*",
        default=[],
        help="figure files to attach to the aggregation run in MLflow (beside the tables)",
    )
    p.add_argument(
        "--benchmarks", type=Path, nargs="*", default=[], help="Snakemake benchmark files: the resources table"
    )

    p = sub.add_parser("ablation", help="the ablation table and plots from the ablation runs' metrics")
    p.set_defaults(func=stages.write_ablation_table)
    _common(p)
    p.add_argument("--metrics", type=Path, nargs="+", required=True)
    p.add_argument("--outdir", type=Path)

    p = sub.add_parser("figures", help="figures: cross-generation, translation, retrieval, t-SNE, curves, bars")
    p.set_defaults(func=stages.draw_figures)
    _common(p)
    p.add_argument("--data", type=Path, nargs="*", help="dataset files, named <dataset>.pt")
    p.add_argument("--model-files", type=Path, nargs="*", help="trained model files (one seed; default: the first)")
    p.add_argument("--metrics", type=Path, nargs="*", help="per-run metrics of every seed (for the bar charts)")
    p.add_argument("--seed", type=int, default=None, help="the seed whose models are shown (default: the first)")
    p.add_argument(
        "--tsne-points",
        type=int,
        default=None,
        help="test pairs in the t-SNE (seeded subsample; default: config figures.tsne_points)",
    )
    p.add_argument(
        "--part",
        choices=("all", "datasets", "bars"),
        default="all",
        help="datasets: the figures of the given models' datasets; bars: the bar charts of "
        "Tables 1-3 only (needs --metrics, no models); all: both (default)",
    )
    p.add_argument("--outdir", type=Path)

    p = sub.add_parser(
        "check-model",
        help="check that a model (a name, pkg.module:Class or file.py:Class) keeps the model contract",
    )
    p.set_defaults(func=stages.check_model_contract)
    _common(p)
    p.add_argument("model", help="a built-in or entry-point name, pkg.module:Class, or path/to/file.py:Class")

    p = sub.add_parser(
        "check-dataset",
        help="check that a dataset (a config dataset, a source name, pkg.module:Class or file.py:Class) "
        "keeps the dataset contract",
    )
    p.set_defaults(func=stages.check_dataset_contract)
    _common(p)
    p.add_argument(
        "dataset",
        help="a dataset of the config (its source and parameters), or a source: a built-in or entry-point "
        "name, pkg.module:Class or path/to/file.py:Class (its default parameters)",
    )

    p = sub.add_parser("config", help="print the resolved settings of runs and where each value comes from")
    p.set_defaults(func=stages.show_config)
    _common(p)
    p.add_argument("--show", action="store_true", required=True, help="print them (the command's one action)")
    p.add_argument("--dataset", help="one dataset (default: the study's)")
    p.add_argument("--model", help="one model's runs (default: the study's models)")
    p.add_argument("--variant", help="an ablation variant's overrides on top")

    tracking_server.add_parser(sub)  # not a stage: an authenticated MLflow server for the jobs
    return parser


def load_stage_config(args: argparse.Namespace) -> dict:
    files = list(args.config or [DEFAULT_CONFIG])
    if args.preset:
        files.append(ROOT / "workflow" / "presets" / f"{args.preset}.yaml")
    args.config_files = files  # where each value comes from (config --show)
    return load_config(*files)


OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # EFBIG: a file-size limit (ulimit -f)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stage == "tracking-server":
        return tracking_server.main(args)
    try:
        config = load_stage_config(args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        args.func(config, args)
    except (ConfigError, DataError, ModelFileError, stages.StageError, TrackingError) as error:
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
