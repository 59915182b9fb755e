"""MLflow: concurrent jobs writing one default (SQLite) store lose nothing and fail nothing."""

import json
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

WORKER = textwrap.dedent(
    """
    import sys
    from mgmvae.tracking import tracked_run
    mlflow = {"experiment": "concurrency", "tracking_uri": None, "retry_seconds": 300}
    config = {"study": "concurrency", "mlflow": mlflow}
    k = int(sys.argv[1])
    with tracked_run(config, "train", f"job{k}", {"seed": k}, {"lr": 0.1 * k, "nested": {"a": k}}) as run:
        for step in range(25):
            run.log_metrics({"loss": float(step * k), "acc->b": 0.5}, step=step)
    """
)


def test_concurrent_jobs_log_to_the_default_store(tmp_path):
    env_clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("mgmvae").__path__[0] + "/..")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k)],
            cwd=tmp_path,
            env=env_clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in range(6)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 6
    for run in runs:
        k = int(run.data.tags["seed"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["stage"] == "train" and run.data.tags["study"] == "concurrency"
        assert "git_commit" in run.data.tags
        assert run.data.params["nested.a"] == str(k)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(25))
        assert "acc_to_b" in run.data.metrics


def test_failed_job_is_marked_failed(tmp_path, monkeypatch):
    from mgmvae.tracking import tracked_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = {
        "study": "s",
        "mlflow": {"experiment": "e", "tracking_uri": f"sqlite:///{tmp_path}/m.db", "retry_seconds": 300},
    }
    try:
        with tracked_run(config, "train", "boom", {}, {}):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == "FAILED"


# A job logging to the local SQLite store as fast as it can, until killed (bounded: 100,000 points).
HAMMER = textwrap.dedent(
    """
    import sys
    from mgmvae.tracking import tracked_run
    config = {"study": "killed", "mlflow": {"experiment": "killed", "tracking_uri": sys.argv[1], "retry_seconds": 30}}
    steps = int(sys.argv[2])
    with tracked_run(config, "train", "job", {"seed": 0}, {"lr": 0.1}) as run:
        for step in range(steps):
            run.log_metrics({"loss": float(step)}, step=step)
            if step == 5:
                print("logging", flush=True)
    """
)


def _hammer(uri: str, steps: int, cwd) -> subprocess.Popen:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(__import__("mgmvae").__path__[0] + "/..")}
    return subprocess.Popen(
        [sys.executable, "-c", HAMMER, uri, str(steps)], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
    )


def test_sqlite_store_survives_jobs_killed_mid_write_and_a_rerun_adds_no_run(tmp_path):
    import signal
    import sqlite3
    import time

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    for sig, pause in ((signal.SIGKILL, 0.7), (signal.SIGKILL, 1.3), (signal.SIGTERM, 0.5)):
        proc = _hammer(uri, 100_000, tmp_path)
        assert proc.stdout.readline().strip() == "logging"
        time.sleep(pause)  # mid-write: it logs one point per SQLite transaction
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        assert proc.returncode != 0
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        client = MlflowClient(tracking_uri=uri)
        (run,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
        # SIGKILL leaves the run RUNNING (nothing can run); SIGTERM marks it KILLED. The rerun continues it.
        assert run.info.status == ("KILLED" if sig == signal.SIGTERM else "RUNNING")
        assert len(client.get_metric_history(run.info.run_id, "loss")) > 5
    proc = _hammer(uri, 300, tmp_path)  # the rerun: fewer steps than were logged already
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    (again,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert len(steps) == len(set(steps))  # each point once, however often the job ran
    assert set(range(300)) <= set(steps)


def test_sigterm_during_a_store_call_waits_for_it_to_finish():
    """A SIGTERM inside a store call is raised when the call returns, not in the middle of it
    (where it would leave a SQLite transaction holding its lock); outside one it is raised at once."""
    import signal

    from mgmvae.tracking import Terminated, _on_sigterm, _store_call

    finished = []
    with pytest.raises(Terminated) as stop:
        with _store_call():
            _on_sigterm(signal.SIGTERM, None)  # as the handler runs between two bytecodes of the call
            finished.append("write")
    assert finished == ["write"] and stop.value.code == 128 + signal.SIGTERM
    with pytest.raises(Terminated):
        _on_sigterm(signal.SIGTERM, None)
    with _store_call():  # nothing pending any more
        pass


def test_mlflow_http_retries_wait_out_the_budget_and_no_longer_than_needed():
    """urllib3's waits: none before the first retry, then factor x 2, 4, 8, ... s (at most 120 s each)."""
    from mgmvae.tracking import TrackingError, http_retries

    assert http_retries(0) == (0, 1)
    assert http_retries(4) == (3, 1)  # waits 0 + 2 + 4 = 6 s; two retries wait only 2 s
    assert http_retries(300) == (9, 1)  # 2+4+8+16+32+64+120+120 = 366 s; eight retries wait 246 s
    assert http_retries(487) == (10, 2)  # factor 1 waits at most 486 s; factor 2: 4+8+16+32+64+4x120 = 604
    with pytest.raises(TrackingError, match="longer than MLflow's HTTP retries can wait .1080 s"):
        http_retries(1081)


def test_a_store_gone_for_longer_than_the_budget_stops_the_job_saying_how_to_resume(tmp_path, monkeypatch):
    """MLflow's own retries ride out the budget (retry_seconds 1: two retries, 0 + 2 s apart), then the
    job stops with the message that says how to resume."""
    import socket
    import time

    from mlflow.tracking import MlflowClient

    from mgmvae.tracking import Tracker, TrackingError, http_retries

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket closes
    retries, factor = http_retries(1)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(factor))
    tracker = Tracker("e", f"sqlite:///{tmp_path}/m.db", enabled=True, retry_seconds=1)
    tracker.uri, tracker.lock, tracker.run_id = gone, None, "r1"  # the server went away after the job started
    tracker.client = MlflowClient(tracking_uri=gone)
    start = time.monotonic()
    with pytest.raises(TrackingError, match="unreachable for 1 s .*resumes from its checkpoint.*continues run r1"):
        tracker.log_metrics({"loss": 1.0}, step=0)
    assert 2 <= time.monotonic() - start < 30


def test_each_study_has_its_own_model_training_experiment_and_runs_carry_their_dataset_and_source(tmp_path):
    """What the MLflow UI shows: one experiment per study, of MLflow's type "model training"; a run's
    Dataset column (its dataset: name, a digest of its recipe, the study's data file, the stage) and Source
    column (the command, the commit). A rerun of a failed job continues its run with the one input."""
    from mgmvae.tracking import tracked_run

    uri = f"sqlite:///{tmp_path}/m.db"
    recipe = {"source": "digits_street", "pairings": 2}
    studies = {"alpha": recipe, "beta": recipe, "gamma": {**recipe, "pairings": 3}}
    for study, spec in studies.items():
        config = {
            "study": study,
            "results_dir": str(tmp_path / "results"),
            "data_seed": 7,
            "datasets": {"digits_street": spec},
            "mlflow": {"experiment": "bench-{study}", "tracking_uri": uri, "retry_seconds": 300},
        }
        tags = {"dataset": "digits_street", "model": "mvae", "seed": 0}
        with pytest.raises(RuntimeError), tracked_run(config, "train", "train/run", tags, {"lr": 0.1}):
            raise RuntimeError("the first attempt fails")
        with tracked_run(config, "train", "train/run", tags, {"lr": 0.1}):  # the rerun: the same run
            pass
        with tracked_run(config, "aggregate", "aggregate", {"datasets": "digits_street"}, {}):
            pass
    client = MlflowClient(tracking_uri=uri)
    digests = {}
    for study in studies:
        experiment = client.get_experiment_by_name(f"bench-{study}")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = {r.data.tags["stage"]: r for r in client.search_runs([experiment.experiment_id])}
        assert sorted(runs) == ["aggregate", "train"]  # the failed attempt was continued, not repeated
        assert {r.data.tags["study"] for r in runs.values()} == {study}
        train = runs["train"]
        assert train.info.status == "FINISHED"
        assert train.data.tags["mlflow.source.name"] == "mgmvae train"
        assert train.data.tags["mlflow.source.type"] == "LOCAL"
        assert train.data.tags["mlflow.source.git.commit"] == train.data.tags["git_commit"]
        (given,) = train.inputs.dataset_inputs
        assert given.dataset.name == "digits_street"
        source = json.loads(given.dataset.source)["uri"]
        assert source == str(tmp_path / "results" / study / "data" / "digits_street.pt")
        assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "train")]
        assert runs["aggregate"].inputs.dataset_inputs == []  # a run of several datasets
        digests[study] = given.dataset.digest
    assert digests["alpha"] == digests["beta"] != digests["gamma"]  # the digest follows the recipe


def test_the_experiment_name_fills_in_the_study():
    from mgmvae.config import DEFAULT_CONFIG, ROOT, load_config
    from mgmvae.tracking import experiment_name

    assert experiment_name({"study": "s1", "mlflow": {"experiment": "x-{study}"}}) == "x-s1"
    assert experiment_name({"study": "s1", "mlflow": {"experiment": "shared"}}) == "shared"
    quick = load_config(DEFAULT_CONFIG, ROOT / "workflow" / "presets" / "quick.yaml")
    assert experiment_name(quick) != experiment_name(load_config())
    assert quick["study"] in experiment_name(quick)
