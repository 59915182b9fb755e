"""The tiny ablation through SLURM, for real: a one-node cluster (slurm-wlm + munge from apt,
tests/slurm_cluster.py), `snakemake ablation --workflow-profile workflow/profiles/slurm` logging
over HTTP to MLflow's basic-auth server on 127.0.0.1, started by `python -m mgmvae tracking-server`
and used with the study user's credentials; every output and every MLflow run checked, and every
file the study wrote (results, .snakemake with its SLURM logs, the server's stores, the cluster's
logs) searched for the password. Every daemon started here is stopped by its PID in the end,
whatever happens."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import slurm_cluster
from mlflow_auth_server import admin_client
from test_ablation import ABLATION_CI, check_ablation_outputs, check_mlflow_runs

from mgmvae.config import ROOT
from mgmvae.mlflow_provisioning import _admin_password, read_env
from mgmvae.process_supervision import server_pids
from tests.conftest import snakemake

BIN = Path(sys.executable).parent
VARIANTS = ["full", "no_center", "gaussian_prior"]  # ablation.select of workflow/presets/ablation_ci.yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tiny_ablation_on_slurm_logging_to_an_mlflow_server(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: installs slurm-wlm and munge with apt-get and starts munged, slurmctld, slurmd")
    if not slurm_cluster.installed() and shutil.which("apt-get") is None:
        pytest.skip("slurm-wlm/munge are not installed and apt-get is unavailable to install them")
    timings = {}
    start = time.monotonic()
    timings["apt install"] = slurm_cluster.install()
    # Short, outside tmp_path: slurmd's job sockets live under it (slurm_cluster.STEP_SOCKET).
    cluster, work = Path(tempfile.mkdtemp(prefix="slurm-")), tmp_path / "work"
    work.mkdir()
    mlflow_started = False
    try:
        t = time.monotonic()
        slurm_cluster.start(cluster)
        timings["cluster start"] = time.monotonic() - t

        t = time.monotonic()
        server = tmp_path / "tracking-server"
        started = subprocess.run(
            [
                sys.executable,
                "-m",
                "mgmvae",
                "tracking-server",
                "start",
                "--dir",
                str(server),
                "--preset",
                "ablation_ci",
            ]
            + ["--port", str(_free_port()), "--workers", "1"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            timeout=300,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        mlflow_started = True
        study = read_env(server / "study.env")
        uri = study["MLFLOW_TRACKING_URI"]
        secrets = [study["MLFLOW_TRACKING_PASSWORD"].encode(), _admin_password(server).encode()]
        assert not any(secret in (started.stdout + started.stderr).encode() for secret in secrets)
        timings["mlflow server start"] = time.monotonic() - t

        # The README's command, with a short first status check (the plugin's default is 40 s).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SLURM_"))}
        env.update(PATH=f"{BIN}:{env['PATH']}", **study)  # MLFLOW_TRACKING_URI, _USERNAME, _PASSWORD
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

        # Every job went through SLURM and ended well: prepare, 2 classifiers, 3 trainings,
        # 3 evaluations, the ablation (slurmctld's log: the study outlasts squeue's MinJobAge).
        jobs = slurm_cluster.finished_jobs(cluster)
        assert len(jobs) >= 10 and set(jobs.values()) == {0}, jobs

        check_ablation_outputs(work, "ablation_ci", VARIANTS)
        again = snakemake(work, "-n", "ablation", "--configfile", str(ABLATION_CI))
        assert "Nothing to be done" in again.stdout + again.stderr
        assert not (work / "mlflow.db").exists(), "jobs logged to a local store, not the server"
        with admin_client(server, uri) as mlflow_client:
            check_mlflow_runs(mlflow_client, "ablation_ci", VARIANTS)

        # The password is in no file the study wrote, no printed command, nothing SLURM shows.
        shown = subprocess.run(["scontrol", "show", "job", "-d"], capture_output=True, text=True, env=env, timeout=30)
        printed = (result.stdout + result.stderr + shown.stdout).encode()
        assert not any(secret in printed for secret in secrets), "a password was printed"
        searched, leaks = _search(secrets, [work, server], skip={server / "basic_auth.ini", server / "study.env"})
        spool = [f for f in _search(secrets, [cluster], skip=set())[1] if (cluster / "state") in f.parents]
        assert not leaks, leaks
        assert searched > 50, searched
        print(f"password searched in {searched} files: found in none; in SLURM's private spool: {len(spool)} files")
        for f in spool:  # slurmctld keeps each job's submission environment, readable by SlurmUser only
            assert f.stat().st_mode & 0o077 == 0, f
    finally:
        if mlflow_started:
            subprocess.run(
                [sys.executable, "-m", "mgmvae", "tracking-server", "stop", "--dir", str(server)],
                timeout=60,
                check=False,
            )
        stopped = slurm_cluster.stop(cluster)
        shutil.rmtree(cluster, ignore_errors=True)
        timings["total"] = time.monotonic() - start
        print("timings (s):", {k: round(v, 1) for k, v in timings.items()}, "stopped PIDs:", stopped)
    for pid in stopped:
        assert not slurm_cluster._alive(pid), f"daemon {pid} still running"
    assert server_pids(server) == []


def _search(secrets: list[bytes], roots: list[Path], skip: set[Path]) -> tuple[int, list[Path]]:
    """(files searched, files holding any of the secrets) under the roots, skipping the given files."""
    files = [f for root in roots for f in root.rglob("*") if f.is_file() and not f.is_symlink() and f not in skip]
    return len(files), [f for f in files if any(secret in f.read_bytes() for secret in secrets)]


def test_a_cluster_folder_too_deep_for_slurmds_sockets_is_refused(tmp_path):
    """A too-long socket path would fail every job launch and leave the job held, not failed."""
    deep = tmp_path / ("d" * 100)
    with pytest.raises(slurm_cluster.ClusterError, match="too deep.*107"):
        slurm_cluster.write_conf(deep, conf=tmp_path / "slurm.conf")
    assert not deep.exists() and not (tmp_path / "slurm.conf").exists()
