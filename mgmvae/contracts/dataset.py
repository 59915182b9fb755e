"""The dataset contract (``python -m mgmvae check-dataset ENTRY``; docs/datasets.md, "Check it", lists
each check) and the validation of a config's datasets before any job: the declared modalities and
shapes have networks, and ``build`` gives, twice from one seed, bitwise the same well-formed data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mgmvae import nets
from mgmvae.config import ConfigError, studied_datasets
from mgmvae.contracts import Broken, Failure, call, origin, refuse_broken
from mgmvae.data.dataset import Dataset, Shape
from mgmvae.data.paired import SPLITS, PairedData
from mgmvae.registry import PluginRef
from mgmvae.study_datasets import config_source

NUM_CLASSES = 10  # the digit classifiers' outputs


def network_problem(shape: Shape) -> str | None:
    """Why the shared nets or the digit classifier cannot take images of ``shape``; None if they can."""
    try:
        nets.Encoder(shape, 2, 1)
        nets.Decoder(shape, 3)
        nets.digit_classifier(shape, "mmvae")  # the network that takes every supported shape
    except ValueError as error:
        return str(error)
    return None


def check_dataset(
    source: Dataset, name: str, seed: int, data_dir: str | Path, download: bool
) -> tuple[list[Failure], PairedData | None]:
    """Every contract check of ``source`` (on its parameters), built as ``name``: the failures ([] if
    it keeps the contract) and what it built (None if it did not)."""
    shapes = source.image_shapes()
    by_shape: dict[Shape, list[str]] = {}
    for m, shape in shapes.items():
        by_shape.setdefault(tuple(shape), []).append(m)  # type: ignore[arg-type]  # (C, H, W)
    failures = [
        Failure(f"shapes of {ms}", "a shape the networks accept", problem)
        for shape, ms in by_shape.items()
        if (problem := network_problem(shape))
    ]
    builds = []
    try:
        for attempt in ("build", "build again (same seed)"):
            builds.append(
                call(attempt, lambda: source.build(name, seed, Path(data_dir), download), "a PairedData, no exception")
            )
            if not isinstance(builds[-1], PairedData):
                raise Broken(Failure(attempt, "a PairedData", type(builds[-1]).__name__))
    except Broken as stop:
        return [*failures, stop.failure], None
    data, again = builds
    return failures + _declared(data, source, shapes) + _labels(data) + _same(data, again), data


def _declared(data: PairedData, source: Dataset, shapes: Mapping[str, Shape]) -> list[Failure]:
    if list(data.modalities) != list(source.modalities):
        return [Failure("modalities", f"the declared {list(source.modalities)}", f"{list(data.modalities)}")]
    return [
        Failure(f"shape of {m!r}", f"the declared {shapes[m]}", f"{data.shape(m)}")
        for m in data.modalities
        if data.shape(m) != tuple(shapes[m])
    ]


def _labels(data: PairedData) -> list[Failure]:
    failures = []
    for s in SPLITS:
        if data.pairs[s].dtype != torch.int64:
            failures.append(Failure(f"pairs[{s!r}]", "int64 tuple indices", f"{data.pairs[s].dtype}"))
        for m in data.modalities:
            y = data.labels[m][s]
            if y.dtype != torch.int64 or int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES:
                got = f"{y.dtype} in [{int(y.min())}, {int(y.max())}]"
                failures.append(Failure(f"labels[{m!r}][{s!r}]", f"int64 in 0..{NUM_CLASSES - 1}", got))
                continue
            rows = data.pairs[s][:, data.modalities.index(m)]
            if not torch.equal(y[rows], data.pair_labels(s)):
                differ = int((y[rows] != data.pair_labels(s)).sum())
                failures.append(
                    Failure(
                        f"tuples of {s}", f"{m!r} of each tuple labelled as {data.modalities[0]!r}", f"{differ} not"
                    )
                )
    for m in data.modalities:
        unseen = sorted(set(data.labels[m]["test"].tolist()) - set(data.labels[m]["train"].tolist()))
        if unseen:
            failures.append(Failure(f"labels[{m!r}]", "every test label also in training", f"test-only {unseen}"))
    return failures


def _same(data: PairedData, again: PairedData) -> list[Failure]:
    tensors = lambda d: {  # noqa: E731
        **{f"images[{m!r}][{s!r}]": d.images[m][s] for m in d.modalities for s in SPLITS},
        **{f"labels[{m!r}][{s!r}]": d.labels[m][s] for m in d.modalities for s in SPLITS},
        **{f"pairs[{s!r}]": d.pairs[s] for s in SPLITS},
    }
    first, second = tensors(data), tensors(again)
    differ = [k for k in first if k not in second or not torch.equal(first[k], second[k])]
    return (
        [Failure("seed", "bitwise the same tensors from the same seed", f"{', '.join(differ[:4])} differ")]
        if differ
        else []
    )


def describe(ref: PluginRef, source: Dataset) -> str:
    """One line: the dataset's name, where it comes from, its modalities, shapes and parameters."""
    shapes = ", ".join(f"{m} {'×'.join(map(str, s))}" for m, s in source.image_shapes().items())
    return f"{ref.name}: {origin(ref)}; modalities {shapes}; parameters {source.params}"


# ------------------------------------------------------------ config validation
def validate_datasets(config: Mapping[str, Any], contract: bool = False) -> None:
    """Every entry of ``datasets`` resolves, with its class's parameters; the studied ones' shapes have
    networks, and with ``contract`` their plugins keep the dataset contract, before any job."""
    studied = set(studied_datasets(config))
    for dataset in config["datasets"]:
        ref, source = config_source(config, dataset)
        if dataset not in studied:
            continue
        for m, shape in source.image_shapes().items():
            if problem := network_problem(shape):
                raise ConfigError(f"config key 'datasets.{dataset}.source': modality {m!r}: {problem}")
        if contract and not ref.builtin:
            failures, _ = check_dataset(source, dataset, config["data_seed"], config["data_dir"], config["download"])
            refuse_broken(f"dataset {dataset!r} ({ref.target})", ref, failures, dataset)
