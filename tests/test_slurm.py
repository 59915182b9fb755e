"""The tiny ablation through SLURM, for real: a one-node cluster (slurm-wlm + munge from apt,
tests/slurm_cluster.py), `snakemake ablation --workflow-profile workflow/profiles/slurm` logging
over HTTP to an `mlflow server` on 127.0.0.1; every output and every MLflow run checked. Every
daemon started here is stopped by its PID in the end, whatever happens."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import slurm_cluster
from test_ablation import ABLATION_CI, check_ablation_outputs, check_mlflow_runs

from mgmvae.config import ROOT

BIN = Path(sys.executable).parent
VARIANTS = ["full", "no_center", "gaussian_prior"]  # ablation.select of workflow/presets/ablation_ci.yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer {url} within {seconds:g} s:\n{log.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process we started and its own children (its session: process group id = its PID)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def test_tiny_ablation_on_slurm_logging_to_an_mlflow_server(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: installs slurm-wlm and munge with apt-get and starts munged, slurmctld, slurmd")
    if not slurm_cluster.installed() and shutil.which("apt-get") is None:
        pytest.skip("slurm-wlm/munge are not installed and apt-get is unavailable to install them")
    from mlflow.tracking import MlflowClient

    timings = {}
    start = time.monotonic()
    timings["apt install"] = slurm_cluster.install()
    cluster, work = tmp_path / "cluster", tmp_path / "work"
    work.mkdir()
    mlflow_proc = None
    try:
        t = time.monotonic()
        slurm_cluster.start(cluster)
        timings["cluster start"] = time.monotonic() - t

        t = time.monotonic()
        port = _free_port()
        uri = f"http://127.0.0.1:{port}"
        log = tmp_path / "mlflow-server.log"
        with open(log, "w") as out:
            mlflow_proc = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # no job runner (huey consumers): not needed for tracking, and it starts faster
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        _wait_http(f"{uri}/health", 180, mlflow_proc, log)
        timings["mlflow server start"] = time.monotonic() - t

        # The README's command, with a short first status check (the plugin's default is 40 s).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
        env.update(PATH=f"{BIN}:{env['PATH']}", MLFLOW_TRACKING_URI=uri)
        t = time.monotonic()
        result = subprocess.run(
            [
                str(BIN / "snakemake"),
                "-s",
                str(ROOT / "Snakefile"),
                "-d",
                str(work),
                "ablation",
                "--workflow-profile",
                str(ROOT / "workflow" / "profiles" / "slurm"),
                "--configfile",
                str(ABLATION_CI),
                "--slurm-init-seconds-before-status-checks",
                "5",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
        )
        timings["snakemake on slurm"] = time.monotonic() - t
        logs = "".join(f"\n--- {p}:\n{p.read_text()[-1500:]}" for p in sorted(work.rglob("*.log"))[:20])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:] + logs

        # Every job went through SLURM: squeue (MinJobAge 300 s) still lists them, completed.
        jobs = subprocess.run(
            ["squeue", "--states=all", "-h", "-o", "%i|%T|%j"], capture_output=True, text=True, env=env, timeout=30
        ).stdout.split()
        done = [j for j in jobs if j.split("|")[1] == "COMPLETED"]
        assert len(done) >= 10, jobs  # prepare, 2 classifiers, 3 trainings, 3 evaluations, the ablation

        check_ablation_outputs(work, "ablation_ci", VARIANTS)
        assert not (work / "mlflow.db").exists(), "jobs logged to a local store, not the server"
        check_mlflow_runs(MlflowClient(tracking_uri=uri), "ablation_ci", VARIANTS)
    finally:
        if mlflow_proc is not None:
            _stop_group(mlflow_proc)
        stopped = slurm_cluster.stop(cluster)
        timings["total"] = time.monotonic() - start
        print("timings (s):", {k: round(v, 1) for k, v in timings.items()}, "stopped PIDs:", stopped)
    for pid in stopped:
        assert not slurm_cluster._alive(pid), f"daemon {pid} still running"
    assert mlflow_proc.poll() is not None
