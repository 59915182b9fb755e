"""MLflow wiring: one run per pipeline job, tagged so that any run can be traced to its inputs.

Tags: study, dataset, model, seed, stage, git_commit, config_hash (+ variant for ablation runs). The store is
``mlflow.tracking_uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else MLflow's default
(``sqlite:///mlflow.db`` in the working directory, artifacts under ``./mlruns``).

Several Snakemake jobs write one SQLite store at once. MLflow's SQLite store waits for a busy
database (``PRAGMA busy_timeout``, 20 s), but SQLite fails at once, without waiting, a transaction
that would deadlock (two connections upgrading from reading to writing), and two jobs creating a new
store race on its schema. Writes here are rare (params once, metrics once per epoch), so every call
to a SQLite store takes ``<db>.lock`` (filelock: flock, freed by the kernel when a job dies) first
and the jobs take turns; HTTP stores need no lock.

An http(s) store (``mlflow server``, for jobs on other nodes) is checked once when a job starts,
and by the workflow before any job (:func:`preflight`): a server that does not answer within
``PROBE_TIMEOUT`` seconds, missing or wrong credentials (``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, MLflow's basic-auth app) and a user who may not edit the experiment
stop the job at once, naming what to set. ``https://`` servers are verified against
``MLFLOW_TRACKING_SERVER_CERT_PATH`` (a CA bundle) when it is set.

Faults: over http(s), MLflow's client retries a transient failure (connection refused or reset, a
timeout, HTTP 408/429/5xx) with exponential back-off; its retry count and back-off factor are set
(:func:`http_retries`, unless already set in the environment) so that its waits add up to
``mlflow.retry_seconds``, after which the job stops saying how to resume. A retried request may have
reached the server, so every store call is idempotent: a metric point keeps the timestamp of its
first attempt (the store keeps one row), an experiment created twice is found, a run is looked up by
its job key (study, stage, run name, hash of the params) before one is created and a twin from a
resent create is deleted, and a (key, step) point is logged once per run. A rerun of a job whose run
did not finish (killed, failed, server gone) continues that run instead of adding another, and skips
the points already logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from mgmvae.provenance import git_commit

PROBE_TIMEOUT = 5.0  # seconds to wait for an http(s) tracking server before refusing to start
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
JOB_KEY = "job_key"  # tag: the identity of a pipeline job, to continue its run on a rerun
MAX_RETRIES = 10  # MLflow refuses more HTTP retries (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)
MAX_WAIT_S = 120  # urllib3's longest wait between two retries (Retry.DEFAULT_BACKOFF_MAX)
REQUEST_TIMEOUT_S = 30  # a request to a server that hangs (stopped, not refusing) is given up, then retried


def resolve_tracking_uri(configured: str | None) -> str:
    import mlflow

    if configured:
        return configured
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


class TrackingError(RuntimeError):
    pass


def _is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def tls_verify() -> bool | str:
    """What ``requests`` verifies an https server against: MLflow's own variables, same meaning."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return False
    bundle = os.environ.get(CERT_PATH)
    if bundle and not Path(bundle).is_file():
        raise TrackingError(f"{CERT_PATH}={bundle} is not a file: point it at the CA bundle (PEM) of the server")
    return bundle or True


def _credentials() -> tuple[str, str] | None:
    user, password = (os.environ.get(v) for v in CREDENTIALS)
    return (user, password) if user and password else None


def _request(uri: str, path: str, timeout: float, params: Mapping[str, str] | None = None):
    """GET ``path`` on the server with the job's credentials; a connection or TLS failure is a TrackingError."""
    import requests

    try:
        return requests.get(
            uri.rstrip("/") + path, params=params, auth=_credentials(), timeout=timeout, verify=tls_verify()
        )
    except requests.exceptions.SSLError as error:
        raise TrackingError(
            f"the TLS certificate of the MLflow tracking server {uri} was not accepted ({error}). "
            f"Set {CERT_PATH} to the CA bundle (PEM) that signed it."
        ) from None
    except requests.exceptions.RequestException as error:
        raise TrackingError(
            f"the MLflow tracking server {uri} does not answer ({error}; timeout {timeout:g} s). "
            f"Start it (`python -m mgmvae tracking-server start`, see docs/tracking-server.md) or point "
            f"MLFLOW_TRACKING_URI (or mlflow.tracking_uri) at a running one; --no-mlflow runs a stage without tracking."
        ) from None


def check_uri(uri: str | None, where: str = "MLFLOW_TRACKING_URI or mlflow.tracking_uri") -> None:
    """Refuse a URI with a password in it (user:password@host): URIs are written to the study config,
    logs and messages. The message does not repeat the URI."""
    from urllib.parse import urlsplit

    if uri and _is_http(uri) and urlsplit(uri).password is not None:
        raise TrackingError(
            f"the tracking URI in {where} carries a password (user:password@host); it would be written to "
            f"results/<study>/config.yaml, logs and messages. Give the URI without it and the credentials in "
            f"{CREDENTIALS[0]} and {CREDENTIALS[1]}."
        )


def check_reachable(uri: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingError at once if an http(s) tracking URI does not answer (or carries a password);
    other URIs pass. Any HTTP answer (even an error status) counts: the server is there."""
    check_uri(uri)
    if _is_http(uri):
        _request(uri, "/health", timeout)


def check_access(uri: str, experiment: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingError unless the job's credentials may edit ``experiment`` on an http(s) server.

    Read-only: the experiment by name (401: credentials, 403: no permission), then the user's own
    permissions from the basic-auth app (absent on a server without authentication: nothing to check).
    """
    if not _is_http(uri):
        return
    found = _request(uri, "/api/2.0/mlflow/experiments/get-by-name", timeout, {"experiment_name": experiment})
    user = os.environ.get(CREDENTIALS[0])
    if found.status_code == 401:
        missing = [v for v in CREDENTIALS if not os.environ.get(v)]
        why = f"{' and '.join(missing)} not set" if missing else f"the server rejected the password of user {user!r}"
        raise TrackingError(
            f"the MLflow tracking server {uri} requires authentication (HTTP 401): {why}. Set "
            f"{CREDENTIALS[0]} and {CREDENTIALS[1]} to a user with EDIT permission on experiment "
            f"{experiment!r} (the tracking-server helper writes them to study.env)."
        )
    if found.status_code == 403:
        raise _no_edit(uri, experiment, user, "no permission")
    if found.status_code == 404 or found.status_code >= 500 or user is None:
        return  # a missing experiment is created by the first job, which may then edit it
    experiment_id = found.json()["experiment"]["experiment_id"]
    query = {"username": user, "resource_type": "experiment", "resource_id": experiment_id}
    mine = _request(uri, "/api/3.0/mlflow/users/permissions/get", timeout, query)
    if mine.status_code == 404:
        return  # no basic-auth app: no permissions to check
    has = mine.json().get("permission", "unknown") if mine.ok else f"HTTP {mine.status_code}"
    if has not in ("EDIT", "MANAGE") and not _is_admin(uri, timeout):
        raise _no_edit(uri, experiment, user, has)


def _is_admin(uri: str, timeout: float) -> bool:
    me = _request(uri, "/api/3.0/mlflow/users/current/permissions", timeout)
    return me.ok and bool(me.json().get("is_admin"))


def _no_edit(uri: str, experiment: str, user: str | None, has: str) -> TrackingError:
    return TrackingError(
        f"user {user!r} ({CREDENTIALS[0]}) may not edit experiment {experiment!r} on {uri} (has: {has}). "
        f"Grant EDIT (`python -m mgmvae tracking-server grant --user {user}`) or set "
        f"{CREDENTIALS[0]}/{CREDENTIALS[1]} to a user who has it."
    )


def preflight(config: Mapping) -> None:
    """Before any job: the configured tracking server answers and the credentials may edit the experiment."""
    uri = config["mlflow"].get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    check_reachable(uri)  # both pass a local store (no mlflow import: this runs in Snakemake's process)
    check_access(uri, config["mlflow"]["experiment"])


def http_retries(budget_s: float) -> tuple[int, int]:
    """MLflow's (retries, back-off factor) whose waits add up to ``budget_s``: the smallest factor (short
    first waits: a quick restart costs little), then the fewest retries.

    urllib3 retries at once, then waits factor x 2, 4, 8, ... s, each wait at most MAX_WAIT_S (plus
    MLflow's jitter, up to 1 s each)."""
    schedules = [
        (factor, sum(min(MAX_WAIT_S, factor * 2**k) for k in range(1, retries)), retries)
        for factor in range(1, MAX_WAIT_S + 1)
        for retries in range(MAX_RETRIES + 1)
    ]
    fits = [schedule for schedule in schedules if schedule[1] >= budget_s]
    if not fits:
        raise TrackingError(
            f"mlflow.retry_seconds is {budget_s:g} s, longer than MLflow's HTTP retries can wait "
            f"({max(waits for _, waits, _ in schedules)} s: {MAX_RETRIES} retries, at most {MAX_WAIT_S} s apart); "
            "lower it"
        )
    factor, _, retries = min(fits)
    return retries, factor


def _use_mlflow_retries(budget_s: float) -> None:
    """MLflow reads these at every request; a value already in the environment wins."""
    retries, factor = http_retries(budget_s)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(factor))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))


def job_key(study: str, stage: str, run_name: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps([study, stage, run_name, flatten(params)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Tracker:
    """A thin, lock-safe wrapper round ``MlflowClient`` for one run."""

    def __init__(
        self,
        experiment: str,
        tracking_uri: str | None,
        enabled: bool,
        retry_seconds: float,
    ):
        self.enabled = enabled
        self.run_id: str | None = None
        self.retry_seconds = float(retry_seconds)
        self._logged: set[tuple[str, int]] = set()  # (metric, step) points this run already holds
        if not enabled:
            return
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        check_reachable(self.uri)
        check_access(self.uri, experiment)
        if _is_http(self.uri):
            _use_mlflow_retries(self.retry_seconds)
        self.lock = _sqlite_lock(self.uri)
        # Creating the client creates (migrates) a new SQLite schema: under the lock too.
        self.client = self._call(lambda: _client(MlflowClient, self.uri))
        self.experiment_id = self._call(lambda: self._experiment(experiment))

    def _call(self, fn: Callable[..., Any]) -> Any:
        """``fn()`` on the store; a SQLite store in this job's turn (the file lock) and without a SIGTERM
        in the middle. A failure (over http(s): once MLflow's retries ran out) as a TrackingError."""
        try:
            if self.lock is None:
                return fn()
            with self.lock, _store_call():
                return fn()
        except Exception as error:  # noqa: BLE001 - MLflow raises many types for one cause
            raise TrackingError(self._failed(error)) from error

    def _failed(self, error: Exception) -> str:
        import requests

        if not isinstance(error.__cause__ or error.__context__, requests.RequestException):
            return f"MLflow call to {self.uri} failed: {error}"
        run = f"run {self.run_id}" if self.run_id else "its run"
        return (
            f"the MLflow tracking store {self.uri} was unreachable for {self.retry_seconds:g} s "
            f"(mlflow.retry_seconds; last error: {str(error)[:300]}). Rerun the job once it is back: "
            f"training resumes from its checkpoint and the job continues {run} (no duplicate run)."
        )

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as error:  # made first by another job, or by a resent create
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    # ------------------------------------------------------------------ run API
    def start(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        key = job_key(str(tags.get("study")), str(tags.get("stage")), run_name, params)
        tags = {k: str(v) for k, v in {**tags, "git_commit": git_commit(), JOB_KEY: key}.items()}
        self.run_id = self._call(lambda: self._find_or_create(run_name, tags))
        self.log_params(params)

    def _find_or_create(self, run_name: str, tags: Mapping[str, str]) -> str:
        from mlflow.entities import RunTag

        unfinished = self._unfinished(tags[JOB_KEY])
        if not unfinished:
            run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
            for twin in self._unfinished(tags[JOB_KEY]):  # MLflow resent a create whose answer was lost
                if twin.info.run_id != run_id:
                    self.client.delete_run(twin.info.run_id)
            return run_id
        run = unfinished[0]
        self.client.update_run(run.info.run_id, status="RUNNING")
        self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        for metric in run.data.metrics:
            history = self.client.get_metric_history(run.info.run_id, metric)
            self._logged.update((metric, m.step) for m in history)
        print(f"continuing MLflow run {run.info.run_id} ({run.info.status}) of an earlier attempt", file=sys.stderr)
        return run.info.run_id

    def _unfinished(self, key: str) -> list:
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.{JOB_KEY} = '{key}'", max_results=50)
        return [run for run in found if run.info.status != "FINISHED"]

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not (self.enabled and params):
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # MLflow caps params per batch at 100
            self._call(lambda chunk=items[i : i + 100]: self.client.log_batch(self.run_id, params=chunk))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log each (key, step) point once per run: a repeat (a resumed job re-logging its history) is skipped."""
        if not (self.enabled and metrics):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)  # fixed before any retry: a repeated point is the same row
        items = [
            Metric(_safe_key(k), float(v), now, step or 0)
            for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and (_safe_key(k), step or 0) not in self._logged
        ]
        for i in range(0, len(items), 1000):
            self._call(lambda chunk=items[i : i + 1000]: self.client.log_batch(self.run_id, metrics=chunk))
            self._logged.update((m.key, m.step) for m in items[i : i + 1000])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled and Path(path).exists():
            self._call(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self._call(lambda: self.client.set_terminated(self.run_id, status=status))


def _sqlite_lock(uri: str) -> FileLock | None:
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    # No fallback to a marker file when the filesystem lacks flock: a killed job would leave it behind.
    return FileLock(db.with_name(db.name + ".lock"), fallback_to_soft=False)


def _client(factory, uri: str):
    client = factory(tracking_uri=uri)
    client.search_experiments(max_results=1)  # touches the store now, not at the first log
    return client


def _safe_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / ; "->" becomes "_to_", a subset's "," "-".
    return key.replace("->", "_to_").replace(">", "_").replace(",", "-")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Terminated(SystemExit):
    """SIGTERM (scancel, a SLURM time limit, Snakemake stopping a job) as an exception: the run is marked KILLED."""


class _StoreCalls:
    """Store calls in progress in this process, and a SIGTERM that arrived during one."""

    depth = 0
    pending: int | None = None


@contextmanager
def _store_call() -> Iterator[None]:
    """A SQLite store call is not interrupted: a transaction cut short by the exception would keep
    its lock on the connection it was on, and marking the run KILLED would then wait on it. (An HTTP
    call may be: the server's transaction is its own, and MLflow's retries may run for minutes.)"""
    _StoreCalls.depth += 1
    try:
        yield
    finally:
        _StoreCalls.depth -= 1
    if _StoreCalls.depth == 0 and _StoreCalls.pending is not None:
        signum, _StoreCalls.pending = _StoreCalls.pending, None
        raise Terminated(128 + signum)


def _on_sigterm(signum: int, frame: Any) -> None:
    if _StoreCalls.depth:  # raised when the call returns (_store_call)
        _StoreCalls.pending = signum
        return
    raise Terminated(128 + signum)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def tracked_run(
    config: Mapping, stage: str, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], enabled: bool = True
) -> Iterator[Tracker]:
    """One MLflow run around a pipeline job; marked FAILED if the job raises, KILLED on SIGTERM. If even
    that cannot be recorded (server gone), the job's own error is raised and the rerun continues the run."""
    settings = config["mlflow"]
    tracker = Tracker(settings["experiment"], settings["tracking_uri"], enabled, settings["retry_seconds"])
    tracker.start(run_name, {"study": config["study"], "stage": stage, **tags}, params)
    try:
        with _sigterm_raises():
            yield tracker
    except BaseException as error:
        try:
            tracker.end("KILLED" if isinstance(error, (Terminated, KeyboardInterrupt)) else "FAILED")
        except TrackingError as lost:
            print(f"warning: could not mark the MLflow run as failed: {lost}", file=sys.stderr)
        raise
    tracker.end("FINISHED")
