"""Crash and resume for real: a training process killed with SIGKILL mid-epoch and started again
ends with exactly the numbers of a run that was never interrupted. On the CPU through Snakemake
(MGMVAE, whose mixture and centers the checkpoint must carry); on a GPU, the training command
itself. The resume of each model's own state in process: tests/test_train.py and
tests/test_baselines_reference.py (MVAE's KL annealing)."""

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
from tests.conftest import CUDA, SNAKEMAKE, snakemake, snakemake_env, synthetic_paired


def write_config(tmp_path, model, device="cpu"):
    config = load_config(
        overrides={
            "results_dir": str(tmp_path / "results"),
            "device": device,
            "models": [model],
            "settings": {
                "epochs": 3,
                "batch_size": 16,
                "log_every": 1,
                "optimizer": {"name": "adam", "lr": 1e-3, "amsgrad": False},
            },
            "dataset_settings": {"mnist_svhn": {"epochs": 3, "batch_size": 16}},
        }
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_command(config, data, out, model):
    return [
        sys.executable,
        "-m",
        "mgmvae",
        "train",
        "--config",
        str(config),
        "--dataset",
        "mnist_svhn",
        "--model",
        model,
        "--seed",
        "3",
        "--data",
        str(data),
        "--out",
        str(out),
        "--threads",
        "1",
        "--no-mlflow",
        "--no-progress",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "device"), [pytest.param("mgmvae", "cuda", marks=CUDA)])
def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted(tmp_path, model, device):
    """On a GPU: the checkpoint's RNG states load to the CPU and the run continues bitwise."""
    data = tmp_path / "toy.pt"
    synthetic_paired(n_train=640, n_test=40).save(data)
    config = write_config(tmp_path, model, device)
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


@pytest.mark.slow
def test_snakemake_rerun_incomplete_resumes_a_killed_training_job(tmp_path):
    """The whole Snakemake process group is SIGKILLed (a node lost mid-epoch); ``snakemake
    --rerun-incomplete`` resumes the job from its checkpoint and ends bitwise where an uninterrupted
    run ends (mixture parameters and centers included: MGMVAE fits its mixture at epoch 2)."""

    config = load_config(
        ROOT / "config.yaml",
        ROOT / "workflow/presets/ci.yaml",
        overrides={
            "models": ["mgmvae"],
            # digits_cdcb is not built here, but validated: its epochs must reach the mixture fit too
            "dataset_settings": {"digits_street": {"epochs": 4, "batch_size": 64}, "digits_cdcb": {"epochs": 4}},
            "model_settings": {"mgmvae": {"params": {"mixture_init_epoch": 1, "semi_hard_from_epoch": 2}}},
        },
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    target = "results/ci/runs/digits_street/mgmvae/seed0/model.pt"  # relative to the workdir, as rules write it
    run, data = tmp_path / target.removesuffix("/model.pt"), tmp_path / "results/ci/data/digits_street.pt"
    # targets before --configfile, which takes every argument after it
    prepared = snakemake(tmp_path, str(data.relative_to(tmp_path)), "--cores", "1", "--configfile", str(config_file))
    assert prepared.returncode == 0, prepared.stderr[-2000:]

    env = snakemake_env()
    proc = subprocess.Popen(
        [
            SNAKEMAKE,
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path),
            target,
            "--cores",
            "1",
            "--configfile",
            str(config_file),
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, checkpoint = time.time() + 300, run / "checkpoint.pt"
    # Kill inside epoch 3, after the mixture was fitted (epoch 2) and saved with the checkpoint.
    while not (checkpoint.exists() and load_torch(checkpoint)["epoch"] >= 2):
        assert proc.poll() is None and time.time() < deadline, "the job ended before its second checkpoint"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_torch(checkpoint)["epoch"]
    assert 2 <= killed_at < 4 and not (run / "model.pt").exists()
    assert bool(load_torch(checkpoint)["model"]["mixture_ready"]), "the checkpoint must carry the fitted mixture"

    # A killed Snakemake leaves its lock: the documented recovery is --unlock, then --rerun-incomplete.
    assert snakemake(tmp_path, "--unlock", "--configfile", str(config_file)).returncode == 0
    result = snakemake(tmp_path, target, "--cores", "1", "--rerun-incomplete", "--configfile", str(config_file))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    log = (tmp_path / "results/ci/logs/train/digits_street/mgmvae/seed0.log").read_text()
    assert f"resuming from {(run / 'checkpoint.pt').relative_to(tmp_path)} after epoch {killed_at}" in log

    reference = tmp_path / "reference" / "model.pt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mgmvae",
            "train",
            "--config",
            str(config_file),
            "--dataset",
            "digits_street",
            "--model",
            "mgmvae",
            "--seed",
            "0",
            "--data",
            str(data),
            "--out",
            str(reference),
            "--threads",
            "1",
            "--no-mlflow",
            "--no-progress",
        ],
        check=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    a, b = load_torch(reference), load_torch(run / "model.pt")
    assert a["history"] == b["history"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
