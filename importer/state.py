"""The state folder of one server and project (and shard): where the journal lives, and the run lock.

Two applies with the same state folder exclude each other; two with different `--state-dir`
on the same project and root do not (each has its own journal), which the README says.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock
import platformdirs

from .errors import LockHeld
from .private import private_folder, write_private


def state_dir(base: Path | None, api_url: str, project: str, shard: tuple[int, int] | None = None) -> Path:
    """The folder of one server, project (and shard)'s journal and lock."""
    digest = hashlib.sha256(f"{api_url}\n{project}".encode()).hexdigest()[:10]
    name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', project)}-{digest}"
    if shard:
        name += f"-shard{shard[0]}of{shard[1]}"
    folder = (base or Path(platformdirs.user_state_dir("moveshelf-import"))) / name
    return private_folder(folder)  # the journal holds subject names, i.e. patient names


@contextmanager
def run_lock(folder: Path, roots: tuple[str, ...], project: str) -> Iterator[None]:
    """One apply at a time per project and import root. The OS drops the lock when its holder dies."""
    digest = hashlib.sha256("\n".join(roots).encode()).hexdigest()[:10]
    lock = filelock.FileLock(folder / f"apply-{digest}.lock", mode=0o600)
    holder = folder / f"apply-{digest}.pid"
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        pid = holder.read_text().strip() if holder.exists() else "unknown"
        raise LockHeld(f"another apply (PID {pid}) is running for project {project} and {', '.join(roots)}",
                       "wait for it to finish; a crashed run's lock is released by the operating system") from None
    try:
        write_private(holder, f"{os.getpid()}\n")
        yield
    finally:
        lock.release()
