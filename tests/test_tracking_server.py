"""The authenticated tracking server (mgmvae/mlflow_provisioning.py, process_supervision.py) against a
real `mlflow server --app-name basic-auth` on 127.0.0.1, tried as an intruder on a shared login node would: secrets kept
private, strangers refused (HTTP 401 whatever the Authorization header), bad credentials refused
before any work, a fake listener on the port sent nothing, a server whose leader was killed still
stopped, user names that leave the folder refused before any user exists; 8 concurrent jobs losing
nothing, a server crash ridden out, a job that gives up resumed without a duplicate run, and https
with a private CA. One server serves the module (a cold start costs tens of seconds); the restart
test restarts it, and the tests that must break a server start their own."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow_auth_server import (
    EXPERIMENT,
    FakeListener,
    admin_client,
    auth_client,
    check_study,
    credentials,
    finish,
    free_port,
    job_env,
    kill_server,
    spawn,
    start_server,
)

from mgmvae import mlflow_provisioning, process_supervision
from mgmvae.cli import main
from mgmvae.config import ROOT
from mgmvae.process_supervision import ServerError
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
        process_supervision.stop(folder)


@pytest.fixture
def no_mlflow_env(monkeypatch):
    for name in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_secrets_are_private_and_off_the_command_line(server):
    folder, uri, _ = server
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("basic_auth.ini", "study.env", "flask.secret"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    admin = mlflow_provisioning._admin_password(folder)
    study = credentials(folder)["MLFLOW_TRACKING_PASSWORD"]
    assert len(admin) >= 24 and len(study) >= 24 and admin != study
    assert admin != "password1234"  # MLflow's shipped default
    lines = [
        " ".join(psutil.Process(pid).cmdline()) for pid in process_supervision.server_pids(folder)
    ]  # as `ps` shows
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
    password = f"{user}-password-0123456789"
    with auth_client(folder, uri) as auth, admin_client(folder, uri) as mlflow_client:
        auth.create_user(user, password)
        if permission:
            experiment_id = mlflow_client.get_experiment_by_name(EXPERIMENT).experiment_id
            auth.grant_user_permission(user, "experiment", experiment_id, permission)
    return password


def _user_exists(folder: Path, uri: str, user: str) -> bool:
    with auth_client(folder, uri) as auth:
        try:
            auth.get_user(user)
        except MlflowException as error:
            assert error.error_code == "RESOURCE_DOES_NOT_EXIST", error
            return False
    return True


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m mgmvae tracking-server ARGS` as a user would type it (no MLflow credentials around)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [sys.executable, "-m", "mgmvae", "tracking-server", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _main(*args: str) -> int:
    """The same command in this process."""
    return main(["tracking-server", *args])


def test_bad_credentials_are_refused_naming_the_variables(server, no_mlflow_env):
    folder, uri, _ = server
    config = {"study": "s", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri, "retry_seconds": 300}}
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
    config = {"study": "s", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri, "retry_seconds": 300}}
    no_mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    no_mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", _grant(folder, uri, "alice", "READ"))
    with pytest.raises(TrackingError, match="may not edit"):
        preflight(config)
    command = [sys.executable, "-m", "mgmvae", "tracking-server", "grant", "--dir", str(folder), "--user", "alice"]
    result = subprocess.run(command + ["--experiment", EXPERIMENT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    alice = mlflow_provisioning.read_env(folder / "alice.env")
    assert stat.S_IMODE((folder / "alice.env").stat().st_mode) == 0o600
    assert alice["MLFLOW_TRACKING_PASSWORD"] not in result.stdout + result.stderr
    for name, value in alice.items():
        no_mlflow_env.setenv(name, value)
    preflight(config)  # READ became EDIT, with a fresh password


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


NOT_BASIC = {
    "none": None,
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
    "bearer without token": "Bearer",
    "digest": 'Digest username="admin", realm="mlflow", nonce="abc", uri="/", response="0123456789abcdef"',
    "negotiate": "Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag",
    "garbage": "garbage",
    "empty": "",
    "basic without credentials": "Basic",
    "basic not base64": "Basic !!!",
    "basic two tokens": "Basic YWRtaW46eA== extra",
    "basic without colon": _basic(b"admin"),
    "basic empty user and password": _basic(b":"),
    "basic NUL in the user": _basic(b"ad\0min:x"),
    "basic not UTF-8": _basic(b"\xff\xfe:\xff"),
    "basic 6000 characters": "Basic " + "A" * 6000,
    "basic MLflow's default admin password": _basic(b"admin:password1234"),
}


def test_every_request_without_valid_basic_credentials_gets_401(server):
    """Whatever the scheme or header, on the REST API, the UI's API, a FastAPI route and the UI itself."""
    _, uri, _ = server
    paths = [
        f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}",
        "/ajax-api/2.0/mlflow/experiments/search?max_results=5",
        "/api/2.0/mlflow/users/get?username=admin",
        "/v1/traces",
        "/",
    ]
    answers = {}
    for name, header in NOT_BASIC.items():
        headers = {} if header is None else {"Authorization": header}
        for path in paths:
            reply = requests.get(f"{uri}{path}", headers=headers, timeout=30)
            answers[name, path] = (reply.status_code, reply.headers.get("WWW-Authenticate"))
        create = {"username": "intruder", "password": "intruder-password-0123"}
        reply = requests.post(f"{uri}/api/2.0/mlflow/users/create", json=create, headers=headers, timeout=30)
        answers[name, "users/create"] = (reply.status_code, reply.headers.get("WWW-Authenticate"))
    wrong = {key: answer for key, answer in answers.items() if answer != (401, 'Basic realm="mlflow"')}
    assert not wrong, wrong
    assert len(answers) == len(NOT_BASIC) * 6


def test_a_header_that_is_not_latin_1_gets_no_500(server):
    """Raw bytes no HTTP client would send: refused, never an internal error."""
    _, uri, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            b"GET /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Basic \xff\xfe\x00\r\nConnection: close\r\n\r\n"
        )
        status = conn.recv(4096).split(b"\r\n", 1)[0]
    assert status.split()[1] in (b"400", b"401"), status


def test_a_reader_cannot_write_and_a_user_without_permission_sees_nothing(server):
    folder, uri, _ = server
    api = f"{uri}/api/2.0/mlflow"
    reader = ("reader2", _grant(folder, uri, "reader2", "READ"))
    nobody = ("nobody", _grant(folder, uri, "nobody", None))
    found = requests.get(f"{api}/experiments/get-by-name", params={"experiment_name": EXPERIMENT}, auth=reader)
    assert found.status_code == 200, found.text
    experiment_id = found.json()["experiment"]["experiment_id"]
    created = requests.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, auth=reader, timeout=30)
    assert created.status_code == 403, created.text
    hidden = requests.get(f"{api}/experiments/get", params={"experiment_id": experiment_id}, auth=nobody, timeout=30)
    assert hidden.status_code == 403, hidden.text
    listed = requests.post(f"{api}/experiments/search", json={"max_results": 100}, auth=nobody, timeout=30)
    assert listed.status_code == 200, listed.text
    assert EXPERIMENT not in [e["name"] for e in listed.json().get("experiments", [])]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_start_sends_nothing_to_a_listener_already_on_the_port(host, tmp_path):
    """An intruder listens first (on the same port, even on another address): `start` refuses, naming the
    port and the holder, before it writes a secret or starts a server; the listener got no request."""
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    folder = tmp_path / "server"
    try:
        fake = FakeListener(host, port)
    except OSError as error:  # ::1 unavailable (IPv6 off)
        pytest.skip(f"cannot listen on {host}: {error}")
    with fake:
        try:
            result = _cli("start", "--dir", str(folder), "--port", str(port), "--experiment", EXPERIMENT)
        finally:
            process_supervision.stop(folder)  # none to stop, unless the refusal failed
    assert result.returncode == 2, result.stdout + result.stderr
    address = f"[{host}]" if ":" in host else host
    assert f"port {port} is taken: {address}:{port} is held by PID {os.getpid()}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "MLflow tracking server at" not in result.stdout
    assert fake.received == []
    assert not (folder / "basic_auth.ini").exists() and process_supervision.server_pids(folder) == []


def test_a_listener_that_takes_the_port_during_start_gets_no_secret(tmp_path, monkeypatch):
    """The intruder binds between `start`'s check and the server's own bind (simulated by hiding it from
    that first check): it answers /health, but the kernel shows the port is not the server's."""
    port = free_port()
    folder = tmp_path / "server"
    real, calls = process_supervision.listeners, []

    def blind_at_first(port: int) -> list:
        calls.append(port)
        return real(port) if len(calls) > 1 else []

    monkeypatch.setattr(process_supervision, "listeners", blind_at_first)
    with FakeListener("127.0.0.1", port) as fake:
        try:
            with pytest.raises(
                ServerError, match=rf"port {port} is taken: 127.0.0.1:{port} is held by PID {os.getpid()}"
            ):
                mlflow_provisioning.start(folder, "127.0.0.1", port, 1, None, None)
            assert process_supervision.server_pids(folder) == []  # its own server, stopped
        finally:
            process_supervision.stop(folder)
        assert fake.secrets_seen() == []


def test_a_second_start_on_a_port_another_instance_holds(server, tmp_path):
    folder, uri, port = server
    other = tmp_path / "other"
    try:
        with pytest.raises(
            ServerError, match=rf"port {port} is taken: 127.0.0.1:{port} is held by PID (\d+)"
        ) as refused:
            mlflow_provisioning.start(other, "127.0.0.1", port, 1, None, None)
        assert process_supervision.server_pids(other) == []  # none was started
    finally:
        process_supervision.stop(other)
    holder = int(re.search(r"held by PID (\d+)", str(refused.value)).group(1))
    assert holder in process_supervision.server_pids(folder)
    assert not (other / "basic_auth.ini").exists()  # nor a secret written
    assert requests.get(f"{uri}/health", timeout=30).ok  # the first instance is untouched


def test_a_server_whose_leader_was_killed_is_refused_then_stopped(tmp_path):
    """Only the process `start` launched is killed; its workers keep serving. `start` refuses, naming
    them; `stop` ends every one and frees the port."""
    folder, port = tmp_path / "server", free_port()
    uri = mlflow_provisioning.start(folder, "127.0.0.1", port, 2, None, None)
    try:
        _kill_the_leader_then_start_and_stop(folder, uri, port)
    finally:
        process_supervision.stop(folder)


def _kill_the_leader_then_start_and_stop(folder: Path, uri: str, port: int) -> None:
    leader = process_supervision.read_state(folder)["pid"]
    os.kill(leader, signal.SIGKILL)
    os.waitpid(leader, 0)
    left = process_supervision.server_pids(folder)
    assert left and leader not in left
    assert requests.get(f"{uri}/health", timeout=30).ok  # orphaned workers still answer

    again = _cli("start", "--dir", str(folder), "--port", str(port), "--experiment", EXPERIMENT)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "is still running" in again.stderr and "tracking-server stop" in again.stderr, again.stderr
    assert all(str(pid) in again.stderr for pid in left) and "MLflow tracking server at" not in again.stdout

    stopped = _cli("stop", "--dir", str(folder))
    assert stopped.returncode == 0, stopped.stderr
    assert all(str(pid) in stopped.stdout for pid in left), stopped.stdout
    assert process_supervision.server_pids(folder) == [] and process_supervision.listeners(port) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{uri}/health", timeout=30)
    assert _cli("stop", "--dir", str(folder)).stdout.startswith("no server running")


BAD_NAMES = ["../escape", "a/b", "..", ".hidden", "", "a\\b", "tab\tname", "line\nbreak", "name with space"]
BAD_NAMES += ["x" * 65, "-dash", "\u00e9t\u00e9", "admin"]


def test_a_user_name_that_leaves_the_folder_is_refused_before_anything_is_created(server, capsys):
    """`grant --user ../name` and `--user a/b` as typed, then the other names in this process: an error
    naming the rule, no file in or next to the folder, no MLflow user."""
    folder, uri, _ = server
    before = sorted(folder.parent.rglob("*"))
    for user in BAD_NAMES[:2]:
        result = _cli("grant", "--dir", str(folder), "--user", user, "--experiment", EXPERIMENT)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"user name {user!r} is not allowed" in result.stderr, result.stderr
    for user in BAD_NAMES[2:]:
        assert _main("grant", "--dir", str(folder), f"--user={user}", "--experiment", EXPERIMENT) == 2, user
        refused = capsys.readouterr().err
        assert refused.startswith("error: ") and ("is not allowed" in refused or "administrator" in refused), refused
    assert sorted(folder.parent.rglob("*")) == before
    assert not [user for user in BAD_NAMES if user and user != "admin" and _user_exists(folder, uri, user)]


def test_a_grant_that_fails_after_creating_the_user_leaves_no_user(server, monkeypatch, capsys):
    folder, uri, _ = server

    def refused(*args):
        raise MlflowException("the permission store is unavailable")

    monkeypatch.setattr(mlflow_provisioning, "_grant_edit", refused)
    assert _main("grant", "--dir", str(folder), "--user", "bob", "--experiment", EXPERIMENT) == 2
    assert "could not give 'bob' EDIT" in capsys.readouterr().err
    assert not _user_exists(folder, uri, "bob") and not (folder / "bob.env").exists()


def test_a_password_inside_the_uri_is_refused_without_repeating_it(no_mlflow_env):
    config = {
        "study": "s",
        "mlflow": {"experiment": "e", "tracking_uri": "http://study:s3cret-pw@127.0.0.1:1", "retry_seconds": 300},
    }
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


def test_no_password_in_the_server_files_logs_or_run_data(server):
    """After the tests above (runs, artifacts, users): the passwords are only in the 0600 files that hold them."""
    folder, _, _ = server
    holders = {folder / "basic_auth.ini", *folder.glob("*.env")}
    passwords = [mlflow_provisioning._admin_password(folder)] + [
        mlflow_provisioning.read_env(f)["MLFLOW_TRACKING_PASSWORD"] for f in folder.glob("*.env")
    ]
    passwords += [f"{user}-password-0123456789" for user in ("stranger", "reader", "alice", "reader2", "nobody")]
    files = [f for f in folder.rglob("*") if f.is_file() and f not in holders]
    assert {"server.log", "mlflow.db", "auth.db", "server.json"} <= {f.name for f in files}
    leaks = [f for f in files if any(p.encode() in f.read_bytes() for p in passwords)]
    assert not leaks, leaks


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
    uri = start_server(folder, free_port(), tls=(cert, key))
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
            preflight({"study": "tls", "mlflow": {"experiment": EXPERIMENT, "tracking_uri": uri, "retry_seconds": 300}})
    finally:
        process_supervision.stop(folder)
