"""Streaming CRC32C of local files, with a quick-check cache keyed by path, size and mtime."""

from __future__ import annotations

import base64
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c

from .errors import InputError
from .journal import Journal
from .model import DataFile, LocalTree
from .paths import shown
from .reading import chunks


def crc32c_of(path: Path) -> str:
    """Base64 of the big-endian CRC32C, read in chunks: memory does not grow with the file."""
    checksum = google_crc32c.Checksum()
    for chunk in chunks(path):
        checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def _measured(file: DataFile, journal: Journal | None, verify: bool) -> DataFile:
    try:
        return _measure(file, journal, verify)
    except OSError as exc:  # validate checked it; it changed since (a race), still the user's to fix
        raise InputError(f"{shown(file.source or file.name)} cannot be read: {exc.strerror or exc}",
                         "give the importing user read access, or move the file out; nothing was written") from None


def _measure(file: DataFile, journal: Journal | None, verify: bool) -> DataFile:
    stat = os.stat(file.source)
    cached = None if verify or journal is None else journal.cached_checksum(file.source, stat.st_size,
                                                                             stat.st_mtime_ns)
    crc = cached or crc32c_of(Path(file.source))
    if cached is None and journal is not None:
        journal.store_checksum(file.source, stat.st_size, stat.st_mtime_ns, crc)
    return dataclasses.replace(file, size=stat.st_size, crc32c=crc)


def fill(local: LocalTree, journal: Journal | None, jobs: int = 4, verify: bool = False) -> LocalTree:
    """The same tree with every file's size and CRC32C; `verify` ignores the cache."""
    files = [f for s in local.tree.subjects for se in s.sessions for t in se.trials for f in t.files]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        measured = dict(zip((f.source for f in files),
                            pool.map(lambda f: _measured(f, journal, verify), files), strict=True))
    subjects = tuple(dataclasses.replace(s, sessions=tuple(
        dataclasses.replace(se, trials=tuple(
            dataclasses.replace(t, files=tuple(measured[f.source] for f in t.files)) for t in se.trials))
        for se in s.sessions)) for s in local.tree.subjects)
    return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=subjects))
