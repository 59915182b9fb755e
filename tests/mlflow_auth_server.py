"""Test helpers: MLflow's basic-auth server on 127.0.0.1 through the project's own helper
(mgmvae/tracking_server.py), and worker processes that log to it like pipeline jobs do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mgmvae import tracking_server
from mgmvae.config import ROOT

EXPERIMENT = "mgmvae-test"

# One pipeline job: a tracked run that logs `steps` points of two metrics, then an artifact. Like a
# training job resumed from its checkpoint, a rerun logs every step again (the tracker skips the
# points its run already holds).
WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mgmvae.tracking import tracked_run
    study, k, steps, pause, retry, experiment, outdir = sys.argv[1:8]
    k, steps, pause = int(k), int(steps), float(pause)
    config = {"study": study, "mlflow": {"experiment": experiment, "tracking_uri": None, "retry_seconds": float(retry)}}
    with tracked_run(config, "train", f"{study}/job{k}", {"seed": k}, {"lr": 0.001, "k": k}) as run:
        for step in range(steps):
            run.log_metrics({"loss": float(step * k), "acc": step / steps}, step=step)
            print(f"step {step}", flush=True)
            time.sleep(pause)
        artifact = Path(outdir) / f"job{k}.txt"
        artifact.write_text(f"job {k} of {study}\\n")
        run.log_artifact(artifact)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def credentials(folder: Path) -> dict[str, str]:
    return tracking_server.read_env(folder / "study.env")


def job_env(folder: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a job: PATH, this checkout on PYTHONPATH, the study user's credentials."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(folder)}
    env.update(credentials(folder))
    env.update(extra)
    return env


def start_server(folder: Path, port: int, **kwargs) -> str:
    uri = tracking_server.start(folder, "127.0.0.1", port, workers=1, **kwargs)
    tracking_server.provision(folder, uri, EXPERIMENT, "study", folder / "study.env")
    return uri


def kill_server(folder: Path) -> None:
    """SIGKILL the server's whole process group at once: a crash, not a shutdown."""
    pid = tracking_server.running_pid(folder)
    assert pid is not None, "no server to kill"
    os.killpg(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tracking_server._alive(pid):
        time.sleep(0.1)
    (folder / "server.pid").unlink()


def spawn(env: dict[str, str], study: str, k: int, steps: int, pause: float, retry: float, outdir: Path):
    outdir.mkdir(parents=True, exist_ok=True)
    args = [study, str(k), str(steps), str(pause), str(retry), EXPERIMENT, str(outdir)]
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        env=env,
        cwd=outdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    return [p.communicate(timeout=timeout)[0] for p in procs]


@contextmanager
def admin_client(folder: Path, uri: str) -> Iterator:
    """An MlflowClient as the admin (reads every run); the admin's credentials only inside the block."""
    from mlflow.tracking import MlflowClient

    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(dict(zip(names, (tracking_server.ADMIN, tracking_server._admin_password(folder)), strict=True)))
    try:
        yield MlflowClient(tracking_uri=uri)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_study(mlflow_client, study: str, jobs: int, steps: int) -> dict[str, int]:
    """Every job's run is there once, FINISHED, with every point and its artifact; returns the counts."""
    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
    runs = mlflow_client.search_runs([experiment.experiment_id], filter_string=f"tags.study = '{study}'")
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(f"{study}/job{k}" for k in range(jobs)), names  # none lost, none duplicated
    points = artifacts = 0
    for run in runs:
        k = int(run.data.params["k"])
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        for key in ("loss", "acc"):
            history = mlflow_client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(steps)), (run.info.run_name, key)
            points += len(history)
        assert [
            m.value for m in sorted(mlflow_client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
        ] == [float(s * k) for s in range(steps)]
        path = mlflow_client.download_artifacts(run.info.run_id, f"job{k}.txt")
        assert Path(path).read_text() == f"job {k} of {study}\n"
        artifacts += 1
    return {"runs": len(runs), "metric points": points, "artifacts": artifacts}
