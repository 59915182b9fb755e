"""Smoke test of the speed benchmark on tiny sizes: it runs and writes the summary's keys.
No timing assertions (rates depend on the machine and its load)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from mgmvae.bench import measure, report
from mgmvae.config import ROOT, load_config


def test_synthetic_data_shapes():
    data = measure.synthetic_data(64, n_test=16)
    assert data.shapes == {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}
    assert data.images["svhn"]["train"].dtype == torch.uint8
    assert data.num_pairs("train") == 64 and data.num_pairs("test") == 16


def test_bench_writes_summary(tmp_path, capsys):
    out = tmp_path / "summary.json"
    code = report.main(
        [
            "--models",
            "mvae",
            "--pairs",
            "256",
            "--batch-size",
            "64",
            "--epochs",
            "2",
            "--bare-steps",
            "2",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--multivae",
            "off",
            "--concurrent",
            "2",
            "--precision",
            "float32",
            "bfloat16",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads(out.read_text())
    assert {"command", "device", "machine", "config", "gpu_options", "models", "concurrent", "table"} <= set(summary)
    assert {"cpu", "logical_cores", "torch"} <= set(summary["machine"])
    r = summary["models"]["mvae"]
    assert "error" not in r, r.get("error")
    for key in (
        "loop_pairs_per_s",
        "bare_pairs_per_s",
        "loop_over_bare",
        "peak_memory_mb",
        "threads",
        "steps_per_epoch",
        "timed_epochs",
    ):
        assert key in r and r[key] is not None, key
    assert r["threads"] == 1 and r["steps_per_epoch"] == 4 and r["timed_epochs"] == 1
    assert r["precision"] == "float32"
    assert r["pid"] != os.getpid()  # measured in a worker process of its own
    low = summary["models"]["mvae (bfloat16)"]
    assert "error" not in low, low.get("error")
    assert low["precision"] == "bfloat16" and low["loop_pairs_per_s"] > 0
    con = summary["concurrent"]["mvae"]
    assert "error" not in con, con.get("error")
    assert con["n"] == 2 and len(con["per_run_pairs_per_s"]) == 2 and "total_pairs_per_s" in con
    assert "loop pairs/s" in capsys.readouterr().out


def test_multivae_missing_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(measure, "MULTIVAE_PYTHON", tmp_path / "no-such-venv" / "python")
    job = measure.Measurement("mvae", pairs=128, batch_size=64, epochs=2, device="cpu", threads=1)
    assert measure.run_multivae(job, 2, tmp_path)["status"] == "not installed"


def test_compile_is_refused_off_cuda_before_any_work(capsys):
    with pytest.raises(SystemExit):
        report.main(["--models", "mvae", "--compile", "--device", "cpu"])
    assert "--compile is measured on CUDA only" in capsys.readouterr().err


def test_the_bench_runs_config_yamls_mnist_svhn_setting():
    config = load_config(ROOT / "config.yaml")
    assert measure.paper_settings("mmvae")["batch_size"] == config["dataset_settings"]["mnist_svhn"]["batch_size"]


def test_bench_workers_lease_their_device_like_pipeline_jobs(monkeypatch):
    from mgmvae import gpu_slots

    calls = []

    def fake_place(device, section):
        calls.append((device, section))
        return gpu_slots.Placement("cpu", "cpu")

    monkeypatch.setattr(gpu_slots, "place_process", fake_place)
    result = measure.measure_model(
        measure.Measurement(
            "mvae",
            pairs=128,
            batch_size=64,
            epochs=2,
            bare_steps=1,
            device="auto",
            threads=1,
            skip_bare=True,
            slots_per_device=3,
        )
    )
    expected = {**load_config(ROOT / "config.yaml")["gpu_slots"], "per_device": 3}
    assert calls == [("auto", expected)] and result["device_placement"] == "cpu"


def test_bad_slots_per_device_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        report.main(["--models", "mvae", "--slots-per-device", "0", "--device", "cpu"])
    assert "--slots-per-device must be >= 1" in capsys.readouterr().err


def _meet(job: tuple[str, int, int]) -> dict:
    """A worker: says it is there, then waits (at most 30 s) until all ``n`` are."""
    folder, k, n = job
    Path(folder, str(k)).touch()
    deadline = time.monotonic() + 30
    while len(list(Path(folder).iterdir())) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"pid": os.getpid(), "met": len(list(Path(folder).iterdir())) == n}


def _fail(job: str) -> dict:
    raise ValueError(f"no such model {job!r}")


def test_workers_run_at_once_each_in_a_process_of_its_own(tmp_path):
    got = measure.in_own_processes(_meet, [(str(tmp_path), k, 3) for k in range(3)])
    assert [g["met"] for g in got] == [True] * 3  # all three were alive together
    assert len({g["pid"] for g in got} | {os.getpid()}) == 4
    assert measure.in_own_processes(_fail, ["x"]) == [{"error": "ValueError: no such model 'x'"}]
