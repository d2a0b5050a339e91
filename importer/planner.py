"""The planner: `diff(desired, actual, facts[, policy, options]) -> Plan`, a pure function.

The diff walks the desired and the actual tree in step, pairing objects at every level by
one rule (`pairing.pair`). Each pair has three outcomes: only local (create or upload),
both (compare: update, replace or nothing), only on the server (listed, left alone:
nothing on the server is deleted except a record this tool replaces). Duplicate keys on
the server are conflicts, never guesses.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from . import metadata as md
from . import render
from .address import Address
from .metadata import MetadataPolicy
from .model import (
    COMPLETE,
    DataFile,
    Facts,
    Fragment,
    LocalTree,
    Norm,
    Session,
    Subject,
    Tree,
    Trial,
    Written,
    key,
    session_path,
    trial_path,
)
from .pairing import FILE_KEYS, SESSION_KEYS, TRIAL_KEYS, match_subjects, pair
from .steps import (
    Action,
    ConflictPolicy,
    CreateReports,
    CreateSession,
    CreateSubject,
    CreateTrial,
    Payload,
    Plan,
    RemoveRecord,
    Step,
    UpdateSessionMetadata,
    UpdateSubjectMetadata,
    UpdateTrialMetadata,
    UploadFile,
    payload_to_json,
    step_id,
)


def trial_options(base: dict[str, Any] | None, side: str | None, representative: tuple[str, ...],
                  file_ids: list[str]) -> dict[str, Any]:
    """A trial's customOptions: the server's, with the trialTemplate entries the folder defines."""
    options = dict(base or {})  # only trialTemplate is changed, so only it and its container are copied
    template = options["trialTemplate"] = dict(options.get("trialTemplate") or {})
    if side:
        template["sideAdditionalData"] = dict.fromkeys(file_ids, side)
    if representative:
        template["representativeTrial"] = dict.fromkeys(representative, True)
    return options


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """What the run asks for beyond the conflict policy; the defaults are the tool's behaviour without options."""

    reports: bool = False  # request automatic interactive reports for each session the plan creates or changes
    norm: Norm | None = None  # the reference data those reports use
    metadata: MetadataPolicy = MetadataPolicy.FILL_EMPTY


# -- the diff ---------------------------------------------------------------------------------------------------
class _Planner:
    """Accumulates steps while walking the two trees; used once per `diff` call."""

    def __init__(self, facts: Facts, policy: ConflictPolicy, options: PlanOptions) -> None:
        self.facts = facts
        self.policy = policy
        self.options = options
        self.steps: list[Step] = []
        self.ids: dict[Address, str] = {}
        self.conflicts: list[dict[str, Any]] = []
        self.server_only: list[dict[str, str]] = []
        self.warnings: list[str] = []
        self.fragments: dict[str, Fragment] = {}

    def add(self, action: Action, target: Address, after: list[str | None], payload: Payload,
            reason: str = "") -> str:
        new_id = step_id(action, target)
        self.steps.append(Step(new_id, action, target, payload, tuple(d for d in after if d), reason))
        return new_id

    def conflict(self, target: Address, reason: str, **detail: Any) -> None:
        self.conflicts.append({"target": str(target), "reason": reason, **detail})

    def on_server_only(self, target: Address) -> None:
        self.server_only.append({"target": str(target), "kind": target.kind})

    def planned(self, subject: Subject, remote: Subject | None, problem: str | None) -> None:
        """The subject diffed; its fragment kept when it needs no step."""
        steps, conflicts, server_only, warnings = (len(self.steps), len(self.conflicts), len(self.server_only),
                                                   len(self.warnings))
        self.subject(subject, remote, problem)
        if remote is not None and remote.remote_id and not problem and len(self.steps) == steps:
            self.fragments[remote.remote_id] = Fragment(tuple(self.conflicts[conflicts:]),
                                                        tuple(self.server_only[server_only:]),
                                                        tuple(self.warnings[warnings:]))

    def settled(self, subject: Subject, remote_id: str, fragment: Fragment) -> None:
        """A subject unchanged on both sides since its last plan needed no step: that plan's fragment again."""
        self.ids[Address(subject.name)] = remote_id
        self.conflicts += fragment.conflicts
        self.server_only += fragment.server_only
        self.warnings += fragment.warnings
        self.fragments[remote_id] = fragment

    def subject(self, subject: Subject, remote: Subject | None, problem: str | None) -> None:
        target = Address(subject.name)
        if problem:
            return self.conflict(target, problem + "; the subject is skipped")
        created = None
        if remote is None:
            created = self.add(Action.CREATE_SUBJECT, target, [], CreateSubject(subject.name, subject.mrn))
            server_name = subject.name
        else:
            self.ids[target] = remote.remote_id
            server_name = remote.name
            if key(remote.name) != key(subject.name):
                self.warnings.append(f"{target}: matched by MRN {subject.mrn!r} to the server's subject "
                                     f"{remote.name!r}, whose name is kept")
        change = md.subject_change(remote.metadata if remote else None, subject.metadata, self.options.metadata,
                                   self.written(remote))
        if change.changed:
            self.add(Action.UPDATE_SUBJECT_METADATA, target, [created],
                     UpdateSubjectMetadata(change.changes, change.kept, change.merged))
        elif change.kept:
            self.kept(target, change)
        sessions = pair(subject.sessions, remote.sessions if remote else (), SESSION_KEYS)
        for session, found in sessions.each:
            if len(found) > 1:
                self.conflict(target.child(session.name), f"{len(found)} sessions named {session.name!r} on the "
                              "server; remove the duplicates in Moveshelf")
            else:
                self.session(session, target.child(session.name), server_name, next(iter(found), None), created)
        for session in sessions.server_only:
            self.on_server_only(target.child(session.name))

    def written(self, remote: Subject | Session | None) -> dict[str, Written]:
        """What this tool last wrote to the server object's metadata, field by field."""
        return self.facts.written.get(remote.remote_id or "", {}) if remote else {}

    def kept(self, target: Address, change: md.MetadataChange) -> None:
        """A field the folders would change but the server keeps: said with both values, as no step shows it."""
        self.warnings.append(f"{target}: " + "; ".join(render.kept(name, v) for name, v in change.kept.items()))

    def session(self, session: Session, target: Address, server_name: str, remote: Session | None,
                parent_step: str | None) -> None:
        path = remote.remote_path if remote else session_path(server_name, session.name)
        first = len(self.steps)
        created = None
        set_date = None
        if remote is None:
            created = self.add(Action.CREATE_SESSION, target, [parent_step],
                               CreateSession(session.name, path, session.date))
        else:
            self.ids[target] = remote.remote_id
            if session.date and not remote.date:
                set_date = session.date
            elif session.date and remote.date != session.date:
                self.warnings.append(f"{target}: the server's date {remote.date} is kept (the folder says "
                                     f"{session.date})")
        change = md.session_change(remote.metadata if remote else None, session.metadata, self.options.metadata,
                                   self.written(remote))
        stored = {**((remote.stored_metadata or {}) if remote else {}), "metadata": change.merged}
        if change.changed or set_date:
            self.add(Action.UPDATE_SESSION_METADATA, target, [created], UpdateSessionMetadata(
                change.changes, change.kept, remote.name if remote else session.name, stored, set_date))
        elif change.kept:
            self.kept(target, change)
        trials = pair(session.trials, remote.trials if remote else (), TRIAL_KEYS)
        for trial, found in trials.each:
            address = target.trial_of(trial.condition, trial.name)
            if len(found) > 1:
                self.conflict(address, f"{len(found)} trials {trial.condition}/{trial.name} on the server; "
                              "remove the duplicates in Moveshelf")
            else:
                self.trial(trial, address, path, next(iter(found), None), created)
        for trial in trials.server_only:
            self.on_server_only(target.trial_of(trial.condition, trial.name))
        self.reports(target, remote, self.steps[first:])

    def reports(self, target: Address, remote: Session | None, steps: list[Step]) -> None:
        """Ask for the session's automatic reports after every change this plan makes to it (removing a leftover
        record changes no data); for an unchanged session, only when an earlier run's request went unanswered."""
        if not self.options.reports:
            return
        after = [s.id for s in steps if s.action is not Action.REMOVE_RECORD]
        owed = remote is not None and str(target) in self.facts.reports_owed
        if not (after or owed):
            return
        norm = self.options.norm
        self.add(Action.CREATE_REPORTS, target, after, CreateReports(norm.id if norm else None,
                                                                     norm.name if norm else None),
                 "" if after else "an earlier run's request was not answered")

    def trial(self, trial: Trial, target: Address, session_project_path: str, remote: Trial | None,
              parent_step: str | None) -> None:
        created = None
        if remote is None:
            created = self.add(Action.CREATE_TRIAL, target, [parent_step], CreateTrial(
                trial.name, trial.condition, trial_path(session_project_path, trial.condition)))
        else:
            self.ids[target] = remote.remote_id
        files = pair(trial.files, remote.files if remote else (), FILE_KEYS)
        file_steps = [self.file(f, target.child(f.name), records, created) for f, records in files.each]
        for record in files.server_only:
            self.on_server_only(target.child(record.name))
        if not (trial.side or trial.representative):
            return
        file_targets = tuple(target.child(f.name) for f in trial.files)
        base = remote.custom_options if remote else None
        if not any(file_steps) and remote is not None and all(t in self.ids for t in file_targets):
            wanted = trial_options(base, trial.side, trial.representative, [self.ids[t] for t in file_targets])
            if wanted == (base or {}):
                return
        self.add(Action.UPDATE_TRIAL_METADATA, target, [created, *file_steps], UpdateTrialMetadata(
            trial.name, base, trial.side, trial.representative, file_targets))

    def file(self, local: DataFile, target: Address, records: tuple[DataFile, ...], parent_step: str | None
             ) -> str | None:
        """Account for every record of the file's name in its trial: keep one good record, upload when there is
        none, remove this tool's other records, and list the records of others, which are never removed."""
        keep = self.good_record(local, records)
        step = None
        conflicting: tuple[DataFile, ...] = ()
        if keep is not None:
            self.ids[target] = keep.remote_id
        else:
            complete = tuple(r for r in records if r.upload_status == COMPLETE)
            step, conflicting = self.upload_or_conflict(local, target, complete, parent_step)
        self.leftovers(target, [r for r in records if r is not keep and r not in conflicting], step, keep)
        return step

    def good_record(self, local: DataFile, records: tuple[DataFile, ...]) -> DataFile | None:
        """The record that already holds the local bytes: Complete (this tool's first, else the oldest), or stored
        by this tool and still being processed by the server."""
        same = [r for r in records if self.facts.content.get(r.remote_id) == (local.crc32c, local.size)]
        complete = sorted((r for r in same if r.upload_status == COMPLETE), key=lambda r: r.remote_id not in
                          self.facts.ours)
        processing = [r for r in same if r.upload_status != COMPLETE and r.remote_id in self.facts.stored]
        return next(iter(complete or processing), None)

    def upload_or_conflict(self, local: DataFile, target: Address, complete: tuple[DataFile, ...],
                           parent_step: str | None) -> tuple[str | None, tuple[DataFile, ...]]:
        """The upload step when no good record exists, or the conflict when a Complete record differs: the step,
        and the records that stay because they are the conflict."""
        upload = UploadFile(local.source or "", local.name, local.data_type, local.size or 0, local.crc32c or "",
                            local.client_id or "", tuple(r.remote_id for r in complete))
        if not complete:
            return self.add(Action.UPLOAD_FILE, target, [parent_step], upload), ()
        known = [r for r in complete if r.remote_id in self.facts.content]
        reason = ("the server's file differs from the local file" if known else
                  "the server's file cannot be compared (no checksum known for it)")
        theirs = [r for r in complete if r.remote_id not in self.facts.ours]
        if self.policy is ConflictPolicy.REPLACE and not theirs:
            return self.add(Action.REPLACE_FILE, target, [parent_step], upload, reason), ()
        if self.policy is ConflictPolicy.REPLACE:
            reason += "; it was not uploaded by this tool, so it is not replaced"
        self.ids[target] = complete[0].remote_id
        server = {"data_ids": [r.remote_id for r in complete],
                  "size": self.facts.content[known[0].remote_id][1] if known else None}
        self.conflict(target, reason, local={"size": local.size, "crc32c": local.crc32c}, server=server)
        return None, complete

    def leftovers(self, target: Address, others: list[DataFile], step: str | None, keep: DataFile | None) -> None:
        """Remove this tool's other records (after the upload that supersedes them); list those of others."""
        theirs = [r for r in others if r.remote_id not in self.facts.ours]
        for record in others:
            if record.remote_id in self.facts.ours:
                why = ("left by an interrupted run" if record.upload_status != COMPLETE else
                       "a copy of the same bytes" if keep is not None else "replaced")
                self.steps.append(Step(step_id(Action.REMOVE_RECORD, target, record.remote_id),
                                       Action.REMOVE_RECORD, target,
                                       RemoveRecord(record.remote_id, record.name, record.upload_status or "", why),
                                       tuple(d for d in [step] if d)))
        if theirs:
            unfinished = sum(r.upload_status != COMPLETE for r in theirs)
            self.warnings.append(
                f"{target}: {len(theirs)} other record{'s' * (len(theirs) != 1)} of {target.file} "
                f"({unfinished} unfinished) not made by this tool, left alone; if another apply with its own "
                "--state-dir runs on this project, let it finish")


def diff(local: LocalTree, actual: Tree, facts: Facts, project: str,
         policy: ConflictPolicy = ConflictPolicy.SKIP, options: PlanOptions = PlanOptions()) -> Plan:
    """The steps that make the server hold what the folders hold. Pure: no I/O, no clock."""
    planner = _Planner(facts, policy, options)
    matched, problems = match_subjects(local.tree.subjects, actual.subjects)
    for subject in local.tree.subjects:
        remote, problem = matched.get(id(subject)), problems.get(id(subject))
        if subject.source in local.settled and remote is not None and not problem:
            planner.settled(subject, remote.remote_id or "", facts.fragments[remote.remote_id or ""])
        else:
            planner.planned(subject, remote, problem)
    return Plan(project=project, steps=tuple(planner.steps), ids=planner.ids,
                unmapped=tuple({"path": u.path, "reason": u.reason} for u in local.unmapped),
                conflicts=tuple(planner.conflicts), server_only=tuple(planner.server_only),
                set_aside=tuple({"path": a.path, "problems": list(a.problems)} for a in local.set_aside),
                deferred=tuple({"path": d.path, "reason": d.reason} for d in local.deferred),
                warnings=tuple([*local.warnings, *planner.warnings]), roots=local.roots, paths=local.paths,
                fragments=planner.fragments)


def _same(saved: Step, fresh: Step | None) -> bool:
    return (fresh is not None and fresh.action is saved.action
            and json.dumps(payload_to_json(fresh.payload), sort_keys=True)
            == json.dumps(payload_to_json(saved.payload), sort_keys=True))


def approve(saved: Plan, fresh: Plan) -> tuple[Plan, tuple[Step, ...]]:
    """The saved plan's steps that are still exactly what a fresh plan would do, and the stale rest.

    A step is stale when the folders or the server changed what it would do, or when it now
    depends on a change the saved plan did not contain. Fresh changes the saved plan lacks are
    not applied: nobody has seen them.
    """
    current = {s.id: s for s in fresh.steps}
    approved = {s.id: current[s.id] for s in saved.steps if _same(s, current.get(s.id))}
    while blocked := [i for i, s in approved.items() if any(d not in approved for d in s.depends_on)]:
        for blocked_id in blocked:
            del approved[blocked_id]
    unseen = [str(s.target) for s in fresh.steps if s.id not in {t.id for t in saved.steps}]
    left = f"{render.plural(len(unseen), 'change')} not in the saved plan {'is' if len(unseen) == 1 else 'are'} left"
    warnings = [*fresh.warnings, *([f"{left} for the next plan: " + ", ".join(unseen[:5])
                                    + (" ..." if len(unseen) > 5 else "")] if unseen else [])]
    return (dataclasses.replace(fresh, steps=tuple(approved.values()), warnings=tuple(warnings)),
            tuple(s for s in saved.steps if s.id not in approved))
