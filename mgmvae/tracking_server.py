"""``python -m mgmvae tracking-server``: MLflow's basic-auth server for a study, started safely.

``start`` writes, in a state folder readable only by its owner (0700):

- ``basic_auth.ini`` (0600): MLflow's auth config (``MLFLOW_AUTH_CONFIG_PATH``) with a generated admin
  password and ``default_permission = NO_PERMISSIONS``: a user sees only what was granted to it;
- ``study.env`` (0600): ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD`` of a study user with EDIT permission on the benchmark's experiment
  (``set -a; . study.env; set +a`` before ``snakemake``);
- the stores (``mlflow.db``, ``auth.db``, ``mlartifacts/``), ``server.log`` and ``server.pid``;

then starts ``mlflow server --app-name basic-auth`` in its own session on the chosen host and port,
waits for it, and creates the experiment, the user and the permission. A second ``start`` on the same
folder (after ``stop`` or a crash) reuses the passwords, the stores and the user. No password is ever
put on a command line (other users can read those) or printed.

TLS: ``--tls-cert``/``--tls-key`` hand a certificate to uvicorn (``--uvicorn-opts``); clients then use an
``https://`` URI and ``MLFLOW_TRACKING_SERVER_CERT_PATH`` for a private CA (README: "TLS").
"""

from __future__ import annotations

import argparse
import configparser
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ADMIN = "admin"
STARTUP_SECONDS = 180.0  # a cold `mlflow server` imports for tens of seconds on a busy machine
API = "/api/2.0/mlflow"


class ServerError(RuntimeError):
    pass


def add_parser(sub: Any) -> None:
    """The ``tracking-server`` subcommand and its actions (start, stop, grant)."""
    p = sub.add_parser("tracking-server", help="start/stop an authenticated MLflow tracking server (basic auth)")
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("start", "write the secrets, start `mlflow server --app-name basic-auth`, create the study user"),
        ("stop", "stop the server started in --dir (by its PID)"),
        ("grant", "create a user (if new) with EDIT permission on the experiment; its credentials in <dir>/<user>.env"),
    ):
        a = actions.add_parser(name, help=help_)
        a.add_argument("--dir", type=Path, default=Path("tracking-server"), help="state folder (default: %(default)s)")
        if name == "stop":
            continue
        a.add_argument("--user", default="study", help="the study user (default: %(default)s)")
        a.add_argument("--experiment", default=None, help="default: mlflow.experiment of config.yaml")
        if name == "grant":
            continue
        a.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
        a.add_argument("--port", type=int, default=5000, help="default: %(default)s")
        a.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
        a.add_argument(
            "--public-host",
            default=None,
            help="host name the jobs use in the URI (default: --host; this machine's name for 0.0.0.0)",
        )
        a.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate: serve https (with --tls-key)")
        a.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "stop":
            pid = stop(args.dir)
            print(f"stopped PID {pid}" if pid else f"no server running from {args.dir}")
            return 0
        experiment = args.experiment or _default_experiment()
        if args.action == "grant":
            uri = read_env(args.dir / "study.env")["MLFLOW_TRACKING_URI"]
            env_file = provision(args.dir, uri, experiment, args.user, args.dir / f"{args.user}.env")
        else:
            uri = start(args.dir, args.host, args.port, args.workers, args.public_host, args.tls_cert, args.tls_key)
            env_file = provision(args.dir, uri, experiment, args.user, args.dir / "study.env")
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"MLflow tracking server at {uri} (basic auth; log: {args.dir / 'server.log'}).")
    print(f"User {args.user!r} may edit experiment {experiment!r}; its credentials (mode 0600): {env_file}")
    print(f"    set -a; . {shlex.quote(str(env_file))}; set +a")
    return 0


def _default_experiment() -> str:
    from mgmvae.config import DEFAULT_CONFIG, load_config

    return str(load_config(DEFAULT_CONFIG)["mlflow"]["experiment"])


# ------------------------------------------------------------------ secrets on disk
def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable only by its owner (0600), atomically, never readable by others."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        raise ServerError(
            f"{path} does not exist: run `python -m mgmvae tracking-server start --dir {path.parent}` first"
        )
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): shlex.split(v)[0] if v.strip() else "" for k, v in pairs}


def _admin_password(folder: Path) -> str:
    parser = configparser.ConfigParser()
    parser.read(folder / "basic_auth.ini")
    return parser["mlflow"]["admin_password"]


def write_secrets(folder: Path) -> None:
    """The auth config with a fresh admin password and the Flask secret, unless an earlier start wrote them."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if not (folder / "basic_auth.ini").exists():
        write_private(
            folder / "basic_auth.ini",
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{folder.resolve() / 'auth.db'}\n"
            f"admin_username = {ADMIN}\n"
            f"admin_password = {secrets.token_urlsafe(24)}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # A password check (PBKDF2) costs ~0.1 s of CPU per request; cache a good one for a minute
            # (a changed password reaches the other workers within that time).
            "auth_cache_ttl_seconds = 60\n",
        )
    if not (folder / "flask.secret").exists():
        write_private(folder / "flask.secret", secrets.token_hex(32))


# ------------------------------------------------------------------ the server process
def server_command(
    folder: Path, host: str, port: int, workers: int, public_host: str | None, tls: tuple[Path, Path] | None
) -> list[str]:
    folder = folder.resolve()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth"]
    cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(folder / "mlartifacts")]
    cmd += ["--host", host, "--port", str(port), "--workers", str(workers)]
    if public_host:  # MLflow answers only Host headers it knows (DNS rebinding): the name the jobs use, and loopback
        names = [public_host, "localhost", "127.0.0.1"]
        cmd += ["--allowed-hosts", ",".join(n for name in names for n in (name, f"{name}:{port}"))]
    if tls:
        cmd += ["--uvicorn-opts", f"--ssl-certfile={tls[0].resolve()} --ssl-keyfile={tls[1].resolve()}"]
    return cmd


def server_env(folder: Path) -> dict[str, str]:
    """Secrets reach the server through its environment and a 0600 file, never its command line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(
        MLFLOW_AUTH_CONFIG_PATH=str((folder / "basic_auth.ini").resolve()),
        MLFLOW_FLASK_SERVER_SECRET_KEY=(folder / "flask.secret").read_text().strip(),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # the GenAI job runner: not needed for tracking
    )
    return env


def running_pid(folder: Path) -> int | None:
    pid_file = folder / "server.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start(
    folder: Path,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 2,
    public_host: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    wait: float = STARTUP_SECONDS,
) -> str:
    """Start the server in its own session (PID in <folder>/server.pid); return the URI once it answers."""
    if (tls_cert is None) != (tls_key is None):
        raise ServerError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
    for given in (tls_cert, tls_key):
        if given is not None and not given.is_file():
            raise ServerError(f"TLS file {given} does not exist")
    pid = running_pid(folder)
    if pid is not None:
        raise ServerError(
            f"a server started from {folder} is running (PID {pid}): `tracking-server stop --dir {folder}`"
        )
    write_secrets(folder)
    scheme = "https" if tls_cert else "http"
    if public_host is None and host in ("0.0.0.0", "::"):
        public_host = socket.gethostname()  # every interface: the jobs need a name, not 0.0.0.0
    uri = f"{scheme}://{public_host or host}:{port}"
    tls = (tls_cert, tls_key) if tls_cert and tls_key else None
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            server_command(folder, host, port, workers, public_host, tls),
            env=server_env(folder),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command; `stop` ends its whole process group
        )
    (folder / "server.pid").write_text(str(proc.pid))
    _wait_healthy(
        f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}", proc, folder, wait, tls_cert
    )
    return uri


def _wait_healthy(base: str, proc: subprocess.Popen, folder: Path, seconds: float, ca: Path | None) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"mlflow server exited ({proc.returncode}):\n{_tail(folder / 'server.log')}")
        try:
            if requests.get(f"{base}/health", timeout=2, verify=str(ca) if ca else True).ok:
                return
        except requests.exceptions.RequestException:
            pass
        time.sleep(0.5)
    stop(folder)
    raise ServerError(
        f"mlflow server did not answer {base}/health within {seconds:g} s:\n{_tail(folder / 'server.log')}"
    )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def stop(folder: Path, timeout: float = 20.0) -> int | None:
    """SIGTERM the server's process group (then SIGKILL); return its PID, or None if none was running."""
    pid = running_pid(folder)
    if pid is None:
        return None
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if not _alive(pid):
            break
    (folder / "server.pid").unlink(missing_ok=True)
    return pid


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


# ------------------------------------------------------------------ users and permissions
def _api(uri: str, method: str, path: str, auth: tuple[str, str], payload: Mapping[str, Any], ca: bool | str) -> Any:
    import requests

    url = f"{uri}{path}" if path.startswith("/") else f"{uri}{API}/{path}"
    return requests.request(method, url, json=payload, auth=auth, timeout=30, verify=ca)


def provision(folder: Path, uri: str, experiment: str, user: str, env_file: Path) -> Path:
    """Create ``experiment`` (as admin), ``user`` with a generated password, and EDIT for it; write the
    user's credentials to ``env_file`` (0600). An existing env file's password is kept."""
    from mgmvae.tracking import tls_verify

    ca = tls_verify()
    admin = (ADMIN, _admin_password(folder))
    reply = _api(uri, "POST", "experiments/create", admin, {"name": experiment}, ca)
    if reply.status_code == 401:
        raise ServerError(f"the server at {uri} rejected the admin password in {folder / 'basic_auth.ini'}")
    if reply.ok:
        experiment_id = reply.json()["experiment_id"]
    else:
        found = _get(uri, "experiments/get-by-name", admin, {"experiment_name": experiment}, ca)
        experiment_id = found["experiment"]["experiment_id"]
    password = read_env(env_file)["MLFLOW_TRACKING_PASSWORD"] if env_file.exists() else secrets.token_urlsafe(24)
    created = _api(uri, "POST", "users/create", admin, {"username": user, "password": password}, ca)
    if not created.ok:  # an existing user: (re)set the password we hold, which is then the only one
        update = {"username": user, "password": password}
        created = _api(uri, "PATCH", "users/update-password", admin, update, ca)
    if not created.ok:
        raise ServerError(f"could not create user {user!r}: HTTP {created.status_code} {created.text[:300]}")
    grant = {"username": user, "resource_type": "experiment", "resource_id": experiment_id, "permission": "EDIT"}
    reply = _api(uri, "POST", "/api/3.0/mlflow/users/permissions/grant", admin, grant, ca)
    if reply.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in reply.text:  # maybe a weaker grant: replace it
        revoke = {k: grant[k] for k in ("username", "resource_type", "resource_id")}
        _api(uri, "POST", "/api/3.0/mlflow/users/permissions/revoke", admin, revoke, ca)
        reply = _api(uri, "POST", "/api/3.0/mlflow/users/permissions/grant", admin, grant, ca)
    if not reply.ok:
        raise ServerError(
            f"could not grant EDIT on {experiment!r} to {user!r}: HTTP {reply.status_code} {reply.text[:300]}"
        )
    write_private(
        env_file,
        "# MLflow credentials of a study user (python -m mgmvae tracking-server); keep this file 0600.\n"
        f"MLFLOW_TRACKING_URI={shlex.quote(uri)}\n"
        f"MLFLOW_TRACKING_USERNAME={shlex.quote(user)}\n"
        f"MLFLOW_TRACKING_PASSWORD={shlex.quote(password)}\n",
    )
    return env_file


def _get(uri: str, path: str, auth: tuple[str, str], params: Mapping[str, str], ca: bool | str) -> Any:
    import requests

    reply = requests.get(f"{uri}{API}/{path}", params=params, auth=auth, timeout=30, verify=ca)
    if not reply.ok:
        raise ServerError(f"GET {path} failed: HTTP {reply.status_code} {reply.text[:300]}")
    return reply.json()
