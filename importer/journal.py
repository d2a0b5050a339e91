"""The local journal: what this tool knows that the server does not say.

The server answers no size or checksum for a stored file, so the journal records, per
data id, the CRC32C and size of what this tool created it with; a later plan then knows
server content without downloading it. It knows which records are this tool's even when
a run dies between the server's commit and the answer: the intent (trial, file name,
checksum, size, run) is written before the create mutation and the data id after it, and
a record of that trial and name is this tool's. It records each PUT storage accepted.
It also caches file checksums by (path, size, mtime) so unchanged files are not read again.
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
CREATE TABLE IF NOT EXISTS intent (
  id INTEGER PRIMARY KEY, trial_id TEXT NOT NULL, name TEXT NOT NULL, crc32c TEXT NOT NULL, size INTEGER NOT NULL,
  run TEXT NOT NULL, data_id TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS intent_by_trial ON intent (trial_id, name);
CREATE INDEX IF NOT EXISTS intent_by_data ON intent (data_id);
CREATE TABLE IF NOT EXISTS stored (data_id TEXT PRIMARY KEY, at REAL NOT NULL);
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

    # -- what this tool created ------------------------------------------------------------------------
    def record_intents(self, intents: list[tuple[str, str, str, int, str]]) -> list[int]:
        """Before create mutations, each intent (trial id, name, crc32c, size, run) in one transaction; their ids.
        Whatever record of that trial and name appears is this tool's."""
        with self._lock:
            self._db.execute("BEGIN")
            ids = [int(self._db.execute("INSERT INTO intent (trial_id, name, crc32c, size, run, at) VALUES "
                                        "(?, ?, ?, ?, ?, ?)", (*intent, time.time())).lastrowid or 0)
                   for intent in intents]
            self._db.execute("COMMIT")
        return ids

    def record_created(self, intent: int, data_id: str, crc32c: str, size: int, target: str) -> None:
        """After the create's answer: the record's id, and what it will hold."""
        self._write("UPDATE intent SET data_id = ? WHERE id = ?", data_id, intent)
        self.record_content(data_id, crc32c, size, target)

    def record_stored(self, data_id: str) -> None:
        """Storage accepted this tool's PUT of the record's bytes."""
        self._write("INSERT OR REPLACE INTO stored VALUES (?, ?)", data_id, time.time())

    def ownership(self, records: list[tuple[str, str, str]]) -> tuple[set[str], set[str]]:
        """Of (data id, trial id, file name) records: which this tool created, and which it has stored."""
        data_ids = sorted({r[0] for r in records})
        trial_ids = sorted({r[1] for r in records})
        by_data = self._found("SELECT data_id FROM intent WHERE data_id IN ({})", data_ids)
        by_name = self._found("SELECT trial_id, name FROM intent WHERE trial_id IN ({})", trial_ids)
        stored = self._found("SELECT data_id FROM stored WHERE data_id IN ({})", data_ids)
        ours = {d for d, trial, name in records if (d,) in by_data or (trial, name) in by_name}
        return ours, {d for d, _, _ in records if (d,) in stored}

    def _found(self, sql: str, keys: list[str]) -> set[tuple]:
        """The rows of `sql` (whose IN list is `{}`) for `keys`, read in batches."""
        found: set[tuple] = set()
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                found.update(self._db.execute(sql.format(",".join("?" * len(batch))), batch).fetchall())
        return found

    # -- file checksums -------------------------------------------------------------------------------
    def cached_checksums(self, paths: list[str]) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, crc32c) of every given path the cache holds, read in batches."""
        found: dict[str, tuple[int, int, str]] = {}
        with self._lock:
            for start in range(0, len(paths), 500):
                batch = paths[start:start + 500]
                rows = self._db.execute(f"SELECT path, size, mtime_ns, crc32c FROM checksum WHERE path IN "
                                        f"({','.join('?' * len(batch))})", batch).fetchall()
                found.update({row[0]: (row[1], row[2], row[3]) for row in rows})
        return found

    def store_checksums(self, rows: list[tuple[str, int, int, str]]) -> None:
        """(path, size, mtime_ns, crc32c) rows, in one transaction."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO checksum VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
