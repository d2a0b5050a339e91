"""The executor: applies a plan's steps in dependency order, concurrently, never duplicating.

A step is submitted when the steps it depends on are applied; the descendants of a
failed step are skipped. New trials of one session go out in one `createClips`. Creates
are never retried blindly: after an ambiguous failure the parent is read again and what
exists is adopted. The executor returns results; it does not raise for a failed step.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import queries
from .client import Client, Interrupted, Rejected, TransientError
from .errors import FatalError
from .journal import Journal
from .model import COMPLETE, key
from .plan import Action, Plan, Step, trial_options
from .remote import Project

T = TypeVar("T")
BATCH_SIZE = 50
BATCHED = {Action.CREATE_TRIAL: "trials", Action.UPLOAD_FILE: "files", Action.REPLACE_FILE: "files",
           Action.UPDATE_TRIAL_METADATA: "options"}  # steps of one kind and session that share a request


class Status(enum.Enum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one step of a batch went: no error means applied."""

    error: str | None = None
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class StepResult:
    step: Step
    status: Status
    error: str | None = None
    bytes: int = 0
    seconds: float = 0.0


def session_of(target: str) -> str:
    """The session a trial's or a file's target lies in."""
    return "/" + "/".join(target.strip("/").split("/")[:2])


def parent(target: str) -> str:
    """The target of a step's parent object; a trial's parent is its session (the condition is a path)."""
    segments = target.strip("/").split("/")
    return "/" + "/".join(segments[:2] if len(segments) == 4 else segments[:-1])


class Ready:
    """Steps whose dependencies are done, grouped by what can share one request, oldest group first."""

    def __init__(self) -> None:
        self._groups: OrderedDict[tuple[str, str], list[Step]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._groups)

    def add(self, step: Step) -> None:
        kind = BATCHED.get(step.action)
        group = (kind, session_of(step.target)) if kind else ("single", step.id)
        self._groups.setdefault(group, []).append(step)

    def take(self) -> list[Step]:
        """The oldest group, up to BATCH_SIZE steps of it."""
        group, steps = next(iter(self._groups.items()))
        if len(steps) > BATCH_SIZE:
            self._groups[group] = steps[BATCH_SIZE:]
        else:
            del self._groups[group]
        return steps[:BATCH_SIZE]


class Executor:
    def __init__(self, plan: Plan, client: Client, project: Project, journal: Journal, run_id: str, jobs: int = 8,
                 on_bytes: Callable[[int], None] = lambda n: None,
                 on_result: Callable[[StepResult], None] = lambda r: None) -> None:
        self.plan = plan
        self.client = client
        self.project = project
        self.journal = journal
        self.run_id = run_id
        self.jobs = max(1, jobs)
        self.on_bytes = on_bytes
        self.on_result = on_result
        self.ids = dict(plan.ids)
        self._ids_lock = threading.Lock()
        self.fatal: FatalError | None = None

    # -- ids ------------------------------------------------------------------------------------------
    def _id(self, target: str) -> str:
        with self._ids_lock:
            return self.ids[target]

    def _set_id(self, target: str, value: str) -> None:
        with self._ids_lock:
            self.ids[target] = value

    # -- scheduling ----------------------------------------------------------------------------------------
    def run(self) -> list[StepResult]:
        """Apply every step it can; Ctrl-C stops starting new work and waits for the work under way."""
        steps = {s.id: s for s in self.plan.steps}
        waiting = {s.id: {d for d in s.depends_on if d in steps} for s in self.plan.steps}
        dependents: dict[str, list[str]] = defaultdict(list)
        for step_id, deps in waiting.items():
            for dep in deps:
                dependents[dep].append(step_id)
        ready = Ready()
        for step in self.plan.steps:
            if not waiting[step.id]:
                ready.add(step)
        results: dict[str, StepResult] = {}
        running: dict[Future, list[Step]] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="apply") as pool, \
                ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="upload") as self._uploads:
            while ready or running:
                try:
                    while ready and len(running) < self.jobs and not self.client.stop.is_set():
                        batch = ready.take()
                        running[pool.submit(self._run_batch, batch)] = batch
                    if not running:
                        break
                    done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
                        for result in future.result():
                            self._finish(result, results, steps, waiting, dependents, ready)
                except KeyboardInterrupt:
                    self.client.stop.set()
        for step in self.plan.steps:
            if step.id not in results:
                results[step.id] = StepResult(step, Status.NOT_ATTEMPTED)
                self.on_result(results[step.id])
        return [results[s.id] for s in self.plan.steps]

    def _finish(self, result: StepResult, results: dict[str, StepResult], steps: dict[str, Step],
                waiting: dict[str, set[str]], dependents: dict[str, list[str]], ready: Ready) -> None:
        results[result.step.id] = result
        self.journal.record_outcome(self.run_id, result.step.id, result.status.value, result.error)
        self.on_result(result)
        if result.status is Status.APPLIED:
            for child in dependents[result.step.id]:
                waiting[child].discard(result.step.id)
                if not waiting[child]:
                    ready.add(steps[child])
            return
        blocked = deque(dependents[result.step.id])
        status = Status.NOT_ATTEMPTED if result.status is Status.NOT_ATTEMPTED else Status.SKIPPED
        while blocked:
            child = blocked.popleft()
            if child not in results:
                results[child] = StepResult(steps[child], status, f"depends on {result.step.id}, which "
                                            f"was {result.status.value}")
                self.on_result(results[child])
                blocked.extend(dependents[child])

    def _run_batch(self, batch: list[Step]) -> list[StepResult]:
        """Apply a batch; every step gets a result, whatever happens."""
        started = time.monotonic()
        if self.fatal or self.client.stop.is_set():
            return [StepResult(s, Status.NOT_ATTEMPTED) for s in batch]
        try:
            outcomes = self._dispatch(batch)
        except Interrupted:
            outcomes = dict.fromkeys((s.id for s in batch), Outcome("interrupted"))
        except FatalError as exc:
            self.fatal = exc
            self.client.stop.set()
            outcomes = dict.fromkeys((s.id for s in batch), Outcome(str(exc)))
        except (Rejected, TransientError, OSError) as exc:
            outcomes = dict.fromkeys((s.id for s in batch), Outcome(str(exc)))
        except Exception as exc:  # noqa: BLE001 - one step's bug must not lose the outcomes of the others
            outcomes = dict.fromkeys((s.id for s in batch), Outcome(f"unexpected {type(exc).__name__}: {exc}"))
        seconds = round(time.monotonic() - started, 3)
        return [StepResult(s, Status.FAILED if o.error else Status.APPLIED, o.error, o.bytes, seconds)
                for s, o in ((s, outcomes.get(s.id, Outcome())) for s in batch)]

    # -- creates with reconciliation ------------------------------------------------------------------------
    def _create_once(self, create: Callable[[], T], find: Callable[[], T | None]) -> T:
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

        return self.client.retrying(attempt)

    def _create_subject(self, step: Step) -> None:
        name, mrn = step.detail["name"], step.detail.get("mrn")

        def find() -> str | None:
            listing = self.client.call(queries.SUBJECT_LIST, {"projectId": self.project.id})["node"]["patientsList"]
            return next((p["id"] for p in listing if key(p["name"]) == key(name)
                         or (mrn and p.get("externalId") == mrn)), None)

        self._set_id(step.target, self._create_once(lambda: self.client.call(
            queries.CREATE_SUBJECT, {"projectId": self.project.name, "name": name}, retry=False
        )["createPatient"]["patient"]["id"], find))

    def _create_session(self, step: Step) -> None:
        subject_id, path = self._id(parent(step.target)), step.detail["project_path"]

        def find() -> str | None:
            sessions = self.client.call(queries.SESSIONS_OF_SUBJECT, {"id": subject_id})["node"]["sessions"]
            return next((s["id"] for s in sessions if key(s["projectPath"]) == key(path)), None)

        self._set_id(step.target, self._create_once(lambda: self.client.call(queries.CREATE_SESSION, {
            "projectId": self.project.name, "projectPath": path, "patientId": subject_id,
            "sessionDate": step.detail.get("date")}, retry=False)["createSession"]["session"]["id"], find))

    def _create_trials(self, steps: list[Step]) -> None:
        session_id = self._id(parent(steps[0].target))
        pending = {(key(s.detail["project_path"]), key(s.detail["title"])): s for s in steps}

        def adopt_existing() -> None:
            for clip in self.client.call(queries.CLIPS_OF_SESSION, {"id": session_id})["node"]["clips"]:
                step = pending.pop((key(clip["projectPath"] or ""), key(clip["title"] or "")), None)
                if step:
                    self._set_id(step.target, clip["id"])

        def create() -> bool:
            clips = [{"clientId": s.target, "metadata": {"title": s.detail["title"],
                                                         "projectPath": s.detail["project_path"]}}
                     for s in pending.values()]
            answer = self.client.call(queries.CREATE_TRIALS, {"input": {"project": self.project.name, "clips": clips}},
                                      retry=False)
            by_client = {s.target: s for s in pending.values()}
            for created in answer["createClips"]["response"]:
                self._set_id(by_client[created["clientId"]].target, created["mocapClip"]["id"])
            pending.clear()
            return True

        def find() -> bool | None:
            adopt_existing()
            return True if not pending else None

        self._create_once(create, find)

    # -- files ------------------------------------------------------------------------------------------------
    def _upload_files(self, steps: list[Step]) -> dict[str, Outcome]:
        """Create the records of a session's new files in one request, then upload them side by side."""
        outcomes: dict[str, Outcome] = {}
        pending = []
        for step in steps:
            if Path(step.detail["source"]).stat().st_size != step.detail["size"]:
                outcomes[step.id] = Outcome(f"{step.detail['source']} changed since it was planned; plan again")
            else:
                pending.append(step)
        created: dict[str, dict] = {}
        orphans: set[tuple[str, str, str]] = set()  # (trial id, file name, data id) of unanswered creates
        session_id = self._id(session_of(steps[0].target))

        def find() -> None:
            wanted = {(self._id(parent(s.target)), key(s.detail["name"])) for s in pending}
            replaced = {r for s in pending for r in s.detail.get("replaces", [])}
            for clip in self.client.call(queries.FILES_OF_SESSION, {"id": session_id})["node"]["clips"]:
                orphans.update((clip["id"], key(d["originalFileName"] or ""), d["id"]) for d in clip["additionalData"]
                               if (clip["id"], key(d["originalFileName"] or "")) in wanted
                               and d["uploadStatus"] != COMPLETE and d["id"] not in replaced)

        def create() -> bool:
            todo = [s for s in pending if s.id not in created and s.id not in outcomes]
            if not todo:
                return True
            inputs = {f"a{i}": {"clipId": self._id(parent(s.target)), "dataType": s.detail["data_type"],
                                "crc32c": s.detail["crc32c"], "filename": s.detail["name"],
                                "clientId": s.detail["client_id"]} for i, s in enumerate(todo)}
            data, errors = self.client.call_aliased(queries.create_files(len(todo)), inputs, retry=False)
            for i, step in enumerate(todo):
                if data.get(f"a{i}"):
                    created[step.id] = data[f"a{i}"]
                    self.journal.record_content(data[f"a{i}"]["data"]["id"], step.detail["crc32c"],
                                                step.detail["size"], step.target)
                else:
                    outcomes[step.id] = Outcome(errors.get(f"a{i}", "not created"))
            return True

        self._create_once(create, find)
        uploads = {s.id: self._uploads.submit(self._put, s, created[s.id], orphans) for s in pending if s.id in created}
        for step_id, future in uploads.items():
            try:
                outcomes[step_id] = Outcome(bytes=future.result())
            except (Rejected, TransientError, OSError, Interrupted) as exc:
                outcomes[step_id] = Outcome(str(exc) or type(exc).__name__)
        sent = {created[i]["data"]["id"]: i for i, o in outcomes.items() if i in created and o.error is None}
        for data_id in self._not_complete(session_id, set(sent)):
            outcomes[sent[data_id]] = Outcome("uploaded, but the server has not marked the file Complete")
        return outcomes

    def _not_complete(self, session_id: str, data_ids: set[str]) -> set[str]:
        """Which uploaded records the server has still not marked Complete after the retries (usually none)."""
        missing = set(data_ids)

        def check() -> None:
            clips = self.client.call(queries.FILES_OF_SESSION, {"id": session_id})["node"]["clips"]
            missing.difference_update(d["id"] for c in clips for d in c["additionalData"]
                                      if d["uploadStatus"] == COMPLETE)
            if missing:
                raise TransientError(f"{len(missing)} uploaded file(s) not Complete yet")

        if missing:
            try:
                self.client.retrying(check)
            except TransientError:
                pass
        return missing

    def _put(self, step: Step, created: dict, orphans: set[tuple[str, str, str]]) -> int:
        """Upload one file to its new record; then remove the records it replaces."""
        detail, data_id = step.detail, created["data"]["id"]
        self.client.upload(created["uploadUrl"], Path(detail["source"]), detail["size"], detail["crc32c"],
                           self.on_bytes)
        self._set_id(step.target, data_id)
        trial_id = self._id(parent(step.target))
        stale = set(detail.get("replaces", [])) | {o[2] for o in orphans if o[:2] == (trial_id, key(detail["name"]))}
        for old in sorted(stale - {data_id}):
            self._delete_data(old)
        return int(detail["size"])

    def _delete_data(self, data_id: str) -> None:
        try:
            self.client.call(queries.DELETE_DATA, {"id": data_id})
        except Rejected as exc:
            if "does not exist" not in str(exc):
                raise

    def _update_trials(self, steps: list[Step]) -> dict[str, Outcome]:
        """Set title and trial template of a session's trials in one request."""
        inputs = {}
        for i, step in enumerate(steps):
            detail = step.detail
            with self._ids_lock:
                file_ids = [self.ids[t] for t in detail["side_files"] if t in self.ids]
            options = trial_options(detail.get("base_options"), detail.get("side"),
                                    tuple(detail.get("representative", [])), file_ids)
            inputs[f"a{i}"] = {"id": self._id(step.target), "metadata": {"title": detail["title"]},
                               "customOptions": json.dumps(options)}
        _, errors = self.client.call_aliased(queries.update_trials(len(steps)), inputs)
        return {s.id: Outcome(errors.get(f"a{i}")) for i, s in enumerate(steps)}

    # -- the step table -----------------------------------------------------------------------------------------
    def _dispatch(self, batch: list[Step]) -> dict[str, Outcome]:
        """Carry out a batch of steps of one kind; each step's outcome."""
        step, detail = batch[0], batch[0].detail
        match step.action:
            case Action.CREATE_SUBJECT:
                self._create_subject(step)
            case Action.UPDATE_SUBJECT_METADATA:
                self.client.call(queries.UPDATE_SUBJECT, {"patientId": self._id(step.target),
                                                          "metadata": json.dumps(detail["metadata"])})
            case Action.CREATE_SESSION:
                self._create_session(step)
            case Action.UPDATE_SESSION_METADATA:
                self.client.call(queries.UPDATE_SESSION, {
                    "sessionId": self._id(step.target), "sessionName": detail["name"],
                    "sessionMetadata": json.dumps(detail["stored"]), "sessionDate": detail.get("date")})
            case Action.CREATE_TRIAL:
                self._create_trials(batch)
            case Action.UPLOAD_FILE | Action.REPLACE_FILE:
                return self._upload_files(batch)
            case Action.UPDATE_TRIAL_METADATA:
                return self._update_trials(batch)
        return {s.id: Outcome() for s in batch}
