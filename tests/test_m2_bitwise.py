"""With two modalities every model computes what it computed before the models were written for M
modalities (commit 8919afd, branch ``core`` before the M-modality change): the same random draws in
the same order, so the same loss terms, gradients, trained parameters and evaluation outputs.

Each case trains a model (config.yaml's settings for ``digits_street``, two epochs of four steps on
tests/conftest.py's synthetic pairs, one CPU thread), then on a fixed batch with a fixed seed takes
its loss terms and their gradients, and the evaluation outputs (``embed``, ``generate``,
``translate``, ``sample``, ``cluster``, both protocols).

The run is in float64 (model, batches and torch's default dtype) so that it does not depend on the
CPU. Kernels differ between CPUs (AVX2, AVX512; Intel, AMD: vector widths change the order of sums)
in the last bits; in float32 those bits grow over eight optimiser steps to 1e-4 relative (IDMVAE's
terms), too close to what a wrong equation moves. In float64 they stay under ``RTOL``. Tensors are
recorded by three float64 statistics (sum, L2 norm, a fixed position-weighted sum that sees a
permutation), discrete outputs (cluster labels) exactly. tests/fixtures/m2_reference.json was
written with the models of commit 8919afd:

    git worktree add --detach /tmp/m2-old 8919afd && cp tests/test_m2_bitwise.py /tmp/m2-old/tests/
    cd /tmp/m2-old && $VENV/bin/python -m tests.test_m2_bitwise --write $REPO/tests/fixtures/m2_reference.json

(run from /tmp/m2-old, ``mgmvae`` and ``baselines`` import from that checkout).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from mgmvae.config import load_config
from mgmvae.data.paired import PairedData
from mgmvae.registry import resolve, run_settings
from mgmvae.seeding import seed_everything
from mgmvae.train import train_model
from tests.conftest import synthetic_paired

REFERENCE = Path(__file__).parent / "fixtures" / "m2_reference.json"
# float64 runs on other kernels differed by <= 2e-12 relative (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
# MKL_ENABLE_INSTRUCTIONS down to SSE4); the history passes through float32 (one ulp <= 1.2e-7).
RTOL = 1e-6
# (case, model, params over config.yaml's): every model as configured, and variants of the paths
# the M-modality change touches (MGMVAE's cross terms and alignment, MVAE's subsets, DMVAE's terms).
CASES = [
    ("mvae", "mvae", {}),
    ("mmvae", "mmvae", {"k": 3}),
    ("mmvae_plus", "mmvae_plus", {"prior_scale": "unit"}),  # the priors 8919afd had (recorded there without the key)
    ("idmvae", "idmvae", {}),
    ("mopoe", "mopoe", {}),
    ("mopoe_blocks", "mopoe", {"stratified": False}),
    ("mwbvae", "mwbvae", {}),
    ("dmvae", "dmvae", {}),
    ("dmvae_poe", "dmvae", {"poe_reconstruction": True}),
    ("mgmvae", "mgmvae", {"mixture_init_epoch": 1, "mixture_init_samples": 64, "semi_hard_from_epoch": 1}),
    (
        "mgmvae_own",
        "mgmvae",
        {"mixture_init_epoch": 1, "mixture_init_samples": 64, "cross_private": "own", "center_on": "sample"}
        | {"negatives": 3},
    ),
]


class Float64Pairs(PairedData):
    """The synthetic pairs with float64 batches."""

    def batch(self, split, pair_index):
        return {m: x.double() for m, x in super().batch(split, pair_index).items()}

    def unimodal(self, modality, split, index=None):
        return super().unimodal(modality, split, index).double()


def statistics(t: torch.Tensor) -> list:
    """A tensor as (dtype, shape, sum, L2 norm, position-weighted sum); integer tensors whole."""
    t = t.detach().cpu().contiguous()
    if not t.is_floating_point():
        return [str(t.dtype), list(t.shape), t.flatten().tolist()]
    flat = t.double().flatten()
    weights = (torch.arange(len(flat), dtype=torch.int64) * 2654435761 % 1000).double() / 1000 - 0.5
    return [str(t.dtype), list(t.shape), float(flat.sum()), float(flat.norm()), float(flat @ weights)]


def fingerprint(model_name: str, params: dict) -> dict:
    """Everything a two-modality run of the model computes, in float64."""
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    try:
        return _fingerprint(model_name, params)
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)


def _fingerprint(model_name: str, params: dict) -> dict:
    toy = synthetic_paired(n_train=64, n_test=16)
    data = Float64Pairs(toy.name, toy.modalities, toy.images, toy.labels, toy.pairs, toy.meta)
    settings = run_settings(load_config(), "digits_street", model_name)
    settings = {**settings, "epochs": 2, "batch_size": 16, "params": {**settings["params"], **params}}
    seed_everything(0)
    model = resolve(model_name).cls(dict(data.shapes), settings).double()
    history = train_model(model, data, settings, seed=0, progress=False)
    out: dict = {"history": history}
    out["parameters"] = {n: statistics(p) for n, p in model.named_parameters()}

    batch = data.batch("train", torch.arange(16))
    torch.manual_seed(1)
    model.zero_grad()
    terms = model.loss(batch)
    terms["loss"].backward()
    out["terms"] = {k: float(v.detach()) for k, v in terms.items()}
    out["gradients"] = {n: statistics(p.grad) for n, p in model.named_parameters() if p.grad is not None}

    model.eval()
    test = data.batch("test", torch.arange(16))
    a, b = data.modalities
    outputs = {}
    for protocol in ("mean", "sample"):
        torch.manual_seed(2)
        outputs[f"embed_both_{protocol}"] = model.embed(test, [a, b], protocol)
        outputs[f"embed_{a}_{protocol}"] = model.embed(test, [a], protocol)
        outputs[f"generate_{a}_{b}_{protocol}"] = model.generate({a: test[a]}, a, b, protocol)
        outputs[f"generate_{b}_{a}_{protocol}"] = model.generate({b: test[b]}, b, a, protocol)
        outputs[f"translate_{a}_{b}_{protocol}"] = model.translate({a: test[a]}, {b: test[b].flip(0)}, a, b, protocol)
    torch.manual_seed(3)
    outputs.update({f"sample_{m}": x for m, x in model.sample(4).items()})
    clusters = model.cluster(test, [a, b])
    if clusters is not None:
        outputs["cluster"] = clusters
    out["outputs"] = {k: statistics(v) for k, v in outputs.items()}
    return out


def differences(got, want, where: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ: a float beyond RTOL (relative to the larger magnitude, with
    an absolute floor of RTOL for values near 0), anything else at all."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{where}: keys {sorted(set(got) ^ set(want))} differ"]
        return [d for k in want for d in differences(got[k], want[k], f"{where}/{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)):
        if math.isclose(got, want, rel_tol=RTOL, abs_tol=RTOL):
            return []
        return [f"{where}: {got!r} != {want!r} (relative {abs(got - want) / max(abs(want), 1e-300):.1e})"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize(("case", "model_name", "params"), CASES, ids=[c[0] for c in CASES])
def test_two_modalities_compute_what_they_computed_before(reference, case, model_name, params):
    bad = differences(fingerprint(model_name, params), reference[case])
    assert not bad, f"{case}: {len(bad)} values differ: " + "; ".join(bad[:6])


def test_the_comparison_sees_a_wrong_equation(reference, monkeypatch):
    """The guard is not blind: MVAE with its KL term 1% too heavy (one term of one equation)."""
    from mgmvae.distributions import DiagGaussian

    kl = DiagGaussian.kl_standard_normal
    monkeypatch.setattr(DiagGaussian, "kl_standard_normal", lambda self: 1.01 * kl(self))
    bad = differences(fingerprint("mvae", {}), reference["mvae"])
    assert any(d.startswith("/terms/") for d in bad) and any(d.startswith("/history") for d in bad), bad


if __name__ == "__main__":  # the recorder: python -m tests.test_m2_bitwise --write PATH
    if sys.argv[1:2] != ["--write"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tests.test_m2_bitwise --write PATH")
    cases = {case: fingerprint(name, params) for case, name, params in CASES}
    Path(sys.argv[2]).write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(f"wrote {sys.argv[2]}: {len(cases)} cases")
