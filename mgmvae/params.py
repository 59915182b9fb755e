"""A model's or a dataset's parameters, declared once as a pydantic model ``Params`` on its class (or,
for a plugin, a dict ``default_params``), and checked in one place, strictly (docs/plugins.md, "Rules a
model follows": ``Params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.json_schema import JsonDict

# Field(json_schema_extra=IMPLICIT): a parameter left out of a run's resolved settings (so of its
# config_hash) while at its default, so that declaring one a class always had keeps the runs' hashes.
IMPLICIT: JsonDict = {"implicit": True}
_FROM_DICTS: dict[Any, type[Params]] = {}


class Params(BaseModel):
    """What every class's ``Params`` derives from: strict types, frozen."""

    model_config = ConfigDict(strict=True, frozen=True, arbitrary_types_allowed=True)


class ParamError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key  # the parameter


def params_class(owner: Any) -> type[Params]:
    """The owner's parameters: its ``Params``, or a model made from its ``default_params``."""
    given = dict(owner.default_params)
    if given and owner not in _FROM_DICTS:
        fields: dict[str, Any] = {k: (Any if v is None else type(v), v) for k, v in given.items()}
        _FROM_DICTS[owner] = create_model(f"{owner.__name__}Params", __base__=Params, **fields)
    return _FROM_DICTS[owner] if given else owner.Params


def defaults(params: type[Params], implicit: bool = True) -> dict[str, Any]:
    """Every parameter's default; without ``implicit``, not those marked ``IMPLICIT``."""
    values = params().model_dump()
    return {k: values[k] for k, f in params.model_fields.items() if implicit or f.json_schema_extra != IMPLICIT}


def resolve(params: type[Params], given: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """The defaults of ``params`` overridden by ``given``; ParamError naming the key otherwise."""
    if unknown := sorted(set(given) - set(params.model_fields)):
        names = sorted(params.model_fields)
        raise ParamError(unknown[0], f"{owner} has no parameter(s) {unknown}; its parameters are {names}")
    try:
        params.model_validate(dict(given))
    except ValidationError as error:
        key = str(error.errors()[0]["loc"][0])
        why = " or ".join(
            dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in error.errors() if e["loc"][0] == key)
        )
        raise ParamError(key, f"{owner}: parameter {key} = {given[key]!r}: {why}") from None
    return {**defaults(params), **given}
