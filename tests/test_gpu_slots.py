"""GPU slot leasing (mgmvae/gpu_slots.py) without a GPU: ``MGMVAE_FAKE_GPUS=D`` fakes D devices and
real concurrent processes lease slots from one lock folder. Every wait is bounded."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mgmvae import gpu_slots
from mgmvae.config import ROOT, ConfigError, load_config
from mgmvae.gpu_slots import FAKE_ENV, LeaseError, SlotOptions, place

# A job: lease a slot, report it on stdout, hold it until the release file exists.
HOLDER = r"""
import json, pathlib, sys, time
from mgmvae.gpu_slots import place
device, section, release = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
p = place(device, section)
print(json.dumps({"device": p.device, "gpu": p.gpu, "slot": p.slot, "how": p.how}), flush=True)
while not release.exists():
    time.sleep(0.05)
"""
TIMEOUT = 60  # seconds: any single wait in these tests


def section(tmp_path: Path, per_device: int = 2, wait_s: float = 0, lease: str = "auto") -> dict:
    return {"per_device": per_device, "wait_s": wait_s, "lock_dir": str(tmp_path / "locks"), "lease": lease}


def job_env(gpus: int, visible: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update({FAKE_ENV: str(gpus), "PYTHONPATH": str(ROOT)})
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return env


def start(tmp_path: Path, device: str, options: dict, env: dict, release: str = "release") -> subprocess.Popen:
    cmd = [sys.executable, "-c", HOLDER, device, json.dumps(options), str(tmp_path / release)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report(proc: subprocess.Popen, timeout: float = TIMEOUT) -> dict:
    """The slot a job reports, within ``timeout`` seconds."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"no slot reported; stderr: {proc.communicate(timeout=TIMEOUT)[1][-2000:]}")
    return json.loads(line)


def stop(tmp_path: Path, procs: list[subprocess.Popen], release: str = "release") -> None:
    (tmp_path / release).touch()
    for proc in procs:
        try:
            proc.wait(timeout=TIMEOUT)
        finally:
            proc.kill()
            proc.communicate()


@pytest.fixture
def fake_env(monkeypatch):
    """This process sees fake GPUs too (for in-process leases against the holders)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    # A stage run in this process by an earlier test placed it (on the CPU) for the process's life.
    monkeypatch.setattr(gpu_slots, "_HELD", {})

    def set_gpus(n: int, visible: str | None = None) -> None:
        monkeypatch.setenv(FAKE_ENV, str(n))
        if visible is not None:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    return set_gpus


# --------------------------------------------------------------- concurrency
@pytest.mark.parametrize("devices,per_device", [(3, 2), (2, 3)])
def test_concurrent_jobs_get_distinct_slots_at_most_k_per_device(tmp_path, devices, per_device):
    options = section(tmp_path, per_device)
    procs = [start(tmp_path, "auto", options, job_env(devices)) for _ in range(devices * per_device)]
    try:
        got = [report(p) for p in procs]
        slots = {(g["gpu"], g["slot"]) for g in got}
        assert len(slots) == len(procs), f"two jobs share a slot: {got}"
        assert Counter(g["gpu"] for g in got) == {str(d): per_device for d in range(devices)}
        assert all(g["device"] == f"cuda:{g['gpu']}" and g["how"] == "lease" for g in got)
        # One job more finds every slot held and, with wait_s 0, fails at once.
        extra = start(tmp_path, "auto", options, job_env(devices))
        _, err = extra.communicate(timeout=TIMEOUT)
        assert extra.returncode != 0 and "no GPU slot became free" in err and "gpu_slots.wait_s" in err
    finally:
        stop(tmp_path, procs)


def test_jobs_spread_over_devices_before_sharing_one(tmp_path):
    options = section(tmp_path, per_device=4)
    procs, got = [], []
    try:
        for _ in range(4):  # one after the other: each must pick the least-loaded device
            procs.append(start(tmp_path, "auto", options, job_env(3)))
            got.append(report(procs[-1]))
        assert [(g["gpu"], g["slot"]) for g in got] == [("0", 0), ("1", 0), ("2", 0), ("0", 1)]
    finally:
        stop(tmp_path, procs)


def test_the_least_loaded_device_wins_over_a_lower_free_slot(tmp_path, fake_env):
    fake_env(2)
    options = section(tmp_path, per_device=3)
    held = [place("cuda:0", options) for _ in range(3)] + [place("cuda:1", options)]
    try:
        held[0].release()  # cuda:0 now holds 2 (slots 2 and 3), cuda:1 holds 1
        with place("auto", options) as lease:
            assert (lease.device, lease.slot) == ("cuda:1", 1)
    finally:
        for lease in held:
            lease.release()


def test_sigkilled_holder_frees_its_slot(tmp_path, fake_env):
    fake_env(1)
    options = section(tmp_path, per_device=1)
    holder = start(tmp_path, "auto", options, job_env(1))
    try:
        assert report(holder)["slot"] == 0
        with pytest.raises(LeaseError, match="pid"):
            place("auto", options)  # held by the live process
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=TIMEOUT)
        with place("auto", options) as lease:  # no cleanup by anyone: the kernel dropped the lock
            assert (lease.device, lease.slot) == ("cuda:0", 0)
    finally:
        stop(tmp_path, [holder])


def test_waiting_job_says_so_then_gets_the_slot(tmp_path):
    first = start(tmp_path, "auto", section(tmp_path, per_device=1), job_env(1), release="first")
    waiter = None
    try:
        report(first)
        waiter = start(tmp_path, "auto", section(tmp_path, per_device=1, wait_s=TIMEOUT), job_env(1))
        ready, _, _ = select.select([waiter.stderr], [], [], TIMEOUT)
        message = waiter.stderr.readline() if ready else ""
        assert "waiting up to" in message and "gpu_slots.wait_s" in message and str(first.pid) in message
        assert waiter.poll() is None  # still waiting, not failed
        released = time.monotonic()
        (tmp_path / "first").touch()
        got = report(waiter)
        assert got["slot"] == 0 and time.monotonic() - released < TIMEOUT
        assert first.wait(timeout=TIMEOUT) == 0
    finally:
        stop(tmp_path, [first] + ([waiter] if waiter else []))


def test_wait_is_bounded_and_the_failure_names_the_fix(tmp_path, fake_env):
    fake_env(1)
    holder = start(tmp_path, "auto", section(tmp_path, per_device=1), job_env(1))
    try:
        report(holder)
        messages = []
        t = time.monotonic()
        with pytest.raises(LeaseError) as error:
            gpu_slots.lease_slot(
                ["0"],
                [0],
                SlotOptions(per_device=1, wait_s=1.5, lock_dir=str(tmp_path / "locks"), lease="auto"),
                poll_s=0.2,
                say=messages.append,
            )
        assert 1.5 <= time.monotonic() - t < 10
        assert len(messages) == 1 and "waiting up to 2 s" in messages[0]
        text = str(error.value)
        assert f"pid {holder.pid}" in text and "--resources gpu=" in text and "gpu_slots.per_device" in text
    finally:
        stop(tmp_path, [holder])


def test_slots_go_first_come_first_served(tmp_path):
    """Two jobs wait for the one slot; the first to queue gets it first, whichever polls first."""
    options = section(tmp_path, per_device=1, wait_s=TIMEOUT)
    holder = start(tmp_path, "auto", section(tmp_path, per_device=1), job_env(1), release="holder")
    waiters = []
    try:
        report(holder)
        for name in ("first", "second"):  # each queued (it says so) before the next starts
            waiters.append(start(tmp_path, "auto", options, job_env(1), release=name))
            ready, _, _ = select.select([waiters[-1].stderr], [], [], TIMEOUT)
            assert ready and "queued ahead of this one" in waiters[-1].stderr.readline()
        (tmp_path / "holder").touch()
        assert report(waiters[0])["slot"] == 0
        assert waiters[1].poll() is None  # still waiting behind the first
        (tmp_path / "first").touch()
        assert report(waiters[1])["slot"] == 0
    finally:
        for name in ("holder", "first", "second"):
            (tmp_path / name).touch()
        stop(tmp_path, [holder, *waiters])


def test_a_queued_waiter_keeps_its_devices_from_later_jobs_until_it_dies(tmp_path, fake_env):
    fake_env(2)
    lock_dir = tmp_path / "locks"
    ticket = gpu_slots._take_ticket(lock_dir, {"0"})  # a live job queued for GPU 0
    try:
        with pytest.raises(LeaseError, match="no GPU slot became free"):
            place("cuda:0", section(tmp_path, per_device=1))  # free, but it came first
        with place("cuda:1", section(tmp_path, per_device=1)) as lease:  # another device: no wait
            assert lease.gpu == "1"
    finally:
        ticket.release()  # as when its process dies: the lock goes, the file stays
    assert Path(ticket.lock_file).exists()
    with place("cuda:0", section(tmp_path, per_device=1)) as lease:
        assert lease.gpu == "0"
    assert not Path(ticket.lock_file).exists()  # the dead ticket was cleared


# --------------------------------------------------------- devices and pinning
def test_cuda_visible_devices_is_respected_and_counts_physical_gpus(tmp_path, fake_env):
    fake_env(4, visible="2,3")
    assert gpu_slots.visible_gpus() == ["2", "3"]
    assert gpu_slots.visible_gpus({FAKE_ENV: "4", "CUDA_VISIBLE_DEVICES": "3,0,9,1"}) == ["3", "0"]  # as CUDA
    assert gpu_slots.visible_gpus({FAKE_ENV: "4", "CUDA_VISIBLE_DEVICES": ""}) == []
    # A job that sees only physical GPU 1 holds it as its cuda:0 ...
    holder = start(tmp_path, "auto", section(tmp_path, per_device=1), job_env(2, visible="1"))
    try:
        assert report(holder) == {"device": "cuda:0", "gpu": "1", "slot": 0, "how": "lease"}
        # ... so a job that sees both GPUs must take physical GPU 0, and a third finds none free.
        fake_env(2, visible="0,1")
        with place("auto", section(tmp_path, per_device=1)) as lease:
            assert (lease.device, lease.gpu) == ("cuda:0", "0")
            with pytest.raises(LeaseError, match="no GPU slot became free"):
                place("auto", section(tmp_path, per_device=1))
    finally:
        stop(tmp_path, [holder])


def test_pinned_device_is_honoured(tmp_path, fake_env):
    fake_env(3)
    with place("cuda:2", section(tmp_path, per_device=1)) as lease:
        assert (lease.device, lease.gpu, lease.how) == ("cuda:2", "2", "lease")
        with pytest.raises(LeaseError, match="no GPU slot became free"):  # cuda:0 and 1 are free, not wanted
            place("cuda:2", section(tmp_path, per_device=1))
        with place("auto", section(tmp_path, per_device=1)) as other:
            assert other.device == "cuda:0"


def test_under_slurm_the_scheduler_gpu_is_used_without_leasing(tmp_path, fake_env, monkeypatch):
    fake_env(1, visible="0")  # SLURM with device cgroups: the job sees only its GPU
    with place("auto", section(tmp_path, per_device=1)) as lease:
        assert lease.how == "lease"
        monkeypatch.setenv("SLURM_JOB_ID", "42")
        slurm = place("auto", section(tmp_path, per_device=1))  # every slot held, yet no wait
        assert (slurm.device, slurm.how, slurm.lock) == ("cuda:0", "slurm", None)
        assert "SLURM job 42" in slurm.describe()
        with pytest.raises(LeaseError):  # lease: always leases even under SLURM (e.g. a multi-GPU salloc)
            place("auto", section(tmp_path, per_device=1, lease="always"))
    assert place("cuda:0", section(tmp_path, lease="never")).how == "unleased"


def test_under_slurm_without_device_cgroups_the_given_gpu_is_used(tmp_path, fake_env, monkeypatch):
    """The job sees every GPU of the node (CUDA_VISIBLE_DEVICES unset): it runs on the one SLURM
    gave it, and on the CPU, loudly, when it was given none."""
    fake_env(4)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_JOB_GPUS", "2")
    assert place("auto", section(tmp_path)).device == "cuda:2"
    monkeypatch.setenv("SLURM_STEP_GPUS", "3")  # a step's own allocation comes first
    assert place("auto", section(tmp_path)).device == "cuda:3"
    monkeypatch.delenv("SLURM_STEP_GPUS")
    monkeypatch.delenv("SLURM_JOB_GPUS")
    none = place("auto", section(tmp_path))
    assert none.device == "cpu" and "SLURM gave this job no GPU" in none.params()["device_warning"]


def test_auto_says_what_it_chose_and_warns_when_the_driver_sees_an_unusable_gpu(tmp_path, fake_env, monkeypatch):
    import torch

    fake_env(0)
    assert "device: auto, no CUDA GPU visible" in place("auto", section(tmp_path)).describe()
    assert place("cpu", section(tmp_path)).describe() == "cpu (device: cpu)"
    monkeypatch.delenv(FAKE_ENV)
    driver = tmp_path / "driver"
    (driver / "0000:01:00.0").mkdir(parents=True)  # what /proc/driver/nvidia/gpus holds per GPU
    monkeypatch.setattr(gpu_slots, "DRIVER_GPUS", driver)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    placed = place("auto", section(tmp_path))
    assert placed.device == "cpu" and "CPU-only build" in placed.params()["device_warning"]
    monkeypatch.setattr(torch.version, "cuda", "13.0")

    def old_driver():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 11040).")

    monkeypatch.setattr(torch.cuda, "init", old_driver)
    assert "driver on your system is too old" in place("auto", section(tmp_path)).params()["device_warning"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden on purpose: no warning
    assert "device_warning" not in place("auto", section(tmp_path)).params()


def test_cpu_and_auto_without_gpus_take_no_lease(tmp_path, fake_env):
    fake_env(0)
    assert place("cpu", section(tmp_path)).how == "cpu"
    assert place("auto", section(tmp_path)).device == "cpu"
    assert not (tmp_path / "locks").exists()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("per_device", [0, -1, "2", True, 1.5])
def test_bad_slot_count_is_refused(tmp_path, fake_env, per_device):
    fake_env(2)
    with pytest.raises(LeaseError, match="config key 'gpu_slots.per_device'"):
        place("auto", {**section(tmp_path), "per_device": per_device})
    assert not (tmp_path / "locks").exists()  # refused before anything is touched


def test_bad_slot_count_is_refused_by_the_config_schema():
    with pytest.raises(ConfigError, match="gpu_slots.per_device"):
        load_config(ROOT / "config.yaml", overrides={"gpu_slots": {"per_device": 0}})
    with pytest.raises(ConfigError, match="gpu_slots.lease"):
        load_config(ROOT / "config.yaml", overrides={"gpu_slots": {"lease": "sometimes"}})


@pytest.mark.parametrize("device", ["cuda:2", "cuda:17"])
def test_unknown_device_is_refused(tmp_path, fake_env, device):
    fake_env(2)
    with pytest.raises(LeaseError, match=rf"unknown device '{device}': this job sees 2 GPU\(s\), cuda:0..cuda:1"):
        place(device, section(tmp_path))


def test_cuda_without_a_visible_gpu_is_refused(tmp_path, fake_env):
    fake_env(2, visible="")
    with pytest.raises(LeaseError, match="no CUDA device is visible.*CUDA_VISIBLE_DEVICES=''"):
        place("cuda", section(tmp_path))


def test_bad_options_are_refused(tmp_path, fake_env):
    fake_env(1)
    with pytest.raises(LeaseError, match=r"config key 'gpu_slots': Additional properties .*'slots' was unexpected"):
        place("auto", {**section(tmp_path), "slots": 2})
    with pytest.raises(LeaseError, match="config key 'gpu_slots.wait_s': -1 is less than the minimum of 0"):
        place("auto", {**section(tmp_path), "wait_s": -1})
    with pytest.raises(LeaseError, match=f"{FAKE_ENV} must be a device count"):
        gpu_slots.visible_gpus({FAKE_ENV: "two"})


def test_config_yaml_states_the_defaults_and_nothing_falls_back():
    options = SlotOptions.from_config(load_config(ROOT / "config.yaml")["gpu_slots"])
    assert (options.per_device, options.wait_s, options.lock_dir, options.lease) == (2, 14400, None, "auto")
    with pytest.raises(LeaseError, match="config key 'gpu_slots': 'lease' is a required property"):
        SlotOptions.from_config({"per_device": 2, "wait_s": 0, "lock_dir": None})


# ------------------------------------------------------------- the stages use it
def test_stage_leases_once_logs_the_device_and_records_it_for_mlflow(tmp_path, fake_env, monkeypatch, capsys):
    import argparse

    from mgmvae import stages, tracking

    fake_env(2)
    monkeypatch.setattr(gpu_slots, "_HELD", {})
    config = {"device": "auto", "gpu_slots": section(tmp_path, per_device=1)}
    try:
        assert str(stages._device(config, "float32")) == "cuda:0"
        assert str(stages._device(config, "float32")) == "cuda:0"  # the same lease for the rest of the process
        assert "device: cuda:0 (GPU 0), slot 1 of 1, lease" in capsys.readouterr().err  # the job's log
        with place("auto", config["gpu_slots"]) as other:  # the stage's slot is still held
            assert other.device == "cuda:1"
        captured = {}
        monkeypatch.setattr(tracking, "tracked_run", lambda *a, **k: captured.__setitem__("params", a[4]))
        stages._tracked(config, argparse.Namespace(no_mlflow=True), "train", "x", {}, {"lr": 1})
        assert captured["params"]["device"] == "cuda:0"
        assert "slot 1 of 1" in captured["params"]["device_placement"]
        numerics = {k: captured["params"][k] for k in ("fp32_matmul", "fp32_conv", "deterministic_algorithms")}
        assert numerics == {"fp32_matmul": "ieee", "fp32_conv": "ieee", "deterministic_algorithms": "True"}
        stages._device(config, "tf32")
        stages._tracked(config, argparse.Namespace(no_mlflow=True), "train", "x", {}, {"lr": 1})
        assert (captured["params"]["fp32_matmul"], captured["params"]["fp32_conv"]) == ("tf32", "tf32")
        stages._device(config, "float32")
    finally:
        for placement in gpu_slots._HELD.values():
            placement.release()
    with pytest.raises(stages.StageError, match="unknown device 'cuda:5'"):
        stages._device({"device": "cuda:5", "gpu_slots": section(tmp_path)}, "float32")


def test_status_lists_every_slot_and_its_holder(tmp_path, fake_env):
    fake_env(2)
    options = section(tmp_path, per_device=2)
    holder = start(tmp_path, "cuda:1", options, job_env(2))
    try:
        report(holder)
        lines = gpu_slots.slot_table(options, job_env(2))
        assert lines[0].startswith("2 GPU(s) visible (CUDA_VISIBLE_DEVICES is unset), 2 slot(s) each")
        assert lines[1:5] == [
            "cuda:0 (GPU 0) slot 1: free",
            "cuda:0 (GPU 0) slot 2: free",
            lines[3],
            "cuda:1 (GPU 1) slot 2: free",
        ]
        assert lines[3].startswith(f"cuda:1 (GPU 1) slot 1: pid {holder.pid} on ")
        assert lines[-1] == "local runs: at most 4 GPU jobs at once (the Snakefile's gpu total)"
        with place("cuda:0", options) as lease:  # probing left the free slots free
            assert lease.slot == 0
    finally:
        stop(tmp_path, [holder])


def test_a_training_that_finds_no_slot_waits_then_exits_2_naming_the_holder(tmp_path, fake_env, capsys):
    import yaml

    from mgmvae.cli import main

    fake_env(1)
    options = section(tmp_path, per_device=1, wait_s=1)
    (tmp_path / "slots.yaml").write_text(yaml.safe_dump({"device": "auto", "gpu_slots": options}))
    holder = start(tmp_path, "auto", options, job_env(1))
    try:
        report(holder)
        args = ["--config", str(ROOT / "config.yaml"), str(tmp_path / "slots.yaml"), "--no-mlflow"]
        assert main(["train", "--dataset", "digits_street", "--model", "mvae", *args]) == 2
        err = capsys.readouterr().err
        assert "waiting up to 1 s (gpu_slots.wait_s)" in err
        assert "error: no GPU slot became free in 1 s" in err and f"pid {holder.pid}" in err
    finally:
        stop(tmp_path, [holder])


# ------------------------------------------------------- the workflow's gpu total
# A workflow wired as the Snakefile wires it (gpu_slots.workflow_gpus), whose jobs lease a slot with
# wait_s 0 (a job that finds none fails at once) and hold it 2 s, writing when they held it.
SNAKEFILE = """
import json, sys
from mgmvae.gpu_slots import workflow_gpus
GPU_JOB = workflow_gpus(workflow, config)

rule all:
    input: expand("held/{i}.json", i=range(config["jobs"]))

rule job:
    output: "held/{i}.json"
    resources: gpu=GPU_JOB
    run:
        import time
        from mgmvae.gpu_slots import place
        with place(config["device"], config["gpu_slots"]) as lease:
            start = time.time()
            time.sleep(2)
            record = {"start": start, "end": time.time(), "gpu": lease.gpu, "slot": lease.slot}
        with open(output[0], "w") as f:
            json.dump(record, f)
"""


def run_gpu_workflow(tmp_path: Path, gpus: int, jobs: int, *extra: str) -> list[dict]:
    from tests.conftest import SNAKEMAKE, snakemake_env

    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    config = {"device": "auto", "jobs": jobs, "gpu_slots": section(tmp_path, per_device=2)}
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    env = {**snakemake_env(), FAKE_ENV: str(gpus), "PYTHONPATH": str(ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [SNAKEMAKE, "--cores", "8", "--configfile", "config.yaml", "--quiet", *extra]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "held").glob("*.json"))]


def most_at_once(records: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_snakemake_on_n_gpus_runs_n_times_per_device_gpu_jobs_and_none_waits(tmp_path, gpus):
    """`--cores 8` and no --resources: at most GPUs x per_device (2) jobs at once, every one of them
    finds a free slot at once (wait_s 0), and the cores are used up to that limit."""
    records = run_gpu_workflow(tmp_path, gpus, jobs=2 * gpus + 2)
    assert len(records) == 2 * gpus + 2
    assert most_at_once(records) == min(8, 2 * gpus)
    assert Counter(r["gpu"] for r in records[: 2 * gpus]).keys() <= {str(g) for g in range(gpus)}


def test_a_given_gpu_resource_wins_over_the_visible_devices(tmp_path):
    records = run_gpu_workflow(tmp_path, 2, 4, "--resources", "gpu=1")
    assert most_at_once(records) == 1


def test_the_workflow_asks_no_gpu_where_none_is_used(tmp_path, fake_env):
    class Workflow:
        def __init__(self):
            self.local_exec, self.global_resources = True, {}

        def register_resource(self, name, value):
            self.global_resources[name] = value

    config = {"device": "auto", "gpu_slots": section(tmp_path, per_device=3)}
    fake_env(0)
    assert gpu_slots.workflow_gpus(Workflow(), config) == 0
    assert gpu_slots.workflow_gpus(Workflow(), {**config, "device": "cpu"}) == 0
    fake_env(2)
    workflow = Workflow()
    assert gpu_slots.workflow_gpus(workflow, config) == 1 and workflow.global_resources == {"gpu": 6}
    workflow = Workflow()
    assert gpu_slots.workflow_gpus(workflow, {**config, "device": "cuda:1"}) == 1
    assert workflow.global_resources == {"gpu": 3}  # one device's slots
    workflow = Workflow()
    workflow.local_exec = False  # a cluster: one GPU a job, placed by the scheduler
    assert gpu_slots.workflow_gpus(workflow, config) == 1 and workflow.global_resources == {}
    with pytest.raises(LeaseError, match="unknown device 'cuda:2'"):
        gpu_slots.workflow_gpus(Workflow(), {**config, "device": "cuda:2"})


def test_every_rule_that_runs_on_a_gpu_asks_for_one_and_no_other(tmp_path):
    """The real workflow, with two fake GPUs: the rules whose stage places itself on a device ask
    gpu=1; dataset building, tables, bar charts and the ablation table ask none."""
    from tests.conftest import CI_PRESET, snakemake

    env_gpus = os.environ.get(FAKE_ENV)
    os.environ[FAKE_ENV] = "2"
    try:
        done = snakemake(tmp_path, "-n", "--cores", "8", "--configfile", str(CI_PRESET), "--config", "device=auto")
    finally:
        os.environ.pop(FAKE_ENV) if env_gpus is None else os.environ.__setitem__(FAKE_ENV, env_gpus)
    assert done.returncode == 0, done.stderr[-2000:]
    asks, rule = {}, None
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            asks[rule] = False
        elif rule and line.strip().startswith("resources:"):
            asks[rule] = "gpu=1" in line
    gpu_rules = {r for r, asked in asks.items() if asked}
    stages = {"train_classifier", "train_model", "evaluate_run", "figures_digits_street", "figures_digits_cdcb"}
    assert gpu_rules == stages
    assert {"prepare_dataset", "tables", "figures_bars"} <= set(asks) - gpu_rules
