"""Where a result came from: the code's commit and the machine, one description for the docs'
snapshots, the MLflow runs and the speed benchmark. Standard library only (the benchmark's
MultiVae side imports it under another virtualenv)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = ("mgmvae", "baselines", "workflow", "config.yaml", "Snakefile")  # what makes the numbers


def git_commit(root: Path = ROOT) -> str:
    """HEAD, with ``+dirty`` when the code (not the docs) has uncommitted changes."""
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The CPU, its cores, torch, Python, the OS and the load when asked."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch": importlib.metadata.version("torch"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": os.getloadavg()[0],
    }
