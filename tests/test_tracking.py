"""MLflow: concurrent jobs writing one default (SQLite) store lose nothing and fail nothing."""

import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

WORKER = textwrap.dedent(
    """
    import sys
    from mgmvae.tracking import tracked_run
    config = {"study": "concurrency", "mlflow": {"experiment": "concurrency", "tracking_uri": None}}
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
    config = {"study": "s", "mlflow": {"experiment": "e", "tracking_uri": f"sqlite:///{tmp_path}/m.db"}}
    try:
        with tracked_run(config, "train", "boom", {}, {}):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    (run,) = client.search_runs([client.get_experiment_by_name("e").experiment_id])
    assert run.info.status == "FAILED"
