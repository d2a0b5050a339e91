"""The local journal: what this tool knows that the server does not say.

The server answers no size or checksum for a stored file, so the journal records, per
data id, the CRC32C and size of what this tool created it with; a later plan then knows
server content without downloading it. It knows which records are this tool's even when
a run dies between the server's commit and the answer: the intent (trial, file name,
checksum, size, run) is written before the create mutation and the data id after it, and
a record of that trial and name is this tool's. It records each PUT storage accepted.
It also caches file checksums by (path, size, mtime) so unchanged files are not read again.
It keeps each metadata value it wrote, by server object and field, so `--metadata-policy
update-mine` can tell a value nobody touched since from one a person changed; and the
sessions whose report request no run has seen answered, so a re-run asks again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .database import Database
from .model import Written

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
CREATE TABLE IF NOT EXISTS written (
  object_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (object_id, field));
CREATE TABLE IF NOT EXISTS reports_owed (session TEXT PRIMARY KEY, at REAL NOT NULL);
"""
_CONTENT = "INSERT OR REPLACE INTO content VALUES (?, ?, ?, ?, ?)"


class Journal(Database):
    """SQLite in the state folder; safe to use from the executor's threads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path
        self._db.executescript(_SCHEMA)

    # -- server content ----------------------------------------------------------------------------
    def record_content(self, data_id: str, crc32c: str, size: int, target: str | None = None) -> None:
        """What a data record holds once Complete (its create mutation named this checksum)."""
        self._write(_CONTENT, data_id, crc32c, size, target, time.time())

    def _rows_in(self, select: str, column: str, values: list[str]) -> list[tuple]:
        """The rows of `select` whose `column` is one of `values`, asked 500 at a time (SQLite's limit on
        parameters is lower than a large project's count of ids)."""
        rows: list[tuple] = []
        with self._lock:
            for start in range(0, len(values), 500):
                batch = values[start:start + 500]
                rows += self._db.execute(f"{select} WHERE {column} IN ({','.join('?' * len(batch))})",
                                         batch).fetchall()
        return rows

    def content(self, data_ids: list[str]) -> dict[str, tuple[str, int]]:
        rows = self._rows_in("SELECT data_id, crc32c, size FROM content", "data_id", data_ids)
        return {row[0]: (row[1], row[2]) for row in rows}

    # -- what this tool created ------------------------------------------------------------------------
    def record_intents(self, intents: list[tuple[str, str, str, int, str]]) -> list[int]:
        """Before create mutations, each intent (trial id, name, crc32c, size, run) in one transaction; their ids.
        Whatever record of that trial and name appears is this tool's."""
        with self._transaction() as db:
            return [int(db.execute("INSERT INTO intent (trial_id, name, crc32c, size, run, at) VALUES "
                                   "(?, ?, ?, ?, ?, ?)", (*intent, time.time())).lastrowid or 0) for intent in intents]

    def record_created(self, created: list[tuple[int, str, str, int, str]]) -> None:
        """After the creates' answer: of each (intent, data id, crc32c, size, target), the record's id and what it
        will hold, in one transaction."""
        now = time.time()
        self._write_many([("UPDATE intent SET data_id = ? WHERE id = ?", [(c[1], c[0]) for c in created]),
                          (_CONTENT, [(*c[1:], now) for c in created])])

    def record_stored(self, data_ids: list[str]) -> None:
        """Storage accepted this tool's PUT of each record's bytes."""
        now = time.time()
        self._write_many([("INSERT OR REPLACE INTO stored VALUES (?, ?)", [(d, now) for d in data_ids])])

    def ownership(self, records: list[tuple[str, str, str]]) -> tuple[set[str], set[str]]:
        """Of (data id, trial id, file name) records: which this tool created, and which it has stored."""
        data_ids = sorted({r[0] for r in records})
        by_data = {row[0] for row in self._rows_in("SELECT data_id FROM intent", "data_id", data_ids)}
        by_name = set(self._rows_in("SELECT trial_id, name FROM intent", "trial_id", sorted({r[1] for r in records})))
        stored = {row[0] for row in self._rows_in("SELECT data_id FROM stored", "data_id", data_ids)}
        ours = {d for d, trial, name in records if d in by_data or (trial, name) in by_name}
        return ours, {d for d, _, _ in records if d in stored}

    # -- file checksums -------------------------------------------------------------------------------
    def cached_checksums(self, paths: list[str]) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, crc32c) of every given path the cache holds."""
        rows = self._rows_in("SELECT path, size, mtime_ns, crc32c FROM checksum", "path", paths)
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def store_checksums(self, rows: list[tuple[str, int, int, str]]) -> None:
        """(path, size, mtime_ns, crc32c) rows, in one transaction."""
        self._write_many([("INSERT OR REPLACE INTO checksum VALUES (?, ?, ?, ?)", rows)])

    # -- metadata this tool wrote ---------------------------------------------------------------------------
    def record_written(self, writes: list[tuple[str, dict[str, Any]]]) -> None:
        """After updates the server accepted: of each (object id, fields), the value of each field it changed, as
        sent, in one transaction."""
        now = time.time()
        self._write_many([("INSERT OR REPLACE INTO written VALUES (?, ?, ?, ?)",
                           [(object_id, name, json.dumps(value), now) for object_id, fields in writes
                            for name, value in fields.items()])])

    def written(self, object_ids: list[str]) -> dict[str, dict[str, Written]]:
        """Object id -> field -> the value this tool last wrote there, and the (local) day it did."""
        found: dict[str, dict[str, Written]] = {}
        for object_id, name, value, at in self._rows_in("SELECT object_id, field, value, at FROM written",
                                                        "object_id", object_ids):
            found.setdefault(object_id, {})[name] = Written(json.loads(value), time.strftime("%Y-%m-%d",
                                                                                             time.localtime(at)))
        return found

    # -- report requests --------------------------------------------------------------------------------------
    def owe_reports(self, sessions: list[str]) -> None:
        """Before a run: these sessions' reports are due until a request for them is answered."""
        now = time.time()
        self._write_many([("INSERT OR REPLACE INTO reports_owed VALUES (?, ?)", [(s, now) for s in sessions])])

    def reports_made(self, session: str) -> None:
        self._write("DELETE FROM reports_owed WHERE session = ?", session)

    def reports_owed(self) -> frozenset[str]:
        with self._lock:
            return frozenset(row[0] for row in self._db.execute("SELECT session FROM reports_owed"))
