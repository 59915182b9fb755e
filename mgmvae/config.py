"""Loading, validating (the schema, workflow/schemas/config.schema.yaml, and the cross-key checks) and
resolving the configuration: the layers of one training run's settings (``settings_layers``; docs/models.md
lists them) and its ``config_hash``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config.yaml"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the key and what is allowed."""


def deep_merge(base: Mapping, override: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path, overrides: Mapping | None = None) -> dict:
    """config.yaml, then each preset in order (dicts merge, lists replace, as in Snakemake)."""
    config: dict = {}
    for path in paths or (DEFAULT_CONFIG,):
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}")
        config = deep_merge(config, loaded)
    if overrides:
        config = deep_merge(config, overrides)
    validate(config)
    return config


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def settings_keys() -> set[str]:
    """The keys a ``settings`` layer may hold (the schema's ``$defs.settings``)."""
    return set(_schema()["$defs"]["settings"]["properties"])


def validate(config: Mapping) -> None:
    """Raise ConfigError naming the first offending key; return None if the config can run."""
    _check_schema(_schema(), config)
    for table, dataset in config["tables"].items():
        if dataset is not None and dataset not in config["datasets"]:
            raise ConfigError(
                f"config key 'tables.{table}': dataset {dataset!r} is not defined under 'datasets' "
                f"(defined: {sorted(config['datasets'])})"
            )
    layers = {"settings": config["settings"]}
    layers |= {f"dataset_settings.{d}": layer for d, layer in config["dataset_settings"].items()}
    layers |= {f"ablation.variants.{v}": layer for v, layer in config["ablation"]["variants"].items()}
    for where, layer in layers.items():
        if "by_dataset" in layer:
            raise ConfigError(f"config key '{where}.by_dataset': only allowed under model_settings.<model>")
    validate_ablation(config)


def validate_section(key: str, section: Any) -> None:
    """The schema's checks of one top-level section (for a module handed the section alone)."""
    schema = _schema()
    _check_schema({"$defs": schema["$defs"], **schema["properties"][key]}, section, f"{key}.")


def _check_schema(schema: Mapping, value: Any, prefix: str = "") -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        e = min(errors, key=lambda e: len(e.absolute_path))
        key = (prefix + ".".join(str(p) for p in e.absolute_path)).rstrip(".") or "<top level>"
        raise ConfigError(f"config key '{key}': {e.message}")


def validate_ablation(config: Mapping) -> None:
    """Cross-key checks of the optional ``ablation`` section (the schema types it)."""
    ablation = config["ablation"]
    studied = studied_datasets(config)
    for dataset in ablation.get("datasets") or []:
        if dataset not in studied:
            raise ConfigError(
                f"config key 'ablation.datasets': dataset {dataset!r} is not one this study builds "
                f"(the datasets its tables read: {studied})"
            )
    for name in ablation.get("select") or []:
        if name not in ablation["variants"]:
            raise ConfigError(
                f"config key 'ablation.select': no variant {name!r} under 'ablation.variants' "
                f"(declared: {list(ablation['variants'])})"
            )


def studied_datasets(config: Mapping) -> list[str]:
    """The datasets a study builds: those its tables read, in table order."""
    return list(dict.fromkeys(d for d in config["tables"].values() if d is not None))


def classifier_settings(config: Mapping, dataset: str) -> tuple[dict, str]:
    """The digit classifier's keys for ``dataset`` (``classifier.by_dataset.<dataset>`` over
    ``classifier``), and the config key its ``released`` comes from."""
    base, override = dict(config["classifier"]), config["classifier"]["by_dataset"].get(dataset, {})
    base.pop("by_dataset")
    key = f"classifier.by_dataset.{dataset}.released" if "released" in override else "classifier.released"
    return deep_merge(base, override), key


def settings_layers(config: Mapping, dataset: str, model: str, variant: str | None = None) -> list[tuple[tuple, dict]]:
    """The config's layers of one (dataset, model) training run, lowest first, each with its config
    keys; with ``variant``, that ablation variant's overrides (``ablation.variants[variant]``) on top."""
    model_layer = dict(config["model_settings"].get(model, {}))
    by_dataset = model_layer.pop("by_dataset", {}) or {}
    layers = [
        (("settings",), config["settings"]),
        (("dataset_settings", dataset), config["dataset_settings"].get(dataset, {})),
        (("model_settings", model), model_layer),
        (("model_settings", model, "by_dataset", dataset), by_dataset.get(dataset, {})),
    ]
    if variant is not None:
        layers.append((("ablation", "variants", variant), variant_overrides(config, variant)))
    return layers


def merge_layers(layers: Iterable[Mapping]) -> dict:
    """The layers merged in order, later over earlier (``deep_merge``)."""
    return functools.reduce(deep_merge, layers, {})


def at_paper_budget(config: Mapping, runs: Iterable[tuple[str, str]]) -> list[str]:
    """The (dataset, model) runs that train as many epochs as config.yaml's paper setting or more:
    hours each on a CPU."""
    paper = load_config()
    return [
        f"{dataset}/{model} ({epochs} epochs)"
        for dataset, model in runs
        if dataset in paper["datasets"]
        and (epochs := _epochs(config, dataset, model)) >= _epochs(paper, dataset, model)
    ]


def _epochs(config: Mapping, dataset: str, model: str) -> int:
    return merge_layers(layer for _, layer in settings_layers(config, dataset, model))["epochs"]


def variant_overrides(config: Mapping, variant: str) -> dict:
    """The overrides of one ablation variant; ConfigError naming the declared ones if unknown."""
    variants = config["ablation"]["variants"]
    if variant not in variants:
        raise ConfigError(f"unknown ablation variant {variant!r}; declared under 'ablation.variants': {list(variants)}")
    return dict(variants[variant] or {})


def ablation_datasets(config: Mapping) -> list[str]:
    """The datasets an ablation study runs on: ``ablation.datasets``, or (null) the study's own."""
    return list(config["ablation"]["datasets"] or studied_datasets(config))


def ablation_seeds(config: Mapping) -> list[int]:
    """The seeds of an ablation study: ``ablation.seeds``, or (null) the study's ``seeds``."""
    return list(config["ablation"]["seeds"] or config["seeds"])


def ablation_variants(config: Mapping) -> list[str]:
    """The variants an ablation study runs, in declaration order: ``ablation.select`` if given,
    else every variant declared under ``ablation.variants``."""
    ablation = config["ablation"]
    declared = list(ablation["variants"])
    selected = ablation["select"]
    return [v for v in declared if v in selected] if selected else declared


def settings_hash(settings: Mapping, variant: str | None = None) -> str:
    """A run's ``config_hash``: its resolved settings, plus its variant name for ablation runs
    (so two variants are told apart even where a sweep value equals the default)."""
    return config_hash(settings if variant is None else {"variant": variant, "settings": settings})


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (the run's resolved settings)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
