"""The contracts a plugin keeps, checked in seconds before any job: what a model does
(:mod:`mgmvae.contracts.model`, ``check-model``, docs/plugins.md) and what a dataset builds
(:mod:`mgmvae.contracts.dataset`, ``check-dataset``, docs/datasets.md). Both return a list of
:class:`Failure` and stop a study whose plugin breaks its contract (:func:`refuse_broken`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mgmvae.config import ConfigError
from mgmvae.registry import PluginRef


@dataclass(frozen=True)
class Failure:
    """A broken check: the method (or what was checked), what was expected and what came back."""

    method: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.method}: expected {self.expected}; got {self.got}"


class Broken(Exception):
    """One check failed; later checks that need its result are skipped."""

    def __init__(self, failure: Failure):
        super().__init__(str(failure))
        self.failure = failure


def call(method: str, fn: Callable[[], Any], expected: str = "no exception") -> Any:
    """``fn()``; an exception of the plugin's code as :class:`Broken`, naming ``method``."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - any exception of user code is a contract failure
        raise Broken(Failure(method, expected, f"{type(error).__name__}: {error}")) from None


def origin(ref: PluginRef) -> str:
    """How a plugin was found, its target, package and version (the reports' first line)."""
    return f"{ref.kind} {ref.target} ({ref.package or 'no package'} {ref.version})"


def refuse_broken(who: str, ref: PluginRef, failures: Sequence[Failure], entry: str) -> None:
    """A ConfigError naming the plugin and its first failures, if there are any."""
    if failures:
        raise ConfigError(
            f"{who} breaks the {ref.noun} contract; nothing was run. {'; '.join(map(str, failures[:5]))}. "
            f"Full report: python -m mgmvae check-{ref.noun} {entry}"
        )
