"""MLflow wiring: one run per pipeline job, in its study's own experiment, traceable to its inputs,
continued (not duplicated) when a job is rerun, and safe for parallel jobs on one SQLite store (a
file lock) or over http(s) (checked before any job; MLflow's retries bounded by
``mlflow.retry_seconds``). docs/cluster.md ("MLflow", "MLflow across nodes") describes the tags,
the store, the checks and the faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

from filelock import FileLock

from mgmvae.config import config_hash
from mgmvae.gpu_slots import hard_lock
from mgmvae.paths import data_file
from mgmvae.provenance import git_commit

PROBE_TIMEOUT = 5.0  # seconds to wait for an http(s) tracking server before refusing to start
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
JOB_KEY = "job_key"  # tag: the identity of a pipeline job, to continue its run on a rerun
# MLflow's experiment type, "model training" (not GenAI); MLflow 3.17's UI shows it but opens an experiment
# by its sidebar switch, docs/cluster.md says how.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
MAX_RETRIES = 10  # MLflow refuses more HTTP retries (_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT)
MAX_WAIT_S = 120  # urllib3's longest wait between two retries (Retry.DEFAULT_BACKOFF_MAX)
REQUEST_TIMEOUT_S = 30  # a request to a server that hangs (stopped, not refusing) is given up, then retried


def experiment_name(config: Mapping) -> str:
    """The study's MLflow experiment: ``mlflow.experiment`` with ``{study}`` replaced by the study's name."""
    return str(config["mlflow"]["experiment"]).replace("{study}", config["study"])


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
    """Raise TrackingError at once if an http(s) tracking URI does not answer MLflow's ``/health`` (or
    carries a password); other URIs pass. Any HTTP answer (even an error status) counts: the server is there."""
    import requests

    check_uri(uri)
    try:
        if _is_http(uri):
            requests.get(uri.rstrip("/") + "/health", timeout=timeout, verify=tls_verify())
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


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (None: unset) environment variables for the block only (patch.dict restores them all): MLflow's
    clients read their credentials, retries and timeout from the environment at each request."""
    with patch.dict(os.environ, {name: value for name, value in values.items() if value is not None}):
        for name in [name for name, value in values.items() if value is None]:
            os.environ.pop(name, None)
        yield


def auth_client(uri: str) -> Any:
    """MLflow's client of its basic-auth app (users, permissions)."""
    with warnings.catch_warnings():  # it imports MLflow's server app, which warns about starlette
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        from mlflow.server.auth.client import AuthServiceClient
    return AuthServiceClient(uri)


def check_access(uri: str, experiment: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise TrackingError unless the job's credentials may edit ``experiment`` on an http(s) server:
    read-only, one try each, the experiment by name, then the user's permission on it."""
    if not _is_http(uri):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    user, once = os.environ.get(CREDENTIALS[0]), {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with environment({**once, "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout)))}):
        try:
            found = MlflowClient(uri).get_experiment_by_name(experiment)
        except MlflowException as error:
            if error.get_http_status_code() == 401:
                missing = " and ".join(v for v in CREDENTIALS if not os.environ.get(v))
                why = f"{missing} not set" if missing else f"the server rejected the password of user {user!r}"
                raise TrackingError(
                    f"the MLflow tracking server {uri} requires authentication (HTTP 401): {why}. Set "
                    f"{CREDENTIALS[0]} and {CREDENTIALS[1]} to a user with EDIT permission on experiment "
                    f"{experiment!r} (the tracking-server helper writes them to study.env)."
                ) from None
            if error.get_http_status_code() == 403:
                raise _no_edit(uri, experiment, user, "no permission") from None
            return  # a server error: the job's own calls retry it
        if found is None or user is None:
            return  # a missing experiment is created by the first job, which may then edit it
        auth = auth_client(uri)
        try:
            has = auth.get_user_permission(user, "experiment", found.experiment_id).permission
        except MlflowException as error:
            if error.get_http_status_code() == 404:
                return  # no basic-auth app: no permissions to check
            has = f"HTTP {error.get_http_status_code()}"
        if has not in ("EDIT", "MANAGE") and not auth.get_user(user).is_admin:
            raise _no_edit(uri, experiment, user, has)


def _no_edit(uri: str, experiment: str, user: str | None, has: str) -> TrackingError:
    return TrackingError(
        f"user {user!r} ({CREDENTIALS[0]}) may not edit experiment {experiment!r} on {uri} (has: {has}). "
        f"Grant EDIT (`python -m mgmvae tracking-server grant --user {user} --experiment {experiment}`) or set "
        f"{CREDENTIALS[0]}/{CREDENTIALS[1]} to a user who has it."
    )


def preflight(config: Mapping) -> None:
    """Before any job: the configured tracking server answers and the credentials may edit the experiment."""
    uri = config["mlflow"].get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    check_reachable(uri)  # both pass a local store
    check_access(uri, experiment_name(config))


def http_retries(budget_s: float) -> tuple[int, int]:
    """MLflow's (retries, back-off factor) whose waits add up to ``budget_s``: the smallest factor (a quick
    restart costs little), then the fewest retries. urllib3 retries at once, then waits factor x 2, 4,
    8, ... s, each wait at most MAX_WAIT_S (plus MLflow's jitter, up to 1 s each)."""
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


def job_key(study: str, stage: str, run_name: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps([study, stage, run_name, flatten(params)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class Tracker:
    """A thin, lock-safe wrapper round ``MlflowClient`` for one run."""

    def __init__(self, experiment: str, tracking_uri: str | None, enabled: bool, retry_seconds: float):
        self.enabled = enabled
        self.run_id: str | None = None
        self.retry_seconds = float(retry_seconds)
        self._logged: set[tuple[str, int]] = set()  # (metric, step) points this run already holds
        if not enabled:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
        check_reachable(self.uri)
        check_access(self.uri, experiment)
        if _is_http(self.uri):  # MLflow reads these at every request; a value already in the environment wins
            retries, factor = http_retries(self.retry_seconds)
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(factor))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT_S))
        self.lock = _sqlite_lock(self.uri)
        # The first store call creates (migrates) a new SQLite schema: under the lock too.
        self.client = self._call(lambda: MlflowClient(tracking_uri=self.uri))
        self.experiment_id = self._call(lambda: find_or_create_experiment(self.client, experiment))

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

    # ------------------------------------------------------------------ run API
    def start(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], dataset: Any = None) -> None:
        """Create the run (or continue the job's unfinished one); ``dataset``: an MLflow DatasetInput."""
        if not self.enabled:
            return
        from mlflow.utils import mlflow_tags

        key = job_key(str(tags.get("study")), str(tags.get("stage")), run_name, params)
        commit, source = git_commit(), f"mgmvae {tags.get('stage')}"  # the UI's Source column: the command
        tags = {**tags, "git_commit": commit, JOB_KEY: key, mlflow_tags.MLFLOW_GIT_COMMIT: commit}
        tags |= {mlflow_tags.MLFLOW_SOURCE_NAME: source, mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL"}
        self.run_id = self._call(lambda: self._find_or_create(run_name, {k: str(v) for k, v in tags.items()}))
        self.log_params(params)
        if dataset is not None:  # logged again by a rerun: the store keeps one input per (name, digest)
            self._call(lambda: self.client.log_inputs(self.run_id, [dataset]))

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


def find_or_create_experiment(client: Any, name: str) -> str:
    """The experiment's id; created (tagged as model training) if new, found if another job or a resent
    create made it first."""
    from mlflow.exceptions import MlflowException

    if found := client.get_experiment_by_name(name):
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, tags=EXPERIMENT_TAGS))
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return str(client.get_experiment_by_name(name).experiment_id)


def dataset_input(config: Mapping, stage: str, dataset: str) -> Any:
    """A dataset of the config as an MLflow dataset input: its name, a digest of its recipe (its config
    entry and the data seed), the study's data file as its source, the stage as its context."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    digest = config_hash({**config["datasets"][dataset], "data_seed": config["data_seed"]})[:8]
    source = json.dumps({"uri": str(data_file(config, dataset).resolve())})
    return DatasetInput(Dataset(dataset, digest, "local", source), [InputTag(MLFLOW_DATASET_CONTEXT, stage)])


def _sqlite_lock(uri: str) -> FileLock | None:
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    return hard_lock(db.with_name(db.name + ".lock"))


def _safe_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / ; "->" becomes "_to_", a subset's "," "-".
    return key.replace("->", "_to_").replace(">", "_").replace(",", "-")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        out |= flatten(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {f"{prefix}{key}": value}
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
    tracker = Tracker(experiment_name(config), settings["tracking_uri"], enabled, settings["retry_seconds"])
    one_dataset = enabled and tags.get("dataset") in config.get("datasets", {})
    dataset = dataset_input(config, stage, tags["dataset"]) if one_dataset else None
    tracker.start(run_name, {"study": config["study"], "stage": stage, **tags}, params, dataset)
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
