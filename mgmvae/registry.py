"""The model registry: how a name in ``models`` (or ``ablation.model``, or ``--model``) becomes a class.

One registry for every model. A config entry is one of
  ``mvae``                      a built-in (``BUILTINS``) or an installed package's entry point in the
                                group ``mgmvae.models`` (``name = "pkg.module:Class"``);
  ``pkg.module:Class``          an importable class (installed, or on PYTHONPATH);
  ``path/to/file.py:Class``     a class in a local file (relative to the working directory).
Each resolves to a ``ModelRef``. Its ``name`` (the class's ``name``; for an entry point, the entry
point's name, which must equal it) is the run name: a path component
(``results/<study>/runs/<dataset>/<name>/``), a Snakemake wildcard and the ``model_settings`` key,
so it must match ``NAME_PATTERN`` and may not be a built-in's name. A class that is not a model is
refused here, before any work; ``mgmvae.contract`` then checks what the model does.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgmvae.base import MultimodalVAE
from mgmvae.config import ConfigError, settings_keys

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
ENTRY_POINT_GROUP = "mgmvae.models"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
FILE_PATH = re.compile(r"^.+\.py:[A-Za-z_]\w*$")
GUIDE = "docs/plugins.md"


class PluginError(ConfigError):
    """A model entry that cannot be used; the message names the entry, the problem and the fix."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its run name, its class and where it came from (logged to MLflow)."""

    name: str
    cls: type[MultimodalVAE]
    kind: str  # "builtin" | "entry point" | "import path" | "file"
    target: str  # "pkg.module:Class" or "/abs/path/file.py:Class"
    package: str  # the distribution that provides it ("" for a local file)
    version: str  # the distribution's version, or the file's sha256 prefix

    @property
    def builtin(self) -> bool:
        return self.kind == "builtin"

    @property
    def entry(self) -> str:
        """What resolves to this model again: its name, or its path (saved in model files)."""
        return self.name if self.kind in ("builtin", "entry point") else self.target

    def tags(self) -> dict[str, str]:
        """MLflow tags tracing a run to the code of its model."""
        return {"model_import_path": self.target, "model_package": self.package, "model_version": self.version}


@functools.cache
def builtins() -> dict[str, type[MultimodalVAE]]:
    """The built-in model classes by run name (imported on first use)."""
    classes = []
    for target in BUILTINS:
        module, _, attr = target.partition(":")
        classes.append(getattr(importlib.import_module(module), attr))
    return {cls.name: cls for cls in classes}


def builtin_model_names() -> list[str]:
    return sorted(builtins())


def build_model(entry: str, shapes: Mapping[str, Any], settings: Mapping[str, Any]) -> MultimodalVAE:
    """An untrained model of the class ``entry`` names (see ``resolve``)."""
    return resolve(entry).cls(dict(shapes), settings)


def is_path_entry(entry: str) -> bool:
    return ":" in entry


def resolve(entry: str) -> ModelRef:
    """The model an entry names; PluginError naming the entry and the fix otherwise."""
    if not isinstance(entry, str) or not entry:
        raise PluginError(
            f"model entry {entry!r} must be a non-empty string (a name, pkg.module:Class or file.py:Class)"
        )
    if FILE_PATH.match(entry):
        return _from_file(entry)
    if IMPORT_PATH.match(entry):
        return _from_import_path(entry)
    if is_path_entry(entry):
        raise PluginError(f"model entry {entry!r} is neither pkg.module:Class nor path/to/file.py:Class (see {GUIDE})")
    return _from_name(entry)


def available() -> list[str]:
    """Every model name that resolves without a path: built-ins and installed entry points."""
    return sorted({*builtin_model_names(), *(ep.name for ep in _entry_points())})


def resolve_all(entries: Iterable[str]) -> dict[str, ModelRef]:
    """Resolve a list of entries; refuse two entries that come to the same run name."""
    refs: dict[str, ModelRef] = {}
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


def find(config: Mapping[str, Any], model: str) -> ModelRef:
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
def _from_name(name: str) -> ModelRef:
    points = {ep.name: ep for ep in _entry_points()}
    if name in builtin_model_names():
        if name in points:
            raise PluginError(
                f"the entry point {name!r} of package {_dist_name(points[name])!r} (group {ENTRY_POINT_GROUP}) "
                f"has the name of a built-in model; rename the entry point and the class's `name`"
            )
        cls = builtins()[name]
        return ModelRef(name, cls, "builtin", _import_path(cls), *_project_version())
    if name in points:
        return _from_entry_point(points[name])
    raise PluginError(
        f"unknown model {name!r}; available models: {', '.join(available())}. A model of your own: "
        f"pkg.module:Class, path/to/file.py:Class, or an entry point in the group {ENTRY_POINT_GROUP} (see {GUIDE})"
    )


def _from_entry_point(ep: importlib.metadata.EntryPoint) -> ModelRef:
    label = f"entry point {ep.name!r} ({ep.value}) of package {_dist_name(ep)!r}"
    try:
        obj = ep.load()
    except Exception as error:  # noqa: BLE001 - any import failure of user code is the same refusal
        raise PluginError(f"{label}: cannot be loaded ({type(error).__name__}: {error})") from None
    cls = check_class(obj, label)
    if cls.name != ep.name:
        raise PluginError(f"{label}: the class's `name` is {cls.name!r}; make it equal to the entry point's name")
    dist = ep.dist
    return ModelRef(ep.name, cls, "entry point", ep.value, _dist_name(ep), dist.version if dist else "unknown")


def _from_import_path(entry: str) -> ModelRef:
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001
        raise PluginError(
            f"model plugin {entry!r}: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
            f"install its package into this environment or put its folder on PYTHONPATH"
        ) from None
    cls = _checked_attr(module, attr, f"model plugin {entry!r}")
    package, version = _package_of(module_name)
    return _named(ModelRef(cls.name, cls, "import path", entry, package, version), entry)


def _from_file(entry: str) -> ModelRef:
    file, _, attr = entry.rpartition(":")
    path = Path(file).expanduser().resolve()
    label = f"model plugin {entry!r}"
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
    cls = _checked_attr(module, attr, label)
    return _named(ModelRef(cls.name, cls, "file", f"{path}:{attr}", "", f"sha256:{digest[:16]}"), entry)


# ---------------------------------------------------------------------- class checks
def check_class(obj: Any, label: str) -> type[MultimodalVAE]:
    """Refuse what cannot be a model class, naming the problem; return the class."""
    if not (isinstance(obj, type) and issubclass(obj, MultimodalVAE)):
        raise PluginError(f"{label}: {obj!r} is not a model: subclass mgmvae.base.MultimodalVAE (see {GUIDE})")
    if obj.loss is MultimodalVAE.loss:
        raise PluginError(f"{label}: {obj.__name__} lacks the method loss(batch) -> dict (see {GUIDE})")
    name = obj.name
    if not isinstance(name, str) or name == MultimodalVAE.name or not NAME_PATTERN.match(name):
        raise PluginError(
            f"{label}: the class attribute `name` is {name!r}; set it to the run name, lowercase letters, "
            f'digits and _ (pattern {NAME_PATTERN.pattern}), e.g. name = "my_vae"'
        )
    check_default_params(obj, label)
    return obj


def check_default_params(cls: type[MultimodalVAE], label: str) -> None:
    """``default_params`` is the model's ``params`` section: a mapping of identifiers to
    JSON-able values (they are hashed and logged) that does not shadow a settings key."""
    params = cls.default_params
    if not isinstance(params, Mapping):
        raise PluginError(
            f"{label}: default_params must be a dict of parameter -> default, not {type(params).__name__}"
        )
    reserved = settings_keys()
    for key, value in params.items():
        if not (isinstance(key, str) and key.isidentifier()):
            raise PluginError(f"{label}: default_params key {key!r} is not a Python identifier")
        if key in reserved:
            raise PluginError(
                f"{label}: default_params key {key!r} is a settings key of the config schema (settings.{key}); "
                f"a model parameter of that name would be confused with it in model_settings: rename it"
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise PluginError(
                f"{label}: default_params[{key!r}] = {value!r} is not a JSON value (number, string, bool, "
                f"null, list or dict): config hashes and MLflow params need one"
            ) from None


def _checked_attr(module: Any, attr: str, label: str) -> type[MultimodalVAE]:
    if not hasattr(module, attr):
        raise PluginError(f"{label}: module {module.__name__!r} has no attribute {attr!r}")
    return check_class(getattr(module, attr), label)


def _named(ref: ModelRef, entry: str) -> ModelRef:
    """Refuse a plugin that takes a built-in's run name (its runs would overwrite the built-in's)."""
    builtin = builtins().get(ref.name)
    if builtin is not None and builtin is not ref.cls:
        raise PluginError(
            f"model plugin {entry!r}: its name {ref.name!r} is a built-in model's; set another `name` on the class"
        )
    if builtin is ref.cls:  # a path to a built-in class is the built-in
        return _from_name(ref.name)
    return ref


# ------------------------------------------------------------------- provenance
def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "unknown"


def _import_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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
