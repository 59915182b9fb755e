"""Writing outputs all-or-nothing: a temporary file in the target folder, then an atomic rename.
torch is imported where it is used: the tracking server imports this module without it."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. The
    file is readable by its owner only (mkstemp's 0600) from its first byte."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno is None or error.filename not in (None, str(tmp)):
            raise  # not a write error of this file: keep its own message
        raise OSError(error.errno, error.strerror, str(path)) from error  # name the output, not its temp file
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    # Serialise in memory, then write with Python's file API: a failed write (a full disk) raises
    # OSError with its errno, where torch's own writer raises a bare RuntimeError.
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_torch(path: str | os.PathLike) -> Any:
    # weights_only: a checkpoint or dataset file must never unpickle arbitrary code. To the CPU: the
    # caller moves what belongs on a device (RNG states must stay CPU tensors, whatever was saved).
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
