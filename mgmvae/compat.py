"""What the environment must provide: torchvision on a CPU-only torch, and a ``python`` the rules can run.

Importing torchvision on a CPU-only torch:

PyPI's torchvision 0.28.0 is a CUDA build; against the CPU wheel of torch 2.13.0 its compiled ops
fail to load and ``import torchvision`` raises ``operator torchvision::nms does not exist``. The
Python side only needs the two operator schemas to exist, so we define them and import again
(datasets, transforms and ``utils.make_grid``/``save_image`` then work; ``torchvision.ops`` does
not, and nothing here uses it). With a matching torch build the first import just succeeds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

_library = None  # keeps the schema definitions alive


def import_torchvision():
    global _library
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _library = torch.library.Library("torchvision", "DEF")
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


def rule_python_problem(root: Path) -> str | None:
    """Why the ``python`` on PATH, which every rule runs as ``python -m mgmvae``, cannot run the
    stages (None when it is this interpreter or runs them): Snakemake started as
    ``.venv/bin/snakemake`` without the venv active would otherwise run each job with the system
    Python and fail inside the first job's log."""
    python = shutil.which("python")
    if python is None:
        return "there is no `python` on PATH"
    if Path(python).absolute() == Path(sys.executable).absolute():
        return None
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    probe = subprocess.run([python, "-m", "mgmvae", "--help"], capture_output=True, text=True, env=env)
    if probe.returncode == 0:
        return None
    lines = (probe.stderr or probe.stdout).strip().splitlines()
    return f"the `python` on PATH ({python}) cannot run the stages: {lines[-1] if lines else probe.returncode}"
