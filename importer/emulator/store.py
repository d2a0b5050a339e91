"""The emulator's persistent state: SQLite rows plus a folder of blobs.

All access goes through one connection guarded by one lock: the emulator serves a
laboratory's rehearsal, not a fleet, and a single writer keeps cascades and
"create then answer" faults trivially consistent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS project (
  pk INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, description TEXT DEFAULT '');
CREATE TABLE IF NOT EXISTS patient (
  pk INTEGER PRIMARY KEY, project_pk INTEGER NOT NULL, name TEXT NOT NULL,
  metadata TEXT, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session (
  pk INTEGER PRIMARY KEY, project_pk INTEGER NOT NULL, patient_pk INTEGER NOT NULL,
  project_path TEXT NOT NULL, date TEXT, metadata TEXT, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clip (
  pk INTEGER PRIMARY KEY, project_pk INTEGER NOT NULL, session_pk INTEGER,
  title TEXT, description TEXT, project_path TEXT, created TEXT NOT NULL,
  custom_options TEXT, upload_status TEXT NOT NULL, filename TEXT, crc32c TEXT,
  size INTEGER, md5 TEXT);
CREATE TABLE IF NOT EXISTS additional_data (
  pk INTEGER PRIMARY KEY, clip_pk INTEGER NOT NULL, data_type TEXT, filename TEXT,
  crc32c TEXT, upload_status TEXT NOT NULL, size INTEGER, md5 TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS report (
  pk INTEGER PRIMARY KEY, session_pk INTEGER NOT NULL, patient_pk INTEGER NOT NULL, title TEXT);
CREATE TABLE IF NOT EXISTS job (
  pk INTEGER PRIMARY KEY, status TEXT, description TEXT);
CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS patient_project ON patient(project_pk);
CREATE INDEX IF NOT EXISTS session_patient ON session(patient_pk);
CREATE INDEX IF NOT EXISTS session_path ON session(project_pk, project_path);
CREATE INDEX IF NOT EXISTS clip_session ON clip(session_pk);
CREATE INDEX IF NOT EXISTS data_clip ON additional_data(clip_pk);
"""

Row = dict[str, Any]
# Columns added after the first release, so a data folder made by an older emulator still opens.
_ADDED_COLUMNS = {"clip": {"ready_at": "REAL"}, "additional_data": {"ready_at": "REAL"}}
_DB_NAME = "moveshelf.sqlite3"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


_PATIENT_OF = {  # the patient whose tree holds a row, by the row's kind
    "session": "SELECT patient_pk FROM session WHERE pk = ?",
    "clip": "SELECT s.patient_pk FROM session s JOIN clip c ON c.session_pk = s.pk WHERE c.pk = ?",
    "data": "SELECT s.patient_pk FROM session s JOIN clip c ON c.session_pk = s.pk"
            " JOIN additional_data d ON d.clip_pk = c.pk WHERE d.pk = ?",
}


def _private_dir(path: Path) -> None:
    """Rows and blobs can hold patient names: only the owner may list or read them."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


class Store:
    """Rows of projects, patients, sessions, clips and additional data, and their blobs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.blob_dir = data_dir / "blobs"
        _private_dir(data_dir)
        _private_dir(self.blob_dir)
        db_path = data_dir / _DB_NAME
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))  # private before SQLite writes a byte
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        for path in data_dir.glob(f"{_DB_NAME}*"):  # the database and its -wal and -shm files
            path.chmod(0o600)
        self._lock = threading.RLock()

    def _migrate(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- plumbing -----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes so a mutation, a cascade or a batch of clips lands whole or not at all; one inside another
        is a savepoint of it, undone alone when it fails."""
        with self._lock:
            nested = self._db.in_transaction
            self._db.execute("SAVEPOINT inner" if nested else "BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO inner" if nested else "ROLLBACK")
                if nested:
                    self._db.execute("RELEASE inner")
                raise
            self._db.execute("RELEASE inner" if nested else "COMMIT")

    def _all(self, sql: str, *args: Any) -> list[Row]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql: str, *args: Any) -> Row | None:
        rows = self._all(sql, *args)
        return rows[0] if rows else None

    def _insert(self, sql: str, *args: Any) -> int:
        with self._lock:
            return int(self._db.execute(sql, args).lastrowid)

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def reset(self) -> None:
        """Forget every row except the projects and settings, and every blob."""
        with self.transaction():
            for table in ("patient", "session", "clip", "additional_data", "report", "job"):
                self._db.execute(f"DELETE FROM {table}")
        for blob in self.blob_dir.iterdir():
            blob.unlink()

    # -- settings -------------------------------------------------------------------
    def setting(self, key: str, default: str) -> str:
        """A persisted setting, stored with `default` on first use."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO setting VALUES (?, ?)", (key, default))
            return self._one("SELECT value FROM setting WHERE key = ?", key)["value"]

    # -- projects ---------------------------------------------------------------------
    def ensure_project(self, name: str) -> Row:
        self._run("INSERT OR IGNORE INTO project(name) VALUES (?)", name)
        return self.project_by_name(name)

    def projects(self) -> list[Row]:
        return self._all("SELECT * FROM project ORDER BY pk")

    def project(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM project WHERE pk = ?", pk)

    def project_by_name(self, name: str) -> Row | None:
        return self._one("SELECT * FROM project WHERE name = ?", name)

    # -- the patients' `updated` stamp ----------------------------------------------------
    def stamp(self) -> str:
        """The time now, as ISO 8601, strictly later than every stamp given before (two writes never share one)."""
        with self._lock:
            last = getattr(self, "_last_stamp", None)
            value = datetime.now(timezone.utc)
            if last is not None and value <= last:
                value = last + timedelta(microseconds=1)
            self._last_stamp = value
            return value.isoformat(timespec="microseconds")

    def touch(self, kind: str, pk: int) -> None:
        """A write in a patient's tree (session, clip, file, upload) changes the patient's `updated` stamp."""
        with self._lock:
            self._db.execute(f"UPDATE patient SET updated = ? WHERE pk = ({_PATIENT_OF[kind]})", (self.stamp(), pk))

    def _created(self, kind: str, pk: int) -> Row:
        """A row just inserted in a patient's tree, after touching the patient."""
        self.touch(kind, pk)
        return {"session": self.session, "clip": self.clip, "data": self.data}[kind](pk)

    # -- patients ----------------------------------------------------------------------
    def create_patient(self, project_pk: int, name: str) -> Row:
        pk = self._insert("INSERT INTO patient(project_pk, name, updated) VALUES (?, ?, ?)",
                          project_pk, name, self.stamp())
        return self.patient(pk)

    def patient(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM patient WHERE pk = ?", pk)

    def patients(self, project_pk: int) -> list[Row]:
        return self._all("SELECT * FROM patient WHERE project_pk = ? ORDER BY pk", project_pk)

    def update_patient(self, pk: int, metadata: Any) -> bool:
        return self._run("UPDATE patient SET metadata = ?, updated = ? WHERE pk = ?",
                         json.dumps(metadata), self.stamp(), pk) == 1

    def delete_patient(self, pk: int) -> bool:
        with self.transaction():
            for session in self.sessions_of_patient(pk):
                self._delete_session_rows(session["pk"])
            return self._db.execute("DELETE FROM patient WHERE pk = ?", (pk,)).rowcount == 1

    # -- sessions -----------------------------------------------------------------------
    def create_session(self, project_pk: int, patient_pk: int, path: str, date: str | None) -> Row:
        pk = self._insert("INSERT INTO session(project_pk, patient_pk, project_path, date, updated)"
                          " VALUES (?, ?, ?, ?, ?)", project_pk, patient_pk, path, date, now_iso())
        return self._created("session", pk)

    def session(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM session WHERE pk = ?", pk)

    def sessions_of_patient(self, patient_pk: int) -> list[Row]:
        return self._all("SELECT * FROM session WHERE patient_pk = ? ORDER BY pk", patient_pk)

    def sessions_of_project(self, project_pk: int) -> list[Row]:
        return self._all("SELECT * FROM session WHERE project_pk = ? ORDER BY pk", project_pk)

    def session_for_clip_path(self, project_pk: int, clip_path: str) -> Row | None:
        """The session whose path is the longest prefix of a clip's path (conditions are path segments). A session's
        path ends in "/", so it is one of the clip path's prefixes that end in "/": looked up by the index, not
        compared with every session of the project (a lab's thousands, for each clip created)."""
        prefixes = [clip_path[:i + 1] for i, char in enumerate(clip_path) if char == "/"]
        if not prefixes:
            return None
        marks = ",".join("?" * len(prefixes))
        return self._one(f"SELECT * FROM session WHERE project_pk = ? AND project_path IN ({marks})"
                         " ORDER BY length(project_path) DESC LIMIT 1", project_pk, *prefixes)

    def update_session(self, pk: int, path: str, metadata: Any | None, date: str | None) -> bool:
        """Rename, re-date and re-describe a session; its clips follow a rename."""
        with self.transaction():
            old = self.session(pk)
            if old is None:
                return False
            sets = {"project_path": path, "updated": now_iso()}
            if metadata is not None:
                sets["metadata"] = json.dumps(metadata)
            if date:
                sets["date"] = date
            assignments = ", ".join(f"{k} = ?" for k in sets)
            self._db.execute(f"UPDATE session SET {assignments} WHERE pk = ?", (*sets.values(), pk))
            self.touch("session", pk)
            if path != old["project_path"]:
                self._db.execute("UPDATE clip SET project_path = ? || substr(project_path, ?)"
                                 " WHERE session_pk = ?", (path, len(old["project_path"]) + 1, pk))
            return True

    def delete_session(self, pk: int) -> bool:
        return self._delete("session", pk, self._delete_session_rows)

    def _delete(self, kind: str, pk: int, rows: Callable[[int], bool]) -> bool:
        """Delete a row of a patient's tree and what hangs below it, in one transaction that touches the patient."""
        with self.transaction():
            self.touch(kind, pk)
            return rows(pk)

    def _delete_session_rows(self, pk: int) -> bool:
        for clip in self._all("SELECT pk FROM clip WHERE session_pk = ?", pk):
            self._delete_clip_rows(clip["pk"])
        self._db.execute("DELETE FROM report WHERE session_pk = ?", (pk,))
        return self._db.execute("DELETE FROM session WHERE pk = ?", (pk,)).rowcount == 1

    # -- clips ----------------------------------------------------------------------------
    def create_clip(self, project_pk: int, meta: Row, filename: str | None, crc32c: str | None) -> Row:
        path = meta.get("projectPath")
        session = self.session_for_clip_path(project_pk, path) if path else None
        status = "Processing" if filename else "Complete"
        pk = self._insert(
            "INSERT INTO clip(project_pk, session_pk, title, description, project_path, created,"
            " upload_status, filename, crc32c) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            project_pk, session["pk"] if session else None, meta.get("title"),
            meta.get("description"), path, now_iso(), status, filename, crc32c)
        return self._created("clip", pk)

    def clip(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM clip WHERE pk = ?", pk)

    def clips_of_session(self, session_pk: int) -> list[Row]:
        return self._all("SELECT * FROM clip WHERE session_pk = ? ORDER BY pk", session_pk)

    def clips_of_project(self, project_pk: int, limit: int | None) -> list[Row]:
        return self._all("SELECT * FROM clip WHERE project_pk = ? ORDER BY pk LIMIT ?",
                         project_pk, -1 if limit is None else limit)

    def update_clip(self, pk: int, fields: Row) -> bool:
        if not fields:
            return self.clip(pk) is not None
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self.touch("clip", pk)
        return self._run(f"UPDATE clip SET {assignments} WHERE pk = ?", *fields.values(), pk) == 1

    def delete_clip(self, pk: int) -> bool:
        return self._delete("clip", pk, self._delete_clip_rows)

    def _delete_clip_rows(self, pk: int) -> bool:
        for data in self._all("SELECT pk FROM additional_data WHERE clip_pk = ?", pk):
            self.blob_path("data", data["pk"]).unlink(missing_ok=True)
        self._db.execute("DELETE FROM additional_data WHERE clip_pk = ?", (pk,))
        self.blob_path("clip", pk).unlink(missing_ok=True)
        return self._db.execute("DELETE FROM clip WHERE pk = ?", (pk,)).rowcount == 1

    # -- additional data -----------------------------------------------------------------
    def create_data(self, clip_pk: int, data_type: str, filename: str, crc32c: str) -> Row:
        pk = self._insert("INSERT INTO additional_data(clip_pk, data_type, filename, crc32c,"
                          " upload_status, created) VALUES (?, ?, ?, ?, 'Processing', ?)",
                          clip_pk, data_type, filename, crc32c, now_iso())
        return self._created("data", pk)

    def data(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM additional_data WHERE pk = ?", pk)

    def data_of_clip(self, clip_pk: int) -> list[Row]:
        return self._all("SELECT * FROM additional_data WHERE clip_pk = ? ORDER BY pk", clip_pk)

    def delete_data(self, pk: int) -> bool:
        self.touch("data", pk)
        self.blob_path("data", pk).unlink(missing_ok=True)
        return self._run("DELETE FROM additional_data WHERE pk = ?", pk) == 1

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, kind: str, pk: int) -> Path:
        return self.blob_dir / f"{kind}-{pk}"

    def blob_record(self, kind: str, pk: int) -> Row | None:
        return self.clip(pk) if kind == "clip" else self.data(pk)

    def complete_blob(self, kind: str, pk: int, size: int, md5: str, crc32c: str, ready_at: float) -> bool:
        """Record the stored object's real size and hashes; the record reads `Complete` from `ready_at` on."""
        table = "clip" if kind == "clip" else "additional_data"
        with self.transaction():
            self.touch(kind, pk)
            return self._run(f"UPDATE {table} SET upload_status = 'Complete', size = ?, md5 = ?, crc32c = ?,"
                             " ready_at = ? WHERE pk = ?", size, md5, crc32c, ready_at, pk) == 1

    # -- reports and jobs ---------------------------------------------------------------------
    def create_report(self, session_pk: int, patient_pk: int, title: str) -> None:
        self._insert("INSERT INTO report(session_pk, patient_pk, title) VALUES (?, ?, ?)",
                     session_pk, patient_pk, title)

    def reports_of(self, column: str, pk: int) -> list[Row]:
        assert column in ("session_pk", "patient_pk")
        return self._all(f"SELECT * FROM report WHERE {column} = ? ORDER BY pk", pk)

    def create_job(self, description: str) -> Row:
        pk = self._insert("INSERT INTO job(status, description) VALUES ('Complete', ?)", description)
        return self._one("SELECT * FROM job WHERE pk = ?", pk)

    def job(self, pk: int) -> Row | None:
        return self._one("SELECT * FROM job WHERE pk = ?", pk)
