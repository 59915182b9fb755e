"""``python -m mgmvae tracking-server start|stop|grant``: MLflow's basic-auth server for a study, its
secrets in a 0700 folder (0600 files, never on a command line or printed), the study's experiment,
users and EDIT permissions made through MLflow's clients. docs/tracking-server.md says what each file
holds, how a start is checked and what it does and does not protect.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import secrets
import shlex
import socket
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mgmvae.io import save_text
from mgmvae.process_supervision import ServerError, check_free, host_port, launch, read_state, stop, verify_owner
from mgmvae.tracking import auth_client, environment, experiment_name, find_or_create_experiment

ADMIN = "admin"
AUTH_CONFIG = "basic_auth.ini"
STARTUP_SECONDS = 180.0  # a cold `mlflow server` imports for tens of seconds on a busy machine
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
USER_NAME_RULE = "a letter or digit, then at most 63 letters, digits, '.', '_' or '-'"


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """``tracking-server`` and its actions; ``parents``' --config/--preset choose the study (its experiment)."""
    server = sub.add_parser("tracking-server", help="start/stop an authenticated MLflow tracking server (basic auth)")
    actions = server.add_subparsers(dest="action", required=True)
    folder = argparse.ArgumentParser(add_help=False, parents=parents)
    folder.add_argument("--dir", type=Path, default=Path("tracking-server"), help="state folder (default: %(default)s)")
    user = argparse.ArgumentParser(add_help=False, parents=[folder])
    user.add_argument("--user", default="study", help=f"the study user: {USER_NAME_RULE} (default: %(default)s)")
    user.add_argument("--experiment", default=None, help="default: the study's (mlflow.experiment of its config)")
    help_ = "write the secrets, start `mlflow server --app-name basic-auth`, create the study user"
    p = actions.add_parser("start", parents=[user], help=help_)
    p.set_defaults(func=run_start)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=5000, help="default: %(default)s")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
    p.add_argument("--public-host", help="host name in the jobs' URI (default: --host; this machine's for 0.0.0.0)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve https (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    help_ = "stop every process of the server started from --dir"
    actions.add_parser("stop", parents=[folder], help=help_).set_defaults(func=run_stop)
    help_ = "create a user (if new) with EDIT permission on the experiment; its credentials in <dir>/<user>.env"
    actions.add_parser("grant", parents=[user], help=help_).set_defaults(func=run_grant)


def run_start(config: Mapping, args: argparse.Namespace) -> None:
    check_user_name(args.user)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ServerError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
    start(
        args.dir, args.host, args.port, args.workers, args.public_host, args.tls_cert and (args.tls_cert, args.tls_key)
    )
    _provision_and_say(config, args, args.dir / "study.env")


def run_grant(config: Mapping, args: argparse.Namespace) -> None:
    _provision_and_say(config, args, args.dir / f"{args.user}.env")


def run_stop(config: Mapping, args: argparse.Namespace) -> None:
    pids = stop(args.dir)
    stopped = f"stopped the server from {args.dir} (PIDs {', '.join(map(str, pids))})"
    print(stopped if pids else f"no server running from {args.dir}")


def _provision_and_say(config: Mapping, args: argparse.Namespace, env_file: Path) -> None:
    experiment = args.experiment or experiment_name(config)
    provision(args.dir, experiment, args.user, env_file)
    print(f"MLflow tracking server at {read_state(args.dir)['uri']} (basic auth; log: {args.dir / 'server.log'}).")
    print(f"User {args.user!r} may edit experiment {experiment!r}; its credentials (mode 0600): {env_file}")
    print(f"    set -a; . {shlex.quote(str(env_file))}; set +a")


def check_user_name(user: str) -> None:
    """Refuse a name that could leave the state folder as ``<user>.env``, or that is the admin's."""
    if not USER_NAME.fullmatch(user):
        raise ServerError(f"user name {user!r} is not allowed: use {USER_NAME_RULE}")
    if user == ADMIN:
        raise ServerError(
            f"{ADMIN!r} is the server's administrator (password in {AUTH_CONFIG}): pick another user name"
        )


# ------------------------------------------------------------------ secrets on disk (save_text: 0600)
def read_env(path: Path) -> dict[str, str]:
    """The variables of a credentials file (shell syntax, as :func:`_write_credentials` writes them)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): shlex.split(v)[0] if v.strip() else "" for k, v in pairs}


def _admin_password(folder: Path) -> str:
    parser = configparser.ConfigParser()
    parser.read(folder / AUTH_CONFIG)
    return parser["mlflow"]["admin_password"]


def write_secrets(folder: Path) -> None:
    """The auth config (keeping the admin password of an earlier start) and the Flask secret."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    password = _admin_password(folder) if (folder / AUTH_CONFIG).exists() else secrets.token_urlsafe(24)
    save_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{folder.resolve() / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {password}\n"
        f"authorization_function = {__name__}:authenticate_basic_only\n"
        # A password check (PBKDF2) costs ~0.1 s of CPU per request; cache a good one for a minute
        # (a changed password reaches the other workers within that time).
        "auth_cache_ttl_seconds = 60\n",
        folder / AUTH_CONFIG,
    )
    if not (folder / "flask.secret").exists():
        save_text(secrets.token_hex(32), folder / "flask.secret")


def authenticate_basic_only() -> Any:
    """The server's ``authorization_function``: MLflow's own 401 for a request without Basic credentials
    (MLflow's check alone answers HTTP 500 to those; docs/tracking-server.md), else MLflow's own check."""
    from flask import request
    from mlflow.server import auth

    given = request.authorization
    if given is None or given.type != "basic" or given.username is None or given.password is None:
        return auth.make_basic_auth_response()
    return auth.authenticate_request_basic_auth()


# ------------------------------------------------------------------ the server
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
        MLFLOW_AUTH_CONFIG_PATH=str((folder / AUTH_CONFIG).resolve()),
        MLFLOW_FLASK_SERVER_SECRET_KEY=(folder / "flask.secret").read_text().strip(),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # the GenAI job runner: not needed for tracking
    )
    return env


def start(
    folder: Path, host: str, port: int, workers: int, public_host: str | None, tls: tuple[Path, Path] | None
) -> str:
    """Write the secrets and start the server; return the jobs' URI once it answers and owns its port."""
    for given in tls or ():
        if not given.is_file():
            raise ServerError(f"TLS file {given} does not exist")
    check_free(folder, port)
    write_secrets(folder)
    scheme = "https" if tls else "http"
    if public_host is None and host in ("0.0.0.0", "::"):
        public_host = socket.gethostname()  # every interface: the jobs need a name, not 0.0.0.0
    url = f"{scheme}://{host_port('127.0.0.1' if host in ('0.0.0.0', '::') else host, port)}"
    uri = f"{scheme}://{host_port(public_host or host, port)}"
    command = server_command(folder, host, port, workers, public_host, tls)
    launch(folder, command, server_env(folder), {"port": port, "url": url, "uri": uri}, STARTUP_SECONDS, tls and tls[0])
    return uri


# ------------------------------------------------------------------ users and permissions
def admin_credentials(folder: Path) -> AbstractContextManager[None]:
    """The admin's credentials for MLflow's clients, for the block only (and no other scheme, such as a
    token, that could take precedence)."""
    admin = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": _admin_password(folder)}
    return environment(
        {**admin, "MLFLOW_TRACKING_TOKEN": None, "MLFLOW_TRACKING_AUTH": None, "MLFLOW_TRACKING_AWS_SIGV4": None}
    )


def provision(folder: Path, experiment: str, user: str, env_file: Path) -> Path:
    """Create ``experiment`` (as admin), ``user`` with a generated password (or its env file's), and EDIT
    for it; write the user's credentials to ``env_file``. A user created here is deleted if a step fails."""
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
    from mlflow.tracking import MlflowClient

    experiment_id = find_or_create_experiment(MlflowClient(tracking_uri=url), experiment)
    auth = auth_client(url)
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
    save_text(
        "# MLflow credentials of a study user (python -m mgmvae tracking-server); keep this file 0600.\n"
        f"MLFLOW_TRACKING_URI={shlex.quote(uri)}\n"
        f"MLFLOW_TRACKING_USERNAME={shlex.quote(user)}\n"
        f"MLFLOW_TRACKING_PASSWORD={shlex.quote(password)}\n",
        env_file,
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
