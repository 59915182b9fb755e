"""The model contract (``python -m mgmvae check-model NAME``; docs/plugins.md, "Check it", lists each
check, the ``SHAPE_SETS`` and what ``max_modalities`` refuses) and the validation of a config's models
against the registry and the contract before any job.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mgmvae.base import PROTOCOLS, MultimodalVAE
from mgmvae.config import ConfigError, ablation_datasets, ablation_variants, studied_datasets
from mgmvae.contracts import Broken, Failure, call, refuse_broken
from mgmvae.data.paired import PairedData
from mgmvae.registry import PluginError, PluginRef, resolve, resolve_all, run_settings
from mgmvae.seeding import seed_everything

Shapes = dict[str, tuple[int, int, int]]
Batch = dict[str, Tensor]
# The shape sets checked: their label, the config dataset whose settings they use, and the shapes.
SHAPE_SETS: dict[str, tuple[str, Shapes]] = {
    "mnist_svhn": ("mnist_svhn", {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}),
    "mnist_cdcb": ("mnist_cdcb", {"cd": (3, 32, 32), "cb": (3, 32, 32)}),
    "three_modalities": ("mnist_svhn", {"mnist": (1, 28, 28), "svhn": (3, 32, 32), "cd": (3, 32, 32)}),
}
BATCH = 6


def check_model(ref: PluginRef, config: Mapping[str, Any], progress: bool = False) -> list[Failure]:
    """Every contract check of ``ref`` under the config's resolved settings; [] if it keeps it."""
    failures: list[Failure] = []
    steps = list(SHAPE_SETS.items())
    for i, (label, (dataset, shapes)) in enumerate(tqdm(steps, desc=f"check-model {ref.name}", disable=not progress)):
        settings = run_settings(config, dataset, ref)
        where = f"[{label} shapes]"
        try:
            if refuses(ref.cls, shapes):
                failures += _check_refusal(ref.cls, shapes, settings, where)
            else:
                failures += _check_set(ref.cls, shapes, settings, where, first=i == 0)
        except Broken as stop:
            failures.append(stop.failure)
    return failures


def refuses(cls: type[MultimodalVAE], shapes: Shapes) -> bool:
    """Whether the class states it is defined for fewer modalities than ``shapes`` has."""
    return cls.max_modalities is not None and len(shapes) > cls.max_modalities


def limitations(cls: type[MultimodalVAE]) -> list[str]:
    """The shape sets the class refuses by its ``max_modalities``, one line each (for the report)."""
    return [
        f"[{label} shapes]: refused, as stated: defined for at most {cls.max_modalities} modalities, "
        f"this set has {len(shapes)}"
        for label, (_, shapes) in SHAPE_SETS.items()
        if refuses(cls, shapes)
    ]


def _check_refusal(cls: type[MultimodalVAE], shapes: Shapes, settings: Mapping, where: str) -> list[Failure]:
    method = f"__init__ {where}"
    expected = f"a ValueError: max_modalities = {cls.max_modalities} refuses {len(shapes)} modalities"
    try:
        cls(dict(shapes), settings)
    except ValueError:
        return []
    except Exception as error:  # noqa: BLE001 - any other exception is not the stated refusal
        return [Failure(method, expected, f"{type(error).__name__}: {error}")]
    return [Failure(method, expected, "a model")]


def _check_set(cls: type[MultimodalVAE], shapes: Shapes, settings: Mapping, where: str, first: bool) -> list[Failure]:
    failures: list[Failure] = []
    model = _build(cls, shapes, settings, where)
    data = tiny_data(shapes)
    loss = _loss(model, data, where)
    failures += _backward(model, loss, where)
    model.eval()
    batch = data.batch("test", torch.arange(BATCH))
    for check in (_embed, _generate, _translate, _sample, _cluster):
        try:
            check(model, batch, where)
        except Broken as stop:
            failures.append(stop.failure)
    if first:
        again = _loss(_build(cls, shapes, settings, where), data, where)
        if not torch.equal(loss.detach(), again.detach()):
            failures.append(
                Failure(f"loss {where}", "the same value for the same seed", f"{loss.item()!r} then {again.item()!r}")
            )
        failures += _round_trip(model, lambda: cls(dict(shapes), settings), batch, where)
    return failures


# ------------------------------------------------------------ config validation
def validate_models(config: Mapping, contract: bool = False) -> None:
    """Check ``models`` and ``ablation.model`` against the registry and their params; with ``contract``,
    also run the model contract on every plugin, so a broken one stops before any job."""
    try:
        refs = resolve_all(config["models"])
    except PluginError as error:
        raise ConfigError(f"config key 'models': {error}") from None
    for name, ref in refs.items():
        for dataset in studied_datasets(config):
            try:
                ref.cls.check_settings(run_settings(config, dataset, ref))
            except ValueError as error:
                raise ConfigError(f"config key 'model_settings.{name}.params' (dataset {dataset}): {error}") from None
    ablation = config["ablation"]
    try:
        ablated = resolve(ablation["model"])
    except PluginError as error:
        raise ConfigError(f"config key 'ablation.model': {error}") from None
    if ablated.name in refs and refs[ablated.name].cls is not ablated.cls:
        raise ConfigError(
            f"config key 'ablation.model': {ablation['model']!r} has the run name {ablated.name!r} of another "
            f"entry of 'models' ({refs[ablated.name].target}); give one of the classes another `name`"
        )
    for variant in ablation_variants(config):  # those that run: a plugin's study selects its own
        for dataset in ablation_datasets(config):
            try:
                ablated.cls.check_settings(run_settings(config, dataset, ablated, variant))
            except ValueError as error:
                raise ConfigError(
                    f"config key 'ablation.variants.{variant}.params' (dataset {dataset}): {error}"
                ) from None
    refs = {**refs, ablated.name: ablated}
    if contract:
        check_plugins(config, refs.values())


def check_plugins(config: Mapping, refs) -> None:
    """ConfigError naming the plugin and its broken methods if a plugin breaks the model contract."""
    for ref in refs:
        if not ref.builtin:  # the built-ins are checked by the tests (tests/test_plugins.py)
            who = f"model plugin {ref.target!r} (run name {ref.name!r})"
            refuse_broken(who, ref, check_model(ref, config), ref.target)


# -------------------------------------------------------------------- pieces
def tiny_data(shapes: Shapes, n: int = BATCH, seed: int = 0) -> PairedData:
    """Random uint8 images (a fixed generator), labels 0..9, pair k = (k, …, k), both splits."""
    g = torch.Generator().manual_seed(seed)
    images = {
        m: {s: torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8) for s in ("train", "test")}
        for m, shape in shapes.items()
    }
    labels = {m: {s: torch.arange(n) % 10 for s in ("train", "test")} for m in shapes}
    pairs = {s: torch.arange(n).unsqueeze(1).repeat(1, len(shapes)) for s in ("train", "test")}
    return PairedData("contract", list(shapes), images, labels, pairs, {})


def _build(cls: type[MultimodalVAE], shapes: Shapes, settings: Mapping, where: str) -> MultimodalVAE:
    seed_everything(0)
    model = call(f"__init__ {where}", lambda: cls(dict(shapes), settings))
    model.train()
    return model


def _loss(model: MultimodalVAE, data: PairedData, where: str) -> Tensor:
    torch.manual_seed(1)
    call(f"on_epoch_start {where}", lambda: model.on_epoch_start(0, data))
    terms = call(f"loss {where}", lambda: model.loss(data.batch("train", torch.arange(BATCH))))
    method = f"loss {where}"
    if not isinstance(terms, Mapping) or "loss" not in terms:
        raise Broken(Failure(method, 'a dict with the key "loss" and one key per term', _describe(terms)))
    for key, value in terms.items():
        if not (isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point()):
            raise Broken(Failure(method, f"term {key!r} a 0-dim float tensor (a batch mean)", _describe(value)))
        if not torch.isfinite(value):
            raise Broken(Failure(method, f"term {key!r} finite", repr(value.item())))
    if not terms["loss"].requires_grad:
        raise Broken(Failure(method, '"loss" attached to the parameters (requires_grad)', "a constant"))
    return terms["loss"]


def _backward(model: MultimodalVAE, loss: Tensor, where: str) -> list[Failure]:
    method = f"loss {where} (backward)"
    call(method, loss.backward)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    bad = sorted(n for n, g in grads.items() if g is not None and not torch.isfinite(g).all())
    if bad:
        return [Failure(method, "finite gradients", f"NaN/inf in {bad[:5]}")]
    reached = {n.split(".")[0] + "." + n.split(".")[1] for n, g in grads.items() if g is not None and "." in n}
    nets = [f"{kind}.{m}" for kind in ("encoders", "decoders") for m in model.modalities]
    missing = [net for net in nets if net not in reached]
    if missing:
        return [Failure(method, "a gradient on every encoder and decoder", f"none on {missing}")]
    return []


def _embed(model: MultimodalVAE, batch: Batch, where: str) -> None:
    m0, rest = model.modalities[0], model.modalities[1:]
    for protocol in PROTOCOLS:
        method = f"embed {where} protocol={protocol}"
        joint = call(method, partial(model.embed, batch, model.modalities, protocol=protocol))
        _expect_tensor(method, joint, (BATCH, None), floating=True)
        dim = joint.shape[1]
        for label, sub, mods in (
            (m0, {m0: batch[m0]}, [m0]),
            (f"{', '.join(rest)} with {m0} None", {**batch, m0: None}, model.modalities),
        ):
            out = call(f"{method} from {label}", partial(model.embed, sub, mods, protocol=protocol))
            _expect_tensor(f"{method} from {label}", out, (BATCH, dim), floating=True)


def _generate(model: MultimodalVAE, batch: Batch, where: str) -> None:
    """From each modality to each other, and with M > 2 from all the others (a list) to each."""
    sources: list[tuple[str | list[str], str]] = list(itertools.permutations(model.modalities, 2))
    if len(model.modalities) > 2:
        sources += [([m for m in model.modalities if m != t], t) for t in model.modalities]
    for (s, t), protocol in itertools.product(sources, PROTOCOLS):
        given = [s] if isinstance(s, str) else s
        method = f"generate {where} {'+'.join(given)}->{t} ({t} missing) protocol={protocol}"
        sub = {**{m: batch[m] for m in given}, t: None}
        out = call(method, partial(model.generate, sub, s, t, protocol=protocol))
        _expect_tensor(method, out, (BATCH, *model.shapes[t]), floating=True, unit=True)


def _translate(model: MultimodalVAE, batch: Batch, where: str) -> None:
    for (s, t), protocol in itertools.product(itertools.permutations(model.modalities, 2), PROTOCOLS):
        method = f"translate {where} {s}->{t} protocol={protocol}"
        style = {t: batch[t].flip(0)}  # another item's style
        out = call(method, partial(model.translate, {s: batch[s]}, style, s, t, protocol=protocol))
        _expect_tensor(method, out, (BATCH, *model.shapes[t]), floating=True, unit=True)


def _sample(model: MultimodalVAE, batch: Batch, where: str) -> None:
    method = f"sample {where}"
    out = call(method, lambda: model.sample(BATCH))
    if not isinstance(out, Mapping) or set(out) != set(model.modalities):
        raise Broken(Failure(method, f"a dict with the keys {model.modalities}", _describe(out)))
    for m, x in out.items():
        _expect_tensor(f"{method} [{m}]", x, (BATCH, *model.shapes[m]), floating=True, unit=True)


def _cluster(model: MultimodalVAE, batch: Batch, where: str) -> None:
    every, last = ("both" if len(model.modalities) == 2 else "all"), model.modalities[-1]
    for label, sub in ((every, batch), (f"{last} None", {**batch, last: None})):
        method = f"cluster {where} ({label})"
        out = call(method, partial(model.cluster, sub, model.modalities))
        if out is None:
            continue
        _expect_tensor(method, out, (BATCH,), floating=False)
        if out.dtype not in (torch.int64, torch.int32) or (out < 0).any():
            raise Broken(Failure(method, "None or non-negative int64 cluster ids", _describe(out)))


def _round_trip(model: MultimodalVAE, build: Callable[[], MultimodalVAE], batch: Batch, where: str) -> list[Failure]:
    method = f"state_dict {where} (torch.save, torch.load(weights_only=True), load_state_dict)"
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
    buffer.seek(0)
    try:
        state = torch.load(buffer, weights_only=True)
        torch.manual_seed(12345)  # another initialisation: the state dict must overwrite all of it
        restored = build()
        restored.load_state_dict(state)
    except Exception as error:  # noqa: BLE001
        return [Failure(method, "a restorable model", f"{type(error).__name__}: {error}")]
    restored.eval()
    m0, m1 = model.modalities[:2]
    outputs = lambda m: (m.embed(batch, model.modalities), m.generate(batch, m0, m1))  # noqa: E731
    if not all(map(torch.equal, outputs(model), outputs(restored))):
        return [Failure(method, "the same embed and generate outputs after the round trip", "different outputs")]
    return []


# ------------------------------------------------------------------- helpers
def _expect_tensor(method: str, out: Any, shape: tuple, floating: bool, unit: bool = False) -> None:
    want = "(" + ", ".join("D" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    kind = "a float" if floating else "an integer"
    expected = f"{kind} tensor of shape {want}" + (" with values in [0, 1]" if unit else "")
    ok = (
        isinstance(out, Tensor)
        and out.dim() == len(shape)
        and all(s is None or s == n for s, n in zip(shape, out.shape, strict=False))
        and out.is_floating_point() == floating
    )
    if not ok:
        raise Broken(Failure(method, expected, _describe(out)))
    if floating and not torch.isfinite(out).all():
        raise Broken(Failure(method, expected + ", finite", "NaN or inf values"))
    if unit and (out.min() < 0 or out.max() > 1):
        raise Broken(Failure(method, expected, f"values in [{out.min().item():.3g}, {out.max().item():.3g}]"))


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a dict with the keys {sorted(map(str, value))}"
    return f"{type(value).__name__} {value!r}"[:200]
