"""Chunked reads: large files around the page cache, small ones and refusing filesystems the ordinary way."""

from __future__ import annotations

import base64
import errno
import os
from pathlib import Path

import google_crc32c
import pytest

from importer.checksum import crc32c_of
from importer.reading import CHUNK, DIRECT_FROM, chunks


def large_file(folder: Path) -> tuple[Path, bytes, bytes]:
    """A sparse file just over the O_DIRECT threshold, with data at both ends and an odd length."""
    path = folder / "large.c3d"
    head, tail = os.urandom(3000), os.urandom(123)
    with path.open("wb") as handle:
        handle.write(head)
        handle.seek(DIRECT_FROM + 1000)
        handle.write(tail)
    return path, head, tail


def expected_crc(path: Path) -> str:
    checksum = google_crc32c.Checksum()
    with path.open("rb") as handle:
        while block := handle.read(1 << 16):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


def test_large_files_read_whole_in_bounded_chunks(tmp_path: Path):
    path, head, tail = large_file(tmp_path)
    pieces = list(chunks(path))
    assert max(len(p) for p in pieces) <= CHUNK
    assert sum(len(p) for p in pieces) == path.stat().st_size
    assert pieces[0][:3000] == head and pieces[-1][-123:] == tail
    assert crc32c_of(path) == expected_crc(path)


def test_small_files_read_the_ordinary_way(tmp_path: Path):
    small = tmp_path / "small.GCD"
    small.write_bytes(b"x" * (CHUNK + 5))
    assert [len(p) for p in chunks(small)] == [CHUNK, 5]


@pytest.mark.parametrize("refusal", ["open", "read"])
def test_a_filesystem_refusing_o_direct_is_read_the_ordinary_way(tmp_path: Path, monkeypatch, refusal: str):
    """Some network filesystems refuse O_DIRECT when opening, others only when reading."""
    path, _, _ = large_file(tmp_path)
    refused = OSError(errno.EINVAL, "Invalid argument")
    if refusal == "open":
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda p, flags, *a: (_ for _ in ()).throw(refused)
                            if flags & os.O_DIRECT else real_open(p, flags, *a))
    else:
        monkeypatch.setattr(os, "preadv", lambda *a: (_ for _ in ()).throw(refused))
    assert crc32c_of(path) == expected_crc(path)
