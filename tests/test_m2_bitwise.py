"""With two modalities every model computes, bit for bit, what it computed before the models
were written for M modalities: the same random draws in the same order, so the same loss terms,
gradients, trained parameters and evaluation outputs (the MNIST-SVHN and MNIST-CDCB tables stay
byte for byte the same).

Each case trains a model (config.yaml's settings for ``digits_street``, two epochs of four steps on
tests/conftest.py's synthetic pairs, one CPU thread), then on a fixed batch with a fixed seed takes
its loss terms and their gradients, and the evaluation outputs (``embed``, ``generate``,
``translate``, ``sample``, ``cluster``, both protocols). The expected values are
tests/fixtures/m2_reference.json: loss terms and per-epoch history as exact floats (``float.hex``),
tensors as SHA-256 digests of their bytes (a digest names the tensor that differs). It was written
with the models of commit 8919afd (branch ``core`` before the M-modality change):

    git worktree add --detach /tmp/m2-old 8919afd && cp tests/test_m2_bitwise.py /tmp/m2-old/tests/
    cd /tmp/m2-old && $VENV/bin/python -m tests.test_m2_bitwise --write $REPO/tests/fixtures/m2_reference.json

(run from /tmp/m2-old, ``mgmvae`` and ``baselines`` import from that checkout). Float results
depend on the CPU's kernels: the reference records torch's version and CPU capability, and on
another the test is skipped, saying so; rewrite it there the same way from that commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from mgmvae.config import load_config, run_settings
from mgmvae.registry import resolve
from mgmvae.seeding import seed_everything
from mgmvae.train import train_model
from tests.conftest import synthetic_paired

REFERENCE = Path(__file__).parent / "fixtures" / "m2_reference.json"
# (case, model, params over config.yaml's): every model as configured, and variants of the paths
# the M-modality change touches (MGMVAE's cross terms and alignment, MVAE's subsets, DMVAE's terms).
CASES = [
    ("mvae", "mvae", {}),
    ("mmvae", "mmvae", {"k": 3}),
    ("mmvae_plus", "mmvae_plus", {}),
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


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode() + t.numpy().tobytes()).hexdigest()[:16]


def fingerprint(model_name: str, params: dict) -> dict:
    """Everything a two-modality run of the model computes, as exact floats and digests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fingerprint(model_name, params)
    finally:
        torch.set_num_threads(threads)


def _fingerprint(model_name: str, params: dict) -> dict:
    data = synthetic_paired(n_train=64, n_test=16)
    settings = run_settings(load_config(), "digits_street", model_name)
    settings = {**settings, "epochs": 2, "batch_size": 16, "params": {**settings["params"], **params}}
    seed_everything(0)
    model = resolve(model_name).cls(dict(data.shapes), settings)
    history = train_model(model, data, settings, seed=0, progress=False)
    out: dict = {"history": [{k: float(v).hex() for k, v in epoch.items()} for epoch in history]}
    out["parameters"] = {n: digest(p) for n, p in model.named_parameters()}

    batch = data.batch("train", torch.arange(16))
    torch.manual_seed(1)
    model.zero_grad()
    terms = model.loss(batch)
    terms["loss"].backward()
    out["terms"] = {k: float(v.detach()).hex() for k, v in terms.items()}
    out["gradients"] = {n: digest(p.grad) for n, p in model.named_parameters() if p.grad is not None}

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
    out["outputs"] = {k: digest(v) for k, v in outputs.items()}
    return out


@pytest.fixture(scope="module")
def reference() -> dict:
    recorded = json.loads(REFERENCE.read_text())
    if recorded["environment"] != environment():
        pytest.skip(
            f"the M = 2 reference was recorded under {recorded['environment']}, this is {environment()}: "
            "float kernels differ; rewrite it from commit 8919afd as this module's docstring says"
        )
    return recorded["cases"]


@pytest.mark.parametrize(("case", "model_name", "params"), CASES, ids=[c[0] for c in CASES])
def test_two_modalities_compute_what_they_computed_before(reference, case, model_name, params):
    got, want = fingerprint(model_name, params), reference[case]
    for part in ("terms", "history", "parameters", "gradients", "outputs"):
        assert got[part] == want[part], f"{case}: {part} differ: {_differences(got[part], want[part])}"


def _differences(got, want) -> str:
    if isinstance(got, list):
        return "; ".join(_differences(g, w) for g, w in zip(got, want, strict=False) if g != w) or "lengths"
    keys = sorted(set(got) | set(want))
    bad = [k for k in keys if got.get(k) != want.get(k)]
    return ", ".join(
        f"{k}: {float.fromhex(got[k]) if _is_hex(got.get(k)) else got.get(k)} != "
        f"{float.fromhex(want[k]) if _is_hex(want.get(k)) else want.get(k)}"
        for k in bad[:6]
    )


def _is_hex(value) -> bool:
    return isinstance(value, str) and value.startswith(("0x", "-0x"))


if __name__ == "__main__":  # the recorder: python -m tests.test_m2_bitwise --write PATH
    if sys.argv[1:2] != ["--write"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tests.test_m2_bitwise --write PATH")
    cases = {case: fingerprint(name, params) for case, name, params in CASES}
    Path(sys.argv[2]).write_text(json.dumps({"environment": environment(), "cases": cases}, indent=1) + "\n")
    print(f"wrote {sys.argv[2]}: {len(cases)} cases")
