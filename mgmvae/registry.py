"""The registry: how an entry in ``models``, ``ablation.model``, ``--model`` or a dataset's ``source``
becomes a model or dataset class, one resolution path for both kinds (``MODELS``, ``DATASETS``): a
built-in or an installed entry point by name, ``pkg.module:Class``, or ``path/to/file.py:Class``
(docs/plugins.md, docs/datasets.md). Each resolves to a :class:`PluginRef`; a class not of its kind,
or whose ``name`` is invalid or a built-in's, is refused here, before any work; ``mgmvae.contracts``
then checks what a model does and what a dataset builds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgmvae.config import ConfigError, merge_layers, settings_keys, settings_layers
from mgmvae.params import defaults, params_class

if TYPE_CHECKING:
    from mgmvae.base import MultimodalVAE

# The built-in models, by import path; each class's ``name`` is its run name.
BUILTINS = (
    "baselines.mvae:MVAE",
    "baselines.mmvae:MMVAE",
    "baselines.dmvae:DMVAE",
    "baselines.mopoe:MoPoE",
    "baselines.mwbvae:MWBVAE",
    "baselines.mmvae_plus:MMVAEPlus",
    "baselines.idmvae:IDMVAE",
    "mgmvae.model:MGMVAE",
)
# The built-in dataset sources; each class's ``name`` is the source name a config gives.
DATASET_BUILTINS = (
    "mgmvae.data.mnist:MnistSvhn",
    "mgmvae.data.mnist:MnistCdcb",
    "mgmvae.data.embedded:DigitsStreet",
    "mgmvae.data.embedded:DigitsCdcb",
    "mgmvae.data.digits_poly:DigitsPoly",
    "mgmvae.data.polymnist:PolyMnist",
)
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
FILE_PATH = re.compile(r"^.+\.py:[A-Za-z_]\w*$")


class PluginError(ConfigError):
    """A model or dataset entry that cannot be used; the message names the entry, the problem and the fix."""


@dataclass(frozen=True)
class Kind:
    """What the registry resolves: models or datasets. The base class is named by import path and
    imported on first use, like the built-ins (mgmvae.data imports this module)."""

    noun: str  # "model" | "dataset": in messages and in the provenance tags
    base: str  # "pkg.module:Class" every class of the kind subclasses
    builtins: tuple[str, ...]
    group: str  # the entry point group
    guide: str  # the docs page a refusal points to
    name_role: str  # what the class's `name` is, for messages
    reserved: Callable[[], set[str]]  # names a parameter may not have
    reserved_why: str  # why, for messages ({key} is filled in)
    method: str  # the method a class of the kind must implement, as messages show it
    checks: Callable[[type[Any], str], None]  # what else a class of the kind must define (PluginError otherwise)


@dataclass(frozen=True)
class PluginRef:
    """A resolved model or dataset: its name, its class and where it came from (logged to MLflow)."""

    name: str
    cls: type[Any]
    kind: str  # "builtin" | "entry point" | "import path" | "file"
    target: str  # "pkg.module:Class" or "/abs/path/file.py:Class"
    package: str  # the distribution that provides it ("" for a local file)
    version: str  # the distribution's version, or the file's sha256 prefix
    noun: str  # "model" | "dataset"

    @property
    def builtin(self) -> bool:
        return self.kind == "builtin"

    @property
    def entry(self) -> str:
        """What resolves to this model again: its name, or its path (saved in model files)."""
        return self.name if self.kind in ("builtin", "entry point") else self.target

    def tags(self) -> dict[str, str]:
        """MLflow tags tracing a run to the code of its model (or dataset)."""
        return {
            f"{self.noun}_import_path": self.target,
            f"{self.noun}_package": self.package,
            f"{self.noun}_version": self.version,
        }


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------- the two kinds
def _dataset_checks(cls: type[Any], label: str) -> None:
    """A dataset declares two or more modalities (path components and wildcards, hence
    NAME_PATTERN) and a (C, H, W) shape for each (see docs/datasets.md)."""
    modalities = cls.modalities
    if (
        not isinstance(modalities, tuple | list)
        or len(modalities) < 2
        or len(set(modalities)) != len(modalities)
        or not all(isinstance(m, str) and NAME_PATTERN.match(m) for m in modalities)
    ):
        raise PluginError(
            f"{label}: the class attribute `modalities` is {modalities!r}; give two or more distinct names of "
            f'lowercase letters, digits and _, e.g. modalities = ("photo", "sketch")'
        )
    shapes = cls.shapes
    if not isinstance(shapes, Mapping) or list(shapes) != list(modalities):
        raise PluginError(
            f"{label}: the class attribute `shapes` must map each modality, in the order of `modalities`, to "
            f"its image shape (C, H, W); got {shapes!r}"
        )
    for m, shape in shapes.items():
        if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(n, int) and n > 0 for n in shape)):
            raise PluginError(f"{label}: shapes[{m!r}] = {shape!r} is not a (C, H, W) tuple of positive integers")


MODELS = Kind(
    noun="model",
    base="mgmvae.base:MultimodalVAE",
    builtins=BUILTINS,
    group="mgmvae.models",
    guide="docs/plugins.md",
    name_role="the run name",
    reserved=settings_keys,
    reserved_why="a settings key of the config schema (settings.{key}); a model parameter of that name would "
    "be confused with it in model_settings",
    method="loss(batch) -> dict",
    checks=lambda cls, label: None,
)
DATASETS = Kind(
    noun="dataset",
    base="mgmvae.data.dataset:Dataset",
    builtins=DATASET_BUILTINS,
    group="mgmvae.datasets",
    guide="docs/datasets.md",
    name_role="the source name (what datasets.<name>.source gives)",
    reserved=lambda: {"source"},
    reserved_why="the key datasets.<name>.{key}, which names the dataset class",
    method="build(name, seed, data_dir, download) -> PairedData",
    checks=_dataset_checks,
)


@functools.cache
def builtins(kind: Kind = MODELS) -> dict[str, type[Any]]:
    """The built-in classes of a kind (models by default) by name (imported on first use)."""
    return {cls.name: cls for cls in map(_import, kind.builtins)}


def builtin_model_names() -> list[str]:
    return sorted(builtins(MODELS))


def build_model(entry: str, shapes: Mapping[str, Any], settings: Mapping[str, Any]) -> MultimodalVAE:
    """An untrained model of the class ``entry`` names (see ``resolve``)."""
    return resolve(entry).cls(dict(shapes), settings)


def is_path_entry(entry: str) -> bool:
    return ":" in entry


def resolve(entry: str, kind: Kind = MODELS) -> PluginRef:
    """The model (or, with ``kind=DATASETS``, the dataset) an entry names; PluginError naming the
    entry and the fix otherwise."""
    if not isinstance(entry, str) or not entry:
        raise PluginError(
            f"{kind.noun} entry {entry!r} must be a non-empty string (a name, pkg.module:Class or file.py:Class)"
        )
    if FILE_PATH.match(entry):
        ref = _from_file(entry, kind)
    elif IMPORT_PATH.match(entry):
        ref = _from_import_path(entry, kind)
    elif is_path_entry(entry):
        raise PluginError(
            f"{kind.noun} entry {entry!r} is neither pkg.module:Class nor path/to/file.py:Class (see {kind.guide})"
        )
    else:
        ref = _from_name(entry, kind)
    if kind is MODELS:
        _MODEL_CLASSES[ref.name] = ref.cls
    return ref


# The model class of each run name this process resolved (a plugin's by its path too), or None for
# a name no model has (a paper-only row): what the tables and figures label and colour a model by.
_MODEL_CLASSES: dict[str, type[Any] | None] = {}


def model_class(name: str) -> type[Any] | None:
    """The model class of a run name: one resolved in this process (so a plugin the config names by
    its path, once the config's models are resolved), a built-in or an entry point; None if none."""
    if name not in _MODEL_CLASSES:
        try:
            resolve(name)
        except PluginError:
            _MODEL_CLASSES[name] = None
    return _MODEL_CLASSES[name]


def available(kind: Kind = MODELS) -> list[str]:
    """Every name of a kind that resolves without a path: built-ins and installed entry points."""
    return sorted({*builtins(kind), *(ep.name for ep in _entry_points(kind))})


def resolve_all(entries: Iterable[str]) -> dict[str, PluginRef]:
    """Resolve a list of entries; refuse two entries that come to the same run name."""
    refs: dict[str, PluginRef] = {}
    for entry in entries:
        ref = resolve(entry)
        if ref.name in refs:
            raise PluginError(
                f"{entry!r} and {refs[ref.name].target!r} both have the run name {ref.name!r}; "
                f"give one of the classes another `name`"
            )
        refs[ref.name] = ref
    return refs


def run_names(entries: Iterable[str]) -> list[str]:
    """The run names of a list of entries, in order (what the workflow's paths and wildcards use)."""
    return list(resolve_all(entries))


def run_settings(config: Mapping[str, Any], dataset: str, model: str | PluginRef, variant: str | None = None) -> dict:
    """Everything one (dataset, model) training run uses (hashed as its ``config_hash``): the model class's
    parameter defaults (but the ``IMPLICIT`` ones) under the config's layers; ``model``: a name or a ref."""
    ref = model if isinstance(model, PluginRef) else find(config, model)
    layers = [layer for _, layer in settings_layers(config, dataset, ref.name, variant)]
    return merge_layers([{"params": defaults(params_class(ref.cls), implicit=False)}, *layers])


def find(config: Mapping[str, Any], model: str) -> PluginRef:
    """The model a stage's ``--model`` names: a run name of the study's ``models`` or
    ``ablation.model`` (which may be paths), a built-in or entry point, or a path itself."""
    if is_path_entry(model):
        return resolve(model)
    entries = [*config["models"], config["ablation"]["model"]]
    for entry in entries:
        if isinstance(entry, str) and is_path_entry(entry):
            ref = resolve(entry)
            if ref.name == model:
                return ref
    return resolve(model)


# ---------------------------------------------------------------- the three ways in
def _from_name(name: str, kind: Kind) -> PluginRef:
    points = {ep.name: ep for ep in _entry_points(kind)}
    if name in builtins(kind):
        if name in points:
            raise PluginError(
                f"the entry point {name!r} of package {_dist_name(points[name])!r} (group {kind.group}) "
                f"has the name of a built-in {kind.noun}; rename the entry point and the class's `name`"
            )
        cls = builtins(kind)[name]
        target = f"{cls.__module__}:{cls.__qualname__}"
        return PluginRef(name, cls, "builtin", target, *_project_version(), kind.noun)
    if name in points:
        return _from_entry_point(points[name], kind)
    raise PluginError(
        f"unknown {kind.noun} {name!r}; available {kind.noun}s: {', '.join(map(repr, available(kind)))}. "
        f"A {kind.noun} of your own: pkg.module:Class, path/to/file.py:Class, or an entry point in the group "
        f"{kind.group} (see {kind.guide})"
    )


def _from_entry_point(ep: importlib.metadata.EntryPoint, kind: Kind) -> PluginRef:
    label = f"entry point {ep.name!r} ({ep.value}) of package {_dist_name(ep)!r}"
    try:
        obj = ep.load()
    except Exception as error:  # noqa: BLE001 - any import failure of user code is the same refusal
        raise PluginError(f"{label}: cannot be loaded ({type(error).__name__}: {error})") from None
    cls = check_class(obj, label, kind)
    if cls.name != ep.name:
        raise PluginError(f"{label}: the class's `name` is {cls.name!r}; make it equal to the entry point's name")
    version = ep.dist.version if ep.dist else "unknown"
    return PluginRef(ep.name, cls, "entry point", ep.value, _dist_name(ep), version, kind.noun)


def _from_import_path(entry: str, kind: Kind) -> PluginRef:
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise PluginError(
            f"{kind.noun} plugin {entry!r}: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
            f"install its package into this environment or put its folder on PYTHONPATH"
        ) from None
    cls = _checked_attr(module, attr, f"{kind.noun} plugin {entry!r}", kind)
    package, version = _package_of(module_name)
    return _named(PluginRef(cls.name, cls, "import path", entry, package, version, kind.noun), entry, kind)


def _from_file(entry: str, kind: Kind) -> PluginRef:
    file, _, attr = entry.rpartition(":")
    path = Path(file).expanduser().resolve()
    label = f"{kind.noun} plugin {entry!r}"
    if not path.is_file():
        raise PluginError(f"{label}: file {path} does not exist (relative paths start at the working directory)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # One module per file content: the same file is imported once, an edited file anew.
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"mgmvae_plugin_{stem}_{digest[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001
            del sys.modules[module_name]
            raise PluginError(f"{label}: importing {path} failed ({type(error).__name__}: {error})") from None
    cls = _checked_attr(module, attr, label, kind)
    ref = PluginRef(cls.name, cls, "file", f"{path}:{attr}", "", f"sha256:{digest[:16]}", kind.noun)
    return _named(ref, entry, kind)


# ---------------------------------------------------------------------- class checks
def check_class(obj: Any, label: str, kind: Kind = MODELS) -> type[Any]:
    """Refuse what cannot be a class of the kind (a model by default), naming the problem; return the class."""
    base = _import(kind.base)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(
            f"{label}: {obj!r} is not a {kind.noun}: subclass {kind.base.replace(':', '.')} (see {kind.guide})"
        )
    cls: type[Any] = obj
    method = kind.method.split("(")[0]
    if getattr(cls, method) is getattr(base, method):
        raise PluginError(f"{label}: {cls.__name__} lacks the method {kind.method} (see {kind.guide})")
    kind.checks(cls, label)
    name = cls.name
    if not isinstance(name, str) or name == base.name or not NAME_PATTERN.match(name):
        raise PluginError(
            f"{label}: the class attribute `name` is {name!r}; set it to {kind.name_role}, lowercase letters, "
            f'digits and _ (pattern {NAME_PATTERN.pattern}), e.g. name = "my_{kind.noun}"'
        )
    check_declared_params(cls, label, kind)
    return cls


def check_declared_params(cls: type[Any], label: str, kind: Kind = MODELS) -> None:
    """A class's parameters (its ``Params``, or a plugin's ``default_params`` dict; mgmvae/params.py):
    identifiers with JSON-able defaults (they are hashed and logged) that do not shadow a reserved key
    (a settings key, or a dataset's ``source``)."""
    given = cls.default_params
    if not isinstance(given, Mapping):
        raise PluginError(f"{label}: default_params must be a dict of parameter -> default, not {type(given).__name__}")
    bad = [key for key in given if not (isinstance(key, str) and key.isidentifier())]
    if bad:
        raise PluginError(f"{label}: default_params key {bad[0]!r} is not a Python identifier")
    for key, value in defaults(params_class(cls)).items():
        if key in kind.reserved():
            raise PluginError(f"{label}: parameter {key!r} is {kind.reserved_why.format(key=key)}: rename it")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise PluginError(
                f"{label}: the default of parameter {key!r}, {value!r}, is not a JSON value (number, string, "
                f"bool, null, list or dict): config hashes and MLflow params need one"
            ) from None


def _checked_attr(module: Any, attr: str, label: str, kind: Kind) -> type[Any]:
    if not hasattr(module, attr):
        raise PluginError(f"{label}: module {module.__name__!r} has no attribute {attr!r}")
    return check_class(getattr(module, attr), label, kind)


def _named(ref: PluginRef, entry: str, kind: Kind) -> PluginRef:
    """Refuse a plugin that takes a built-in's name (a model's runs would overwrite the built-in's)."""
    builtin = builtins(kind).get(ref.name)
    if builtin is not None and builtin is not ref.cls:
        raise PluginError(
            f"{kind.noun} plugin {entry!r}: its name {ref.name!r} is a built-in {kind.noun}'s; "
            f"set another `name` on the class"
        )
    if builtin is ref.cls:  # a path to a built-in class is the built-in
        return _from_name(ref.name, kind)
    return ref


# ------------------------------------------------------------------- provenance
def _entry_points(kind: Kind) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=kind.group))


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "unknown"


def _package_of(module_name: str) -> tuple[str, str]:
    """The installed distribution providing a module, and its version; ("", "unknown") if none
    (a folder on PYTHONPATH)."""
    top = module_name.split(".", 1)[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if not dists:
        return "", "unknown"
    return dists[0], importlib.metadata.version(dists[0])


def _project_version() -> tuple[str, str]:
    try:
        return "mgmvae-benchmark", importlib.metadata.version("mgmvae-benchmark")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH (the rules' conda env)
        return "mgmvae-benchmark", "unknown"
