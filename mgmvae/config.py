"""Loading, validating and resolving the configuration.

The schema (workflow/schemas/config.schema.yaml) types and ranges every key; ``validate`` adds
the cross-key checks. ``run_settings`` resolves what one training run uses:
``settings`` ← ``dataset_settings[d]`` ← ``model_settings[m]`` ← ``model_settings[m].by_dataset[d]``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

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


def validate(config: Mapping) -> None:
    """Raise ConfigError naming the first offending key; return None if the config can run."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = min(errors, key=lambda e: len(e.absolute_path))
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{key}': {e.message}")
    for table, dataset in config["tables"].items():
        if dataset not in config["datasets"]:
            raise ConfigError(
                f"config key 'tables.{table}': dataset {dataset!r} is not defined under 'datasets' "
                f"(defined: {sorted(config['datasets'])})"
            )
    for where in ("settings", *(f"dataset_settings.{d}" for d in config["dataset_settings"])):
        section = config["settings"] if where == "settings" else config["dataset_settings"][where.split(".", 1)[1]]
        if "by_dataset" in section:
            raise ConfigError(f"config key '{where}.by_dataset': only allowed under model_settings.<model>")


def validate_models(config: Mapping) -> None:
    """Check model names and their params against the registry (imports torch)."""
    from mgmvae.base import get_model_class

    for name in config["models"]:
        try:
            cls = get_model_class(name)
        except ValueError as error:
            raise ConfigError(f"config key 'models': {error}") from None
        for dataset in studied_datasets(config):
            try:
                cls.resolve_params(run_settings(config, dataset, name).get("params", {}))
            except ValueError as error:
                raise ConfigError(f"config key 'model_settings.{name}.params': {error}") from None


def studied_datasets(config: Mapping) -> list[str]:
    """The datasets a study builds: those its tables read, in table order."""
    return list(dict.fromkeys(config["tables"].values()))


def run_settings(config: Mapping, dataset: str, model: str) -> dict:
    """Everything one (dataset, model) training run uses, resolved from the layers."""
    model_layer = dict(config["model_settings"].get(model, {}))
    by_dataset = model_layer.pop("by_dataset", {}) or {}
    resolved = config["settings"]
    for layer in (config["dataset_settings"].get(dataset, {}), model_layer, by_dataset.get(dataset, {})):
        resolved = deep_merge(resolved, layer)
    resolved["params"] = resolved.get("params", {})
    return resolved


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (the run's resolved settings)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
