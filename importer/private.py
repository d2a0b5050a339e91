"""Files that can hold patient names (state folder, journal, plans, reports, logs) are created private.

Subject names are patient names in many labs, and these files outlive the run, often on
shared machines; so folders are 0700 and files 0600 from the moment they exist, never
widened afterwards. On Windows `os.chmod` only knows read-only, so the modes are best
effort there and never an error.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TextIO

from .errors import InputError
from .paths import shown

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def _restrict(path: Path, mode: int) -> None:
    """chmod where the OS supports it; a filesystem that refuses (Windows, some mounts) is not an error."""
    with contextlib.suppress(NotImplementedError, PermissionError, OSError):
        os.chmod(path, mode)


def private_folder(path: Path) -> Path:
    """Create the folder (and missing parents) 0700; an existing one is made 0700 as well, being ours."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=FOLDER_MODE)
            _restrict(folder, FOLDER_MODE)
        if not path.is_dir():
            raise NotADirectoryError(0, "it is a file")
    except OSError as exc:
        raise InputError(f"cannot create the folder {shown(path)}: {exc.strerror or exc}",
                         "choose another --state-dir, or fix the path's permissions") from None
    _restrict(path, FOLDER_MODE)
    return path


def create_private(path: Path) -> Path:
    """Make sure the file exists and is 0600, before anything (SQLite, a lock) opens it with wider modes."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), FILE_MODE)
    os.close(descriptor)
    _restrict(path, FILE_MODE)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write the whole file through a 0600 temporary file renamed over it: readers never see half a file."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        _restrict(Path(temporary), FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def open_private_append(path: Path) -> TextIO:
    """A log file opened for appending, created 0600 (an existing log is narrowed to 0600 too)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    except OSError as exc:
        raise InputError(f"cannot open {shown(path)} for appending: {exc.strerror or exc}",
                         "name a file in an existing folder that you may write") from None
    _restrict(path, FILE_MODE)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def check_writable(path: Path | None) -> None:
    """Refuse an output file that cannot be written before the run starts, not after its work is done."""
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{shown(path)} is a folder; name a file to write", "e.g. --out plan.json")
    if not folder.is_dir():
        raise InputError(f"cannot write {shown(path)}: the folder {shown(folder)} does not exist",
                         "create the folder first or name a file in an existing one")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write {shown(path)}: permission denied", "name a file you may write")
