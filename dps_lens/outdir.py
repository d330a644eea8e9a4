"""Output directories: checked before any computation, and held by one run at a time.

``claim_output(path)`` fails at once with a one-line error when ``path`` is a file, lies under a
file or cannot be written, and takes an exclusive lock (``filelock``) on the directory for as long
as the run lasts: a second run writing the same directory refuses, naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from dps_lens import distributed
from dps_lens.errors import DpsLensError

LOCK_FILE = ".dps-lens.lock"
OWNER_FILE = ".dps-lens.lock.owner"


def check_writable_dir(path: Path) -> None:
    """Create ``path`` if needed and prove that a file can be written there."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is" if parent == path else f"lies under {parent}, which is"
            raise DpsLensError(f"output directory {path} {where} a file; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise DpsLensError(
            f"cannot write to {path} ({exc.strerror}); choose another --out"
        ) from None


def _owner(path: Path) -> str:
    try:
        owner = json.loads((path / OWNER_FILE).read_text(encoding="utf-8"))
        return f"pid {owner['pid']} on {owner['host']} since {owner['since']}: {owner['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def claim_output(path: str | Path) -> Iterator[Path]:
    """Check ``path`` and hold its lock for the block; one ``DpsLensError`` line if either fails.
    Under torchrun rank 0 holds the lock for all ranks."""
    path = Path(path)
    check_writable_dir(path)
    ranks = distributed.current()
    if not ranks.is_main:
        ranks.barrier()  # until rank 0 holds the lock
        yield path
        return
    lock = FileLock(path / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DpsLensError(
            f"{path} is being written by {_owner(path)}; wait for it or choose another --out"
        ) from None
    try:
        (path / OWNER_FILE).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": " ".join(sys.argv),
                }
            ),
            encoding="utf-8",
        )
        ranks.barrier()
        yield path
    finally:
        (path / OWNER_FILE).unlink(missing_ok=True)
        lock.release()
