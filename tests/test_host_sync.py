"""No host sync inside a training step (loss and backward), for every model and its variants.

The ``meta`` device stands in for a GPU: its tensors have shapes but no values, so whatever needs a
value on the host (``item``, ``bool``, ``tolist``, a shape that depends on the data such as
``nonzero`` or ``repeat_interleave`` by a tensor) raises there, where a GPU would stall its queue
until the value came back. A host-to-device copy (``torch.tensor(..., device=)``, ``new_tensor``,
``.to`` of a host tensor) does not raise on ``meta``: those are counted. Host-side draws (MVAE's
random subsets from torch's CPU generator) stay legal, as on a GPU run. The training loop's own
syncs (one per ``log_every`` steps and one per epoch) are outside the step."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from mgmvae.registry import builtin_model_names
from tests.conftest import THREE, make_batch, make_model

COPIES = {"tensor", "as_tensor", "new_tensor", "to", "copy_", "cuda"}


class HostCopies(TorchFunctionMode):
    """Records each call that puts host data on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", str(func))
        data = args[1:] if name in ("new_tensor", "copy_") else args[:1]  # what is copied (not ``self``)
        sources = [a for a in data if isinstance(a, torch.Tensor)]
        on_meta = isinstance(out, torch.Tensor) and out.device.type == "meta"
        from_host = not sources or any(t.device.type == "cpu" for t in sources)
        if name in COPIES and on_meta and from_host:
            self.copies.append(name)
        return out


def variants():
    for name in builtin_model_names():
        extra = [{"stratified": False}] if name in ("mopoe", "mwbvae") else []
        for params in [{}, *extra]:
            for count in (2, 3):
                yield pytest.param(name, params, count, id=f"{name}-{'-'.join(map(str, params.values()))}-M{count}")


@pytest.mark.parametrize(("name", "params", "count"), list(variants()))
def test_a_training_step_never_waits_for_the_device(name, params, count):
    shapes = dict(list(THREE.items())[:count])
    model = make_model(name, params, shapes=shapes).to("meta").train()
    if name == "mgmvae":  # the mixture prior, center loss and semi-hard negatives in play
        model.mixture_ready.fill_(True)
        model._ready, model._epoch = True, 10**6
    x = {m: v.to("meta") for m, v in make_batch(shapes).items()}
    with HostCopies() as mode:
        terms = model.loss(x)
        terms["loss"].backward()
    assert all(t.device.type == "meta" for t in terms.values())
    assert mode.copies == [], f"host-to-device copies in a {name} step: {mode.copies}"
