"""Crash and resume for real: a training process killed with SIGKILL mid-epoch and started again
ends with exactly the numbers of a run that was never interrupted."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from mgmvae.config import ROOT, load_config
from mgmvae.io import load_torch
from tests.conftest import synthetic_paired


def write_config(tmp_path, model):
    config = load_config(overrides={
        "results_dir": str(tmp_path / "results"), "device": "cpu", "models": [model],
        "settings": {"epochs": 3, "batch_size": 16, "log_every": 1,
                     "optimizer": {"name": "adam", "lr": 1e-3, "amsgrad": False}},
        "dataset_settings": {"mnist_svhn": {"epochs": 3, "batch_size": 16}},
    })
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_command(config, data, out, model):
    return [sys.executable, "-m", "mgmvae", "train", "--config", str(config), "--dataset", "mnist_svhn",
            "--model", model, "--seed", "3", "--data", str(data), "--out", str(out), "--threads", "1",
            "--no-mlflow", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mvae", "mgmvae"])
def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted(tmp_path, model):
    data = tmp_path / "toy.pt"
    synthetic_paired(n_train=640, n_test=40).save(data)
    config = write_config(tmp_path, model)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    reference = tmp_path / "reference" / "model.pt"
    subprocess.run(train_command(config, data, reference, model), check=True, env=env, cwd=ROOT)

    crashed = tmp_path / "crashed" / "model.pt"
    checkpoint = crashed.with_name("checkpoint.pt")
    proc = subprocess.Popen(train_command(config, data, crashed, model), env=env, cwd=ROOT)
    deadline = time.time() + 300
    while not checkpoint.exists():  # epoch 1 done; kill somewhere inside epoch 2
        assert proc.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not crashed.exists(), "a killed job must not leave its final output"
    assert load_torch(checkpoint)["epoch"] < 3

    subprocess.run(train_command(config, data, crashed, model), check=True, env=env, cwd=ROOT)
    a, b = load_torch(reference), load_torch(crashed)
    assert a["history"] == b["history"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
