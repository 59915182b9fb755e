"""The speed benchmark's command, ``python -m mgmvae.bench`` (``make bench``; docs/speed.md): the
measurements of :mod:`mgmvae.bench.measure` per model and network precision, into
results/bench/summary.json and a table."""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from mgmvae.bench import measure
from mgmvae.nets import PRECISIONS


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
    align = ["left"] * 2 + ["right"] * (rows.shape[1] - 2)  # model and precision, then numbers
    table = rows.to_markdown(index=False, disable_numparse=True, colalign=align)
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
    if q := summary.get("quick_preset"):
        tail.append(f"quick preset: {q['wall_s']:.0f} s wall ({q['status']}; {q['command']})")
    tail.append(
        f"GPU options: compile {'on' if summary['gpu_options']['compile'] else 'off'}; CUDA graphs not implemented"
    )
    return "\n".join([head, table, *tail])


def main(argv: list[str] | None = None) -> int:
    from mgmvae.registry import builtin_model_names

    p = argparse.ArgumentParser(prog="python -m mgmvae.bench", description=__doc__.split("\n\n")[0])
    names = builtin_model_names()
    p.add_argument("--models", nargs="+", default=names, choices=names, help="default: every built-in model")
    p.add_argument("--pairs", type=int, default=20_000, help="synthetic training pairs (default 20,000)")
    p.add_argument("--batch-size", type=int, default=None, help="default: config.yaml's for mnist_svhn (the paper's)")
    p.add_argument("--epochs", type=int, default=3, help="loop epochs; epoch 1 is warm-up (default 3)")
    p.add_argument("--bare-steps", type=int, default=None, help="timed bare steps (default: one epoch's)")
    p.add_argument("--log-every", type=int, default=None, help="override settings.log_every")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (CUDA only)")
    p.add_argument("--precision", nargs="+", default=["float32"], choices=list(PRECISIONS), help="each model at each")
    p.add_argument("--concurrent", type=int, default=0, metavar="N", help="also run N trainings at once")
    p.add_argument("--slots-per-device", type=int, metavar="K", help="GPU slots per device (default: config's)")
    p.add_argument("--concurrent-models", nargs="+", default=["mvae"], choices=names, help="(default mvae)")
    p.add_argument("--multivae", choices=("auto", "off"), default="auto", help="auto: if .venv-bench exists")
    p.add_argument("--multivae-epochs", type=int, default=2, help="MultiVae epochs, the first warm-up (default 2)")
    p.add_argument("--quick", action="store_true", help="also time the quick preset (minutes)")
    p.add_argument("--out", default=str(measure.REPO / "results" / "bench" / "summary.json"))
    args = p.parse_args(argv)

    from mgmvae.io import save_json
    from mgmvae.provenance import machine
    from mgmvae.train import resolve_device

    if args.slots_per_device is not None and args.slots_per_device < 1:
        p.error(f"--slots-per-device must be >= 1 (trainings at once per GPU), not {args.slots_per_device}")
    device = resolve_device(args.device)
    if args.compile and device.type != "cuda":
        p.error(f"--compile is measured on CUDA only, and the device is {device}: drop --compile or use --device cuda")
    # The options named as the fields of a Measurement; the model and its precision are set per run.
    given = {f.name: getattr(args, f.name) for f in fields(measure.Measurement) if f.name in vars(args)}
    given["threads"] = args.threads or torch.get_num_threads()
    given["batch_size"] = args.batch_size or measure.paper_settings(args.models[0])["batch_size"]  # one for all
    base = measure.Measurement(**given | {"model": "", "precision": "float32"})
    config = {k: v for k, v in asdict(base).items() if k not in ("model", "precision", "skip_bare")}
    config["timed_epochs"] = f"2..{args.epochs}"
    config["data"] = "synthetic uint8 MNIST-SVHN-shaped (1x28x28 + 3x32x32), resident on the device"
    config["settings"] = "config.yaml resolved for dataset mnist_svhn (paper setting)"
    summary: dict[str, Any] = {
        "command": "python -m mgmvae.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": str(device),
        "machine": machine() | ({"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
        "config": config,
        "precisions": args.precision,
        "gpu_options": {"compile": args.compile, "cuda_graphs": "not implemented"},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="mgmvae-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in args.models:
            multivae = None
            for precision in args.precision:
                key = name if precision == "float32" else f"{name} ({precision})"
                print(f"[bench] {key}: loop + bare ...", file=sys.stderr, flush=True)
                job = replace(base, model=name, precision=precision)
                [result] = measure.in_own_processes(measure.measure_model, [job])
                if "error" in result:
                    result = {"model": name, "precision": precision, **result}
                if args.multivae != "off" and name in measure.MULTIVAE_MODELS and "error" not in result:
                    if multivae is None:  # once per model, float32: MultiVae's own setting
                        print(f"[bench] {name}: MultiVae side by side ...", file=sys.stderr, flush=True)
                        multivae = measure.run_multivae(replace(base, model=name), args.multivae_epochs, tmp)
                    result["multivae"] = multivae
                    if multivae.get("status") == "ok":
                        result["ours_over_multivae"] = result["loop_pairs_per_s"] / multivae["pairs_per_s"]
                summary["models"][key] = result
        if args.concurrent > 1:
            summary["concurrent"] = {}
            for name in args.concurrent_models:
                print(f"[bench] {name}: {args.concurrent} trainings at once ...", file=sys.stderr, flush=True)
                single = summary["models"].get(name)
                summary["concurrent"][name] = measure.run_concurrent(replace(base, model=name), args.concurrent, single)
        if args.quick:
            print("[bench] quick preset (snakemake) ...", file=sys.stderr, flush=True)
            summary["quick_preset"] = measure.run_quick_preset(2, tmp)
    summary["table"] = format_table(summary)
    save_json(summary, args.out)
    print(f"{summary['table']}\n\nwritten: {args.out}")
    return 0
