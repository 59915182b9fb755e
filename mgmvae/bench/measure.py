"""The speed benchmark's measurements (docs/speed.md says what each is and how it is timed): one model's
training loop, bare step rate and peak memory, MultiVae side by side, trainings at once, the quick
preset. Only torch and the standard library are imported at module level: ``bench/multivae_side.py``
imports :func:`synthetic_arrays` under the other virtualenv."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
MULTIVAE_PYTHON = REPO / ".venv-bench" / "bin" / "python"
MULTIVAE_SCRIPT = REPO / "bench" / "multivae_side.py"
MULTIVAE_MODELS = ("mvae", "mmvae")  # the models run side by side with MultiVae
SHAPES = {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}


def synthetic_arrays(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """MNIST-SVHN-shaped uint8 images, ``n`` of each (pair i = image i of each modality)."""
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randint(0, 256, (n, *s), generator=g, dtype=torch.uint8) for m, s in SHAPES.items()}


def synthetic_data(n_train: int, n_test: int = 256, seed: int = 0, device: str | torch.device = "cpu"):
    """An in-memory :class:`PairedData` (images uint8, labels 0..9, identity pairing)."""
    from mgmvae.data.paired import PairedData

    sizes, seeds = {"train": n_train, "test": n_test}, {"train": seed, "test": seed + 1}
    arrays = {split: synthetic_arrays(n, seeds[split]) for split, n in sizes.items()}
    images = {m: {split: arrays[split][m] for split in sizes} for m in SHAPES}
    labels = {m: {split: torch.arange(n) % 10 for split, n in sizes.items()} for m in SHAPES}
    pairs = {split: torch.arange(n).repeat(2, 1).T.contiguous() for split, n in sizes.items()}
    data = PairedData("synthetic_mnist_svhn", list(SHAPES), images, labels, pairs, {"synthetic": True})
    return data if str(device) == "cpu" else data.to(device)


def paper_settings(model: str) -> dict:
    """config.yaml resolved for ``model`` on MNIST-SVHN: the paper's setting the bench runs."""
    from mgmvae.config import load_config
    from mgmvae.registry import run_settings

    return run_settings(load_config(REPO / "config.yaml"), "mnist_svhn", model)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@dataclass(frozen=True)
class Measurement:
    """One model's measurement, as a worker process receives it (pickled)."""

    model: str
    pairs: int
    batch_size: int
    epochs: int
    device: str
    threads: int
    bare_steps: int | None = None  # None: one epoch's steps
    seed: int = 0
    compile: bool = False  # torch.compile the loss (the command allows it on CUDA only)
    precision: str = "float32"
    log_every: int | None = None  # None: the config's
    skip_bare: bool = False
    slots_per_device: int | None = None  # None: the config's gpu_slots.per_device


def measure_model(job: Measurement) -> dict[str, Any]:
    """Loop rate, bare rate and peak memory of one model, in a fresh process (holding its GPU slot until it ends)."""
    import psutil

    from mgmvae.config import load_config
    from mgmvae.gpu_slots import place_process
    from mgmvae.nets import set_float32_math
    from mgmvae.registry import build_model
    from mgmvae.seeding import seed_everything
    from mgmvae.train import make_optimizer, train_model

    if job.epochs < 2:
        raise ValueError("--epochs must be >= 2: the first epoch is warm-up")
    torch.set_num_threads(job.threads)
    per_device = {"per_device": job.slots_per_device} if job.slots_per_device else {}
    placement = place_process(job.device, load_config(REPO / "config.yaml")["gpu_slots"] | per_device)
    dev = torch.device(placement.device)
    seed_everything(job.seed)
    data = synthetic_data(job.pairs, seed=job.seed, device=dev)
    settings = paper_settings(job.model) | {"epochs": job.epochs, "batch_size": job.batch_size}
    settings |= {"precision": job.precision} | ({"log_every": job.log_every} if job.log_every else {})
    set_float32_math(settings["precision"])  # as a training job: IEEE float32 unless tf32
    rss_base = psutil.Process().memory_info().rss / 2**20
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    model = build_model(job.model, data.shapes, settings).to(dev)
    if job.compile:
        model.loss = torch.compile(model.loss)  # type: ignore[method-assign]  # the instance attribute wraps the method
    steps = max(1, job.pairs // job.batch_size)
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    hook = model.on_epoch_start

    def timed_epoch_start(epoch, data, split="train"):
        hook(epoch, data, split)
        _sync(dev)
        starts[epoch + 1] = time.perf_counter()

    def on_epoch(epoch, metrics):
        _sync(dev)
        ends[epoch] = time.perf_counter()

    model.on_epoch_start = timed_epoch_start  # type: ignore[method-assign]  # times each epoch, then calls the method
    wall0, t0 = time.time(), time.perf_counter()
    train_model(model, data, settings, seed=job.seed, on_epoch=on_epoch, progress=False)
    total = time.perf_counter() - t0
    timed = range(2, job.epochs + 1)
    seconds = sum(ends[e] - starts[e] for e in timed)
    result: dict[str, Any] = {
        "model": job.model,
        "precision": settings["precision"],
        "device": str(dev),
        "device_placement": placement.describe(),
        "pid": os.getpid(),  # the worker process: its own peak memory and GPU lease
        "threads": torch.get_num_threads(),
        "batch_size": job.batch_size,
        "pairs": job.pairs,
        "epochs": job.epochs,
        "steps_per_epoch": steps,
        "timed_epochs": len(timed),
        "loop_pairs_per_s": len(timed) * steps * job.batch_size / seconds,
        "loop_seconds": seconds,
        "train_wall_s": total,
        "warmup_epoch_s": ends[1] - starts[1],
        "window": (wall0 + (starts[2] - t0), wall0 + (ends[job.epochs] - t0)),
        "gpu_options_on": ["compile"] if job.compile else [],
        "params": settings["params"],
    }
    if not job.skip_bare:
        result |= _bare_rate(model, make_optimizer(model, settings), data, job, steps, dev)
        result["loop_over_bare"] = result["loop_pairs_per_s"] / result["bare_pairs_per_s"]
    if dev.type == "cuda":
        peak = {"peak_memory_mb": torch.cuda.max_memory_allocated(dev) / 2**20}
        return result | peak | {"peak_memory_kind": "torch.cuda.max_memory_allocated"}
    peak_rss = _peak_rss_mb()
    return result | {
        "peak_memory_mb": peak_rss,
        "peak_memory_kind": "peak RSS of the worker process (ru_maxrss)",
        "rss_after_data_mb": rss_base,
        "peak_growth_mb": peak_rss - rss_base,
    }


def _bare_rate(model, optimizer, data, job: Measurement, steps: int, dev: torch.device) -> dict[str, Any]:
    """The ceiling: the model (in the state of the last loop epoch) stepped on pre-made float batches."""
    g = torch.Generator(device=dev).manual_seed(job.seed)
    draw = lambda: torch.randint(0, job.pairs, (job.batch_size,), generator=g, device=dev)  # noqa: E731
    batches = [data.batch("train", draw()) for _ in range(4)]
    model.train()

    def step(batch):
        terms = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    for i in range(3):  # warm-up
        step(batches[i % len(batches)])
    n_bare = job.bare_steps or steps
    _sync(dev)
    t = time.perf_counter()
    for i in range(n_bare):
        step(batches[i % len(batches)])
    _sync(dev)
    seconds = time.perf_counter() - t
    return {"bare_pairs_per_s": n_bare * job.batch_size / seconds, "bare_steps": n_bare, "bare_seconds": seconds}


def in_own_processes(work: Callable[[Any], dict[str, Any]], jobs: Sequence[Any]) -> list[dict[str, Any]]:
    """``work(job)`` for each job at once, each in a fresh process of its own (its own peak memory,
    threads and GPU lease). A worker that fails (or dies) gives ``{"error": ...}``."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no parent state, no torch threads
    with ExitStack() as pools:
        futures = [pools.enter_context(ProcessPoolExecutor(1, mp_context=spawn)).submit(work, job) for job in jobs]
        return [_outcome(future) for future in futures]  # all started before the first is awaited


def _outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - any worker failure is recorded in the summary
        return {"error": f"{type(error).__name__}: {error}"}


def run_multivae(job: Measurement, epochs: int, tmp: Path) -> dict[str, Any]:
    """MultiVae on ``job``'s model, data and threads: a command line, as it runs under the other virtualenv."""
    if not MULTIVAE_PYTHON.exists():
        return {"status": "not installed", "hint": "make bench-env creates .venv-bench with multivae"}
    out = tmp / f"multivae_{job.model}.json"
    options = {"model": job.model, "pairs": job.pairs, "batch-size": job.batch_size, "epochs": epochs}
    options.update(k=paper_settings(job.model)["params"].get("k", 1), threads=job.threads, seed=job.seed)
    options.update(device=job.device, out=out)
    cmd = [str(MULTIVAE_PYTHON), str(MULTIVAE_SCRIPT), *(x for k, v in options.items() for x in (f"--{k}", str(v)))]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        return {"status": "error", "error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:].strip()}"}
    return {"status": "ok", **json.loads(out.read_text())}


def run_concurrent(job: Measurement, n: int, single: dict | None) -> dict[str, Any]:
    """N trainings of ``job.model`` at once; total throughput over the span of their timed windows."""
    from mgmvae.train import resolve_device

    job = replace(job, skip_bare=True)
    if not single or not single.get("loop_pairs_per_s"):  # one training alone, as the reference
        [single] = in_own_processes(measure_model, [job])
    if resolve_device(job.device).type != "cuda":
        job = replace(job, threads=max(1, job.threads // n))  # CPU: the cores are split
    runs = in_own_processes(measure_model, [job] * n)
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        return {"n": n, "error": f"a worker failed: {failed[0][-1500:]}"}
    span = max(r["window"][1] for r in runs) - min(r["window"][0] for r in runs)
    result = {
        "n": n,
        "threads_each": job.threads,
        "per_run_pairs_per_s": [r["loop_pairs_per_s"] for r in runs],
        "devices": [r["device_placement"] for r in runs],
        "sum_pairs_per_s": sum(r["loop_pairs_per_s"] for r in runs),
        "total_pairs_per_s": sum(r["loop_pairs_per_s"] * r["loop_seconds"] for r in runs) / span,
        "peak_memory_mb_each": [r["peak_memory_mb"] for r in runs],
    }
    if single and single.get("loop_pairs_per_s"):
        result["scaling_vs_one"] = result["total_pairs_per_s"] / single["loop_pairs_per_s"]
        result["efficiency"] = result["scaling_vs_one"] / n  # 1.0 = linear
    return result


def run_quick_preset(cores: int, tmp: Path, timeout: float | None = None) -> dict[str, Any]:
    """Wall time of the quick preset in a fresh working folder."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    work = tmp / "quick"
    work.mkdir()
    cmd = [snakemake, "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", str(cores)]
    cmd += ["--configfile", str(REPO / "workflow/presets/quick.yaml")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
    out = {
        "command": f"snakemake --cores {cores} --configfile workflow/presets/quick.yaml (fresh -d folder)",
        "wall_s": time.perf_counter() - t,
        "cores": cores,
        "status": "ok" if proc.returncode == 0 else "error",
    }
    return out if proc.returncode == 0 else out | {"error": (proc.stderr or proc.stdout)[-2000:]}
