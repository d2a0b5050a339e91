"""Reading the server into the actual tree: the project, its subject list, matched subjects' trees.

One request lists the subjects; then each matched subject's whole tree (sessions, trials,
files with upload status) is read in one query, several subjects per request (aliases),
several requests at once. Never a query per trial or per file.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import queries
from .errors import FatalError
from .journal import Journal
from .model import COMPLETE, DataFile, Facts, LocalTree, Norm, Session, Subject, Tree, Trial, key
from .pairing import match_subjects

if TYPE_CHECKING:
    from .client import Client

SUBJECTS_PER_REQUEST = 25


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str


def find_project(client: Client, name: str) -> Project:
    """The project by name, or a fatal error listing the ones the key can see."""
    projects = client.call(queries.PROJECTS)["viewer"]["projects"]
    for project in projects:
        if project["name"] == name:
            return Project(project["id"], project["name"])
    visible = ", ".join(sorted(p["name"] for p in projects)) or "none"
    raise FatalError(f"project {name!r} is not visible with this API key (visible: {visible})",
                     "pass --project with one of the names above, exactly as written")


def find_norm(client: Client, project: Project, name: str) -> Norm:
    """The project's first norm of that name, or a fatal error listing the ones it has: asked before anything is
    written, so a misspelt norm never leaves sessions imported without their reports."""
    norms = client.call(queries.NORMS, {"id": project.id})["node"]["norms"] or []
    found = next((n for n in norms if n.get("name") == name), None)
    if found is None:
        known = ", ".join(sorted({str(n.get("name")) for n in norms})) or "none"
        raise FatalError(f"project {project.name!r} has no norm named {name!r} (norms: {known})",
                         "pass --reports-norm with one of the names above, or leave it out for reports without one")
    return Norm(found["id"], name)


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def _trial(clip: dict, session_path: str) -> Trial | None:
    path = clip.get("projectPath") or ""
    if not path.startswith(session_path) or len(path) == len(session_path):
        return None
    files = tuple(DataFile(name=d.get("originalFileName") or "", data_type=d.get("dataType") or "raw",
                           remote_id=d["id"], upload_status=d.get("uploadStatus"),
                           download_uri=d.get("originalDataDownloadUri")) for d in clip.get("additionalData") or [])
    return Trial(name=clip.get("title") or "", condition=path[len(session_path):].strip("/"), files=files,
                 remote_id=clip["id"], custom_options=_loads(clip.get("customOptions")))


def _session(node: dict) -> Session:
    path = node["projectPath"]
    stored = _loads(node.get("metadata")) or {}
    trials = (_trial(c, path) for c in node.get("clips") or [])
    return Session(name=path.strip("/").split("/")[-1], date=(node.get("date") or "")[:10] or None,
                   metadata=stored.get("metadata") or {}, stored_metadata=stored, remote_id=node["id"],
                   remote_path=path, trials=tuple(t for t in trials if t))


def subject_from_node(node: dict) -> Subject:
    metadata = _loads(node.get("metadata")) or {}
    return Subject(name=node["name"], mrn=metadata.get("ehr-id") or None, metadata=metadata, remote_id=node["id"],
                   sessions=tuple(_session(s) for s in node.get("sessions") or []), updated=node.get("updated"))


def read_batch(client: Client, ids: list[str]) -> list[Subject]:
    """The subjects of `ids` (at most SUBJECTS_PER_REQUEST) in one request, those the server still has."""
    data = client.call(queries.subject_trees(len(ids)), {f"s{i}": s for i, s in enumerate(ids)})
    return [subject_from_node(data[f"s{i}"]) for i in range(len(ids)) if data.get(f"s{i}")]


def read_trees(client: Client, ids: list[str], jobs: int) -> dict[str, Subject]:
    batches = [ids[i:i + SUBJECTS_PER_REQUEST] for i in range(0, len(ids), SUBJECTS_PER_REQUEST)]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return {s.remote_id: s for batch in pool.map(lambda b: read_batch(client, b), batches) for s in batch}


class ReadBack:
    """Hands each subject a run changes, by its server id, to `settle` (read it again and keep its snapshot) as soon
    as the run has nothing more to write to it, in batches of one read request, on a pool of its own while the run
    goes on with the others: the next run's snapshot is then what the server holds after this run's writes, and
    the reads, and the planning of what was read, ride along with the run's last steps instead of adding their
    round trips, the server's work and the importer's after them. Steps' results come in on one thread (the
    scheduler's)."""

    def __init__(self, subjects: Iterable[str], id_of: Callable[[str], str | None],
                 settle: Callable[[list[str]], None]) -> None:
        self._left = Counter(subjects)  # subject address -> steps of the run on it without a result yet
        self._id_of = id_of
        self._settle = settle
        self._batch: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="read")
        self._settled: list[Future[None]] = []

    def finished(self, subject: str) -> None:
        """One more of the run's steps on `subject` (its address) has its result."""
        self._left[subject] -= 1
        remote_id = self._id_of(subject) if self._left[subject] == 0 else None
        if remote_id:
            self._batch.append(remote_id)
            if len(self._batch) == SUBJECTS_PER_REQUEST:
                self._send()

    def _send(self) -> None:
        self._settled.append(self._pool.submit(self._settle, self._batch))
        self._batch = []

    def wait(self) -> None:
        """Settle the last subjects now and wait for every batch; raises what settling one raised."""
        if self._batch:
            self._send()
        try:
            for settled in self._settled:
                settled.result()
        finally:
            self.close()

    def close(self) -> None:
        """Stop: reads not started are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)


Recall = Callable[[Subject, Subject], Subject | None]  # (local, listed) -> the listed subject's known tree


def read_state(client: Client, project: Project, desired: Tree, jobs: int = 8, recall: Recall | None = None) -> Tree:
    """The actual tree: every subject of the project, with whole trees for those the folders match; `recall` may
    answer a matched subject's tree from what an earlier run read (snapshots), sparing its read."""
    listing = client.call(queries.SUBJECT_LIST, {"projectId": project.id})["node"]["patientsList"]
    light = tuple(Subject(name=p["name"], mrn=p.get("externalId") or None, remote_id=p["id"],
                          updated=p.get("updated")) for p in listing)
    matched = match_subjects(desired.subjects, light)[0]
    by_local = {id(s): s for s in desired.subjects}
    known: dict[str, Subject] = {}
    for local_id, remote in matched.items():
        tree = recall(by_local[local_id], remote) if recall else None
        if tree is not None:
            known[remote.remote_id] = tree
    wanted = {m.remote_id for m in matched.values()}
    trees = read_trees(client, [s.remote_id for s in light if s.remote_id in wanted and s.remote_id not in known],
                        jobs)
    return Tree(tuple(known.get(s.remote_id) or trees.get(s.remote_id, s) for s in light))


def _compared_records(local: LocalTree, actual: Tree) -> Iterable[tuple[Trial, DataFile]]:
    """Server records (with their trial) that have a local counterpart by session, condition, trial and name."""
    wanted = {(key(se.name), key(t.condition), key(t.name), key(f.name))
              for s in local.tree.subjects for se in s.sessions for t in se.trials for f in t.files}
    for subject in actual.subjects:
        for session in subject.sessions:
            for trial in session.trials:
                for file in trial.files:
                    if (key(session.name), key(trial.condition), key(trial.name), key(file.name)) in wanted:
                        yield trial, file


def gather_facts(client: Client, journal: Journal, local: LocalTree, actual: Tree, jobs: int = 8,
                 verify: bool = False, settled: frozenset[str] = frozenset()) -> Facts:
    """What each compared server record holds and whether this tool made it: from the journal, else (or with
    `verify`, always) from storage's whole-object hash, which a one-byte ranged GET returns without downloading
    the file. Storage is not asked about the records of `settled` subjects (planned from their snapshots)."""
    records = list(_compared_records(local, actual))
    files = [f for _, f in records]
    recorded = journal.content([f.remote_id for f in files])
    content = {} if verify else dict(recorded)
    asked = {f.remote_id for s in actual.subjects if s.remote_id not in settled for se in s.sessions
             for t in se.trials for f in t.files}
    unknown = [f for f in files if f.remote_id not in content and f.download_uri and f.upload_status == COMPLETE
               and f.remote_id in asked]

    def probe(file: DataFile) -> None:
        found = client.object_hash(file.download_uri)
        if found:
            journal.record_content(file.remote_id, found[0], found[1])
            content[file.remote_id] = found

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(probe, unknown))
    ours, stored = journal.ownership([(f.remote_id, t.remote_id, key(f.name)) for t, f in records])
    return Facts({**recorded, **content}, frozenset(ours), frozenset(stored))


def journal_facts(journal: Journal, actual: Tree, facts: Facts, repeated: Iterable[str] = ()) -> Facts:
    """The facts with what the journal knows of metadata and reports: the values this tool last wrote to each
    server subject and session (but the `repeated` subjects, whose last plan is repeated without a diff), and the
    sessions whose report request went unanswered."""
    skip = set(repeated)
    ids = [i for s in actual.subjects if s.remote_id not in skip
           for i in (s.remote_id, *(se.remote_id for se in s.sessions)) if i]
    return dataclasses.replace(facts, written=journal.written(ids), reports_owed=journal.reports_owed())
