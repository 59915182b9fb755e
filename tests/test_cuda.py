"""What only a GPU can show, skipped without one (``make gpu-check`` runs them on one, with the
CUDA cases of tests/test_train.py and tests/test_resume.py): a model trained on a GPU evaluated on
the CPU and back, and two jobs sharing one GPU through the slots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mgmvae.config import ROOT
from mgmvae.evaluation.run import embed_pairs
from mgmvae.model_file import load_trained, save_trained
from mgmvae.registry import resolve
from mgmvae.seeding import seed_everything
from mgmvae.train import train_model
from tests.conftest import CUDA, TOY_SETTINGS, synthetic_paired

pytestmark = CUDA


@pytest.mark.parametrize(("trained_on", "evaluated_on"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_model_moves_between_the_gpu_and_the_cpu(tmp_path, trained_on, evaluated_on):
    data = synthetic_paired(n_train=128, n_test=32)
    settings = {**TOY_SETTINGS, "params": {"mixture_init_epoch": 1, "mixture_init_samples": 64}}
    ref = resolve("mgmvae")
    seed_everything(0)
    model = ref.cls(dict(data.shapes), settings)
    history = train_model(model, data.to(trained_on), settings, seed=0, progress=False)
    path = tmp_path / "model.pt"
    save_trained(
        path, model, ref, dataset="toy", seed=0, variant=None, settings=settings, config_hash="h", history=history
    )

    here, _ = load_trained(path, trained_on)
    there, _ = load_trained(path, evaluated_on)
    for (name, a), b in zip(here.state_dict().items(), there.state_dict().values(), strict=True):
        assert b.device.type == evaluated_on and torch.equal(a.cpu(), b.cpu()), name  # moves are exact
    pairs = torch.arange(data.num_pairs("test"))
    z_here = embed_pairs(here, data.to(trained_on), "test", pairs, 16, False)
    z_there = embed_pairs(there, data.to(evaluated_on), "test", pairs, 16, False)
    # Other kernels, same numbers up to float32 rounding (IEEE float32 on the GPU: no TF32).
    torch.testing.assert_close(z_there.cpu(), z_here.cpu(), rtol=1e-4, atol=1e-5)


JOB = r"""
import json, sys, torch
from mgmvae.gpu_slots import place
lease = place("auto", json.loads(sys.argv[1]))
x = torch.randn(2048, 2048, device=lease.device)
for _ in range(200):
    x = torch.tanh(x @ x / 2048)
torch.cuda.synchronize()
print(json.dumps({"device": lease.device, "gpu": lease.gpu, "slot": lease.slot, "finite": bool(x.isfinite().all())}))
"""


def test_two_jobs_share_one_gpu_through_the_slots(tmp_path):
    options = {"per_device": 2, "wait_s": 600, "lock_dir": str(tmp_path / "locks"), "lease": "always"}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    env["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"].split(",")[0]  # one GPU: both jobs on it
    cmd = [sys.executable, "-c", JOB, json.dumps(options)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    got = [json.loads(out) for out, _ in outs]
    assert {g["device"] for g in got} == {"cuda:0"} and sorted(g["slot"] for g in got) == [0, 1]
    assert all(g["finite"] for g in got)
