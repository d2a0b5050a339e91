"""The executor: one handler per plan action, run by the generic scheduler in dependency order.

Steps of one kind go out together whichever subjects and sessions they belong to: new
subjects, sessions, file records, metadata and trial options in one aliased request each,
new trials of many sessions in one `createClips`. Creates are never retried blindly: after an ambiguous
failure the parent is read again and what exists is adopted (`reconcile`). The executor
returns results; it does not raise for a failed step.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar, TypeVar

from . import queries
from . import steps as st
from .address import Address
from .errors import FatalError, Interrupted, Rejected, RemoteError, TransientError
from .journal import Journal
from .model import COMPLETE, key, path_key, same_path
from .planner import trial_options
from .remote import Project
from .scheduler import Outcome, Result, Scheduler
from .steps import Action, Plan, Step

if TYPE_CHECKING:
    from .client import Client

T = TypeVar("T")
BATCH_SIZE = 50
BATCHED = {Action.CREATE_SUBJECT: "subjects", Action.UPDATE_SUBJECT_METADATA: "subject metadata",
           Action.CREATE_SESSION: "sessions", Action.UPDATE_SESSION_METADATA: "session metadata",
           Action.CREATE_TRIAL: "trials", Action.UPLOAD_FILE: "files", Action.REPLACE_FILE: "files",
           Action.UPDATE_TRIAL_METADATA: "options"}  # steps of one kind (of any sessions) that share a request
StepResult = Result[Step]


def reconcile(client: Client, create: Callable[[], T], find: Callable[[], T | None]) -> T:
    """Create; after an ambiguous failure, look for what may have been created before trying again."""
    ambiguous = False

    def attempt() -> T:
        nonlocal ambiguous
        if ambiguous:
            found = find()
            if found is not None:
                return found
        try:
            return create()
        except TransientError:
            ambiguous = True
            raise

    return client.retrying(attempt)


@contextmanager
def _few_collections() -> Iterator[None]:
    """While a run's requests allocate and free objects by the hundred each: what lives before it (the plan, the
    trees) is frozen out of the collector's walks, and young objects are collected every 20,000 allocations, not
    700 (at 200 subjects collections were a fifth of the run's CPU)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def group_of(step: Step) -> Hashable | None:
    """Steps of one batched kind share a request, whichever subjects and sessions they belong to."""
    return BATCHED.get(step.action)


_DEPTH = {"subject": 0, "session": 1, "trial": 2, "file": 3}
_FINISHING_ACTIONS = frozenset({Action.UPDATE_SUBJECT_METADATA, Action.UPDATE_SESSION_METADATA,
                                Action.UPDATE_TRIAL_METADATA, Action.REMOVE_RECORD, Action.CREATE_REPORTS})


FINISHING = len(_DEPTH)  # the rank of steps that finish a subject, session or trial


def rank_of(step: Step) -> int:
    """Steps that finish what is under way go first, once they fill a request (`FINISHING`, the scheduler's `fill`):
    a subject is done, and read back, soon after its files are stored, one subject after another, rather than every
    subject at the end of the run; they come ready one by one, as the uploads they follow end, and one request each
    would be a request too many. Then the deeper a step's target, the sooner it goes: the first uploads start as
    soon as their trials exist, instead of after the last subject, session and trial of the plan has been created,
    and the uploads, most of a first import's requests, keep every slot busy from then on."""
    return FINISHING if step.action in _FINISHING_ACTIONS else _DEPTH[step.target.kind]


class Executor:
    def __init__(self, plan: Plan, client: Client, project: Project, journal: Journal, jobs: int = 8,
                 on_upload: Callable[[str, int], Callable[[int], None]] = lambda name, size: lambda n: None,
                 on_result: Callable[[StepResult], None] = lambda r: None) -> None:
        self.plan = plan
        self.client = client
        self.project = project
        self.journal = journal
        self.jobs = max(1, jobs)
        self.on_upload = on_upload  # (file name, size) -> the byte counter of that file's upload
        self.on_result = on_result
        self.ids = dict(plan.ids)
        self._ids_lock = threading.Lock()
        self.fatal: FatalError | None = None
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"  # names this run's intents in the journal
        self._uploads: ThreadPoolExecutor | None = None

    def run(self) -> list[StepResult]:
        """Apply every step it can; Ctrl-C stops starting new work and waits for the work under way.

        The plan's report requests are owed from the start, so a run that stops before making them (a failure,
        a kill) leaves them for the next plan even though the sessions' data will then be unchanged."""
        self.journal.owe_reports([str(s.target) for s in self.plan.steps if s.action is Action.CREATE_REPORTS])
        scheduler: Scheduler[Step] = Scheduler(self._dispatch, jobs=self.jobs, batch_size=BATCH_SIZE,
                                               group_of=group_of, rank_of=rank_of, fill={FINISHING},
                                               cancel=self.client.cancel,
                                               fatal=(FatalError,),
                                               on_result=self.on_result)
        with _few_collections(), ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="upload") as pool:
            self._uploads = pool
            results = scheduler.run(self.plan.steps)
        self.fatal = scheduler.fatal if isinstance(scheduler.fatal, FatalError) else None
        return results

    def _dispatch(self, batch: list[Step]) -> dict[str, Outcome]:
        """Carry out a batch of steps of one action; an action without a handler fails, never passes."""
        handler = self.HANDLERS.get(batch[0].action)
        if handler is None:
            raise NotImplementedError(f"no handler for {batch[0].action.value}")
        return handler(self, batch) or {}

    # -- ids ------------------------------------------------------------------------------------------
    def _id(self, target: Address) -> str:
        with self._ids_lock:
            return self.ids[target]

    def _set_id(self, target: Address, value: str) -> None:
        with self._ids_lock:
            self.ids[target] = value

    # -- subjects and sessions ------------------------------------------------------------------------------
    def _create_batch(self, steps: list[Step], query: Callable[[int], str], input_of: Callable[[Step], dict],
                      id_of: Callable[[dict], str], existing: Callable[[list[Step]], dict[str, str]]
                      ) -> dict[str, Outcome]:
        """Creates in one aliased request; after an ambiguous failure, adopt what `existing` finds on the server
        (step id -> object id) before creating the rest. A create the server refused fails its step alone."""
        outcomes: dict[str, Outcome] = {}
        pending = {s.id: s for s in steps}

        def find() -> bool | None:
            for step_id, object_id in existing(list(pending.values())).items():
                self._set_id(pending.pop(step_id).target, object_id)
            return True if not pending else None

        def create() -> bool:
            todo = list(pending.values())
            data, errors = self.client.call_aliased(query(len(todo)), queries.batch_variables(
                [input_of(s) for s in todo]), retry=False)
            for i, step in enumerate(todo):
                if data.get(f"a{i}"):
                    self._set_id(step.target, id_of(data[f"a{i}"]))
                else:
                    outcomes[step.id] = Outcome(errors.get(f"a{i}", "not created"))
                del pending[step.id]
            return True

        reconcile(self.client, create, find)
        return outcomes

    def _create_subjects(self, steps: list[Step]) -> dict[str, Outcome]:
        """New subjects in one request (aliased createPatient); their MRNs follow with the metadata step."""

        def existing(pending: list[Step]) -> dict[str, str]:
            listing = self.client.call(queries.SUBJECT_LIST, {"projectId": self.project.id})["node"]["patientsList"]
            found = {s.id: next((p["id"] for p in listing if key(p["name"]) == key(s.payload.name)
                                 or (s.payload.mrn and p.get("externalId") == s.payload.mrn)), None) for s in pending}
            return {step_id: subject_id for step_id, subject_id in found.items() if subject_id}

        return self._create_batch(steps, queries.create_subjects,
                                  lambda s: {"projectId": self.project.name, "name": s.payload.name},
                                  lambda answer: answer["patient"]["id"], existing)

    def _update_subjects(self, steps: list[Step]) -> dict[str, Outcome]:
        """Send each subject's whole merged metadata, then remember each field it changed, as this tool's writing."""
        inputs = [{"patientId": self._id(s.target), "metadata": json.dumps(s.payload.metadata)} for s in steps]
        return self._remember_written(steps, self._updated(steps, queries.update_subjects(len(steps)), inputs))

    def _updated(self, steps: list[Step], query: str, inputs: list[dict]) -> dict[str, Outcome]:
        """Idempotent updates in one aliased request: each step's outcome."""
        _, errors = self.client.call_aliased(query, queries.batch_variables(inputs))
        return {s.id: Outcome(errors.get(f"a{i}")) for i, s in enumerate(steps)}

    def _remember_written(self, steps: list[Step], outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
        """Of each metadata update the server accepted, the journal remembers each field it changed, as this
        tool's writing (--metadata-policy update-mine)."""
        self.journal.record_written([(self._id(s.target), {name: c["after"] for name, c in s.payload.changes.items()})
                                     for s in steps if outcomes[s.id].error is None])
        return outcomes

    def _create_sessions(self, steps: list[Step]) -> dict[str, Outcome]:
        """New sessions of any subjects in one request (aliased createSession)."""

        def existing(pending: list[Step]) -> dict[str, str]:
            found: dict[str, str] = {}
            for subject_id in sorted({self._id(s.target.parent) for s in pending}):
                sessions = self.client.call(queries.SESSIONS_OF_SUBJECT, {"id": subject_id})["node"]["sessions"]
                for step in (s for s in pending if self._id(s.target.parent) == subject_id):
                    match = next((x["id"] for x in sessions if same_path(x["projectPath"], step.payload.project_path)),
                                 None)
                    if match:
                        found[step.id] = match
            return found

        return self._create_batch(steps, queries.create_sessions, lambda s: {
            "projectId": self.project.name, "projectPath": s.payload.project_path,
            "patientId": self._id(s.target.parent), "sessionDate": s.payload.date},
            lambda answer: answer["session"]["id"], existing)

    def _update_sessions(self, steps: list[Step]) -> dict[str, Outcome]:
        inputs = [{"sessionId": self._id(s.target), "sessionName": s.payload.name,
                   "sessionMetadata": json.dumps(s.payload.stored), "sessionDate": s.payload.date} for s in steps]
        return self._remember_written(steps, self._updated(steps, queries.update_sessions(len(steps)), inputs))

    # -- trials ---------------------------------------------------------------------------------------------
    def _create_trials(self, steps: list[Step]) -> None:
        """New trials of any sessions in one `createClips`; after an ambiguous failure, adopt those their sessions
        hold before creating the rest."""
        pending = {(self._id(s.target.session_address), path_key(s.payload.project_path), key(s.payload.title)): s
                   for s in steps}

        def create() -> bool:
            clips = [{"clientId": str(s.target), "metadata": {"title": s.payload.title,
                                                              "projectPath": s.payload.project_path}}
                     for s in pending.values()]
            answer = self.client.call(queries.CREATE_TRIALS, {"input": {"project": self.project.name, "clips": clips}},
                                      retry=False)
            by_client = {str(s.target): s for s in pending.values()}
            for created in answer["createClips"]["response"]:
                self._set_id(by_client[created["clientId"]].target, created["mocapClip"]["id"])
            pending.clear()
            return True

        def find() -> bool | None:
            for session_id in sorted({k[0] for k in pending}):
                for clip in self.client.call(queries.CLIPS_OF_SESSION, {"id": session_id})["node"]["clips"]:
                    step = pending.pop((session_id, path_key(clip["projectPath"] or ""), key(clip["title"] or "")),
                                       None)
                    if step:
                        self._set_id(step.target, clip["id"])
            return True if not pending else None

        reconcile(self.client, create, find)

    def _update_trials(self, steps: list[Step]) -> dict[str, Outcome]:
        """Set title and trial template of a session's trials in one request."""
        inputs = []
        for step in steps:
            payload: st.UpdateTrialMetadata = step.payload
            with self._ids_lock:
                file_ids = [self.ids[t] for t in payload.side_files if t in self.ids]
            options = trial_options(payload.base_options, payload.side, payload.representative, file_ids)
            inputs.append({"clipData": {"id": self._id(step.target), "metadata": {"title": payload.title},
                                        "customOptions": json.dumps(options)}})
        return self._updated(steps, queries.update_trials(len(steps)), inputs)

    # -- files ------------------------------------------------------------------------------------------------
    def _upload_files(self, steps: list[Step]) -> dict[str, Outcome]:
        """Create the records of new files in one request, upload them side by side, then record which uploads
        storage accepted in one transaction, not a commit (a dozen system calls) per file. A run killed before that
        commit uploads those files again if the server is still processing them, and removes the records it made
        before."""
        outcomes: dict[str, Outcome] = {}
        pending = []
        for step in steps:
            payload: st.UploadFile = step.payload
            if os.stat(payload.source).st_size != payload.size:
                outcomes[step.id] = Outcome(f"{payload.source} changed since it was planned; plan again")
            else:
                pending.append(step)
        created: dict[str, dict] = {}
        orphans: set[tuple[str, str, str]] = set()  # (trial id, file name, data id) of unanswered creates

        def find() -> None:
            wanted = {(self._id(s.target.parent), key(s.payload.name)) for s in pending}
            sessions = sorted({self._id(s.target.session_address) for s in pending})
            found = [(clip["id"], key(d["originalFileName"] or ""), d["id"]) for session_id in sessions
                     for clip in self.client.call(queries.FILES_OF_SESSION, {"id": session_id})["node"]["clips"]
                     for d in clip["additionalData"] if d["uploadStatus"] != COMPLETE]
            candidates = [(trial, name, data) for trial, name, data in found if (trial, name) in wanted]
            ours, _ = self.journal.ownership([(data, trial, name) for trial, name, data in candidates])
            orphans.update(c for c in candidates if c[2] in ours)

        def create() -> bool:
            todo = [s for s in pending if s.id not in created and s.id not in outcomes]
            if not todo:
                return True
            payloads: list[st.UploadFile] = [s.payload for s in todo]
            inputs = [{"input": {"clipId": self._id(s.target.parent), "dataType": p.data_type, "crc32c": p.crc32c,
                                 "filename": p.name, "clientId": p.client_id}}
                      for s, p in zip(todo, payloads, strict=True)]
            intents = self.journal.record_intents([(i["input"]["clipId"], key(p.name), p.crc32c, p.size, self.run_id)
                                                   for i, p in zip(inputs, payloads, strict=True)])
            data, errors = self.client.call_aliased(queries.create_files(len(todo)), queries.batch_variables(inputs),
                                                    retry=False)
            answered = []
            for i, (step, payload) in enumerate(zip(todo, payloads, strict=True)):
                if data.get(f"a{i}"):
                    created[step.id] = data[f"a{i}"]
                    answered.append((intents[i], data[f"a{i}"]["data"]["id"], payload.crc32c, payload.size,
                                     str(step.target)))
                else:
                    outcomes[step.id] = Outcome(errors.get(f"a{i}", "not created"))
            self.journal.record_created(answered)
            return True

        reconcile(self.client, create, find)
        assert self._uploads is not None
        uploads = {s.id: self._uploads.submit(self._put, s, created[s.id], orphans) for s in pending if s.id in created}
        wait(uploads.values())  # woken once for the batch, not once per upload
        stored = []
        for step_id, future in uploads.items():
            try:
                outcomes[step_id] = Outcome(bytes=future.result())
                stored.append(created[step_id]["data"]["id"])
            except (RemoteError, OSError, Interrupted) as exc:  # the others' outcomes stand (uploaded or not)
                outcomes[step_id] = Outcome(str(exc) or type(exc).__name__)
        self.journal.record_stored(stored)
        return outcomes

    def _put(self, step: Step, created: dict, orphans: set[tuple[str, str, str]]) -> int:
        """Upload one file to its new record (the batch records that storage has its bytes). Then, best effort,
        remove the records this run's unanswered creates left: a failure there never fails the upload (the next plan
        lists what is left and removes it)."""
        payload: st.UploadFile = step.payload
        data_id = created["data"]["id"]
        self.client.upload(created["uploadUrl"], payload.source, payload.size, payload.crc32c,
                           self.on_upload(payload.name, payload.size))
        self._set_id(step.target, data_id)
        trial_id = self._id(step.target.parent)
        for orphan in sorted(o[2] for o in orphans if o[:2] == (trial_id, key(payload.name)) and o[2] != data_id):
            try:
                self._delete_data(orphan)
            except RemoteError:
                pass
        return payload.size

    def _delete_data(self, data_id: str) -> None:
        """Delete a record; one that is gone already counts as deleted (the delete is idempotent)."""
        try:
            self.client.call(queries.DELETE_DATA, {"id": data_id})
        except Rejected as exc:
            if "does not exist" not in str(exc):
                raise

    def _remove_record(self, steps: list[Step]) -> None:
        [step] = steps
        payload: st.RemoveRecord = step.payload
        self._delete_data(payload.data_id)

    # -- interactive reports ---------------------------------------------------------------------------------
    def _create_reports(self, steps: list[Step]) -> None:
        """Ask Moveshelf for the session's automatic interactive reports. Not idempotent: after an ambiguous
        failure, a report the session did not have before counts as the answer. Answered, the session's reports
        are no longer owed (see `Journal.owe_reports`)."""
        [step] = steps
        payload: st.CreateReports = step.payload
        session_id = self._id(step.target)
        before = self._report_ids(session_id)

        def create() -> bool:
            answer = self.client.call(queries.CREATE_REPORTS, {"sessionId": session_id, "normId": payload.norm_id},
                                      retry=False)["createAutomaticInteractiveReports"]
            if not (answer and answer.get("ok")):
                raise Rejected("Moveshelf did not make the automatic interactive reports (ok: false)")
            return True

        reconcile(self.client, create, lambda: True if self._report_ids(session_id) - before else None)
        self.journal.reports_made(str(step.target))

    def _report_ids(self, session_id: str) -> set[str]:
        return {r["id"] for r in self.client.call(queries.REPORTS_OF_SESSION, {"id": session_id})["node"]["reports"]}

    HANDLERS: ClassVar[dict[Action, Callable[[Executor, list[Step]], dict[str, Outcome] | None]]] = {
        Action.CREATE_SUBJECT: _create_subjects,
        Action.UPDATE_SUBJECT_METADATA: _update_subjects,
        Action.CREATE_SESSION: _create_sessions,
        Action.UPDATE_SESSION_METADATA: _update_sessions,
        Action.CREATE_TRIAL: _create_trials,
        Action.UPLOAD_FILE: _upload_files,
        Action.REPLACE_FILE: _upload_files,
        Action.REMOVE_RECORD: _remove_record,
        Action.UPDATE_TRIAL_METADATA: _update_trials,
        Action.CREATE_REPORTS: _create_reports,
    }

