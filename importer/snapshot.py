"""Snapshots: what the last runs learnt, so a run costs in proportion to what changed (DESIGN.md "Scale").

Two kinds of rows, in `snapshot.sqlite3` beside the journal:

- a **session folder** as last scanned: a fingerprint of the folder (every entry's path, type, size, mtime and
  ctime, a link's target, the config file's bytes, the scan options) and what the scan made of it — the session
  with its files' checksums, its config, warnings and unmapped files. An unchanged folder is not scanned,
  validated or checksummed again.
- a **subject** as last read in full from the server: its whole tree, the server's `updated` stamp read with it,
  the mark of the local folders it was planned against (their fingerprints), and when it was read. A subject whose
  folders and stamp are unchanged, read in full less than `--recheck-after` ago, is planned from its snapshot and
  not read again. `--full` uses no snapshot (and writes them all anew); a server that answers no stamp gets every
  subject read in full.

- a **subject folder** whose session folders were all valid: their fingerprints, and the subject's identity and
  the warnings and unmapped files of its scan. While every one of its session folders keeps its fingerprint, the
  subject is *settled*: its sessions are not even decoded. If, besides, the server's subject keeps its stamp and the
  last plan of it needed no step (its **fragment**: conflicts, server-only objects and warnings, kept with the
  subject row for the same planning options), the plan repeats that fragment without diffing the subject.

Rows of subjects an apply is about to change are dropped before the first write (so a run killed half-way leaves
no snapshot that predates its writes); each of those subjects is read again once the run has no more to write to
it (`remote.ReadBack`), and its rows are written from what the server then holds, while the run goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from stat import S_ISDIR, S_ISLNK
from typing import Any

from .database import Database
from .errors import FatalError
from .model import DataFile, Fragment, LocalTree, Session, Subject, Trial, Unmapped
from .scan import Remembered, ScanOptions, SessionPlace, Settled
from .spec import CONFIG_NAME, SessionConfig

FORMAT = 3  # bump when the scan rules or the rows change: older rows are then dropped
DEFAULT_RECHECK_AFTER = 7 * 24 * 3600.0

_SCHEMA = """
DROP TABLE IF EXISTS session; DROP TABLE IF EXISTS subject; DROP TABLE IF EXISTS folder;
CREATE TABLE session (folder TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE subject (remote_id TEXT PRIMARY KEY, stamp TEXT NOT NULL, mark TEXT NOT NULL, tree TEXT NOT NULL,
  read_at REAL NOT NULL, plan_key TEXT, fragment TEXT);
CREATE TABLE folder (folder TEXT PRIMARY KEY, sessions TEXT NOT NULL, settled TEXT NOT NULL);
"""


# -- fingerprints ------------------------------------------------------------------------------------------------
def _options_key(options: ScanOptions) -> str:
    return json.dumps([FORMAT, options.layout, sorted(options.data_types.items()), options.date_format,
                       options.require_date])


def fingerprint(folder: Path, root: Path, options_key: str) -> tuple[str, float]:
    """A digest of everything the scan of a session folder reads (any change to it changes the digest), and the
    latest mtime of anything below the folder (unreadable entries count as old, as in `scan._newest_change`).
    Every nightly run takes this of every session folder: the lines are hashed at once, one call per folder."""
    lines = [f"{options_key}\0{root}\0{folder}"]
    newest = 0.0
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                items = sorted(listing, key=_name)
        except OSError as exc:
            lines.append(f"!{current}\0{exc.errno}")
            continue
        for item in items:
            path = item.path
            try:
                st = item.stat(follow_symlinks=False)
                if st.st_mtime > newest:
                    newest = st.st_mtime
                line = f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"
                if S_ISLNK(st.st_mode):
                    target = os.stat(path)
                    line += (f"\0{os.readlink(path)}\0{target.st_mode}\0{target.st_size}\0{target.st_mtime_ns}"
                             f"\0{target.st_ctime_ns}")
                elif S_ISDIR(st.st_mode):
                    pending.append(path)
            except OSError as exc:
                line = f"!{path}\0{exc.errno}"
            lines.append(line)
    lines.append("")
    digest = hashlib.blake2b("\n".join(lines).encode("utf-8", "surrogateescape"), digest_size=20)
    try:
        with open(os.path.join(folder, CONFIG_NAME), "rb") as config:
            digest.update(config.read())
    except OSError as exc:
        digest.update(f"!config\0{exc.errno}".encode())
    return digest.hexdigest(), newest


def _name(entry: os.DirEntry) -> str:
    return entry.name


# -- rows as JSON: dataclasses as lists of their fields, in order (compact, and fast to build again) -----------
_NESTED: dict[type, dict[int, type]] = {}  # class -> {field index: class of the tuple's items}
_TUPLES: dict[type, tuple[int, ...]] = {}  # class -> indexes of fields that are tuples of plain values
_FIELDS: dict[type, tuple[str, ...]] = {}


def _describe(kind: type, nested: dict[str, type], tuples: tuple[str, ...] = ()) -> None:
    names = tuple(f.name for f in dataclasses.fields(kind))
    _FIELDS[kind] = names
    _NESTED[kind] = {names.index(n): k for n, k in nested.items()}
    _TUPLES[kind] = tuple(names.index(n) for n in tuples)


_describe(DataFile, {})
_describe(Trial, {"files": DataFile}, ("representative",))
_describe(Session, {"trials": Trial})
_describe(Subject, {"sessions": Session})
_describe(SessionConfig, {}, ("warnings",))
_describe(Unmapped, {})


def encode(value: Any) -> Any:
    """A model object as nested lists of its fields' values."""
    kind = type(value)
    if kind in _FIELDS:
        nested = _NESTED[kind]
        return [[encode(v) for v in getattr(value, name)] if i in nested else getattr(value, name)
                for i, name in enumerate(_FIELDS[kind])]
    return value


def decode(kind: type, data: list[Any]) -> Any:
    for i, item_kind in _NESTED[kind].items():
        data[i] = tuple(decode(item_kind, v) for v in data[i])
    for i in _TUPLES[kind]:
        data[i] = tuple(data[i])
    return kind(*data)


def _remembered(data: dict[str, Any]) -> Remembered:
    return Remembered(session=decode(Session, data["session"]),
                      config=decode(SessionConfig, data["config"]) if data["config"] else None,
                      warnings=tuple(data["warnings"]), unmapped=tuple(decode(Unmapped, u) for u in data["unmapped"]))


def _remembered_json(item: Remembered) -> str:
    return json.dumps({"session": encode(item.session), "config": encode(item.config) if item.config else None,
                       "warnings": list(item.warnings), "unmapped": [encode(u) for u in item.unmapped]})


def _settled(data: list[Any]) -> Settled:
    return Settled(decode(Subject, data[0]), tuple(data[1]), tuple(decode(Unmapped, u) for u in data[2]))


def _settled_json(item: Settled) -> str:
    return json.dumps([encode(item.subject), list(item.warnings), [encode(u) for u in item.unmapped]])


def _fragment_json(fragment: Fragment) -> str:
    return json.dumps([list(fragment.conflicts), list(fragment.server_only), list(fragment.warnings)])


def _unmeasured(session: Session) -> bool:
    return any(f.crc32c is None for t in session.trials for f in t.files)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Snapshots(Database):
    """The snapshot rows of one state folder: the scan's memory, and the subjects' last full reads.

    `plan_key` names the planning options (conflict policy, reports, metadata policy): a fragment is repeated
    only for the options it was planned with. Without `settle` (--verify asks storage about every record) no
    subject is settled; without `keep` (a selection plans part of each subject) no fragment is kept either.
    """

    def __init__(self, path: Path, options: ScanOptions, *, full: bool = False,
                 recheck_after: float = DEFAULT_RECHECK_AFTER, now: float | None = None, plan_key: str = "",
                 settle: bool = True, keep: bool = True) -> None:
        super().__init__(path)
        if self._one("PRAGMA user_version") != (FORMAT,):
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {FORMAT};")
        self._options_key = _options_key(options)
        self.full = full
        self.recheck_after = recheck_after
        self.now = time.time() if now is None else now
        self.plan_key = plan_key
        self.settling = settle and not full  # settle subjects and repeat their fragments
        self.keep = keep  # record the fragments of this run's plan
        self._marks: dict[str, str] = {}  # session folder -> its fingerprint, taken before it was scanned
        self._newest: dict[str, float] = {}  # session folder -> the latest mtime below it, from the same walk
        self._recalled: dict[str, Remembered] = {}
        self._scanned: dict[str, Remembered] = {}
        self._subjects: dict[str, tuple[dict[str, str], Settled]] = {}  # subject folder -> (its sessions, settled)
        self._settled: dict[str, list[str]] = {}  # subject folder -> its session folders, for the settled
        self.reused: dict[str, float] = {}  # remote subject id -> when its snapshot was read in full
        self.fragments: dict[str, Fragment] = {}  # remote subject id -> its fragment, repeated in this plan
        self._confirmed: set[str] = set()  # settled subject folders whose fragment is repeated

    def _mark_of(self, place: SessionPlace) -> str:
        folder = str(place.folder)
        if folder not in self._marks:
            self._marks[folder], self._newest[folder] = fingerprint(place.folder, place.root, self._options_key)
        return self._marks[folder]

    def newest_change(self, place: SessionPlace) -> float:
        self._mark_of(place)
        return self._newest[str(place.folder)]

    # -- the scan's memory (scan.Memory) ----------------------------------------------------------------------
    def recall(self, place: SessionPlace) -> Remembered | None:
        mark = self._mark_of(place)
        if self.full:
            return None
        known = self._one("SELECT fingerprint, data FROM session WHERE folder = ?", str(place.folder))
        if known is None or known[0] != mark:
            return None
        remembered = self._recalled[str(place.folder)] = _remembered(json.loads(known[1]))
        return remembered

    def remember(self, place: SessionPlace, scanned: Remembered) -> None:
        self._scanned[str(place.folder)] = scanned

    def settled(self, folder: Path, places: list[SessionPlace]) -> Settled | None:
        """The subject of `folder` as its scan left it, if its session folders are those it had, unchanged."""
        if not self.settling:
            return None
        row = self._folder_rows.get(str(folder))
        if row is None or json.loads(row[0]) != {str(p.folder): self._mark_of(p) for p in places}:
            return None
        self._settled[str(folder)] = [str(p.folder) for p in places]
        return _settled(json.loads(row[1]))

    @functools.cached_property
    def _folder_rows(self) -> dict[str, tuple[str, str]]:
        """Subject folder -> (its session folders' fingerprints, settled), every row in one query."""
        with self._lock:
            return {r[0]: r[1:] for r in self._db.execute("SELECT folder, sessions, settled FROM folder")}

    def remember_subject(self, places: list[SessionPlace], settled: Settled) -> None:
        self._subjects[settled.subject.source or ""] = ({str(p.folder): self._mark_of(p) for p in places}, settled)

    def unsettle(self, local: LocalTree) -> LocalTree:
        """The tree with the sessions of every settled subject whose fragment this plan does not repeat (its server
        subject changed, or its snapshot is old), decoded from their rows."""
        subjects = tuple(self._with_sessions(s) if s.source in local.settled and s.source not in self._confirmed
                         else s for s in local.tree.subjects)
        return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=subjects),
                                   settled=frozenset(self._confirmed))

    def _with_sessions(self, subject: Subject) -> Subject:
        sessions = []
        for folder in self._settled[subject.source or ""]:
            row = self._one("SELECT fingerprint, data FROM session WHERE folder = ?", folder)
            if row is None or row[0] != self._marks[folder]:
                raise FatalError(f"the snapshot of {folder} changed while this run read it",
                                 "run again; another run on the same state folder may have been writing")
            sessions.append(self._recalled.setdefault(folder, _remembered(json.loads(row[1]))).session)
        return dataclasses.replace(subject, sessions=tuple(sessions))

    def settle(self, local: LocalTree) -> None:
        """Write the sessions scanned this run, with the checksums measured since, those recalled that gained
        checksums (a selection had left them out when they were scanned), and the subject folders scanned."""
        filled = {str(Path(s.source or "") / se.name): se for s in local.tree.subjects for se in s.sessions}
        rows = []
        for folder, item in [*self._scanned.items(), *self._recalled.items()]:
            session = filled.get(folder, item.session)
            if folder in self._scanned or (session is not item.session and _unmeasured(item.session)):
                rows.append((folder, self._marks[folder], _remembered_json(dataclasses.replace(item, session=session))))
        folders = [(folder, json.dumps(sessions), _settled_json(item))
                   for folder, (sessions, item) in self._subjects.items()]
        self._write_many([("INSERT OR REPLACE INTO session VALUES (?, ?, ?)", rows),
                     ("INSERT OR REPLACE INTO folder VALUES (?, ?, ?)", folders)])

    # -- subjects as last read in full ----------------------------------------------------------------------------
    @functools.cached_property
    def _subject_rows(self) -> dict[str, tuple]:
        """Remote id -> (stamp, mark, read_at, plan_key, fragment) of every subject, in one query: a nightly run
        asks about each one (their trees are read only when needed)."""
        with self._lock:
            return {r[0]: r[1:] for r in self._db.execute(
                "SELECT remote_id, stamp, mark, read_at, plan_key, fragment FROM subject")}

    def mark(self, subject: Subject) -> str | None:
        """The fingerprint of the folders a subject was planned from; None if one of them has none."""
        source = subject.source or ""
        folders = self._settled.get(source) or [str(Path(source) / s.name) for s in subject.sessions]
        marks = [(Path(f).name, self._marks.get(f)) for f in folders]
        if subject.source is None or any(m is None for _, m in marks):
            return None
        return hashlib.blake2b(json.dumps([subject.source, sorted(marks)]).encode(), digest_size=20).hexdigest()

    def recall_tree(self, local: Subject, listed: Subject) -> Subject | None:
        """The server tree of `listed` from its snapshot, if nothing says it changed since it was read in full;
        for a settled subject whose last plan needed no step, `listed` itself (its fragment is repeated)."""
        mark = self.mark(local)
        if self.full or not listed.updated or not listed.remote_id or mark is None:
            return None
        row = self._subject_rows.get(listed.remote_id)
        if row is None or row[0] != listed.updated or row[1] != mark or self.now - row[2] >= self.recheck_after:
            return None
        if local.source in self._settled and row[3] == self.plan_key and row[4] is not None:
            conflicts, server_only, warnings = json.loads(row[4])
            self.fragments[listed.remote_id] = Fragment(tuple(conflicts), tuple(server_only), tuple(warnings))
            self._confirmed.add(local.source or "")
            self.reused[listed.remote_id] = row[2]
            return listed
        tree = self._one("SELECT tree FROM subject WHERE remote_id = ? AND stamp = ? AND mark = ?",
                         listed.remote_id, row[0], row[1])
        if tree is None:
            return None
        self.reused[listed.remote_id] = row[2]
        return decode(Subject, json.loads(tree[0]))

    def record_trees(self, pairs: Iterable[tuple[Subject, Subject]]) -> None:
        """Write the snapshots of (local, server) subjects whose server trees were just read in full."""
        rows = []
        for local, remote in pairs:
            mark = self.mark(local)
            if mark is not None and remote.updated and remote.remote_id:
                rows.append((remote.remote_id, remote.updated, mark, json.dumps(encode(remote)), self.now, None, None))
        self._write_many([("INSERT OR REPLACE INTO subject VALUES (?, ?, ?, ?, ?, ?, ?)", rows)])

    def record_fragments(self, fragments: dict[str, Fragment]) -> None:
        """Keep, with their subjects' rows, the fragments of subjects planned in full this run that needed no
        step."""
        if self.keep:
            self._write_many([("UPDATE subject SET plan_key = ?, fragment = ? WHERE remote_id = ?",
                          [(self.plan_key, _fragment_json(f), i) for i, f in fragments.items()
                           if i not in self.fragments])])

    def drop(self, remote_ids: Iterable[str]) -> None:
        """Forget subjects about to change: the next plan reads them in full unless this run writes them anew."""
        self._write_many([("DELETE FROM subject WHERE remote_id = ?", [(i,) for i in remote_ids])])

    def summary(self, subjects: int) -> dict[str, Any]:
        """For the plan: how many subjects came from snapshots (`settled`: of those, how many repeated their last
        plan without a diff), and when those were read in full."""
        found: dict[str, Any] = {"subjects": subjects, "from_snapshot": len(self.reused),
                                 "settled": len(self.fragments), "full": self.full,
                                 "recheck_after_seconds": self.recheck_after}
        if self.reused:
            found["oldest_full_read"] = _iso(min(self.reused.values()))
            found["newest_full_read"] = _iso(max(self.reused.values()))
        return found
