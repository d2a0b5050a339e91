"""The planner: `diff(desired, actual, facts) -> Plan`, a pure function, and the plan as data.

The diff walks the desired and the actual tree in step, pairing nodes by one normalised
key (`model.key`). Each pair has three outcomes: only local (create or upload), both
(compare: update, replace or nothing), only remote (left alone: nothing on the server
is deleted except a record this tool replaces). Duplicate keys on the server are
conflicts, never guesses.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import metadata as md
from .model import COMPLETE, DataFile, LocalTree, Session, Subject, Tree, Trial, key, session_path, trial_path

FORMAT = "moveshelf-import/plan"
VERSION = 1
Facts = dict[str, tuple[str, int]]  # data id -> (crc32c, size) of what the server holds


class Action(enum.Enum):
    CREATE_SUBJECT = "create_subject"
    UPDATE_SUBJECT_METADATA = "update_subject_metadata"
    CREATE_SESSION = "create_session"
    UPDATE_SESSION_METADATA = "update_session_metadata"
    CREATE_TRIAL = "create_trial"
    UPLOAD_FILE = "upload_file"
    REPLACE_FILE = "replace_file"
    UPDATE_TRIAL_METADATA = "update_trial_metadata"

    @property
    def sigil(self) -> str:
        return {"create": "+", "upload": "+", "update": "~", "replace": "-/+"}[self.value.split("_")[0]]


class ConflictPolicy(enum.Enum):
    SKIP = "skip"
    REPLACE = "replace"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Step:
    """One change. `detail` is what the executor needs; `reason` is for display only."""

    id: str
    action: Action
    target: str
    depends_on: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    project: str
    steps: tuple[Step, ...] = ()
    ids: dict[str, str] = field(default_factory=dict)  # target -> server id of what already exists
    unmapped: tuple[dict[str, str], ...] = ()
    conflicts: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # what was scanned, so a saved plan can be checked against the same folders

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(step.action.value for step in self.steps)
        upload = sum(s.detail.get("size", 0) for s in self.steps
                     if s.action in (Action.UPLOAD_FILE, Action.REPLACE_FILE))
        return {"changes": len(self.steps), **{a.value: counts.get(a.value, 0) for a in Action},
                "bytes_to_upload": upload, "unmapped": len(self.unmapped), "conflicts": len(self.conflicts)}


# -- pairing ---------------------------------------------------------------------------------------------
class SubjectIndex:
    """The server's subjects by MRN and by name, so pairing thousands of folders stays linear."""

    def __init__(self, subjects: tuple[Subject, ...]) -> None:
        self.by_mrn: dict[str, list[Subject]] = {}
        self.by_name: dict[str, list[Subject]] = {}
        for subject in subjects:
            if subject.mrn:
                self.by_mrn.setdefault(subject.mrn, []).append(subject)
            self.by_name.setdefault(key(subject.name), []).append(subject)

    def match(self, subject: Subject) -> tuple[Subject | None, str | None]:
        """The server subject for a folder: by MRN first, then by exact name; (None, reason) on ambiguity."""
        by_mrn = self.by_mrn.get(subject.mrn, []) if subject.mrn else []
        if len(by_mrn) > 1:
            return None, f"{len(by_mrn)} subjects on the server have MRN {subject.mrn!r}"
        if by_mrn:
            return by_mrn[0], None
        by_name = self.by_name.get(key(subject.name), [])
        if len(by_name) > 1:
            return None, f"{len(by_name)} subjects on the server are named {subject.name!r}"
        if by_name and subject.mrn and by_name[0].mrn:
            return None, (f"the server's subject {subject.name!r} has MRN {by_name[0].mrn!r}, "
                          f"the folder says {subject.mrn!r}")
        return (by_name[0] if by_name else None), None


def _unique(items: list[Any], what: str) -> tuple[Any | None, str | None]:
    if len(items) > 1:
        return None, f"{len(items)} {what} on the server; remove the duplicates in Moveshelf"
    return (items[0] if items else None), None


def trial_options(base: dict[str, Any] | None, side: str | None, representative: tuple[str, ...],
                  file_ids: list[str]) -> dict[str, Any]:
    """A trial's customOptions: the server's, with the trialTemplate entries the folder defines."""
    options = copy.deepcopy(base or {})
    template = options.setdefault("trialTemplate", {})
    if side:
        template["sideAdditionalData"] = dict.fromkeys(file_ids, side)
    if representative:
        template["representativeTrial"] = dict.fromkeys(representative, True)
    return options


# -- the diff ---------------------------------------------------------------------------------------------------
class _Planner:
    """Accumulates steps while walking the two trees; used once per `diff` call."""

    def __init__(self, facts: Facts, policy: ConflictPolicy) -> None:
        self.facts = facts
        self.policy = policy
        self.steps: list[Step] = []
        self.ids: dict[str, str] = {}
        self.conflicts: list[dict[str, Any]] = []
        self.warnings: list[str] = []

    def add(self, action: Action, target: str, after: list[str | None], reason: str = "", **detail: Any) -> str:
        step_id = f"{action.value}:{target}"
        self.steps.append(Step(step_id, action, target, tuple(d for d in after if d), detail, reason))
        return step_id

    def conflict(self, target: str, reason: str, **detail: Any) -> None:
        self.conflicts.append({"target": target, "reason": reason, **detail})

    def subject(self, subject: Subject, server: SubjectIndex) -> None:
        target = f"/{subject.name}"
        remote, problem = server.match(subject)
        if problem:
            return self.conflict(target, problem + "; the subject is skipped")
        created = None
        if remote is None:
            created = self.add(Action.CREATE_SUBJECT, target, [], name=subject.name, mrn=subject.mrn)
            server_name = subject.name
        else:
            self.ids[target] = remote.remote_id
            server_name = remote.name
            if key(remote.name) != key(subject.name):
                self.warnings.append(f"{target}: matched by MRN {subject.mrn!r} to the server's subject "
                                     f"{remote.name!r}, whose name is kept")
        change = md.subject_change(remote.metadata if remote else None, subject.metadata)
        self.metadata_step(Action.UPDATE_SUBJECT_METADATA, target, created, change, metadata=change.merged)
        remote_sessions = remote.sessions if remote else ()
        for session in subject.sessions:
            self.session(session, target, server_name, remote_sessions, created)

    def metadata_step(self, action: Action, target: str, after: str | None, change: md.MetadataChange,
                      extra_change: bool = False, **detail: Any) -> None:
        if change.changed or extra_change:
            self.add(action, target, [after], changes=change.changes, kept=change.kept, **detail)
        elif change.kept:
            self.warnings.append(f"{target}: the server keeps its own value for {', '.join(change.kept)}")

    def session(self, session: Session, parent: str, server_name: str, remote_sessions: tuple[Session, ...],
                parent_step: str | None) -> None:
        target = f"{parent}/{session.name}"
        remote, problem = _unique([r for r in remote_sessions if key(r.name) == key(session.name)],
                                  f"sessions named {session.name!r}")
        if problem:
            return self.conflict(target, problem)
        path = remote.remote_path if remote else session_path(server_name, session.name)
        created = None
        set_date = None
        if remote is None:
            created = self.add(Action.CREATE_SESSION, target, [parent_step], name=session.name, project_path=path,
                               date=session.date)
        else:
            self.ids[target] = remote.remote_id
            if session.date and not remote.date:
                set_date = session.date
            elif session.date and remote.date != session.date:
                self.warnings.append(f"{target}: the server's date {remote.date} is kept (the folder says "
                                     f"{session.date})")
        change = md.session_change(remote.metadata if remote else None, session.metadata)
        stored = {**((remote.stored_metadata or {}) if remote else {}), "metadata": change.merged}
        self.metadata_step(Action.UPDATE_SESSION_METADATA, target, created, change, extra_change=bool(set_date),
                           name=remote.name if remote else session.name, stored=stored, date=set_date)
        remote_trials = remote.trials if remote else ()
        for trial in session.trials:
            self.trial(trial, target, path, remote_trials, created)

    def trial(self, trial: Trial, parent: str, session_project_path: str, remote_trials: tuple[Trial, ...],
              parent_step: str | None) -> None:
        target = f"{parent}/{trial.condition}/{trial.name}"
        remote, problem = _unique([r for r in remote_trials if key(r.condition) == key(trial.condition)
                                   and key(r.name) == key(trial.name)], f"trials {trial.condition}/{trial.name}")
        if problem:
            return self.conflict(target, problem)
        created = None
        if remote is None:
            created = self.add(Action.CREATE_TRIAL, target, [parent_step], title=trial.name, condition=trial.condition,
                               project_path=trial_path(session_project_path, trial.condition))
        else:
            self.ids[target] = remote.remote_id
        file_steps = [self.file(f, target, remote.files if remote else (), created) for f in trial.files]
        if not (trial.side or trial.representative):
            return
        file_targets = [f"{target}/{f.name}" for f in trial.files]
        base = remote.custom_options if remote else None
        if not any(file_steps) and remote is not None and all(t in self.ids for t in file_targets):
            wanted = trial_options(base, trial.side, trial.representative, [self.ids[t] for t in file_targets])
            if wanted == (base or {}):
                return
        self.add(Action.UPDATE_TRIAL_METADATA, target, [created, *file_steps], title=trial.name, base_options=base,
                 side=trial.side, representative=list(trial.representative), side_files=file_targets)

    def file(self, local: DataFile, parent: str, remote_files: tuple[DataFile, ...], parent_step: str | None
             ) -> str | None:
        target = f"{parent}/{local.name}"
        records = [r for r in remote_files if key(r.name) == key(local.name)]
        complete = [r for r in records if r.upload_status == COMPLETE]
        upload = {"source": local.source, "name": local.name, "data_type": local.data_type, "size": local.size,
                  "crc32c": local.crc32c, "client_id": local.client_id}
        if not records:
            return self.add(Action.UPLOAD_FILE, target, [parent_step], **upload)
        same = [r for r in complete if self.facts.get(r.remote_id) == (local.crc32c, local.size)]
        if same:
            self.ids[target] = same[0].remote_id
            return None
        stale = [r.remote_id for r in records]
        if not complete:
            return self.add(Action.REPLACE_FILE, target, [parent_step], f"{len(stale)} unfinished upload(s) on the "
                            "server", replaces=stale, **upload)
        known = [r for r in complete if r.remote_id in self.facts]
        reason = ("the server's file differs from the local file" if known else
                  "the server's file cannot be compared (no checksum known for it)")
        server = {"data_ids": [r.remote_id for r in complete],
                  "size": self.facts[known[0].remote_id][1] if known else None}
        if self.policy is ConflictPolicy.REPLACE:
            return self.add(Action.REPLACE_FILE, target, [parent_step], reason, replaces=stale, **upload)
        self.ids[target] = complete[0].remote_id
        self.conflict(target, reason, local={"size": local.size, "crc32c": local.crc32c}, server=server)
        return None


def diff(local: LocalTree, actual: Tree, facts: Facts, project: str,
         policy: ConflictPolicy = ConflictPolicy.SKIP) -> Plan:
    """The steps that make the server hold what the folders hold. Pure: no I/O, no clock."""
    planner = _Planner(facts, policy)
    server = SubjectIndex(actual.subjects)
    for subject in local.tree.subjects:
        planner.subject(subject, server)
    return Plan(project=project, steps=tuple(planner.steps), ids=planner.ids,
                unmapped=tuple({"path": u.path, "reason": u.reason} for u in local.unmapped),
                conflicts=tuple(planner.conflicts), warnings=tuple([*local.warnings, *planner.warnings]),
                roots=local.roots, paths=local.paths)


def _same(saved: Step, fresh: Step | None) -> bool:
    return (fresh is not None and fresh.action is saved.action
            and json.dumps(fresh.detail, sort_keys=True) == json.dumps(saved.detail, sort_keys=True))


def approve(saved: Plan, fresh: Plan) -> tuple[Plan, tuple[Step, ...]]:
    """The saved plan's steps that are still exactly what a fresh plan would do, and the stale rest.

    A step is stale when the folders or the server changed what it would do, or when it now
    depends on a change the saved plan did not contain. Fresh changes the saved plan lacks are
    not applied: nobody has seen them.
    """
    current = {s.id: s for s in fresh.steps}
    approved = {s.id: current[s.id] for s in saved.steps if _same(s, current.get(s.id))}
    while blocked := [i for i, s in approved.items() if any(d not in approved for d in s.depends_on)]:
        for step_id in blocked:
            del approved[step_id]
    unseen = [s.target for s in fresh.steps if s.id not in {t.id for t in saved.steps}]
    warnings = [*fresh.warnings, *([f"{len(unseen)} change(s) not in the saved plan are left for the next plan: "
                                    + ", ".join(unseen[:5]) + (" ..." if len(unseen) > 5 else "")] if unseen else [])]
    return (dataclasses.replace(fresh, steps=tuple(approved.values()), warnings=tuple(warnings)),
            tuple(s for s in saved.steps if s.id not in approved))


# -- serialisation --------------------------------------------------------------------------------------------------
def to_json(plan: Plan) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "project": plan.project, "roots": list(plan.roots),
            "paths": list(plan.paths),
            "steps": [{"id": s.id, "action": s.action.value, "target": s.target, "depends_on": list(s.depends_on),
                       "reason": s.reason, "detail": s.detail} for s in plan.steps],
            "ids": plan.ids, "summary": plan.summary, "unmapped": list(plan.unmapped),
            "conflicts": list(plan.conflicts), "warnings": list(plan.warnings)}


def from_json(document: dict[str, Any]) -> Plan:
    """A saved plan, read back; the caller validates it against plan.schema.json first."""
    return Plan(project=document["project"], roots=tuple(document.get("roots", [])),
                paths=tuple(document.get("paths", [])),
                steps=tuple(Step(s["id"], Action(s["action"]), s["target"], tuple(s["depends_on"]),
                                 s.get("detail", {}), s.get("reason", "")) for s in document["steps"]),
                ids=dict(document.get("ids", {})), unmapped=tuple(document.get("unmapped", [])),
                conflicts=tuple(document.get("conflicts", [])), warnings=tuple(document.get("warnings", [])))
