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


def _measured(file: DataFile, cached: dict[str, tuple[int, int, str]], fresh: list[tuple[str, int, int, str]],
              verify: bool) -> DataFile:
    try:
        return _measure(file, cached, fresh, verify)
    except OSError as exc:  # validate checked it; it changed since (a race), still the user's to fix
        raise InputError(f"{shown(file.source or file.name)} cannot be read: {exc.strerror or exc}",
                         "give the importing user read access, or move the file out; nothing was written") from None


def _measure(file: DataFile, cached: dict[str, tuple[int, int, str]], fresh: list[tuple[str, int, int, str]],
             verify: bool) -> DataFile:
    stat = os.stat(file.source)
    known = None if verify else cached.get(file.source)
    if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return dataclasses.replace(file, size=stat.st_size, crc32c=known[2])
    crc = crc32c_of(Path(file.source))
    fresh.append((file.source, stat.st_size, stat.st_mtime_ns, crc))
    return dataclasses.replace(file, size=stat.st_size, crc32c=crc)


def fill(local: LocalTree, journal: Journal | None, jobs: int = 4, verify: bool = False) -> LocalTree:
    """The same tree with every file's size and CRC32C; `verify` ignores the cache. Files that have a checksum
    already (from a snapshot of their unchanged folder) keep it, unless `verify`."""
    files = [f for s in local.tree.subjects for se in s.sessions for t in se.trials for f in t.files
             if verify or f.crc32c is None]
    if not files:
        return local
    cached = {} if verify or journal is None else journal.cached_checksums([f.source for f in files])
    fresh: list[tuple[str, int, int, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        measured = dict(zip((f.source for f in files),
                            pool.map(lambda f: _measured(f, cached, fresh, verify), files), strict=True))
    if journal is not None:
        journal.store_checksums(fresh)
    subjects = tuple(dataclasses.replace(s, sessions=tuple(
        dataclasses.replace(se, trials=tuple(
            dataclasses.replace(t, files=tuple(measured.get(f.source, f) for f in t.files)) for t in se.trials))
        for se in s.sessions)) for s in local.tree.subjects)
    return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=subjects))
