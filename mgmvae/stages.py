"""The pipeline stages behind ``python -m mgmvae <stage>`` (docs/architecture.md): each reads explicit
inputs, writes its outputs atomically and logs one MLflow run."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mgmvae import paths
from mgmvae.config import (
    ConfigError,
    at_paper_budget,
    classifier_settings,
    settings_hash,
    studied_datasets,
)
from mgmvae.gpu_slots import warn_loudly
from mgmvae.io import save_json

if TYPE_CHECKING:
    from mgmvae.registry import PluginRef


class StageError(RuntimeError):
    """A stage that cannot finish; the message says why and what to do."""


def _dataset_spec(config: Mapping, dataset: str) -> dict:
    """The config's dataset with its class's defaults; ConfigError naming an unknown dataset or parameter."""
    from mgmvae.study_datasets import dataset_spec

    return dataset_spec(config, dataset)


def _device(config: Mapping, precision: str):
    """The job's device (on a GPU, a slot leased for the rest of the process: mgmvae/gpu_slots.py),
    with deterministic kernels and ``precision``'s float32 math set for the process."""
    import torch

    from mgmvae.gpu_slots import LeaseError, place_process
    from mgmvae.nets import set_float32_math
    from mgmvae.seeding import make_deterministic

    try:
        device = torch.device(place_process(config["device"], config["gpu_slots"]).device)
    except LeaseError as error:
        raise StageError(str(error)) from None
    make_deterministic()
    set_float32_math(precision)
    return device


def _tracked(config: Mapping, args: argparse.Namespace, stage: str, name: str, tags: dict, params: dict):
    from mgmvae.gpu_slots import held
    from mgmvae.nets import float32_math
    from mgmvae.tracking import tracked_run

    placement = held()  # the device, its slot and its numerics, when the stage placed itself before its run
    params = {**params, **placement.params(), **float32_math()} if placement else params
    return tracked_run(config, stage, name, tags, params, enabled=not args.no_mlflow)


# ------------------------------------------------------------------------- prepare
def prepare_dataset(config: Mapping, args: argparse.Namespace) -> None:
    from mgmvae.study_datasets import build_dataset

    spec = _dataset_spec(config, args.dataset)
    out = args.out or paths.data_file(config, args.dataset)
    params = {**spec, "data_seed": config["data_seed"], "data_dir": config["data_dir"]}
    with _tracked(config, args, "prepare", f"prepare/{args.dataset}", {"dataset": args.dataset}, params) as run:
        data = build_dataset(args.dataset, spec, config["data_dir"], config["download"], config["data_seed"])
        data.save(out)
        sizes = {f"pairs_{s}": data.num_pairs(s) for s in ("train", "test")}
        sizes.update({f"images_{m}_{s}": len(data.images[m][s]) for m in data.modalities for s in ("train", "test")})
        run.log_metrics(sizes)
    print(f"wrote {out}: {sizes}")


# ---------------------------------------------------------------------- classifier
def train_digit_classifier(config: Mapping, args: argparse.Namespace) -> None:
    """The digit classifier of one modality: released weights (their accuracy measured here) or trained."""
    from mgmvae.data.paired import SPLITS, PairedData
    from mgmvae.evaluation.classifiers import accuracy, load_released, save_classifier, train_classifier

    _dataset_spec(config, args.dataset)
    data = PairedData.load(args.data or paths.data_file(config, args.dataset))
    if args.modality not in data.modalities:
        raise ConfigError(f"dataset {args.dataset!r} has modalities {data.modalities}, not {args.modality!r}")
    out = args.out or paths.classifier_file(config, args.dataset, args.modality)
    cfg, released_key = classifier_settings(config, args.dataset)
    device = _device(config, "float32")  # before the run, so that it records the device; an instrument: IEEE float32
    tags = {"dataset": args.dataset, "modality": args.modality, "seed": cfg["seed"]}
    with _tracked(config, args, "classifier", f"classifier/{args.dataset}/{args.modality}", tags, cfg) as run:
        m = args.modality
        if released := cfg["released"]:
            folder, md5 = Path(config["data_dir"]) / released["folder"], released["md5"].get(m)
            net = load_released(folder, m, md5, cfg["network"], data.shape(m), released_key).to(device)
            images, labels, batch = data.images[m], data.labels[m], config["evaluation"]["batch_size"]
            metrics: dict = {f"{s}_accuracy": accuracy(net, images[s], labels[s], batch) for s in SPLITS}
            metrics |= {"released": str(folder), "md5": md5, **{f"n_{s}": len(data.labels[m][s]) for s in SPLITS}}
        else:
            net, metrics = train_classifier(
                *(data.images[m]["train"], data.labels[m]["train"], data.images[m]["test"], data.labels[m]["test"]),
                **{k: cfg[k] for k in ("network", "epochs", "batch_size", "lr", "seed")},
                eval_batch_size=config["evaluation"]["batch_size"],
                device=device,
                progress=not args.no_progress,
                on_epoch=lambda epoch, values: run.log_metrics(values, step=epoch),
            )
        run.log_metrics({"test_accuracy": metrics["test_accuracy"], "train_accuracy": metrics["train_accuracy"]})
        if metrics["test_accuracy"] < cfg["min_accuracy"]:
            raise StageError(
                f"the {m} classifier of {args.dataset} reaches {metrics['test_accuracy']:.3f} test accuracy, "
                f"under classifier.min_accuracy = {cfg['min_accuracy']}: its coherence scores would not be "
                f"trustworthy. Train longer (classifier.epochs) or check the data."
            )
        save_classifier(net, metrics, out)
        save_json(metrics, paths.classifier_record(out))
    print(f"wrote {out}: test accuracy {metrics['test_accuracy']:.4f}")


# --------------------------------------------------------------------------- train
def run_identity(args: argparse.Namespace, config_hash: str) -> dict:
    """What names a run in its MLflow tags and its metrics file (+ ``variant`` for an ablation run)."""
    variant = {} if args.variant is None else {"variant": args.variant}
    return {"dataset": args.dataset, "model": args.model, "seed": args.seed, "config_hash": config_hash, **variant}


def run_tags(args: argparse.Namespace, settings: Mapping, model_tags: Mapping[str, str] | None = None) -> dict:
    """A training run's tags: its identity and its model's import path, package and version (``PluginRef.tags``)."""
    return run_identity(args, settings_hash(settings, args.variant)) | dict(model_tags or {})


def _model_ref(config: Mapping, args: argparse.Namespace) -> PluginRef:
    """Resolve ``--model`` (a run name or a plugin path) and put the run name in ``args.model``."""
    from mgmvae.registry import find

    ref = find(config, args.model)
    args.model = ref.name
    return ref


def _run_name(stage: str, args: argparse.Namespace) -> str:
    middle = args.model if args.variant is None else f"{args.model}/{args.variant}"
    return f"{stage}/{args.dataset}/{middle}/seed{args.seed}"


def train_run(config: Mapping, args: argparse.Namespace) -> None:
    from mgmvae.contracts.model import validate_models
    from mgmvae.data.paired import PairedData
    from mgmvae.model_file import save_trained
    from mgmvae.registry import run_settings
    from mgmvae.seeding import seed_everything
    from mgmvae.train import train_model

    _dataset_spec(config, args.dataset)
    ref = _model_ref(config, args)
    validate_models({**config, "models": [ref.entry]})
    settings = run_settings(config, args.dataset, ref, args.variant)
    out = Path(args.out or paths.model_file(paths.run_dir(config, args.dataset, args.model, args.seed, args.variant)))
    device = _device(config, settings["precision"])
    warning = {}
    if device.type == "cpu" and at_paper_budget(config, [(args.dataset, args.model)]):
        warning["budget_warning"] = f"the paper's {settings['epochs']} epochs on a CPU: expect hours (a GPU: minutes)"
        warn_loudly(f"{args.dataset}/{args.model} trains {warning['budget_warning']}")
    data = PairedData.load(args.data or paths.data_file(config, args.dataset), device=device)
    tags = run_tags(args, settings, ref.tags())
    config_hash, history_file = tags["config_hash"], paths.history_file(out.parent)
    params = {**settings, "device": str(device), **warning}
    with _tracked(config, args, "train", _run_name("train", args), tags, params) as run:
        seed_everything(args.seed)
        model = ref.cls(dict(data.shapes), settings).to(device)
        history = train_model(
            model,
            data,
            settings,
            seed=args.seed,
            checkpoint=paths.checkpoint_file(out.parent),
            config_hash=config_hash,
            progress=not args.no_progress,
            on_epoch=lambda epoch, values: run.log_metrics(values, step=epoch),
        )
        for values in history:  # after a resume: the epochs an earlier attempt did not log (the rest are skipped)
            run.log_metrics(values, step=int(values["epoch"]))
        save_json(history, history_file)
        record = {"settings": settings, "config_hash": config_hash, "history": history}
        save_trained(out, model, ref, dataset=args.dataset, seed=args.seed, variant=args.variant, **record)
        run.log_artifact(history_file)
    print(f"wrote {out}: final loss {history[-1]['loss']:.4f}" if history else f"wrote {out}")


# ------------------------------------------------------------------------ evaluate
def _evaluation_inputs(config: Mapping, args: argparse.Namespace, run: Path) -> tuple:
    """The trained model and its file's record, the data, the classifiers and the Inception network, on
    the job's device; StageError before any work if a classifier or the Inception weights are missing."""
    from mgmvae.data.paired import PairedData
    from mgmvae.evaluation.classifiers import load_classifier
    from mgmvae.evaluation.quality import load_inception
    from mgmvae.model_file import load_trained

    weights = config["evaluation"]["inception_weights"]
    try:
        inception = load_inception(weights, "cpu") if weights else None
    except FileNotFoundError as error:
        raise StageError(str(error)) from None
    model, saved = load_trained(args.model_file or paths.model_file(run), "cpu")
    device = _device(config, saved["settings"]["precision"])  # the precision the model was trained in
    data = PairedData.load(args.data or paths.data_file(config, args.dataset), device=device)
    files = args.classifiers or [paths.classifier_file(config, args.dataset, m) for m in data.modalities]
    if missing := [str(path) for path in files if not Path(path).exists()]:
        raise StageError(f"no classifier {', '.join(missing)}: run the 'classifier' stage first")
    classifiers = {Path(path).stem: load_classifier(path, device) for path in files}
    return model.to(device), saved, data, classifiers, None if inception is None else inception.to(device)


def evaluate_run(config: Mapping, args: argparse.Namespace) -> None:
    from mgmvae.evaluation.protocol import resolve_protocol
    from mgmvae.evaluation.run import evaluate_model
    from mgmvae.seeding import seed_everything

    _dataset_spec(config, args.dataset)
    _model_ref(config, args)
    run = paths.run_dir(config, args.dataset, args.model, args.seed, args.variant)
    model, saved, data, classifiers, inception = _evaluation_inputs(config, args, run)
    first = Path(args.out or paths.metrics_file(run))
    # --protocol overrides evaluation.protocol for this run (the CI test evaluates a run both ways).
    settings = [args.protocol] if args.protocol else paths.protocols(config)
    try:
        resolved = [resolve_protocol(setting, type(model)) for setting in settings]
    except ValueError as error:
        raise ConfigError(str(error)) from None
    likelihood = None  # the same under every protocol (it draws from the posterior): estimated once
    for setting, protocol in zip(settings, resolved, strict=True):
        out = paths.protocol_file(first, setting, settings)
        name = _run_name("evaluate", args) + (f"/{protocol}" if len(settings) > 1 else "")
        identity = {**run_identity(args, saved["config_hash"]), "protocol": protocol}
        evaluation = config["evaluation"] | ({"likelihood_samples": 0} if likelihood else {})
        params = {**config["evaluation"], "protocol": protocol}
        with _tracked(config, args, "evaluate", name, identity | saved["model_tags"], params) as tracker:
            seed_everything(args.seed)
            options = {"protocol": protocol, "progress": not args.no_progress, "inception": inception}
            metrics = evaluate_model(model, data, classifiers, evaluation, args.seed, **options)
            metrics |= {"log_likelihood": likelihood} if likelihood else {}
            record = {"study": config["study"], **identity, "modalities": list(data.modalities)}
            save_json(record | {"protocol_setting": setting, "metrics": metrics}, out)
            tracker.log_metrics(metrics)
            tracker.log_artifact(out)
        likelihood = likelihood or metrics.get("log_likelihood")
        print(f"wrote {out}")


# -------------------------------------------------------------------------- tables
def write_tables(config: Mapping, args: argparse.Namespace) -> None:
    """The study's tables; its MLflow run also holds every figure (``--figures``: figures/<kind>/<file>)."""
    from mgmvae.registry import resolve_all
    from mgmvae.tables import build_tables, load_run_metrics
    from mgmvae.tables.resources import resources_table

    resolve_all(config["models"])  # so that a plugin named by its path has its label (mgmvae.registry.model_class)
    outdir = args.outdir or paths.tables_dir(config)
    tags = {"datasets": ",".join(studied_datasets(config)), "protocol": ",".join(paths.protocols(config))}
    params = {"tables": config["tables"], "models": config["models"], "seeds": config["seeds"]}
    with _tracked(config, args, "tables", "tables", tags, params) as run:
        written = build_tables(load_run_metrics(args.metrics), config["tables"], outdir)
        if args.benchmarks:
            written += resources_table(args.benchmarks, config["study"], Path(outdir))
        for path in written or sorted(Path(outdir).glob("*")):
            run.log_artifact(path, "tables")
        for path in args.figures:
            run.log_artifact(path, f"figures/{Path(path).parent.name}")
    print(f"wrote tables under {outdir}")


# ------------------------------------------------------------------------ ablation
def write_ablation_table(config: Mapping, args: argparse.Namespace) -> None:
    """The ablation table (csv, md, tex, html) and one plot per dataset from the ablation runs' metrics,
    its variants in the order of the metrics files (the rule passes them in declaration order)."""
    from mgmvae.config import ablation_datasets, ablation_seeds, ablation_variants
    from mgmvae.figures import ablation_plots
    from mgmvae.registry import find
    from mgmvae.tables import load_run_metrics
    from mgmvae.tables.ablation import ablation_table

    study = config["ablation"]
    outdir = Path(args.outdir or paths.ablation_dir(config))
    ref = find(config, study["model"])
    tags = {"model": ref.name, "datasets": ",".join(ablation_datasets(config)), **ref.tags()}
    params = {"model": study["model"], "datasets": ablation_datasets(config), "seeds": ablation_seeds(config)}
    with _tracked(config, args, "ablation", "ablation", tags, params | {"variants": ablation_variants(config)}) as run:
        frame = load_run_metrics(args.metrics)
        written = ablation_table(frame, config, outdir) + ablation_plots(frame, outdir, study["model"], config["study"])
        for path in written:
            run.log_artifact(path, "ablation")
    print(f"wrote {len(written)} files under {outdir}")


# ------------------------------------------------------------------------- figures
def draw_figures(config: Mapping, args: argparse.Namespace) -> None:
    """The figures (mgmvae/figures/) from the first seed's models and the per-run metrics of every seed;
    ``--part datasets``: only the given models' datasets' figures, ``--part bars``: only the bar charts."""
    import torch

    from mgmvae.data.paired import PairedData
    from mgmvae.figures import figure_specs, render_all
    from mgmvae.model_file import load_trained
    from mgmvae.registry import run_names
    from mgmvae.tables import load_run_metrics

    names = run_names(config["models"])  # so that a plugin named by its path has its label and colour
    bars = args.part in ("all", "bars")
    seed = int(config["seeds"][0] if args.seed is None else args.seed)
    tsne_points = int(args.tsne_points or config["figures"]["tsne_points"])
    device = torch.device("cpu") if args.part == "bars" else _device(config, "float32")  # bars read numbers only
    outdir = Path(args.outdir or paths.figures_dir(config))
    shown = paths.run_files(config, paths.study_runs(config, names, [seed]), paths.model_file)
    models: dict[str, dict] = {}
    histories: dict[str, dict] = {}
    for path in [] if args.part == "bars" else args.model_files or shown:
        model, saved = load_trained(path, device)
        models.setdefault(saved["dataset"], {})[saved["model"]] = model
        histories.setdefault(saved["dataset"], {})[saved["model"]] = saved.get("history") or []
    data_files = {Path(p).stem: Path(p) for p in args.data or []}
    datasets = {d: PairedData.load(data_files.get(d, paths.data_file(config, d))) for d in models}
    expected = paths.run_files(config, paths.study_runs(config, names))
    metric_files = (args.metrics or [f for f in expected if f.exists()]) if bars else []
    if bars and not metric_files:
        raise StageError(f"no per-run metrics such as {expected[0]}: run the 'evaluate' stage first")
    modalities = {d: data.modalities for d, data in datasets.items()}
    specs = figure_specs(modalities, {d: list(models[d]) for d in datasets}, bars=bars, tables=config["tables"])
    shown_models = sorted({m for ms in models.values() for m in ms})
    params = {"models": shown_models, "seed": seed, "tsne_points": tsne_points, "part": args.part}
    name = "figures" if args.part == "all" else f"figures/{'bars' if args.part == 'bars' else ','.join(datasets)}"
    with _tracked(config, args, "figures", name, {"datasets": ",".join(datasets), "seed": seed}, params) as run:
        metrics = load_run_metrics(metric_files) if bars else None
        options = {"study": config["study"], "seed": seed, "tsne_points": tsne_points, "bars": bars}
        options["evaluation"] = config["evaluation"]
        written = render_all(datasets, models, histories, metrics, config["tables"], outdir, **options)
        missing = [s["stem"] for s in specs if not (outdir / f"{s['stem']}.png").exists()]
        if missing:
            raise StageError(f"figures not written: {missing}")
        for path in written:
            run.log_artifact(path, str(Path("figures") / path.relative_to(outdir).parent))
    print(f"wrote {len(written)} figure files under {outdir}")


# --------------------------------------------------------------------- check-model
def check_model_contract(config: Mapping, args: argparse.Namespace) -> None:
    """The model contract (mgmvae/contracts/model.py) for one model: a report line per failure."""
    from mgmvae.contracts import origin
    from mgmvae.contracts.model import SHAPE_SETS, limitations
    from mgmvae.contracts.model import check_model as run_checks
    from mgmvae.registry import find

    ref = find(config, args.model)
    print(f"{ref.name}: {origin(ref)}")
    failures = run_checks(ref, config, progress=not args.no_progress)
    if failures:
        raise StageError(
            f"{ref.name} breaks the model contract in {len(failures)} place(s) (see docs/plugins.md; a model "
            "defined for two modalities only sets max_modalities = 2, mgmvae/base.py):\n  "
            + "\n  ".join(map(str, failures))
        )
    for line in limitations(ref.cls):
        print(f"{ref.name}: {line}")
    print(
        f"{ref.name}: keeps the model contract ({', '.join(SHAPE_SETS)} shapes: build, loss, backward, embed, "
        "generate, translate, sample, cluster, seed, save/load)"
    )


# ------------------------------------------------------------------- check-dataset
def check_dataset_contract(config: Mapping, args: argparse.Namespace) -> None:
    """The dataset contract (mgmvae/contracts/dataset.py) for one dataset, a config's (its source and
    parameters) or a source entry (its default parameters): a report line per failure."""
    from mgmvae.contracts.dataset import check_dataset, describe
    from mgmvae.study_datasets import config_source, source_of

    entry = args.dataset
    in_config = entry in config["datasets"]
    ref, source = config_source(config, entry) if in_config else source_of({"source": entry})
    name = entry if in_config else ref.name
    print(describe(ref, source))
    failures, data = check_dataset(source, name, config["data_seed"], config["data_dir"], config["download"])
    if failures:
        raise StageError(
            f"{name} breaks the dataset contract in {len(failures)} place(s) (see docs/datasets.md):\n  "
            + "\n  ".join(map(str, failures))
        )
    assert data is not None  # built when nothing failed
    sizes = ", ".join(f"{s} {data.num_pairs(s)} tuples" for s in ("train", "test"))
    print(
        f"{name}: keeps the dataset contract ({sizes}; modalities, shapes and networks, dtypes, labels, tuples, seed)"
    )


# -------------------------------------------------------------------------- config
def show_config(config: Mapping, args: argparse.Namespace) -> None:
    """``config --show``: each dataset's parameters and each run's resolved settings, a line a value with
    where it comes from: its class's default (an ``IMPLICIT`` one too), or the last config file that sets it."""
    import json
    import os

    import yaml

    from mgmvae.config import merge_layers, settings_layers
    from mgmvae.params import defaults, params_class
    from mgmvae.registry import find, run_names, run_settings
    from mgmvae.study_datasets import config_source

    def flat(tree: Mapping, prefix: tuple = ()) -> dict[tuple, object]:
        out: dict[tuple, object] = {}
        for k, v in tree.items():
            out |= flat(v, (*prefix, k)) if isinstance(v, Mapping) and v else {(*prefix, k): v}
        return out

    files = [(os.path.relpath(f), flat(yaml.safe_load(Path(f).read_text()) or {})) for f in args.config_files]

    def show(title: str, layers: Sequence[tuple[tuple, Mapping]], target: str) -> None:
        print(title)
        where = {key: keys for keys, layer in layers for key in flat(layer)}
        for key, value in sorted(flat(merge_layers(layer for _, layer in layers)).items()):
            setters = [f for f, leaves in files if (*where[key], *key) in leaves] or ["overrides"]
            origin = f"{setters[-1]}: {'.'.join(where[key])}" if where[key] else f"class default ({target})"
            print(f"  {'.'.join(key):<28} {json.dumps(value):<24} {origin}")

    variant = args.variant
    for dataset in [args.dataset] if args.dataset else studied_datasets(config):
        ref = config_source(config, dataset)[0]
        show(
            f"dataset {dataset}",
            [((), defaults(params_class(ref.cls))), (("datasets", dataset), config["datasets"][dataset])],
            ref.target,
        )
        for model in [args.model] if args.model else run_names(config["models"]):
            ref = find(config, model)
            title = f"run {dataset}/{ref.name}{f'/{variant}' * bool(variant)}: config_hash "
            title += settings_hash(run_settings(config, dataset, ref, variant), variant)
            layers = [
                ((), {"params": defaults(params_class(ref.cls))}),
                *settings_layers(config, dataset, ref.name, variant),
            ]
            show(title, layers, ref.target)
