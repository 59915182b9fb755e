"""Speed benchmark: ``python -m mgmvae.bench`` (``make bench``) -> results/bench/summary.json + a table.

Per model, on synthetic MNIST-SVHN-shaped uint8 pairs (1×28×28 + 3×32×32, held in memory, on the
device) at the paper's batch size (128) and the paper's per-model settings (config.yaml, dataset
``mnist_svhn``; e.g. MMVAE = DReG with K=10):

- ``loop``:  training pairs/s of the real loop, :func:`mgmvae.train.train_model`. The first epoch
  is warm-up; the rate is taken over epochs 2..N, timed from the end of the model's
  ``on_epoch_start`` hook (one-off work such as MGMVAE's k-means initialisation is excluded) to the
  epoch callback. No checkpoint is written (one per epoch: amortised over 8,750 steps an epoch in
  the paper setting, it would be over-weighted 50× on a 20k-pair epoch).
- ``bare``:  forward + backward + optimizer step of the same model's ``loss`` on pre-made float
  batches in a tight loop: the ceiling for the loop. ``loop / bare`` is the loop's efficiency.
- ``peak memory``: CPU: peak RSS of the worker process (``ru_maxrss``) and its growth over the
  RSS after the data were built; GPU: ``torch.cuda.max_memory_allocated``.
- ``multivae``: MultiVae's own trainer on the same networks (mgmvae.nets wrapped as its
  BaseEncoder/BaseDecoder), data, batch size and objective (MVAE, MMVAE), run by
  ``bench/multivae_side.py`` under the separate ``.venv-bench`` (``make bench-env``) so it can
  never change this project's pinned torch. Missing venv: recorded as not installed.
- ``--concurrent N``: N trainings of one model at once (N processes, threads split between them):
  total pairs/s against one training alone. On GPUs every worker leases a slot as a pipeline job
  does (mgmvae/gpu_slots.py: config ``gpu_slots``, ``--slots-per-device K``), so N workers spread
  over the visible GPUs, at most K per GPU; workers beyond the slots wait for one.
- ``--quick``: wall time of ``snakemake --cores 2 --configfile workflow/presets/quick.yaml`` in a
  fresh temporary working folder (minutes on CPU).

Each measurement (a :class:`Measurement`, pickled) runs in a fresh worker process of its own
(:func:`in_own_processes`, multiprocessing's spawn), so peak memory, thread settings and the GPU
lease are per model; MultiVae runs as a command line under its own interpreter. ``--precision
float32 bfloat16`` measures each model at each network precision (config ``settings.precision``:
bf16 autocast on the encoders/decoders only, float32 likelihoods and optimiser; on CPU and GPU
alike); MultiVae runs once, in float32, and every row's ratio is against it. ``--compile`` (GPU
only; accepted, recorded and ignored on CPU) wraps the model's ``loss`` in ``torch.compile`` for the
loop and bare rates alike. CUDA graphs are not implemented.

Only torch and the standard library are imported at module level: ``bench/multivae_side.py``
imports :func:`synthetic_arrays` from here under the other virtualenv.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mgmvae.base import MultimodalVAE

REPO = Path(__file__).resolve().parent.parent
MULTIVAE_PYTHON = REPO / ".venv-bench" / "bin" / "python"
MULTIVAE_SCRIPT = REPO / "bench" / "multivae_side.py"
MULTIVAE_MODELS = ("mvae", "mmvae")  # the models run side by side with MultiVae
SHAPES = {"mnist": (1, 28, 28), "svhn": (3, 32, 32)}


# ----------------------------------------------------------------------------- data
def synthetic_arrays(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """MNIST-SVHN-shaped uint8 images, ``n`` of each (pair i = image i of each modality)."""
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randint(0, 256, (n, *s), generator=g, dtype=torch.uint8) for m, s in SHAPES.items()}


def synthetic_data(n_train: int, n_test: int = 256, seed: int = 0, device: str | torch.device = "cpu"):
    """An in-memory :class:`PairedData` (images uint8, labels 0..9, identity pairing)."""
    from mgmvae.data.paired import PairedData

    train, test = synthetic_arrays(n_train, seed), synthetic_arrays(n_test, seed + 1)
    images = {m: {"train": train[m], "test": test[m]} for m in SHAPES}
    labels = {m: {"train": torch.arange(n_train) % 10, "test": torch.arange(n_test) % 10} for m in SHAPES}
    pairs = {
        "train": torch.arange(n_train).repeat(2, 1).T.contiguous(),
        "test": torch.arange(n_test).repeat(2, 1).T.contiguous(),
    }
    data = PairedData(
        name="synthetic_mnist_svhn",
        modalities=list(SHAPES),
        images=images,
        labels=labels,
        pairs=pairs,
        meta={"synthetic": True},
    )
    return data if str(device) == "cpu" else data.to(device)


# -------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def machine_info(device: torch.device) -> dict[str, Any]:
    from mgmvae.provenance import machine

    return machine() | ({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {})


def model_settings(
    model: str, batch_size: int, epochs: int, log_every: int | None = None, precision: str | None = None
) -> dict:
    """The paper's resolved settings for ``model`` on MNIST-SVHN, with the bench's epochs/batch."""
    from mgmvae.config import load_config
    from mgmvae.registry import run_settings

    settings = run_settings(load_config(REPO / "config.yaml"), "mnist_svhn", model)
    settings.update(epochs=int(epochs), batch_size=int(batch_size))
    if precision is not None:
        settings["precision"] = precision
    if log_every is not None:
        settings["log_every"] = int(log_every)
    return settings


def gpu_slot_settings(per_device: int | None = None) -> dict:
    """config.yaml's ``gpu_slots``, with the bench's ``--slots-per-device`` if given."""
    from mgmvae.config import load_config

    section = dict(load_config(REPO / "config.yaml").get("gpu_slots") or {})
    return section if per_device is None else {**section, "per_device": int(per_device)}


def apply_gpu_options(model: MultimodalVAE, device: torch.device, compile: bool) -> list[str]:
    """Wrap ``model.loss`` in torch.compile (GPU only); return what is on."""
    if device.type != "cuda" or not compile:
        return []
    model.loss = torch.compile(model.loss)  # type: ignore[method-assign]  # the instance attribute wraps the method
    return ["compile"]


# --------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class Measurement:
    """One model's measurement, as a worker process receives it (pickled)."""

    model: str
    pairs: int
    batch_size: int
    epochs: int
    device: str
    threads: int
    bare_steps: int | None = None  # default: one epoch's steps
    seed: int = 0
    compile: bool = False
    precision: str = "float32"
    log_every: int | None = None
    skip_bare: bool = False
    slots_per_device: int | None = None


def measure_model(job: Measurement) -> dict[str, Any]:
    """Loop rate, bare rate and peak memory of one model (meant to run in a fresh process, which
    holds its GPU slot until it ends)."""
    from mgmvae.gpu_slots import place_process
    from mgmvae.nets import set_float32_math
    from mgmvae.registry import build_model
    from mgmvae.seeding import seed_everything
    from mgmvae.train import make_optimizer, train_model

    torch.set_num_threads(job.threads)
    placement = place_process(job.device, gpu_slot_settings(job.slots_per_device))
    dev = torch.device(placement.device)
    if job.epochs < 2:
        raise ValueError("--epochs must be >= 2: the first epoch is warm-up")
    seed_everything(job.seed)
    data = synthetic_data(job.pairs, seed=job.seed, device=dev)
    settings = model_settings(job.model, job.batch_size, job.epochs, job.log_every, job.precision)
    set_float32_math(settings["precision"])  # as a training job: IEEE float32 unless tf32
    rss_base = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    model = build_model(job.model, data.shapes, settings).to(dev)
    gpu_on = apply_gpu_options(model, dev, job.compile)
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
    wall0 = time.time()
    t0 = time.perf_counter()
    train_model(model, data, settings, seed=job.seed, on_epoch=on_epoch, progress=False)
    total = time.perf_counter() - t0
    timed = [e for e in range(2, job.epochs + 1)]
    seconds = sum(ends[e] - starts[e] for e in timed)
    window = (wall0 + (starts[2] - t0), wall0 + (ends[job.epochs] - t0))
    loop_pairs = len(timed) * steps * job.batch_size
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
        "loop_pairs_per_s": loop_pairs / seconds,
        "loop_seconds": seconds,
        "train_wall_s": total,
        "warmup_epoch_s": ends[1] - starts[1],
        "window": window,
        "gpu_options_on": gpu_on,
        "params": settings.get("params", {}),
    }

    if not job.skip_bare:
        # The ceiling: same model (in the state of the last loop epoch), pre-made float batches.
        optimizer = make_optimizer(model, settings)
        g = torch.Generator(device=dev).manual_seed(job.seed)
        batches = [
            data.batch("train", torch.randint(0, job.pairs, (job.batch_size,), generator=g, device=dev))
            for _ in range(4)
        ]
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
        bare_s = time.perf_counter() - t
        result.update(bare_pairs_per_s=n_bare * job.batch_size / bare_s, bare_steps=n_bare, bare_seconds=bare_s)
        result["loop_over_bare"] = result["loop_pairs_per_s"] / result["bare_pairs_per_s"]

    if dev.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        result["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        peak = _peak_rss_mb()
        result["peak_memory_mb"] = peak
        result["peak_memory_kind"] = "peak RSS of the worker process (ru_maxrss)"
        result["rss_after_data_mb"] = rss_base
        result["peak_growth_mb"] = None if rss_base is None else peak - rss_base
    return result


# ------------------------------------------------------------------- orchestration
def in_own_processes(work: Callable[[Any], dict[str, Any]], jobs: Sequence[Any]) -> list[dict[str, Any]]:
    """``work(job)`` for each job at once, each in a fresh process of its own (its own peak memory,
    threads and GPU lease). A worker that fails (or dies) gives ``{"error": ...}``."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no parent state, no torch threads
    pools = [ProcessPoolExecutor(1, mp_context=spawn) for _ in jobs]
    try:
        futures = [pool.submit(work, job) for pool, job in zip(pools, jobs, strict=True)]  # all started
        return [_outcome(future) for future in futures]
    finally:
        for pool in pools:
            pool.shutdown()


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
    options.update(threads=job.threads, seed=job.seed, device=job.device, out=out)
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
    total_pairs = sum(r["loop_pairs_per_s"] * r["loop_seconds"] for r in runs)
    result = {
        "n": n,
        "threads_each": job.threads,
        "per_run_pairs_per_s": [r["loop_pairs_per_s"] for r in runs],
        "devices": [r["device_placement"] for r in runs],
        "sum_pairs_per_s": sum(r["loop_pairs_per_s"] for r in runs),
        "total_pairs_per_s": total_pairs / span,
        "peak_memory_mb_each": [r["peak_memory_mb"] for r in runs],
    }
    if single and single.get("loop_pairs_per_s"):
        result["scaling_vs_one"] = result["total_pairs_per_s"] / single["loop_pairs_per_s"]
        result["efficiency"] = result["scaling_vs_one"] / n  # 1.0 = linear
    return result


def run_quick_preset(cores: int, tmp: Path, timeout: float | None = None) -> dict[str, Any]:
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    work = tmp / "quick"
    work.mkdir()
    cmd = [
        snakemake,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--cores",
        str(cores),
        "--configfile",
        str(REPO / "workflow/presets/quick.yaml"),
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t
    out = {
        "command": f"snakemake --cores {cores} --configfile workflow/presets/quick.yaml (fresh -d folder)",
        "wall_s": wall,
        "cores": cores,
        "status": "ok" if proc.returncode == 0 else "error",
    }
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout)[-2000:]
    return out


def _table_row(name: str, r: dict[str, Any]) -> dict[str, str]:
    fmt = lambda v, p=0: "-" if v is None else f"{v:,.{p}f}"  # noqa: E731
    if "error" in r:
        return {"model": name, "precision": r.get("precision", ""), "loop pairs/s": "error"}  # the columns' order
    mv = r.get("multivae") or {}
    return {
        "model": r["model"],
        "precision": r["precision"],
        "loop pairs/s": fmt(r.get("loop_pairs_per_s")),
        "bare pairs/s": fmt(r.get("bare_pairs_per_s")),
        "loop/bare": fmt(r.get("loop_over_bare"), 2),
        "MultiVae pairs/s": fmt(mv.get("pairs_per_s")) if mv.get("status") == "ok" else mv.get("status", "n/a"),
        "ours/MultiVae": fmt(r.get("ours_over_multivae"), 2),
        "peak MiB": fmt(r.get("peak_memory_mb")),
        "threads": str(r.get("threads", "")),
    }


def format_table(summary: dict[str, Any]) -> str:
    """The machine, a Markdown table of the models (pandas), then concurrency and the quick preset."""
    import pandas as pd

    rows = pd.DataFrame([_table_row(name, r) for name, r in summary["models"].items()]).fillna("")
    table = rows.to_markdown(
        index=False, disable_numparse=True, colalign=["left"] * 2 + ["right"] * (rows.shape[1] - 2)
    )
    m, c = summary["machine"], summary["config"]
    head = (
        f"device {summary['device']} | {m['cpu']} | {m['logical_cores']} logical cores | torch {m['torch']} | "
        f"batch {c['batch_size']}, {c['pairs']:,} synthetic pairs, epochs 2..{c['epochs']} timed | "
        f"load avg (1 min) at start {m['load_average_1m']}"
    )
    tail = []
    for name, con in summary.get("concurrent", {}).items():
        if "error" in con:
            tail.append(f"concurrent {name} x{con['n']}: error")
        else:
            tail.append(
                f"concurrent {name} x{con['n']} ({con['threads_each']} threads each): total "
                f"{con['total_pairs_per_s']:,.0f} pairs/s = {con.get('scaling_vs_one', float('nan')):.2f}x one "
                f"training (efficiency {con.get('efficiency', float('nan')):.2f})"
            )
    q = summary.get("quick_preset")
    if q:
        tail.append(f"quick preset: {q['wall_s']:.0f} s wall ({q['status']}; {q['command']})")
    tail.append(f"GPU options: {summary['gpu_options']['note']}")
    return "\n".join([head, table, *tail])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgmvae.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    p.add_argument("--pairs", type=int, default=20_000, help="synthetic training pairs (default 20,000)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128 (the paper's)")
    p.add_argument("--epochs", type=int, default=3, help="loop epochs; epoch 1 is warm-up (default 3)")
    p.add_argument("--bare-steps", type=int, default=None, help="timed bare steps (default: one epoch's)")
    p.add_argument("--log-every", type=int, default=None, help="override settings.log_every")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="GPU option: torch.compile the loss")
    p.add_argument(
        "--precision",
        nargs="+",
        default=["float32"],
        choices=("float32", "tf32", "bfloat16"),
        help="network precision(s) to measure, each model at each (default float32)",
    )
    p.add_argument("--concurrent", type=int, default=0, metavar="N", help="also run N trainings at once")
    p.add_argument(
        "--slots-per-device",
        type=int,
        default=None,
        metavar="K",
        help="GPU slots per device for the workers (default: config.yaml gpu_slots.per_device)",
    )
    p.add_argument("--concurrent-models", nargs="+", default=["mvae"], help="models for --concurrent (default mvae)")
    p.add_argument(
        "--multivae",
        choices=("auto", "off"),
        default="auto",
        help="auto: run MultiVae side by side if .venv-bench exists",
    )
    p.add_argument("--multivae-epochs", type=int, default=2, help="MultiVae epochs; epoch 1 is warm-up (default 2)")
    p.add_argument("--quick", action="store_true", help="also time the quick preset (minutes)")
    p.add_argument("--out", default=str(REPO / "results" / "bench" / "summary.json"))
    args = p.parse_args(argv)

    from mgmvae.io import save_json
    from mgmvae.registry import builtin_model_names as model_names
    from mgmvae.train import resolve_device

    names = model_names()
    models = args.models or names
    unknown = sorted(set(models) - set(names))
    if unknown:
        p.error(f"unknown model(s) {unknown}; available: {', '.join(names)}")
    if args.slots_per_device is not None and args.slots_per_device < 1:
        p.error(f"--slots-per-device must be >= 1 (trainings at once per GPU), not {args.slots_per_device}")
    device = resolve_device(args.device)
    threads = args.threads or torch.get_num_threads()
    base = Measurement(
        model="",
        pairs=args.pairs,
        batch_size=args.batch_size,
        epochs=args.epochs,
        device=args.device,
        threads=threads,
        bare_steps=args.bare_steps,
        seed=args.seed,
        compile=args.compile,
        log_every=args.log_every,
        slots_per_device=args.slots_per_device,
    )
    gpu_note = (
        "on CPU: --compile is a GPU option, accepted and ignored; CUDA graphs not implemented"
        if device.type != "cuda"
        else f"compile={'on' if args.compile else 'off'} (off unless asked); CUDA graphs not implemented"
    )
    summary: dict[str, Any] = {
        "command": "python -m mgmvae.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device),
        "machine": machine_info(device),
        "config": {
            "pairs": args.pairs,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "timed_epochs": f"2..{args.epochs}",
            "threads": threads,
            "data": "synthetic uint8 MNIST-SVHN-shaped (1x28x28 + 3x32x32), resident on the device",
            "settings": "config.yaml resolved for dataset mnist_svhn (paper setting)",
        },
        "precisions": args.precision,
        "gpu_options": {"compile": args.compile, "cuda_graphs": "not implemented", "note": gpu_note},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="mgmvae-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in models:
            multivae = None
            for precision in args.precision:
                key = name if precision == "float32" else f"{name} ({precision})"
                print(f"[bench] {key}: loop + bare ...", file=sys.stderr, flush=True)
                [result] = in_own_processes(measure_model, [replace(base, model=name, precision=precision)])
                if "error" in result:
                    result = {"model": name, "precision": precision, **result}
                if args.multivae != "off" and name in MULTIVAE_MODELS and "error" not in result:
                    if multivae is None:  # once per model, float32: MultiVae's own setting
                        print(f"[bench] {name}: MultiVae side by side ...", file=sys.stderr, flush=True)
                        multivae = run_multivae(replace(base, model=name), args.multivae_epochs, tmp)
                    result["multivae"] = multivae
                    if multivae.get("status") == "ok":
                        result["ours_over_multivae"] = result["loop_pairs_per_s"] / multivae["pairs_per_s"]
                summary["models"][key] = result
        if args.concurrent > 1:
            summary["concurrent"] = {}
            for name in args.concurrent_models:
                print(f"[bench] {name}: {args.concurrent} trainings at once ...", file=sys.stderr, flush=True)
                summary["concurrent"][name] = run_concurrent(
                    replace(base, model=name), args.concurrent, summary["models"].get(name)
                )
        if args.quick:
            print("[bench] quick preset (snakemake) ...", file=sys.stderr, flush=True)
            summary["quick_preset"] = run_quick_preset(2, tmp)
    summary["table"] = format_table(summary)
    save_json(summary, args.out)
    print(summary["table"])
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
