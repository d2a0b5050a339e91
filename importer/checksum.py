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
from .reading import CHUNK, chunks


def crc32c_of(path: str | Path, size: int | None = None) -> str:
    """Base64 of the big-endian CRC32C, read in chunks: memory does not grow with the file."""
    checksum = google_crc32c.Checksum()
    for chunk in chunks(path, size):
        checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def _unreadable(file: DataFile, exc: OSError) -> InputError:
    """Validate checked the file; it changed since (a race), still the user's to fix."""
    return InputError(f"{shown(file.source or file.name)} cannot be read: {exc.strerror or exc}",
                      "give the importing user read access, or move the file out; nothing was written")


def _stat(file: DataFile) -> os.stat_result:
    try:
        return os.stat(file.source)
    except OSError as exc:
        raise _unreadable(file, exc) from None


def _measured(file: DataFile, stat: os.stat_result, cached: dict[str, tuple[int, int, str]],
              fresh: list[tuple[str, int, int, str]], verify: bool) -> DataFile:
    try:
        return _measure(file, stat, cached, fresh, verify)
    except OSError as exc:
        raise _unreadable(file, exc) from None


def _measure(file: DataFile, stat: os.stat_result, cached: dict[str, tuple[int, int, str]],
             fresh: list[tuple[str, int, int, str]], verify: bool) -> DataFile:
    known = None if verify else cached.get(file.source)
    if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return dataclasses.replace(file, size=stat.st_size, crc32c=known[2])
    crc = crc32c_of(file.source, stat.st_size)
    fresh.append((file.source, stat.st_size, stat.st_mtime_ns, crc))
    return dataclasses.replace(file, size=stat.st_size, crc32c=crc)


def fill(local: LocalTree, journal: Journal | None, jobs: int = 4, verify: bool = False) -> LocalTree:
    """The same tree with every file's size and CRC32C; `verify` ignores the cache. Files that have a checksum
    already (from a snapshot of their unchanged folder) keep it, unless `verify`. Files of a chunk or more are read
    side by side (`jobs` at once); smaller ones in this thread, where one costs less than handing it to another."""
    files = [f for s in local.tree.subjects for se in s.sessions for t in se.trials for f in t.files
             if verify or f.crc32c is None]
    if not files:
        return local
    cached = {} if verify or journal is None else journal.cached_checksums([f.source for f in files])
    fresh: list[tuple[str, int, int, str]] = []
    stats = [(f, _stat(f)) for f in files]
    large = [(f, stat) for f, stat in stats if stat.st_size >= CHUNK]
    measured = {f.source: _measured(f, stat, cached, fresh, verify) for f, stat in stats if stat.st_size < CHUNK}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        measured.update(zip((f.source for f, _ in large),
                            pool.map(lambda pair: _measured(*pair, cached, fresh, verify), large), strict=True))
    if journal is not None:
        journal.store_checksums(fresh)
    subjects = tuple(dataclasses.replace(s, sessions=tuple(
        dataclasses.replace(se, trials=tuple(
            dataclasses.replace(t, files=tuple(measured.get(f.source, f) for f in t.files)) for t in se.trials))
        for se in s.sessions)) for s in local.tree.subjects)
    return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=subjects))
