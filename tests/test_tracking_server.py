"""The authenticated tracking server (mgmvae/tracking_server.py) against a real `mlflow server
--app-name basic-auth` on 127.0.0.1: secrets kept private, strangers refused (HTTP 401), bad
credentials refused before any work, 8 concurrent jobs losing nothing, a server crash ridden out,
a job that gives up resumed without a duplicate run, and https with a private CA.
One server serves the module (a cold start costs tens of seconds); the restart test restarts it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow_auth_server import (
    EXPERIMENT,
    admin_client,
    check_study,
    credentials,
    finish,
    free_port,
    job_env,
    kill_server,
    spawn,
    start_server,
)

from mgmvae import tracking_server
from mgmvae.config import ROOT
from mgmvae.tracking import TrackingError, check_access, preflight

JOBS = 8  # concurrent jobs in the load and restart tests


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracking")
    port = free_port()
    start = time.monotonic()
    uri = start_server(folder, port)
    print(f"authenticated server up in {time.monotonic() - start:.1f} s")
    try:
        yield folder, uri, port
    finally:
        tracking_server.stop(folder)


@pytest.fixture
def no_mlflow_env(monkeypatch):
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _proc_cmdlines(pid: int) -> list[str]:
    """The command lines of a process and its descendants (what `ps` shows every user)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        cmdline = Path(f"/proc/{p}/cmdline")
        if cmdline.exists():
            found.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        children = Path(f"/proc/{p}/task/{p}/children")
        if children.exists():
            todo += [int(c) for c in children.read_text().split()]
    return found


def test_secrets_are_private_and_off_the_command_line(server):
    folder, uri, _ = server
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("basic_auth.ini", "study.env", "flask.secret"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    admin = tracking_server._admin_password(folder)
    study = credentials(folder)["MLFLOW_TRACKING_PASSWORD"]
    assert len(admin) >= 24 and len(study) >= 24 and admin != study
    assert admin != "password1234"  # MLflow's shipped default
    lines = _proc_cmdlines(tracking_server.running_pid(folder))
    assert any("basic-auth" in line for line in lines), lines
    assert not [line for line in lines if admin in line or study in line]
    assert credentials(folder)["MLFLOW_TRACKING_URI"] == uri


def test_a_stranger_is_refused(server):
    folder, uri, _ = server
    search = f"{uri}/api/2.0/mlflow/experiments/get-by-name"
    params = {"experiment_name": EXPERIMENT}
    assert requests.get(search, params=params, timeout=30).status_code == 401
    assert requests.get(search, params=params, auth=("study", "wrong-password"), timeout=30).status_code == 401
    assert requests.get(search, params=params, auth=("admin", "password1234"), timeout=30).status_code == 401
    study = credentials(folder)
    reply = requests.get(
        search, params=params, auth=(study["MLFLOW_TRACKING_USERNAME"], study["MLFLOW_TRACKING_PASSWORD"]), timeout=30
    )
    assert reply.status_code == 200, reply.text


def _grant(folder: Path, uri: str, user: str, permission: str | None) -> str:
    """A user with `permission` on the experiment (None: none at all); returns its password."""
    admin = (tracking_server.ADMIN, tracking_server._admin_password(folder))
    password = f"{user}-password-0123456789"
    api = f"{uri}/api/2.0/mlflow"
    requests.post(f"{api}/users/create", json={"username": user, "password": password}, auth=admin, timeout=30)
    if permission:
        found = requests.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": EXPERIMENT}, auth=admin, timeout=30
        )
        grant = {
            "username": user,
            "resource_type": "experiment",
            "resource_id": found.json()["experiment"]["experiment_id"],
            "permission": permission,
        }
        assert requests.post(f"{uri}/api/3.0/mlflow/users/permissions/grant", json=grant, auth=admin, timeout=30).ok
    return password


def test_bad_credentials_are_refused_naming_the_variables(server, no_mlflow_env):
    folder, uri, _ = server
    config = {"study": "s", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri}}
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD not set"):
        preflight(config)
    no_mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "study")
    no_mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(TrackingError, match="HTTP 401.*rejected the password of user 'study'"):
        preflight(config)
    for user, permission in (("stranger", None), ("reader", "READ")):
        no_mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", user)
        no_mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", _grant(folder, uri, user, permission))
        with pytest.raises(TrackingError, match=f"user '{user}' .MLFLOW_TRACKING_USERNAME. may not edit"):
            preflight(config)
    for name, value in credentials(folder).items():
        no_mlflow_env.setenv(name, value)
    preflight(config)  # the study user may edit: no error
    check_access(uri, EXPERIMENT)


def test_grant_gives_another_user_edit_rights(server, no_mlflow_env):
    folder, uri, _ = server
    config = {"study": "s", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri}}
    no_mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    no_mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", _grant(folder, uri, "alice", "READ"))
    with pytest.raises(TrackingError, match="may not edit"):
        preflight(config)
    command = [sys.executable, "-m", "mgmvae", "tracking-server", "grant", "--dir", str(folder), "--user", "alice"]
    result = subprocess.run(command + ["--experiment", EXPERIMENT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    alice = tracking_server.read_env(folder / "alice.env")
    assert stat.S_IMODE((folder / "alice.env").stat().st_mode) == 0o600
    assert alice["MLFLOW_TRACKING_PASSWORD"] not in result.stdout + result.stderr
    for name, value in alice.items():
        no_mlflow_env.setenv(name, value)
    preflight(config)  # READ became EDIT, with a fresh password


def test_a_password_inside_the_uri_is_refused_without_repeating_it(no_mlflow_env):
    config = {"study": "s", "mlflow": {"experiment": "e", "tracking_uri": "http://study:s3cret-pw@127.0.0.1:1"}}
    with pytest.raises(TrackingError, match="carries a password") as refused:
        preflight(config)
    assert "s3cret-pw" not in str(refused.value)


def test_a_job_with_a_wrong_password_stops_before_any_work(server, tmp_path):
    """The stage itself (as on a SLURM node): exit 2 within seconds, the variables named, nothing written."""
    folder, uri, _ = server
    env = job_env(folder, MLFLOW_TRACKING_PASSWORD="wrong")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mgmvae", "prepare", "--preset", "ablation_ci", "--dataset", "digits_street"]
        + ["--out", str(tmp_path / "d.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "MLFLOW_TRACKING_PASSWORD" in result.stderr and "HTTP 401" in result.stderr
    assert time.monotonic() - start < 60  # imports included
    assert not (tmp_path / "d.pt").exists()


@pytest.mark.slow
def test_snakemake_refuses_bad_credentials_before_any_job(server, tmp_path):
    folder, uri, _ = server
    env = job_env(folder, MLFLOW_TRACKING_PASSWORD="wrong")
    start = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)]
        + ["ablation", "--cores", "1", "--configfile", str(ROOT / "workflow/presets/ablation_ci.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    took = time.monotonic() - start
    assert result.returncode != 0
    assert "HTTP 401" in result.stderr and "MLFLOW_TRACKING_PASSWORD" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "results" / "ablation_ci" / "data").exists()  # no job ran
    assert took < 120, took


def test_load_eight_concurrent_jobs_lose_nothing(server, tmp_path):
    folder, uri, _ = server
    steps = 30
    start = time.monotonic()
    procs = [spawn(job_env(folder), "load", k, steps, 0.0, 60, tmp_path) for k in range(JOBS)]
    outputs = finish(procs)
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    took = time.monotonic() - start
    with admin_client(folder, uri) as mlflow_client:
        counts = check_study(mlflow_client, "load", JOBS, steps)
    assert counts == {"runs": JOBS, "metric points": JOBS * steps * 2, "artifacts": JOBS}
    print(f"load: {counts} written and read back, {JOBS} concurrent jobs, {took:.1f} s")


def _wait_for_points(folder: Path, uri: str, study: str, runs: int, at_least: int, seconds: float = 120) -> None:
    """Until `runs` runs of the study each hold `at_least` loss points (the jobs are mid-way)."""
    deadline = time.monotonic() + seconds
    with admin_client(folder, uri) as mlflow_client:
        experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
        while time.monotonic() < deadline:
            found = mlflow_client.search_runs([experiment.experiment_id], filter_string=f"tags.study = '{study}'")
            logged = [len(mlflow_client.get_metric_history(r.info.run_id, "loss")) for r in found]
            if len(found) >= runs and min(logged) >= at_least:
                return
            time.sleep(0.5)
    raise AssertionError(f"the jobs did not get going within {seconds} s")


@pytest.mark.slow  # two cold server starts
def test_server_killed_and_restarted_while_jobs_log(server, tmp_path):
    folder, uri, port = server
    steps = 20
    # 1. Killed mid-way and back within the jobs' retry budget: every job finishes, nothing lost.
    procs = [spawn(job_env(folder), "restart", k, steps, 0.25, 240, tmp_path) for k in range(JOBS)]
    _wait_for_points(folder, uri, "restart", JOBS, 3)
    kill_server(folder)
    down = time.monotonic()
    time.sleep(2)
    start_server(folder, port)
    outage = time.monotonic() - down
    outputs = finish(procs)
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    with admin_client(folder, uri) as mlflow_client:
        counts = check_study(mlflow_client, "restart", JOBS, steps)
    assert counts == {"runs": JOBS, "metric points": JOBS * steps * 2, "artifacts": JOBS}
    print(f"restart: server down {outage:.1f} s while {JOBS} jobs logged; {counts} read back")

    # 2. Down for longer than the budget: the jobs stop, saying how to resume; the rerun continues
    # their runs (no duplicates) and fills in exactly the missing points.
    procs = [spawn(job_env(folder), "giveup", k, steps, 0.25, 4, tmp_path) for k in range(2)]
    _wait_for_points(folder, uri, "giveup", 2, 3)
    kill_server(folder)
    outputs = finish(procs)
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode != 0, output
        assert "unreachable for 4 s" in output and "resumes from its checkpoint" in output, output[-2000:]
    start_server(folder, port)
    with admin_client(folder, uri) as mlflow_client:
        experiment = mlflow_client.get_experiment_by_name(EXPERIMENT)
        left = mlflow_client.search_runs([experiment.experiment_id], filter_string="tags.study = 'giveup'")
        assert sorted(r.info.status for r in left) == ["RUNNING", "RUNNING"]  # could not be marked: the rerun will
    procs = [spawn(job_env(folder), "giveup", k, steps, 0.0, 60, tmp_path) for k in range(2)]
    outputs = finish(procs)
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    assert all("continuing MLflow run" in o for o in outputs), outputs
    with admin_client(folder, uri) as mlflow_client:
        counts = check_study(mlflow_client, "giveup", 2, steps)
    print(f"gave up and rerun: {counts}")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0, reason="needs openssl")
def test_https_with_a_private_ca(tmp_path, no_mlflow_env):
    cert, key = _self_signed(tmp_path)
    folder = tmp_path / "server"
    no_mlflow_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))  # the helper's own calls verify too
    uri = start_server(folder, free_port(), tls_cert=cert, tls_key=key)
    try:
        assert uri.startswith("https://127.0.0.1:")
        env = job_env(folder, MLFLOW_TRACKING_SERVER_CERT_PATH=str(cert))
        proc = spawn(env, "tls", 0, 3, 0.0, 30, tmp_path / "jobs")
        output = finish([proc])[0]
        assert proc.returncode == 0, output
        for name, value in credentials(folder).items():
            no_mlflow_env.setenv(name, value)
        with admin_client(folder, uri) as mlflow_client:
            assert check_study(mlflow_client, "tls", 1, 3)["metric points"] == 6
        no_mlflow_env.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")  # the system's CAs do not know ours
        with pytest.raises(TrackingError, match="MLFLOW_TRACKING_SERVER_CERT_PATH"):
            preflight({"study": "tls", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri}})
    finally:
        tracking_server.stop(folder)
