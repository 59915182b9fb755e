"""A one-node SLURM cluster on this machine, for tests/test_slurm.py and for trying the README's
"Running on SLURM" commands without a cluster (as root, Debian/Ubuntu):

    python tests/slurm_cluster.py start /tmp/slurm     # installs slurm-wlm + munge if missing
    ...                                                 # sinfo, sbatch, snakemake --executor slurm
    python tests/slurm_cluster.py stop /tmp/slurm      # stops the daemons it started, by PID

Packages come from apt (`slurm-wlm`, `munge`), installed once: a second start
finds the binaries and skips apt. The configuration goes to /etc/slurm/slurm.conf, where every
SLURM command looks (the slurm executor's job steps drop $SLURM_CONF from their environment, so
a private path would not reach `srun` inside the jobs); a slurm.conf not written here is moved
aside to <folder>/slurm.conf.orig and put back by `stop`. One node, `localhost`, with all CPUs
and memory, one partition `debug`, no accounting (job status comes from `squeue`). The daemons'
state and logs live in the folder, with a `pids` file listing exactly the processes started
here. munged runs as user munge on its standard socket; one already answering is reused, not stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurm-wlm", "munge"]
BINARIES = ["munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel"]
MUNGE_RUN = Path("/run/munge")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by tests/slurm_cluster.py"


class ClusterError(RuntimeError):
    pass


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def installed() -> bool:
    return all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES)


def install(timeout: float = 600) -> float:
    """apt-get install slurm-wlm and munge unless present; returns the seconds it took (0: cached)."""
    if installed():
        return 0.0
    start = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "Dpkg::Options::=--force-confold",
        *PACKAGES,
    ]
    result = _run(cmd, env=env, timeout=timeout)
    if result.returncode != 0:  # fresh machines have no package lists yet
        update = _run(["apt-get", "update", "-q"], env=env, timeout=timeout)
        if update.returncode != 0:
            raise ClusterError(f"apt-get update failed:\n{update.stdout[-2000:]}{update.stderr[-2000:]}")
        result = _run(cmd, env=env, timeout=timeout)
    if result.returncode != 0 or not installed():
        raise ClusterError(
            f"apt-get install {' '.join(PACKAGES)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


# slurmd opens a Unix socket per job step, <SlurmdSpoolDir>/<node>_<job>.<step>; a path longer than
# sun_path allows fails the launch and SLURM holds the job for ever.
STEP_SOCKET = "localhost_4294967295.4294967295"
SOCKET_PATH_MAX = 107  # bytes: sun_path is 108 with its NUL


def write_conf(folder: Path, conf: Path = SLURM_CONF) -> Path:
    """slurm.conf for one node (all CPUs and memory of this machine), no accounting; a foreign
    slurm.conf already there is moved to <folder>/slurm.conf.orig first."""
    socket_path = len(os.fsencode(folder / "spool" / STEP_SOCKET))
    if socket_path > SOCKET_PATH_MAX:
        raise ClusterError(
            f"the cluster folder {folder} is too deep: slurmd's job sockets under it would be "
            f"{socket_path} bytes long, over the {SOCKET_PATH_MAX} a Unix socket path allows; use a shorter folder "
            "(tempfile.mkdtemp(prefix='slurm-'))"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    conf.parent.mkdir(parents=True, exist_ok=True)
    if conf.exists() and MARKER not in conf.read_text():
        shutil.move(conf, folder / "slurm.conf.orig")
    conf.write_text(
        "\n".join(
            [
                MARKER + f" for the one-node cluster in {folder}",
                "ClusterName=onenode",
                "SlurmctldHost=localhost",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "AuthType=auth/munge",
                "MpiDefault=none",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                "MinJobAge=300",  # squeue remembers finished jobs this long (status checks)
                "ReturnToService=2",
                "SlurmdParameters=config_overrides",  # the node as written here, whatever slurmd detects
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                f"NodeName=localhost CPUs={os.cpu_count() or 1} RealMemory={_memory_mb()} State=UNKNOWN",
                "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    return conf


def _munge_answers() -> bool:
    try:
        cred = _run(["munge", "-n"], timeout=10)
        return cred.returncode == 0 and _run(["unmunge"], input=cred.stdout, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _wait(predicate, seconds: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "".join(f"\n--- {p}:\n{p.read_text()[-1500:]}" for p in logs if p.exists())
    raise ClusterError(f"{what} did not come up within {seconds:g} s{tails}")


def _record(folder: Path, name: str, pid: int) -> None:
    pids = folder / "pids"
    started = json.loads(pids.read_text()) if pids.exists() else {}
    started[name] = pid
    pids.write_text(json.dumps(started))


def start(folder: str | Path) -> dict[str, int]:
    """Start munged (unless one answers), slurmctld and slurmd; return {name: pid} of those
    started here (also written to <folder>/pids). Waits until the node is idle."""
    folder = Path(folder).resolve()
    install()
    conf = write_conf(folder)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    started: dict[str, int] = {}
    try:
        if not _munge_answers():
            MUNGE_RUN.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_RUN, "munge", "munge")
            os.chmod(MUNGE_RUN, 0o755)
            log = open(folder / "munged.out", "w")
            munged = subprocess.Popen(
                ["munged", "--foreground"],
                user="munge",
                group="munge",
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started["munged"] = munged.pid
            _record(folder, "munged", munged.pid)
            _wait(_munge_answers, 20, "munged", [folder / "munged.out"])
        for name, cmd in (
            ("slurmctld", ["slurmctld", "-D", "-f", str(conf)]),
            ("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(conf)]),
        ):
            log = open(folder / f"{name}.out", "w")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            started[name] = proc.pid
            _record(folder, name, proc.pid)

        def idle() -> bool:
            out = _run(["sinfo", "-h", "-N", "-o", "%t"], env=env, timeout=10).stdout.split()
            return bool(out) and out[0] in ("idle", "mix", "alloc")

        _wait(
            idle,
            60,
            "the SLURM node (sinfo: idle)",
            [folder / "slurmctld.log", folder / "slurmd.log", folder / "slurmctld.out", folder / "slurmd.out"],
        )
    except BaseException:
        stop(folder)
        raise
    return started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone once reaped.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().split()[2] != "Z"


def stop_pid(pid: int, timeout: float = 15) -> None:
    """SIGTERM one process we started, then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


def finished_jobs(folder: str | Path) -> dict[int, int]:
    """Job ID -> exit status of every batch job that ended, from slurmctld's log: unlike `squeue`,
    which forgets a job MinJobAge seconds after it ends, the log keeps them all."""
    log = (Path(folder) / "slurmctld.log").read_text()
    return {int(job): int(status) for job, status in re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS (\d+)", log)}


def stop(folder: str | Path) -> list[int]:
    """Cancel the cluster's jobs, then stop the daemons listed in <folder>/pids (slurmd,
    slurmctld, munged: reverse start order); return the PIDs stopped."""
    folder = Path(folder).resolve()
    pids_file = folder / "pids"
    started = json.loads(pids_file.read_text()) if pids_file.exists() else {}
    if "slurmctld" in started and _alive(started["slurmctld"]):
        env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
        try:
            jobs = _run(["squeue", "-h", "-o", "%i"], env=env, timeout=10).stdout.split()
            if jobs:
                _run(["scancel", *jobs], env=env, timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass
    stopped = []
    for name in ("slurmd", "slurmctld", "munged"):
        if name in started:
            stop_pid(started[name])
            stopped.append(started[name])
    if pids_file.exists():
        pids_file.unlink()
    if SLURM_CONF.exists() and f"{MARKER} for the one-node cluster in {folder}\n" in SLURM_CONF.read_text():
        SLURM_CONF.unlink()
    if (folder / "slurm.conf.orig").exists():
        shutil.move(folder / "slurm.conf.orig", SLURM_CONF)
    return stopped


if __name__ == "__main__":
    usage = "usage: python tests/slurm_cluster.py {start|stop} FOLDER"
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        raise SystemExit(usage)
    if sys.argv[1] == "start":
        pids = start(sys.argv[2])
        print(f"SLURM is up ({SLURM_CONF}); started: {pids}")
    else:
        print(f"stopped PIDs {stop(sys.argv[2])}")
