"""The executor: one handler per plan action, run by the generic scheduler in dependency order.

New trials of one session go out in one `createClips`, a session's file records and trial
options in one aliased request each. Creates are never retried blindly: after an ambiguous
failure the parent is read again and what exists is adopted (`reconcile`). The executor
returns results; it does not raise for a failed step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, TypeVar

from . import queries
from . import steps as st
from .address import Address
from .client import Client
from .errors import FatalError, Interrupted, Rejected, RemoteError, TransientError
from .journal import Journal
from .model import COMPLETE, key, path_key, same_path
from .planner import trial_options
from .remote import Project
from .scheduler import Outcome, Result, Scheduler
from .steps import Action, Plan, Step

T = TypeVar("T")
BATCH_SIZE = 50
BATCHED = {Action.CREATE_TRIAL: "trials", Action.UPLOAD_FILE: "files", Action.REPLACE_FILE: "files",
           Action.UPDATE_TRIAL_METADATA: "options"}  # steps of one kind and session that share a request
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


def group_of(step: Step) -> Hashable | None:
    """Steps of one batched kind in one session share a request."""
    kind = BATCHED.get(step.action)
    return (kind, step.target.session_address) if kind else None


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
                                               group_of=group_of, cancel=self.client.cancel, fatal=(FatalError,),
                                               on_result=self.on_result)
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="upload") as self._uploads:
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
    def _create_subject(self, steps: list[Step]) -> None:
        [step] = steps
        payload: st.CreateSubject = step.payload

        def find() -> str | None:
            listing = self.client.call(queries.SUBJECT_LIST, {"projectId": self.project.id})["node"]["patientsList"]
            return next((p["id"] for p in listing if key(p["name"]) == key(payload.name)
                         or (payload.mrn and p.get("externalId") == payload.mrn)), None)

        self._set_id(step.target, reconcile(self.client, lambda: self.client.call(
            queries.CREATE_SUBJECT, {"projectId": self.project.name, "name": payload.name}, retry=False
        )["createPatient"]["patient"]["id"], find))

    def _update_subject(self, steps: list[Step]) -> None:
        """Send the whole merged metadata, then remember each field it changed, as this tool's writing."""
        [step] = steps
        payload: st.UpdateSubjectMetadata = step.payload
        subject_id = self._id(step.target)
        self.client.call(queries.UPDATE_SUBJECT, {"patientId": subject_id, "metadata": json.dumps(payload.metadata)})
        self.journal.record_written(subject_id, {name: c["after"] for name, c in payload.changes.items()})

    def _create_session(self, steps: list[Step]) -> None:
        [step] = steps
        payload: st.CreateSession = step.payload
        subject_id = self._id(step.target.parent)

        def find() -> str | None:
            sessions = self.client.call(queries.SESSIONS_OF_SUBJECT, {"id": subject_id})["node"]["sessions"]
            return next((s["id"] for s in sessions if same_path(s["projectPath"], payload.project_path)), None)

        self._set_id(step.target, reconcile(self.client, lambda: self.client.call(queries.CREATE_SESSION, {
            "projectId": self.project.name, "projectPath": payload.project_path, "patientId": subject_id,
            "sessionDate": payload.date}, retry=False)["createSession"]["session"]["id"], find))

    def _update_session(self, steps: list[Step]) -> None:
        [step] = steps
        payload: st.UpdateSessionMetadata = step.payload
        session_id = self._id(step.target)
        self.client.call(queries.UPDATE_SESSION, {
            "sessionId": session_id, "sessionName": payload.name,
            "sessionMetadata": json.dumps(payload.stored), "sessionDate": payload.date})
        self.journal.record_written(session_id, {name: c["after"] for name, c in payload.changes.items()})

    # -- trials ---------------------------------------------------------------------------------------------
    def _create_trials(self, steps: list[Step]) -> None:
        session_id = self._id(steps[0].target.session_address)
        pending = {(path_key(s.payload.project_path), key(s.payload.title)): s for s in steps}

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
            for clip in self.client.call(queries.CLIPS_OF_SESSION, {"id": session_id})["node"]["clips"]:
                step = pending.pop((path_key(clip["projectPath"] or ""), key(clip["title"] or "")), None)
                if step:
                    self._set_id(step.target, clip["id"])
            return True if not pending else None

        reconcile(self.client, create, find)

    def _update_trials(self, steps: list[Step]) -> dict[str, Outcome]:
        """Set title and trial template of a session's trials in one request."""
        inputs = {}
        for i, step in enumerate(steps):
            payload: st.UpdateTrialMetadata = step.payload
            with self._ids_lock:
                file_ids = [self.ids[t] for t in payload.side_files if t in self.ids]
            options = trial_options(payload.base_options, payload.side, payload.representative, file_ids)
            inputs[f"a{i}"] = {"id": self._id(step.target), "metadata": {"title": payload.title},
                               "customOptions": json.dumps(options)}
        _, errors = self.client.call_aliased(queries.update_trials(len(steps)), inputs)
        return {s.id: Outcome(errors.get(f"a{i}")) for i, s in enumerate(steps)}

    # -- files ------------------------------------------------------------------------------------------------
    def _upload_files(self, steps: list[Step]) -> dict[str, Outcome]:
        """Create the records of a session's new files in one request, then upload them side by side."""
        outcomes: dict[str, Outcome] = {}
        pending = []
        for step in steps:
            payload: st.UploadFile = step.payload
            if Path(payload.source).stat().st_size != payload.size:
                outcomes[step.id] = Outcome(f"{payload.source} changed since it was planned; plan again")
            else:
                pending.append(step)
        created: dict[str, dict] = {}
        orphans: set[tuple[str, str, str]] = set()  # (trial id, file name, data id) of unanswered creates
        session_id = self._id(steps[0].target.session_address)

        def find() -> None:
            wanted = {(self._id(s.target.parent), key(s.payload.name)) for s in pending}
            found = [(clip["id"], key(d["originalFileName"] or ""), d["id"])
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
            inputs = {f"a{i}": {"clipId": self._id(s.target.parent), "dataType": p.data_type, "crc32c": p.crc32c,
                                "filename": p.name, "clientId": p.client_id}
                      for i, (s, p) in enumerate(zip(todo, payloads, strict=True))}
            intents = [self.journal.record_intent(inputs[f"a{i}"]["clipId"], key(p.name), p.crc32c, p.size, self.run_id)
                       for i, p in enumerate(payloads)]
            data, errors = self.client.call_aliased(queries.create_files(len(todo)), inputs, retry=False)
            for i, (step, payload) in enumerate(zip(todo, payloads, strict=True)):
                if data.get(f"a{i}"):
                    created[step.id] = data[f"a{i}"]
                    self.journal.record_created(intents[i], data[f"a{i}"]["data"]["id"], payload.crc32c,
                                                payload.size, str(step.target))
                else:
                    outcomes[step.id] = Outcome(errors.get(f"a{i}", "not created"))
            return True

        reconcile(self.client, create, find)
        assert self._uploads is not None
        uploads = {s.id: self._uploads.submit(self._put, s, created[s.id], orphans) for s in pending if s.id in created}
        for step_id, future in uploads.items():
            try:
                outcomes[step_id] = Outcome(bytes=future.result())
            except (RemoteError, OSError, Interrupted) as exc:  # the others' outcomes stand (uploaded or not)
                outcomes[step_id] = Outcome(str(exc) or type(exc).__name__)
        return outcomes

    def _put(self, step: Step, created: dict, orphans: set[tuple[str, str, str]]) -> int:
        """Upload one file to its new record, and record that storage has its bytes. Then, best effort, remove the
        records this run's unanswered creates left: a failure there never fails the upload (the next plan lists
        what is left and removes it)."""
        payload: st.UploadFile = step.payload
        data_id = created["data"]["id"]
        self.client.upload(created["uploadUrl"], Path(payload.source), payload.size, payload.crc32c,
                           self.on_upload(payload.name, payload.size))
        self.journal.record_stored(data_id)
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
        Action.CREATE_SUBJECT: _create_subject,
        Action.UPDATE_SUBJECT_METADATA: _update_subject,
        Action.CREATE_SESSION: _create_session,
        Action.UPDATE_SESSION_METADATA: _update_session,
        Action.CREATE_TRIAL: _create_trials,
        Action.UPLOAD_FILE: _upload_files,
        Action.REPLACE_FILE: _upload_files,
        Action.REMOVE_RECORD: _remove_record,
        Action.UPDATE_TRIAL_METADATA: _update_trials,
        Action.CREATE_REPORTS: _create_reports,
    }

