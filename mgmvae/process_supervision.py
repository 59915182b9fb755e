"""Supervising a server started from a state folder with psutil: its processes are this user's
processes whose environment holds ``MARKER=<folder>`` (inherited by every child); before a secret is
sent to its port, every socket listening there must be one of theirs (docs/tracking-server.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from subprocess import DEVNULL, STDOUT
from typing import Any

import psutil

from mgmvae.io import save_json

MARKER = "MGMVAE_SERVER_DIR"
STATE = "server.json"  # the launcher's PID, the port, the local URL and the URI the jobs use


class ServerError(RuntimeError):
    pass


def read_state(folder: Path) -> dict[str, Any]:
    if not (folder / STATE).exists():
        raise ServerError(
            f"no server was started from {folder}: `python -m mgmvae tracking-server start --dir {folder}`"
        )
    return dict(json.loads((folder / STATE).read_text()))


def server_processes(folder: Path) -> list[psutil.Process]:
    """The live processes of the server started from ``folder`` (zombies are dead); psutil leaves None
    for what it may not read (another user's environment): not ours."""
    marker, me = str(folder.resolve()), os.getuid()
    return [
        proc
        for proc in psutil.process_iter(["uids", "status", "environ"])
        if proc.info["uids"] and proc.info["uids"].real == me and proc.info["status"] != psutil.STATUS_ZOMBIE
        if (proc.info["environ"] or {}).get(MARKER) == marker
    ]


def server_pids(folder: Path) -> list[int]:
    return sorted(proc.pid for proc in server_processes(folder))


def listeners(port: int) -> list[Any]:
    """Every TCP socket (IPv4 and IPv6) listening on ``port``: psutil's connections, whoever holds them
    (``pid`` None: a process this user may not inspect)."""
    try:
        found = psutil.net_connections("tcp")
    except psutil.AccessDenied:
        raise ServerError("this system lets only root list every socket: cannot check who holds the port") from None
    return [c for c in found if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def _holder(pid: int | None) -> str:
    try:
        proc = psutil.Process(pid)
        return f"PID {pid} of user {proc.username()}: {' '.join(proc.cmdline())[:160]}"
    except (psutil.Error, ValueError):  # ValueError: pid None
        return "a process of another user (its PID is hidden from you)"


def check_port(port: int, ours: set[int]) -> bool:
    """Raise naming who else listens on ``port``; return whether one of ``ours`` listens there."""
    found = listeners(port)
    for conn in found:
        if conn.pid not in ours:
            raise ServerError(
                f"port {port} is taken: {host_port(conn.laddr.ip, port)} is held by {_holder(conn.pid)}. "
                f"Nothing was sent to it. Stop that process or choose another --port."
            )
    return bool(found)


def check_free(folder: Path, port: int) -> None:
    """Refuse to start a second server from ``folder``, or on a port someone holds."""
    if pids := server_pids(folder):
        raise ServerError(
            f"the server started from {folder} is still running (PIDs {_listed(pids)}): "
            f"`python -m mgmvae tracking-server stop --dir {folder}` ends it; then start again"
        )
    check_port(port, set())


def verify_owner(folder: Path) -> str:
    """The local URL of the server started from ``folder``, once psutil shows that it, and no one else,
    listens on its port; a ServerError otherwise. Call before sending it a secret."""
    state = read_state(folder)
    if not (pids := server_pids(folder)):
        raise ServerError(
            f"no server from {folder} is running: `python -m mgmvae tracking-server start --dir {folder}`"
        )
    if not check_port(state["port"], set(pids)):
        raise ServerError(f"the server from {folder} (PIDs {_listed(pids)}) does not listen on port {state['port']}")
    return str(state["url"])


def launch(folder: Path, command: list[str], env: Mapping[str, str], state: dict, wait: float, ca: Path | None) -> None:
    """Start ``command`` in its own session (it outlives this process), logging to ``server.log``; return
    once ``state['url']/health`` answers and the server owns ``state['port']``, else stop it and raise."""
    env = {**env, MARKER: str(folder.resolve())}
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=STDOUT, stdin=DEVNULL, start_new_session=True)
    save_json({"pid": proc.pid, **state}, folder / STATE)
    try:
        _wait_healthy(state["url"], proc, folder, wait, ca)
        verify_owner(folder)
    except BaseException:
        stop(folder)
        raise


def _wait_healthy(url: str, proc: subprocess.Popen, folder: Path, seconds: float, ca: Path | None) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            check_port(read_state(folder)["port"], set())  # the usual cause: someone took the port
            raise ServerError(f"the server exited ({proc.returncode}):\n{_tail(folder / 'server.log')}")
        with suppress(requests.exceptions.RequestException):
            if requests.get(f"{url}/health", timeout=2, verify=str(ca) if ca else True).ok:
                return
        time.sleep(0.5)
    raise ServerError(f"the server did not answer {url}/health within {seconds:g} s:\n{_tail(folder / 'server.log')}")


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _listed(pids: list[int]) -> str:
    return ", ".join(map(str, pids))


def stop(folder: Path, timeout: float = 20.0) -> list[int]:
    """SIGTERM every process of the server (SIGKILL those left after ``timeout``), reaping this process's
    children among them; return the PIDs that were running."""
    pids = server_pids(folder)
    for send, wait in ((psutil.Process.terminate, timeout), (psutil.Process.kill, 5.0)):
        procs = server_processes(folder)
        for proc in procs:
            with suppress(psutil.NoSuchProcess):
                send(proc)
        psutil.wait_procs(procs, timeout=wait)
    if left := server_pids(folder):
        raise ServerError(f"the server from {folder} survived SIGKILL: PIDs {_listed(left)}")
    (folder / STATE).unlink(missing_ok=True)
    return pids
