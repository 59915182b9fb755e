"""Test helpers: MLflow's basic-auth server on 127.0.0.1 through the project's own helper
(mgmvae/mlflow_provisioning.py), worker processes that log to it like pipeline jobs do, and an
intruder's fake listener."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from mgmvae import mlflow_provisioning, process_supervision
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
    return mlflow_provisioning.read_env(folder / "study.env")


def job_env(folder: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a job: PATH, this checkout on PYTHONPATH, the study user's credentials."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(folder)}
    env.update(credentials(folder))
    env.update(extra)
    return env


def start_server(folder: Path, port: int, tls: tuple[Path, Path] | None = None) -> str:
    uri = mlflow_provisioning.start(folder, "127.0.0.1", port, 1, None, tls)
    mlflow_provisioning.provision(folder, EXPERIMENT, "study", folder / "study.env")
    return uri


def kill_server(folder: Path) -> None:
    """SIGKILL the server's whole process group (its session) at once: a crash, not a shutdown (server.json
    stays); reap what this process started."""
    procs = [psutil.Process(pid) for pid in process_supervision.server_pids(folder)]
    assert procs, "no server to kill"
    os.killpg(process_supervision.read_state(folder)["pid"], 9)  # the session leader's PID is its group's
    psutil.wait_procs(procs, timeout=10)
    assert not process_supervision.server_pids(folder)


class FakeListener:
    """An intruder's HTTP server on a port: answers every request 200 (so /health looks fine) and keeps
    what it was sent: (method, path, headers, body)."""

    def __init__(self, host: str, port: int) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.command, self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": socket.getaddrinfo(host, port)[0][0]})
        self.server = server_class((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeListener:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def secrets_seen(self) -> list:
        """Every request that carried credentials or a body."""
        return [r for r in self.received if "Authorization" in r[2] or r[3]]


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

    with mlflow_provisioning.admin_credentials(folder):
        yield MlflowClient(tracking_uri=uri)


@contextmanager
def auth_client(folder: Path, uri: str) -> Iterator:
    """MLflow's basic-auth client as the admin (users and permissions), inside the block."""
    from mlflow.server import get_app_client

    with mlflow_provisioning.admin_credentials(folder):
        yield get_app_client("basic-auth", tracking_uri=uri)


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
