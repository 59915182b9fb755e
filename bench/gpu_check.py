"""The GPU check (``make gpu-check``, or ``python bench/gpu_check.py``; docs/speed.md, "GPU"): on a
machine with a CUDA GPU, in under 10 minutes, the CUDA tests (``pytest -m cuda``) and a timed epoch of
the paper setting per model (``python -m mgmvae.bench``) with the paper's MNIST-SVHN epoch
(``PAPER_PAIRS``) projected from it, into one JSON file (default results/gpu_check.json). Exit code 0
when every part ran and every CUDA test passed; the JSON says what failed.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Class counts of the training sets (torchvision MNIST 0-9; SVHN 0-9, its label 10 read as 0):
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
SVHN_TRAIN = [4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659]
PAPER_PAIRS = 20 * sum(map(min, MNIST_TRAIN, SVHN_TRAIN))  # 1,121,360 (config.yaml: pairings 20)
PAPER_EPOCHS = 20  # config.yaml dataset_settings.mnist_svhn


def run(cmd: list[str], timeout: float) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        status, tail = done.returncode, (done.stdout + done.stderr)[-4000:]
    except subprocess.TimeoutExpired as error:
        status, tail = "timeout", str(error)
    return {"command": " ".join(cmd[1:]), "status": status, "seconds": time.perf_counter() - start, "tail": tail}


def cuda_tests(tmp: Path, timeout: float) -> dict:
    junit = tmp / "cuda.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "cuda", "-rs", f"--junitxml={junit}", "tests"]
    result = run(cmd, timeout)
    cases = ET.parse(junit).getroot().iter("testcase") if junit.exists() else []
    result["tests"] = {
        f"{case.get('classname')}::{case.get('name')}": {
            "outcome": next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed"),
            "seconds": float(case.get("time", 0)),
        }
        for case in cases
    }
    return result


def timed_epochs(tmp: Path, models: list[str], pairs: int, timeout: float) -> dict:
    out = tmp / "bench.json"
    cmd = [sys.executable, "-m", "mgmvae.bench", "--device", "cuda", "--pairs", str(pairs), "--epochs", "2"]
    cmd += ["--bare-steps", "20", "--multivae", "off", "--concurrent", "2", "--concurrent-models", "mgmvae"]
    cmd += ["--out", str(out), "--models", *models]
    result = run(cmd, timeout)
    summary = json.loads(out.read_text()) if out.exists() else {}
    keep = ("loop_pairs_per_s", "bare_pairs_per_s", "peak_memory_mb", "device_placement", "error")
    result["models"] = {name: {k: m[k] for k in keep if k in m} for name, m in summary.get("models", {}).items()}
    for measured in result["models"].values():
        if rate := measured.get("loop_pairs_per_s"):
            measured |= {"paper_epoch_s": PAPER_PAIRS / rate, "paper_run_min": PAPER_EPOCHS * PAPER_PAIRS / rate / 60}
    return result | {"concurrent": summary.get("concurrent"), "machine": summary.get("machine")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check.json")
    parser.add_argument("--models", nargs="+", default=None, help="default: every built-in model")
    parser.add_argument("--pairs", type=int, default=12_800, help="synthetic pairs per timed epoch (default 12,800)")
    args = parser.parse_args(argv)
    report: dict = {
        "command": "python bench/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "paper_pairs": PAPER_PAIRS,
    }
    if not torch.cuda.is_available():
        report["error"] = "no CUDA GPU: torch.cuda.is_available() is False (this check needs one)"
    else:
        from mgmvae.registry import builtin_model_names

        report["gpu"] = torch.cuda.get_device_name(0)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            report["cuda_tests"] = cuda_tests(Path(tmp), timeout=240)
            report["timed_epochs"] = timed_epochs(Path(tmp), args.models or builtin_model_names(), args.pairs, 300)
        report["wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    tests = report.get("cuda_tests", {}).get("tests", {})
    ok = "error" not in report and tests and all(t["outcome"] == "passed" for t in tests.values())
    ok = ok and report["timed_epochs"]["status"] == 0
    print(json.dumps({k: v for k, v in report.items() if k not in ("cuda_tests", "timed_epochs")}, indent=2))
    for name, test in tests.items():
        print(f"{test['outcome']:>8} {test['seconds']:7.1f} s  {name}")
    for name, measured in report.get("timed_epochs", {}).get("models", {}).items():
        rate, epoch = measured.get("loop_pairs_per_s", 0), measured.get("paper_epoch_s", 0)
        print(f"{name:>12}: {rate:,.0f} pairs/s, paper epoch {epoch:,.0f} s")
    print(f"written: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
