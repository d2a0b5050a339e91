"""The local journal: what this tool knows that the server does not say.

The server answers no size or checksum for a stored file, so the journal records, per
data id, the CRC32C and size of what this tool created it with; a later plan then knows
server content without downloading it. It also caches file checksums by (path, size,
mtime) so unchanged files are not read again.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from .private import create_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS content (
  data_id TEXT PRIMARY KEY, crc32c TEXT NOT NULL, size INTEGER NOT NULL, target TEXT, recorded REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checksum (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, crc32c TEXT NOT NULL);
"""


class Journal:
    """SQLite in the state folder; safe to use from the executor's threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(create_private(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, *args: object) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # -- server content ----------------------------------------------------------------------------
    def record_content(self, data_id: str, crc32c: str, size: int, target: str | None = None) -> None:
        """What a data record holds once Complete (its create mutation named this checksum)."""
        self._write("INSERT OR REPLACE INTO content VALUES (?, ?, ?, ?, ?)", data_id, crc32c, size, target, time.time())

    def content(self, data_ids: list[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        with self._lock:
            for start in range(0, len(data_ids), 500):
                batch = data_ids[start:start + 500]
                rows = self._db.execute(f"SELECT data_id, crc32c, size FROM content WHERE data_id IN "
                                        f"({','.join('?' * len(batch))})", batch).fetchall()
                found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    # -- file checksums -------------------------------------------------------------------------------
    def cached_checksum(self, path: str, size: int, mtime_ns: int) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT crc32c FROM checksum WHERE path = ? AND size = ? AND mtime_ns = ?",
                                   (path, size, mtime_ns)).fetchone()
        return row[0] if row else None

    def store_checksum(self, path: str, size: int, mtime_ns: int, crc32c: str) -> None:
        self._write("INSERT OR REPLACE INTO checksum VALUES (?, ?, ?, ?)", path, size, mtime_ns, crc32c)
