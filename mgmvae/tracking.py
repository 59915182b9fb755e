"""MLflow wiring: one run per pipeline job, tagged so that any run can be traced to its inputs.

Tags: study, dataset, model, seed, stage, git_commit, config_hash (+ variant for ablation runs). The store is
``mlflow.tracking_uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else MLflow's default
(``sqlite:///mlflow.db`` in the working directory, artifacts under ``./mlruns``).

Several Snakemake jobs write one SQLite store at once, and SQLite answers "database is locked"
under contention. Writes here are rare (params once, metrics once per epoch), so every call to a
SQLite store takes an exclusive ``flock`` on ``<db>.lock`` first; HTTP stores need no lock. Calls
are retried with back-off on transient errors either way.

An http(s) store (``mlflow server``, for jobs on other nodes) is probed once when a job starts:
if it does not answer within ``PROBE_TIMEOUT`` seconds the job stops at once, naming the URI,
instead of retrying for minutes.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mgmvae.config import ROOT

RETRIES = 8
PROBE_TIMEOUT = 5.0  # seconds to wait for an http(s) tracking server before refusing to start


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_tracking_uri(configured: str | None) -> str:
    import mlflow

    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


class TrackingError(RuntimeError):
    pass


def check_reachable(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingError at once if an http(s) tracking URI does not answer; other URIs pass.
    Any HTTP answer (even an error status) counts: the server is there."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"the MLflow tracking server {uri} does not answer ({reason}; timeout {timeout:g} s). "
            f"Start it (e.g. `mlflow server --backend-store-uri sqlite:///mlflow.db --host 0.0.0.0 "
            f"--port 5000` on a host the jobs can reach) or point MLFLOW_TRACKING_URI (or "
            f"mlflow.tracking_uri) at a running one; --no-mlflow runs a stage without tracking."
        ) from None


class Tracker:
    """A thin, lock-safe wrapper round ``MlflowClient`` for one run."""

    def __init__(self, experiment: str, tracking_uri: str | None = None, enabled: bool = True):
        self.enabled = enabled
        self.run_id: str | None = None
        if not enabled:
            return
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        check_reachable(self.uri)
        self.lock_path = self._lock_path(self.uri)
        # Creating the client creates (migrates) a new SQLite schema: under the lock too.
        self.client = self._call(lambda: _client(MlflowClient, self.uri))
        self.experiment_id = self._call(lambda: self._experiment(experiment))

    @staticmethod
    def _lock_path(uri: str) -> Path | None:
        if not uri.startswith("sqlite:///"):
            return None
        db = Path(uri[len("sqlite:///") :])
        return db.with_name(db.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _call(self, fn: Callable[..., Any]) -> Any:
        delay = 0.2
        for attempt in range(RETRIES):
            try:
                with self._locked():
                    return fn()
            except Exception as error:  # noqa: BLE001 - MLflow raises many types for one cause
                transient = any(s in str(error).lower() for s in ("locked", "busy", "timed out", "connection"))
                if not transient or attempt == RETRIES - 1:
                    raise TrackingError(f"MLflow call to {self.uri} failed: {error}") from error
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    # ------------------------------------------------------------------ run API
    def start(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        tags = {k: str(v) for k, v in {**tags, "git_commit": git_commit()}.items()}
        run = self._call(lambda: self.client.create_run(self.experiment_id, run_name=run_name, tags=tags))
        self.run_id = run.info.run_id
        self.log_params(params)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not (self.enabled and params):
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # MLflow caps params per batch at 100
            self._call(lambda chunk=items[i : i + 100]: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not (self.enabled and metrics):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_safe_key(k), float(v), now, step or 0)
            for k, v in flatten(metrics).items()
            if isinstance(v, (int, float))
        ]
        for i in range(0, len(items), 1000):
            self._call(lambda chunk=items[i : i + 1000]: self.client.log_batch(self.run_id, metrics=chunk))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled and Path(path).exists():
            self._call(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self._call(lambda: self.client.set_terminated(self.run_id, status=status))


def _client(factory, uri: str):
    client = factory(tracking_uri=uri)
    client.search_experiments(max_results=1)  # touches the store now, not at the first log
    return client


def _safe_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / ; "->" becomes "_to_".
    return key.replace("->", "_to_").replace(">", "_")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


@contextmanager
def tracked_run(
    config: Mapping, stage: str, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], enabled: bool = True
) -> Iterator[Tracker]:
    """One MLflow run around a pipeline job; marked FAILED if the job raises."""
    tracker = Tracker(config["mlflow"]["experiment"], config["mlflow"].get("tracking_uri"), enabled)
    tracker.start(run_name, {"study": config["study"], "stage": stage, **tags}, params)
    try:
        yield tracker
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
