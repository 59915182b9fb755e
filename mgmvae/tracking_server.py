"""``python -m mgmvae tracking-server``: MLflow's basic-auth server for a study, started safely.

``start`` writes, in a state folder readable only by its owner (0700):

- ``basic_auth.ini`` (0600): MLflow's auth config (``MLFLOW_AUTH_CONFIG_PATH``) with a generated admin
  password, ``default_permission = NO_PERMISSIONS`` (a user sees only what was granted to it) and
  :func:`authenticate_basic_only` as its ``authorization_function``;
- ``study.env`` (0600): ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD`` of a study user with EDIT permission on the benchmark's experiment
  (``set -a; . study.env; set +a`` before ``snakemake``);
- the stores (``mlflow.db``, ``auth.db``, ``mlartifacts/``), ``server.log`` and ``server.json`` (the
  port, the local URL the helper itself uses and the URI the jobs use);

then starts ``mlflow server --app-name basic-auth`` in its own session, waits for it, and creates the
experiment, the user and the permission through MLflow's own clients. A second ``start`` on the same
folder (after ``stop`` or a crash) reuses the passwords, the stores and the user. No password is ever
put on a command line (other users can read those) or printed.

Which server is ours. The server's processes are this user's processes whose environment holds
``MLFLOW_AUTH_CONFIG_PATH=<folder>/basic_auth.ini``: ``start`` sets it and every child (uvicorn, its
workers) inherits it, so ``stop`` finds them all whichever of them died first. Before the admin
password leaves this process (``start``, ``grant``), the kernel's socket tables (``/proc/net/tcp``,
``tcp6``) must show that every socket listening on the port belongs to one of those processes; a
port held by anyone else is refused, naming the address, the user and (where visible) the PID.

User names match :data:`USER_NAME` (no path separators, no leading dot) and ``admin`` is refused, all
before anything is created; a user this command created is deleted again if a later step fails.

TLS: ``--tls-cert``/``--tls-key`` hand a certificate to uvicorn (``--uvicorn-opts``); clients then use an
``https://`` URI and ``MLFLOW_TRACKING_SERVER_CERT_PATH`` for a private CA. Threat model:
docs/tracking-server.md.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import pwd
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ADMIN = "admin"
AUTH_CONFIG = "basic_auth.ini"
STATE = "server.json"
STARTUP_SECONDS = 180.0  # a cold `mlflow server` imports for tens of seconds on a busy machine
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
USER_NAME_RULE = "a letter or digit, then at most 63 letters, digits, '.', '_' or '-'"


class ServerError(RuntimeError):
    pass


def add_parser(sub: Any) -> None:
    """The ``tracking-server`` subcommand and its actions (start, stop, grant)."""
    p = sub.add_parser("tracking-server", help="start/stop an authenticated MLflow tracking server (basic auth)")
    actions = p.add_subparsers(dest="action", required=True)
    for name, help_ in (
        ("start", "write the secrets, start `mlflow server --app-name basic-auth`, create the study user"),
        ("stop", "stop every process of the server started from --dir"),
        ("grant", "create a user (if new) with EDIT permission on the experiment; its credentials in <dir>/<user>.env"),
    ):
        a = actions.add_parser(name, help=help_)
        a.add_argument("--dir", type=Path, default=Path("tracking-server"), help="state folder (default: %(default)s)")
        if name == "stop":
            continue
        a.add_argument("--user", default="study", help=f"the study user: {USER_NAME_RULE} (default: %(default)s)")
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
            pids = stop(args.dir)
            print(
                f"stopped the server from {args.dir} (PIDs {_listed(pids)})"
                if pids
                else f"no server running from {args.dir}"
            )
            return 0
        check_user_name(args.user)
        experiment = args.experiment or _default_experiment()
        if args.action == "start":
            start(args.dir, args.host, args.port, args.workers, args.public_host, args.tls_cert, args.tls_key)
        env_file = args.dir / ("study.env" if args.action == "start" else f"{args.user}.env")
        provision(args.dir, experiment, args.user, env_file)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"MLflow tracking server at {read_state(args.dir)['uri']} (basic auth; log: {args.dir / 'server.log'}).")
    print(f"User {args.user!r} may edit experiment {experiment!r}; its credentials (mode 0600): {env_file}")
    print(f"    set -a; . {shlex.quote(str(env_file))}; set +a")
    return 0


def _default_experiment() -> str:
    from mgmvae.config import DEFAULT_CONFIG, load_config

    return str(load_config(DEFAULT_CONFIG)["mlflow"]["experiment"])


def _listed(pids: Iterable[int]) -> str:
    return ", ".join(map(str, pids))


def check_user_name(user: str) -> None:
    """Refuse a name that could leave the state folder as ``<user>.env``, or that is the admin's."""
    if not USER_NAME.fullmatch(user):
        raise ServerError(f"user name {user!r} is not allowed: use {USER_NAME_RULE}")
    if user == ADMIN:
        raise ServerError(
            f"{ADMIN!r} is the server's administrator (password in {AUTH_CONFIG}): pick another user name"
        )


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


def read_state(folder: Path) -> dict[str, Any]:
    if not (folder / STATE).exists():
        raise ServerError(
            f"no server was started from {folder}: `python -m mgmvae tracking-server start --dir {folder}`"
        )
    return dict(json.loads((folder / STATE).read_text()))


def _admin_password(folder: Path) -> str:
    parser = configparser.ConfigParser()
    parser.read(folder / AUTH_CONFIG)
    return parser["mlflow"]["admin_password"]


def write_secrets(folder: Path) -> None:
    """The auth config (keeping the admin password of an earlier start) and the Flask secret."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    password = _admin_password(folder) if (folder / AUTH_CONFIG).exists() else secrets.token_urlsafe(24)
    write_private(
        folder / AUTH_CONFIG,
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{folder.resolve() / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {password}\n"
        f"authorization_function = {__name__}:authenticate_basic_only\n"
        # A password check (PBKDF2) costs ~0.1 s of CPU per request; cache a good one for a minute
        # (a changed password reaches the other workers within that time).
        "auth_cache_ttl_seconds = 60\n",
    )
    if not (folder / "flask.secret").exists():
        write_private(folder / "flask.secret", secrets.token_hex(32))


# ------------------------------------------------------------------ inside the server
def authenticate_basic_only() -> Any:
    """The server's ``authorization_function`` (MLflow's documented hook in ``basic_auth.ini``): MLflow's
    own Basic check, after refusing with its 401 any request without a Basic username and password.
    MLflow's check alone answers a Bearer or Digest header with HTTP 500: it hashes the password,
    which those headers do not carry, for its credential cache."""
    from flask import request
    from mlflow.server import auth

    given = request.authorization
    if given is None or given.type != "basic" or given.username is None or given.password is None:
        return auth.make_basic_auth_response()
    return auth.authenticate_request_basic_auth()


# ------------------------------------------------------------------ which processes and sockets are ours
def server_pids(folder: Path) -> list[int]:
    """The live processes of the server started from ``folder``, whichever of them died: this user's
    processes whose environment names the folder's auth config (set by ``start``, inherited by children)."""
    import psutil

    marker = str((folder / AUTH_CONFIG).resolve())
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            if (
                proc.info["uids"] is not None
                and proc.info["uids"].real == os.getuid()
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and proc.environ().get("MLFLOW_AUTH_CONFIG_PATH") == marker
            ):
                found.append(proc.pid)
        except psutil.Error:  # gone, or not readable: not ours
            continue
    return sorted(found)


def running_pid(folder: Path) -> int | None:
    """The server's process group (its first PID, even when that process died), or None if none runs."""
    groups = _groups(server_pids(folder))
    return min(groups) if groups else None


def _groups(pids: Iterable[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            found.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    return found


class Listener(NamedTuple):
    address: str
    uid: int
    inode: int


def listeners(port: int) -> list[Listener]:
    """Every TCP socket listening on ``port``, any address, IPv4 and IPv6, from the kernel's tables
    (they list every user's sockets, with the owner's uid)."""
    if not Path("/proc/net/tcp").exists():
        raise ServerError("checking who listens on a port needs Linux's /proc/net/tcp")
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).exists():  # a kernel without IPv6
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append(Listener(socket.inet_ntop(family, packed), int(fields[7]), int(fields[9])))
    return found


def _socket_inodes(pid: int) -> set[int]:
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes: set[int] = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:  # gone, or another user's
        return inodes
    for fd in fds:
        try:
            link = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _holder(listener: Listener) -> str:
    """Who holds a listening socket: the user, and the PID where this user may see it."""
    import psutil

    try:
        user = f"user {pwd.getpwuid(listener.uid).pw_name} (uid {listener.uid})"
    except KeyError:
        user = f"uid {listener.uid}"
    for proc in psutil.process_iter():
        if listener.inode in _socket_inodes(proc.pid):
            try:
                command = " ".join(proc.cmdline())[:160]
            except psutil.Error:
                command = "?"
            return f"PID {proc.pid} of {user}: {command}"
    return f"a process of {user} whose PID is hidden from you"


def _refuse_foreign(port: int, ours: set[int]) -> bool:
    """Raise naming who else listens on ``port``; return whether one of ``ours`` listens there."""
    found = listeners(port)
    for listener in found:
        if listener.inode not in ours:
            raise ServerError(
                f"port {port} is taken: {_host_port(listener.address, port)} is held by {_holder(listener)}. "
                f"Nothing was sent to it. Stop that process or choose another --port."
            )
    return bool(found)


def verify_owner(folder: Path) -> str:
    """The local URL of the server started from ``folder``, once the kernel shows that it, and no one
    else, listens on its port; a ServerError otherwise. Call before sending it a secret."""
    state = read_state(folder)
    pids = server_pids(folder)
    if not pids:
        raise ServerError(
            f"no server from {folder} is running: `python -m mgmvae tracking-server start --dir {folder}`"
        )
    ours: set[int] = set().union(*map(_socket_inodes, pids))
    if not _refuse_foreign(state["port"], ours):
        raise ServerError(f"the server from {folder} (PIDs {_listed(pids)}) does not listen on port {state['port']}")
    return str(state["url"])


# ------------------------------------------------------------------ start and stop
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
        MLFLOW_AUTH_CONFIG_PATH=str((folder / AUTH_CONFIG).resolve()),  # also marks the server's processes
        MLFLOW_FLASK_SERVER_SECRET_KEY=(folder / "flask.secret").read_text().strip(),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # the GenAI job runner: not needed for tracking
    )
    return env


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
    """Start the server in its own session; return the jobs' URI once it answers and owns its port."""
    if (tls_cert is None) != (tls_key is None):
        raise ServerError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
    for given in (tls_cert, tls_key):
        if given is not None and not given.is_file():
            raise ServerError(f"TLS file {given} does not exist")
    pids = server_pids(folder)
    if pids:
        raise ServerError(
            f"the server started from {folder} is still running (PIDs {_listed(pids)}): "
            f"`python -m mgmvae tracking-server stop --dir {folder}` ends it; then start again"
        )
    _refuse_foreign(port, set())
    write_secrets(folder)
    scheme = "https" if tls_cert else "http"
    if public_host is None and host in ("0.0.0.0", "::"):
        public_host = socket.gethostname()  # every interface: the jobs need a name, not 0.0.0.0
    url = f"{scheme}://{_host_port('127.0.0.1' if host in ('0.0.0.0', '::') else host, port)}"
    uri = f"{scheme}://{_host_port(public_host or host, port)}"
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
    write_private(folder / STATE, json.dumps({"pid": proc.pid, "port": port, "url": url, "uri": uri}) + "\n")
    try:
        _wait_healthy(url, proc, folder, wait, tls_cert)
        verify_owner(folder)
    except BaseException:
        stop(folder)
        raise
    return uri


def _wait_healthy(url: str, proc: subprocess.Popen, folder: Path, seconds: float, ca: Path | None) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _refuse_foreign(read_state(folder)["port"], set())  # the usual cause: someone took the port
            raise ServerError(f"mlflow server exited ({proc.returncode}):\n{_tail(folder / 'server.log')}")
        try:
            if requests.get(f"{url}/health", timeout=2, verify=str(ca) if ca else True).ok:
                return
        except requests.exceptions.RequestException:
            pass
        time.sleep(0.5)
    raise ServerError(
        f"mlflow server did not answer {url}/health within {seconds:g} s:\n{_tail(folder / 'server.log')}"
    )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def stop(folder: Path, timeout: float = 20.0) -> list[int]:
    """SIGTERM the server's process groups (then SIGKILL); return the PIDs that were running."""
    pids = server_pids(folder)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        left = server_pids(folder)
        for group in _groups(left):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            _reap(left)
            time.sleep(0.2)
            left = server_pids(folder)
        if not left:
            break
    if left := server_pids(folder):
        raise ServerError(f"the server from {folder} survived SIGKILL: PIDs {_listed(left)}")
    (folder / STATE).unlink(missing_ok=True)
    return pids


def _reap(pids: Iterable[int]) -> None:
    """Collect those of ``pids`` that are this process's children and have exited (not zombies then)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue


# ------------------------------------------------------------------ users and permissions
@contextmanager
def admin_credentials(folder: Path) -> Iterator[None]:
    """MLflow's clients read the credentials from the environment at each request: the admin's, for the
    block only (no other scheme, such as a token, may take precedence)."""
    given = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": _admin_password(folder)}
    names = [*given, "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4"]
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ.update(given)
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def provision(folder: Path, experiment: str, user: str, env_file: Path) -> Path:
    """Create ``experiment`` (as admin), ``user`` with a generated password, and EDIT for it; write the
    user's credentials to ``env_file`` (0600, inside ``folder``). An existing env file's password is
    kept; a user created here is deleted again if a later step fails."""
    from mlflow.exceptions import MlflowException

    check_user_name(user)
    if env_file.resolve().parent != folder.resolve():
        raise ServerError(f"credentials file {env_file} is outside {folder}")
    url = verify_owner(folder)
    password = read_env(env_file)["MLFLOW_TRACKING_PASSWORD"] if env_file.exists() else secrets.token_urlsafe(24)
    try:
        with admin_credentials(folder):
            _provision(url, read_state(folder)["uri"], experiment, user, password, env_file)
    except MlflowException as error:
        if error.get_http_status_code() == 401:
            raise ServerError(f"the server at {url} rejected the admin password in {folder / AUTH_CONFIG}") from None
        raise ServerError(f"could not give {user!r} EDIT on {experiment!r}: {error.message[:300]}") from None
    return env_file


def _provision(url: str, uri: str, experiment: str, user: str, password: str, env_file: Path) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    with warnings.catch_warnings():  # the auth client imports MLflow's server app, which warns about starlette
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        auth = get_app_client("basic-auth", tracking_uri=url)
    try:
        auth.create_user(user, password)
        created = True
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        created = False
        _write_credentials(env_file, uri, user, password)  # first: the new password is never held by no one
        auth.update_user_password(user, password)  # the password we hold becomes the only one
    try:
        _grant_edit(auth, user, experiment_id)
        _write_credentials(env_file, uri, user, password)
    except BaseException:
        if created:  # a refused grant leaves no user behind
            auth.delete_user(user)
        raise


def _write_credentials(env_file: Path, uri: str, user: str, password: str) -> None:
    write_private(
        env_file,
        "# MLflow credentials of a study user (python -m mgmvae tracking-server); keep this file 0600.\n"
        f"MLFLOW_TRACKING_URI={shlex.quote(uri)}\n"
        f"MLFLOW_TRACKING_USERNAME={shlex.quote(user)}\n"
        f"MLFLOW_TRACKING_PASSWORD={shlex.quote(password)}\n",
    )


def _grant_edit(auth: Any, user: str, experiment_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        auth.grant_user_permission(user, "experiment", experiment_id, "EDIT")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(user, "experiment", experiment_id)  # maybe a weaker grant: replace it
        auth.grant_user_permission(user, "experiment", experiment_id, "EDIT")
