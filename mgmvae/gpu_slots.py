"""GPU slots on one machine: each job that needs a GPU holds one of ``gpu_slots.per_device`` slots of
one device, a lock file held with flock for the life of its process, so that the kernel frees it
however the job ends. docs/cluster.md ("Local GPUs") says how a device is chosen, how waiting jobs
queue, what SLURM changes and how ``MGMVAE_FAKE_GPUS`` fakes devices for the tests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mgmvae.config import ConfigError, validate_section

FAKE_ENV = "MGMVAE_FAKE_GPUS"
SLURM_ENV = "SLURM_JOB_ID"  # set in every SLURM allocation (sbatch, srun, salloc)
SLURM_GPU_ENV = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")  # the node's GPU indices a job or step was given
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the NVIDIA driver sees
POLL_S = 1.0  # how often a waiting job retries: a few file opens, negligible
REMIND_S = 300.0  # a waiting job repeats its message this often, so its log shows it is alive


class LeaseError(RuntimeError):
    """A device or slot that cannot be had; the message says why and what to change."""


@dataclass(frozen=True)
class SlotOptions:
    """The config's ``gpu_slots`` section (config.yaml states its defaults)."""

    per_device: int
    wait_s: float
    lock_dir: str | None
    lease: str

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SlotOptions:
        """The section, checked by the config schema (a job may be handed it alone)."""
        try:
            validate_section("gpu_slots", section)
        except ConfigError as error:
            raise LeaseError(str(error)) from None
        return cls(**dict(section))

    def directory(self) -> Path:
        """Per user and machine by default: every checkout and study of one user shares the GPUs."""
        if self.lock_dir:
            return Path(self.lock_dir).expanduser()
        return Path(tempfile.gettempdir()) / f"mgmvae-gpu-slots-{os.getuid()}"


@dataclass
class Placement:
    """Where a job runs and why; a leased slot is held as long as this object's lock is open."""

    device: str  # as the job addresses it: cpu, cuda:<i>
    how: str  # cpu, lease, slurm, unleased
    gpu: str | None = None  # the device's id (UUID), for a GPU
    slot: int | None = None
    slots: int | None = None
    lock: FileLock | None = field(default=None, repr=False)
    why: str = ""  # for the CPU: why this job runs there
    warning: str | None = None  # what the job's log and run must show loudly

    def describe(self) -> str:
        if self.how == "lease" and self.lock is not None:
            return (
                f"{self.device} (GPU {self.gpu}), slot {(self.slot or 0) + 1} of {self.slots}, "
                f"lease {self.lock.lock_file}"
            )
        if self.how == "slurm":
            return f"{self.device} (SLURM job {os.environ.get(SLURM_ENV)}: the scheduler's GPU, not leased)"
        if self.how == "unleased":
            return f"{self.device} (gpu_slots.lease: never: not leased)"
        return f"{self.device} ({self.why})" if self.why else self.device

    def params(self) -> dict[str, str]:
        """What MLflow records: the device, how it was chosen and any warning."""
        warning = {"device_warning": self.warning} if self.warning else {}
        return {"device": self.device, "device_placement": self.describe(), **warning}

    def release(self) -> None:
        """Give the slot back now (otherwise the kernel does it when the process ends)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Placement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----------------------------------------------------------------------- devices
def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _fake_gpus(count: str, env: Mapping[str, str]) -> list[str]:
    if not count.isdigit():
        raise LeaseError(f"{FAKE_ENV} must be a device count (an integer >= 0), not {count!r}")
    ids = [str(i) for i in range(int(count))]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ids
    chosen: list[str] = []
    for entry in visible.split(","):  # as CUDA: in the given order, up to the first unknown entry
        if entry.strip() not in ids or entry.strip() in chosen:
            break
        chosen.append(entry.strip())
    return chosen


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The ids of the GPUs this process sees, in the order it numbers them (``cuda:0``, ...)."""
    env = os.environ if env is None else env
    if env.get(FAKE_ENV) is not None:
        return _fake_gpus(env[FAKE_ENV], env)
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        _safe(str(getattr(torch.cuda.get_device_properties(i), "uuid", i))) for i in range(torch.cuda.device_count())
    ]


def unusable_gpu(env: Mapping[str, str] | None = None) -> str | None:
    """Why the NVIDIA driver sees a GPU that this process cannot use, or None."""
    env = os.environ if env is None else env
    if env.get(FAKE_ENV) is not None or env.get("CUDA_VISIBLE_DEVICES") == "":
        return None  # faked, or hidden on purpose
    try:
        seen = len(list(DRIVER_GPUS.iterdir()))
    except OSError:
        return None
    import torch

    if not seen or torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build; install its CUDA build (on Linux, PyPI's torch wheel)"
    try:
        torch.cuda.init()
        problem = "torch.cuda.is_available() is False"
    except Exception as error:  # the driver's own words: too old, not loaded, no device
        problem = str(error).strip().splitlines()[0]
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use it: {problem}"


def _visible_note(env: Mapping[str, str]) -> str:
    value = env.get("CUDA_VISIBLE_DEVICES")
    return "CUDA_VISIBLE_DEVICES is unset" if value is None else f"CUDA_VISIBLE_DEVICES={value!r}"


def _wanted(device: str, gpus: Sequence[str], env: Mapping[str, str]) -> list[int]:
    """The device indices a job may run on: all for auto/cuda, one for a pinned cuda:<i>."""
    if not gpus:
        raise LeaseError(
            f"device {device!r} requested but no CUDA device is visible ({_visible_note(env)}); use device: auto or cpu"
        )
    if device in ("auto", "cuda"):
        return list(range(len(gpus)))
    index = device.split(":", 1)[1] if device.startswith("cuda:") else ""
    if not index.isdigit() or int(index) >= len(gpus):
        raise LeaseError(
            f"unknown device {device!r}: this job sees {len(gpus)} GPU(s), cuda:0..cuda:{len(gpus) - 1} "
            f"({_visible_note(env)}); use one of those, auto (any free GPU) or cpu"
        )
    return [int(index)]


# ------------------------------------------------------------------------ slots
def hard_lock(path: Path, **options: Any) -> FileLock:
    # No fallback to a marker file when the filesystem lacks flock: a killed job would leave it behind.
    return FileLock(path, fallback_to_soft=False, **options)


def _slot_path(lock_dir: Path, gpu: str, slot: int) -> Path:
    return lock_dir / f"gpu-{gpu}.slot{slot}.lock"


def _sign(fd: int) -> None:
    """Write who holds a slot into its file (on_acquired), for the messages of jobs that wait."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "argv": sys.argv, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _try_lock(path: Path, sign: bool = True) -> FileLock | None:
    lock = hard_lock(path, blocking=False, on_acquired=_sign if sign else None)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def _holder(path: Path, command: bool = False) -> str:
    """Who holds a slot, as its holder wrote it (pid, host, and with ``command`` its arguments)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "?"
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    return f"{text}: {' '.join(info.get('argv', [])[1:])[:160]}" if command else text


def _waiting_ahead(lock_dir: Path, devices: set[str], ticket: FileLock | None) -> int:
    """Live waiters, queued before ``ticket`` (all of them without one), that want one of ``devices``;
    a dead waiter's ticket (its lock free) is removed on the way. Called under ``choose.lock``."""
    ahead = 0
    for path in sorted((lock_dir / "queue").glob("*.wait")):
        if ticket is not None and str(path) >= ticket.lock_file:
            break
        probe = _try_lock(path, sign=False)
        if probe is not None:  # its waiter is gone
            probe.release()
            path.unlink(missing_ok=True)
            continue
        try:
            ahead += bool(devices & set(json.loads(path.read_text() or "[]")))
        except (OSError, ValueError):
            ahead += 1  # a ticket being written: count it, to be safe
    return ahead


def _take_ticket(lock_dir: Path, devices: set[str]) -> FileLock:
    """A place in the queue, held (like a slot) until the job gets its slot or ends."""
    record = json.dumps(sorted(devices)).encode()
    path = lock_dir / "queue" / f"{time.time_ns():020d}-{os.getpid()}.wait"
    path.parent.mkdir(parents=True, exist_ok=True)
    ticket = hard_lock(path, blocking=False, on_acquired=lambda fd: os.pwrite(fd, record, 0))
    with hard_lock(lock_dir / "choose.lock"):
        ticket.acquire()
    return ticket


def _try_lease(
    lock_dir: Path, gpus: Sequence[str], wanted: Sequence[int], slots: int, ticket: FileLock | None = None
) -> Placement | None:
    """Lock a free slot on the least-loaded wanted device, or None if every slot is held or a job
    queued before this one waits for one of these devices."""
    with hard_lock(lock_dir / "choose.lock"):  # starting jobs choose one at a time, each seeing the others' slots
        if _waiting_ahead(lock_dir, {gpus[i] for i in wanted}, ticket):
            return None
        free: dict[int, list[tuple[int, FileLock]]] = {}
        for i in wanted:
            locked = ((k, _try_lock(_slot_path(lock_dir, gpus[i], k))) for k in range(slots))
            free[i] = [(k, lock) for k, lock in locked if lock is not None]
        candidates = [i for i in wanted if free[i]]
        best = min(candidates, key=lambda i: (slots - len(free[i]), i)) if candidates else None
        for i, got in free.items():
            for _, lock in got[1:] if i == best else got:
                lock.release()  # only probed
    if best is None:
        return None
    slot, lock = free[best][0]
    return Placement(f"cuda:{best}", "lease", gpus[best], slot, slots, lock)


def _all_held(lock_dir: Path, gpus: Sequence[str], wanted: Sequence[int], slots: int) -> str:
    holders = ", ".join(
        f"cuda:{i} slot {k + 1}: {_holder(_slot_path(lock_dir, gpus[i], k))}" for i in wanted for k in range(slots)
    )
    return f"every GPU slot this job may use is held ({len(wanted)} device(s) x {slots} slot(s); {holders})"


def lease_slot(
    gpus: Sequence[str],
    wanted: Sequence[int],
    options: SlotOptions,
    *,
    poll_s: float = POLL_S,
    say: Callable[[str], None] | None = None,
) -> Placement:
    """Hold one free slot on one of the ``wanted`` devices, waiting up to ``options.wait_s`` for one,
    first come, first served."""
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    lock_dir, devices = options.directory(), {gpus[i] for i in wanted}
    start = time.monotonic()
    said, ticket = None, None
    try:
        while True:
            placement = _try_lease(lock_dir, gpus, wanted, options.per_device, ticket)
            waited = time.monotonic() - start
            if placement is not None:
                if said is not None:
                    say(f"got a GPU slot after waiting {waited:.0f} s")
                return placement
            held = _all_held(lock_dir, gpus, wanted, options.per_device)
            if waited >= options.wait_s:
                raise LeaseError(
                    f"no GPU slot became free in {options.wait_s:.0f} s (gpu_slots.wait_s): {held}. "
                    "Run fewer GPU jobs at once (snakemake --resources gpu=<GPUs x gpu_slots.per_device>), "
                    "raise gpu_slots.per_device or gpu_slots.wait_s, or end the jobs holding the slots."
                )
            ticket = ticket or _take_ticket(lock_dir, devices)
            if said is None or time.monotonic() - said >= REMIND_S:
                with hard_lock(lock_dir / "choose.lock"):
                    ahead = _waiting_ahead(lock_dir, devices, ticket)
                say(
                    f"{held}; {ahead} job(s) queued ahead of this one; waiting up to {options.wait_s:.0f} s "
                    f"(gpu_slots.wait_s) for one to free, first come first served, lock dir {lock_dir}"
                )
                said = time.monotonic()
            time.sleep(min(poll_s, max(0.0, options.wait_s - waited)))
    finally:
        if ticket is not None:
            ticket.release()
            Path(ticket.lock_file).unlink(missing_ok=True)


# --------------------------------------------------------------------- placing
def place(device: str, section: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Placement:
    """Where this job runs for ``device`` (auto, cpu, cuda, cuda:<i>): on a GPU, a leased slot
    (waiting for one if need be) unless under SLURM or ``gpu_slots.lease: never``."""
    env = os.environ if env is None else env
    if device == "cpu":
        return Placement("cpu", "cpu", why="device: cpu")
    options = SlotOptions.from_config(section)
    gpus = visible_gpus(env)
    if device == "auto" and not gpus:
        problem = unusable_gpu(env)
        if problem:
            warning = f"the NVIDIA driver sees a GPU, but {problem}; this job runs on the CPU"
            return Placement("cpu", "cpu", why="device: auto, no usable GPU", warning=warning)
        return Placement("cpu", "cpu", why=f"device: auto, no CUDA GPU visible ({_visible_note(env)})")
    wanted = _wanted(device, gpus, env)
    slurm = options.lease == "auto" and bool(env.get(SLURM_ENV))
    if slurm and device == "auto" and env.get("CUDA_VISIBLE_DEVICES") is None:
        given = next((env[name] for name in SLURM_GPU_ENV if env.get(name)), "")  # the node's GPU indices
        wanted = [int(i) for i in given.split(",") if i.strip().isdigit() and int(i) < len(gpus)]  # no cgroups
        if not wanted:
            why = "device: auto, but SLURM gave this job no GPU (its rule requests none: check its gpu resource)"
            return Placement("cpu", "cpu", why=why, warning=why)
    if slurm or options.lease == "never":
        return Placement(f"cuda:{wanted[0]}", "slurm" if slurm else "unleased", gpus[wanted[0]])
    return lease_slot(gpus, wanted, options)


def gpu_count(env: Mapping[str, str] | None = None) -> int:
    """How many GPUs this process sees, without starting CUDA (NVML or the driver's count)."""
    env = os.environ if env is None else env
    if env.get(FAKE_ENV) is not None:
        return len(_fake_gpus(env[FAKE_ENV], env))
    import torch

    return torch.cuda.device_count()


def workflow_gpus(workflow: Any, config: Mapping[str, Any]) -> int:
    """Wire a Snakemake workflow's ``gpu`` resource (on one machine: the slots of the devices its jobs
    may use, unless ``--resources gpu=N`` gave it); return what each GPU rule asks for (0 on the CPU)."""
    device = config["device"]
    if device == "cpu":
        return 0
    if not workflow.local_exec:
        return 1
    count = gpu_count()
    if device == "auto" and not count:
        return 0
    wanted = _wanted(device, [str(i) for i in range(count)], os.environ)  # refuses a device not here
    if "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", len(wanted) * SlotOptions.from_config(config["gpu_slots"]).per_device)
    return 1


def warn_loudly(message: str) -> None:
    """A warning no one scrolling a job's log can miss."""
    print(f"{'!' * 100}\nWARNING: {message}\n{'!' * 100}", file=sys.stderr, flush=True)


_HELD: dict[str, Placement] = {}


def place_process(device: str, section: Mapping[str, Any]) -> Placement:
    """:func:`place` once per process and device request: the lease lasts until the process ends."""
    if device not in _HELD:
        placement = place(device, section)
        if placement.device.startswith("cuda") and os.environ.get(FAKE_ENV) is None:
            import torch

            torch.cuda.set_device(placement.device)  # stray allocations land on the leased GPU, not cuda:0
        print(f"device: {placement.describe()}", file=sys.stderr, flush=True)
        if placement.warning:
            warn_loudly(placement.warning)
        _HELD[device] = placement
    return _HELD[device]


def held() -> Placement | None:
    """This process's placement, if it has one (for the MLflow params)."""
    return next(iter(_HELD.values()), None)


# ---------------------------------------------------------------------- status
def slot_table(section: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[str]:
    """One line per slot of every visible GPU: free, or the job holding it."""
    env = os.environ if env is None else env
    options = SlotOptions.from_config(section)
    gpus, lock_dir = visible_gpus(env), options.directory()
    lines = [
        f"{len(gpus)} GPU(s) visible ({_visible_note(env)}), {options.per_device} slot(s) each "
        f"(gpu_slots.per_device), lock dir {lock_dir}"
    ]
    with hard_lock(lock_dir / "choose.lock"):  # probing takes a slot for an instant: not while a job chooses
        for i, gpu in enumerate(gpus):
            for k in range(options.per_device):
                path = _slot_path(lock_dir, gpu, k)
                probe = _try_lock(path)
                state = "free" if probe is not None else _holder(path, command=True)
                lines.append(f"cuda:{i} (GPU {gpu}) slot {k + 1}: {state}")
                if probe is not None:
                    probe.release()
    if gpus:
        lines.append(
            f"local runs: at most {len(gpus) * options.per_device} GPU jobs at once (the Snakefile's gpu total)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mgmvae.gpu_slots [--config YAML ...]``: the GPUs, their slots and who holds them."""
    import argparse

    from mgmvae.config import DEFAULT_CONFIG, load_config

    parser = argparse.ArgumentParser(prog="python -m mgmvae.gpu_slots", description=main.__doc__)
    parser.add_argument("--config", nargs="+", default=[DEFAULT_CONFIG], metavar="YAML", help="default: config.yaml")
    args = parser.parse_args(argv)
    try:
        print("\n".join(slot_table(load_config(*args.config)["gpu_slots"])))
    except LeaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
