"""A model's or a dataset's parameters, declared once as a dataclass ``Params`` on its class: each
field's type (a ``Literal`` for a choice, pydantic's ``PositiveInt`` and the like for a range), its
default (the reference's value) and, in a comment, the reason. ``config.yaml`` holds only a study's
overrides; ``resolve`` refuses an unknown key or a value of another type or out of range, naming the
key, the value and what is allowed (pydantic, strictly: "1" is no integer, an integer is a number).
A plugin may give a dict ``default_params`` instead: each parameter is then of its default's type.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

# Field metadata of a parameter left out of a run's resolved settings (so of its config_hash) while at
# its default, so that declaring a parameter a class always had leaves the runs' hashes as they were.
IMPLICIT = {"implicit": True}
_FROM_DICTS: dict[Any, type] = {}


class ParamError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key  # the parameter


def params_class(owner: Any) -> type:
    """The owner's parameter dataclass: its ``Params``, or one made from its ``default_params``."""
    given = dict(owner.default_params)
    if given and owner not in _FROM_DICTS:
        copied = [dataclasses.field(default_factory=functools.partial(copy.deepcopy, v)) for v in given.values()]
        fields = [(key, Any if v is None else type(v), f) for (key, v), f in zip(given.items(), copied, strict=True)]
        _FROM_DICTS[owner] = dataclasses.make_dataclass(f"{owner.__name__}Params", fields, frozen=True)
    return _FROM_DICTS[owner] if given else owner.Params


def defaults(params: type, implicit: bool = True) -> dict[str, Any]:
    """Every parameter's default; without ``implicit``, not those marked ``IMPLICIT``."""
    values = dataclasses.asdict(params())
    return {f.name: values[f.name] for f in dataclasses.fields(params) if implicit or not f.metadata.get("implicit")}


@functools.cache
def _adapter(params: type, key: str) -> TypeAdapter:
    return TypeAdapter(typing.get_type_hints(params, include_extras=True)[key])


def resolve(params: type, given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """The defaults of ``params`` overridden by ``given``; ParamError naming the key otherwise."""
    names = [f.name for f in dataclasses.fields(params)]
    if unknown := sorted(set(given) - set(names)):
        raise ParamError(unknown[0], f"{owner} has no parameter(s) {unknown}; its parameters are {sorted(names)}")
    for key, value in given.items():
        try:
            _adapter(params, key).validate_python(value, strict=True)
        except ValidationError as error:
            why = " or ".join(dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in error.errors()))
            raise ParamError(key, f"{owner}: parameter {key} = {value!r}: {why}") from None
    return {**defaults(params), **given}
