"""The state folder's SQLite files (journal, snapshots): private, shared by the run's threads behind one lock,
written in transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .private import create_private


class Database:
    """One SQLite file, created private (0600), in WAL mode with NORMAL sync: a commit is not flushed to disk
    before the next (a power cut may lose the last ones, never corrupt the file)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(create_private(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, *args: object) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def _one(self, sql: str, *args: object) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction, whole or not at all: a commit costs a dozen system calls (WAL frames and locks), more
        than the rows it writes, so rows written together share one."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write_many(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """Statements, each with its rows, in one transaction; none when no statement has rows."""
        statements = [(sql, rows) for sql, rows in statements if rows]
        if statements:
            with self._transaction() as db:
                for sql, rows in statements:
                    db.executemany(sql, rows)
