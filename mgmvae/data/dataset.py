"""The dataset interface: what a dataset class declares and how it is built (docs/datasets.md).

Every dataset source, built-in or your own, is a subclass of ``Dataset`` that the one registry
(mgmvae/registry.py, ``DATASETS``) finds from ``datasets.<name>.source``: a built-in's name,
``pkg.module:Class``, ``path/to/file.py:Class`` or an entry point in the group ``mgmvae.datasets``.
The entry's other keys override ``default_params``; an unknown key, or a value of another type than
its default, is refused naming the key, and ``check_params`` refuses values the class cannot build
from. ``build`` returns the PairedData (mgmvae/data/paired.py); the same seed must give bitwise the
same tensors (``python -m mgmvae check-dataset`` checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mgmvae.data.paired import DataError, PairedData

Shape = tuple[int, int, int]


class ParamError(DataError):
    """A dataset parameter that cannot be used; ``key`` names it, the message says why and the fix."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Dataset:
    """A dataset source: its modalities and their (C, H, W) shapes, its parameters, its build."""

    name: ClassVar[str] = "base"  # the source name: what `datasets.<name>.source` gives for a built-in
    modalities: ClassVar[tuple[str, ...]] = ()  # two or more; their order is the tables' m0, m1, ...
    shapes: ClassVar[Mapping[str, Shape]] = {}  # (C, H, W) per modality under the default parameters
    default_params: ClassVar[Mapping[str, Any]] = {}  # every parameter with its default (JSON values)

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = resolve_params(type(self), params or {})
        self.check_params()

    def check_params(self) -> None:
        """Refuse parameter values this source cannot build from: raise ParamError(key, why)."""

    def image_shapes(self) -> dict[str, Shape]:
        """(C, H, W) of each modality under ``self.params`` (override where a parameter changes them)."""
        return {m: tuple(self.shapes[m]) for m in self.modalities}  # type: ignore[misc]  # checked (C, H, W)

    def build(self, name: str, seed: int, data_dir: Path, download: bool) -> PairedData:
        """The dataset ``name`` (its config key) for ``seed``; raw files, if any, under ``data_dir``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    def raw_files(self, data_dir: Path) -> list[Path]:
        """The files ``build`` reads under ``data_dir`` (checked before any job); none by default."""
        return []

    def download_urls(self) -> list[str]:
        """Where ``build`` would download missing raw files from (their hosts are checked before any
        job); DataError if such a download could not be verified."""
        return []


def resolve_params(cls: type[Dataset], given: Mapping[str, Any]) -> dict[str, Any]:
    """``default_params`` overridden by ``given``; ParamError for an unknown key or a value whose JSON
    type differs from its default's (a default of None accepts any value; check_params decides)."""
    params = dict(cls.default_params)
    for key, value in given.items():
        if key not in params:
            raise ParamError(key, f"unknown key {key!r} for dataset source {cls.name!r}; allowed: {sorted(params)}")
        default = params[key]
        if default is not None and not _same_type(value, default):
            raise ParamError(
                key, f"dataset key {key!r} must be {_json_type(default)} like its default {default!r}, got {value!r}"
            )
        params[key] = value
    return params


def check_positive(params: Mapping[str, Any], *keys: str) -> None:
    """ParamError unless each of ``keys`` is a positive integer."""
    for key in keys:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParamError(key, f"dataset key {key!r} must be a positive integer, got {value!r}")


def _same_type(value: Any, default: Any) -> bool:
    """Of the default's JSON type; an integer also stands for a number (1 for 1.0)."""
    return _json_type(value) == _json_type(default) or (_json_type(default), _json_type(value)) == (
        "a number",
        "an integer",
    )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    kinds = {float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    return kinds.get(type(value), f"a {type(value).__name__}")
