"""The library's entry points: `validate`, `plan` and `apply`, as the command line uses them.

Order matters for safety: every input is checked before the network is touched, the
lock is taken before the project's subjects are read, and nothing is written before the plan is whole.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checksum, report, selection, shard
from .address import Address
from .cancel import Cancellation
from .config import load_connection, project_name
from .errors import FatalError, ImportToolError, InputError
from .executor import Executor
from .journal import Journal
from .metadata import MetadataPolicy
from .model import LocalTree, Subject, Tree
from .pairing import match_subjects
from .planner import PlanOptions, approve, diff
from .progress import Progress
from .remote import Project, ReadBack, find_norm, find_project, gather_facts, journal_facts, read_batch, read_state
from .render import plural
from .scan import ScanOptions, scan
from .scheduler import Result, Status
from .selection import Selection
from .snapshot import DEFAULT_RECHECK_AFTER, Snapshots
from .state import run_lock, state_dir
from .steps import ConflictPolicy, Plan, Step

if TYPE_CHECKING:
    from .client import Client

STALE = "changed since the plan was made: run plan again"


@dataclass(frozen=True)
class Settings:
    """Everything a plan or an apply needs to know, with the command line's defaults."""

    paths: tuple[Path, ...]
    project: str | None = None
    config: Path | None = None
    state_dir: Path | None = None
    on_conflict: ConflictPolicy = ConflictPolicy.SKIP
    jobs: int = 8
    verify: bool = False
    attempts: int = 6
    shard: tuple[int, int] | None = None
    scan: ScanOptions = field(default_factory=ScanOptions)
    selection: Selection = field(default_factory=Selection)
    reports: bool = False  # request automatic interactive reports for sessions the run creates or changes
    reports_norm: str | None = None  # by the project's norm of this name
    metadata_policy: MetadataPolicy = MetadataPolicy.FILL_EMPTY
    full: bool = False  # read every subject from the server, use no snapshot
    recheck_after: float = DEFAULT_RECHECK_AFTER  # seconds after which a snapshot is read in full again
    now: float | None = None  # the time snapshots' ages count from (None: the clock)


@dataclass
class Context:
    """An open connection to one project, with its journal and snapshots."""

    client: Client
    project: Project
    journal: Journal
    folder: Path
    snapshots: Snapshots | None = None
    options: PlanOptions | None = None  # the planner's, once a plan was made
    planned: LocalTree | None = None  # the folders the plan was made from, checksums filled


def validate(settings: Settings, snapshots: Snapshots | None = None) -> LocalTree:
    """Check the folders and their config files; no network. Raises InvalidInput.

    Every folder given is checked, selected or not, so a selection never hides a broken config. Session
    folders unchanged since `snapshots` saw them are not checked again.
    """
    local = selection.select(scan(list(settings.paths), settings.scan, snapshots), settings.selection)
    return shard.select(local, settings.shard)


@contextmanager
def opened_snapshots(settings: Settings) -> Iterator[Snapshots | None]:
    """The snapshots of the state folder, opened before the network is touched (the folder depends on the
    settings alone); None when the settings do not name it yet (connecting then says why)."""
    try:
        connection = load_connection(settings.config)
        folder = state_dir(settings.state_dir, connection.api_url, project_name(settings.project), settings.shard)
    except ImportToolError:
        yield None
        return
    snapshots = Snapshots(folder / "snapshot.sqlite3", settings.scan, full=settings.full,
                          recheck_after=settings.recheck_after, now=settings.now, plan_key=plan_key(settings),
                          settle=not (settings.selection or settings.verify), keep=not settings.selection)
    try:
        yield snapshots
    finally:
        snapshots.close()


def planned_with(settings: Settings) -> dict[str, Any]:
    """The options a plan depends on besides the folders and the server: a saved plan records them, so that
    `apply --plan` applies it as it was made."""
    return {"on_conflict": settings.on_conflict.value, "reports": settings.reports,
            "reports_norm": settings.reports_norm, "metadata_policy": settings.metadata_policy.value}


def plan_key(settings: Settings) -> str:
    """What a subject's plan depends on besides its folders and its server tree."""
    return json.dumps(list(planned_with(settings).values()))


def with_saved(settings: Settings, saved: Plan | None) -> Settings:
    """A saved plan names its project and folders: used where the command line and environment do not."""
    paths = settings.paths or tuple(Path(p) for p in (saved.paths if saved else ()))
    if not paths:
        raise InputError("no PATH given", "name the folders to import, or pass --plan PLAN.json")
    if saved is None:
        return settings
    return dataclasses.replace(settings, project=project_name(settings.project, saved.project), paths=paths)


@contextmanager
def connect(settings: Settings, cancel: Cancellation | None = None, snapshots: Snapshots | None = None
            ) -> Iterator[Context]:
    # Imported here, not at the top: `validate` never talks to the server, and the HTTP stack is a tenth of its
    # start-up.
    from .client import Client

    connection = load_connection(settings.config)
    client = Client(connection.api_url, connection.api_key, attempts=settings.attempts, cancel=cancel,
                    jobs=settings.jobs)
    project = find_project(client, project_name(settings.project))
    folder = state_dir(settings.state_dir, connection.api_url, project.name, settings.shard)
    journal = Journal(folder / "journal.sqlite3")
    try:
        yield Context(client, project, journal, folder, snapshots)
    finally:
        journal.close()


def make_plan(settings: Settings, context: Context, local: LocalTree) -> Plan:
    """Measure the files, read the server (subjects unchanged on both sides from their snapshots), and diff."""
    options = context.options = plan_options(settings, context)
    snapshots = context.snapshots
    actual = read_state(context.client, context.project, local.tree, settings.jobs,
                        snapshots.recall_tree if snapshots and not settings.verify else None)
    if snapshots:
        local = snapshots.unsettle(local)
    local = context.planned = checksum.fill(local, context.journal, jobs=min(settings.jobs, 4),
                                            verify=settings.verify)
    settled = frozenset(snapshots.reused) if snapshots else frozenset()
    facts = gather_facts(context.client, context.journal, local, actual, settings.jobs, settings.verify, settled)
    facts = journal_facts(context.journal, actual, facts, snapshots.fragments if snapshots else ())
    if snapshots:
        facts = dataclasses.replace(facts, fragments=snapshots.fragments)
    the_plan = dataclasses.replace(diff(local, actual, facts, context.project.name, settings.on_conflict, options),
                                   options=planned_with(settings))
    if snapshots is None:
        return the_plan
    snapshots.settle(local)
    snapshots.record_trees((mine, theirs) for mine, theirs in pairs(local.tree, actual)
                           if theirs.remote_id not in settled)
    snapshots.record_fragments(the_plan.fragments)
    return dataclasses.replace(the_plan, snapshot=snapshots.summary(len(local.tree.subjects)))


def pairs(local: Tree, actual: Tree) -> list[tuple[Subject, Subject]]:
    """(local, server) subjects the planner pairs."""
    matched = match_subjects(local.subjects, actual.subjects)[0]
    return [(s, matched[id(s)]) for s in local.subjects if id(s) in matched]


def plan_options(settings: Settings, context: Context) -> PlanOptions:
    """The planner's options; a named norm is looked up on the server, only when reports are asked for."""
    norm = (find_norm(context.client, context.project, settings.reports_norm)
            if settings.reports and settings.reports_norm else None)
    return PlanOptions(settings.reports, norm, settings.metadata_policy)


def _checked(settings: Settings, context: Context, local: LocalTree, saved: Plan | None
             ) -> tuple[Plan, tuple[Step, ...]]:
    """A fresh plan; with a saved plan, only its steps a fresh plan confirms, and the stale rest."""
    if saved is not None and saved.project != context.project.name:
        raise InputError(f"the saved plan is for project {saved.project!r}, not {context.project.name!r}")
    the_plan = make_plan(settings, context, local)
    return approve(saved, the_plan) if saved is not None else (the_plan, ())


def preview(settings: Settings, saved: Plan | None = None) -> tuple[Plan, tuple[Step, ...]]:
    """What `apply` would do, and the saved plan's stale steps; writes nothing to the server, takes no lock."""
    settings = with_saved(settings, saved)
    with opened_snapshots(settings) as snapshots:
        local = validate(settings, snapshots)
        with connect(settings, None, snapshots) as context:
            return _checked(settings, context, local, saved)


def plan(settings: Settings) -> Plan:
    return preview(settings)[0]


def apply(settings: Settings, progress_mode: str = "lines", confirm: Callable[[Plan], bool] = lambda plan: True,
          saved: Plan | None = None, cancel: Cancellation | None = None) -> tuple[Plan, dict[str, Any] | None]:
    """Plan (or check a saved plan), ask `confirm`, apply; the plan and the run's report (None if not confirmed).

    A saved plan's steps are applied only where a fresh plan would do exactly the same;
    the others are reported as stale. Raises on invalid input, on conflicts under `fail`,
    and when another run holds the lock.
    """
    settings = with_saved(settings, saved)
    with opened_snapshots(settings) as snapshots:
        local = validate(settings, snapshots)
        with connect(settings, cancel, snapshots) as context, \
                run_lock(context.folder, local.roots, context.project.name):
            return _apply(settings, context, local, saved, progress_mode, confirm)


def _apply(settings: Settings, context: Context, local: LocalTree, saved: Plan | None, progress_mode: str,
           confirm: Callable[[Plan], bool]) -> tuple[Plan, dict[str, Any] | None]:
    the_plan, stale = _checked(settings, context, local, saved)
    if settings.on_conflict is ConflictPolicy.FAIL and the_plan.conflicts:
        raise FatalError(f"{plural(len(the_plan.conflicts), 'conflict')} and --on-conflict fail; nothing was "
                         "written:\n"
                         + "\n".join(f"  {c['target']}: {c['reason']}" for c in the_plan.conflicts),
                         "use --on-conflict skip to leave them, or replace to upload the local files")
    if not confirm(the_plan):
        return the_plan, None
    return the_plan, execute(the_plan, context, settings, progress_mode, stale)


def execute(the_plan: Plan, context: Context, settings: Settings, progress_mode: str,
            stale: tuple[Step, ...] = ()) -> dict[str, Any]:
    """Run the executor with progress; the report, stale steps of a saved plan included as skipped."""
    total_bytes = sum(s.upload_size for s in the_plan.steps)
    progress = Progress(progress_mode, len(the_plan.steps), total_bytes)
    read_back = (ReadBack((s.target.subject for s in the_plan.steps),
                          lambda subject: executor.ids.get(Address(subject)),
                          functools.partial(_snapshot_again, context, settings, context.planned))
                 if context.snapshots and context.planned else None)

    def on_result(result: Result[Step]) -> None:
        progress.on_result(result)
        if read_back:
            read_back.finished(result.node.target.subject)

    executor = Executor(the_plan, context.client, context.project, context.journal, settings.jobs,
                        progress.upload, on_result)
    if context.snapshots:  # before the first write: a run killed half-way leaves no snapshot older than its writes
        touched = {Address(s.target.subject) for s in the_plan.steps}
        context.snapshots.drop(the_plan.ids[a] for a in sorted(touched, key=str) if a in the_plan.ids)
    started = time.time()
    try:
        results = executor.run()
    except BaseException:
        if read_back:
            read_back.close()
        raise
    finally:
        progress.close()
    if read_back and (executor.fatal or context.client.cancel.cancelled):
        read_back.close()
    elif read_back:
        read_back.wait()
    results += [Result(s, Status.SKIPPED, STALE) for s in stale]
    return report.build(the_plan, results, started, time.time(), interrupted=context.client.cancel.cancelled,
                        fatal=str(executor.fatal) if executor.fatal else None, shard=settings.shard,
                        sent=progress.sent)


def _snapshot_again(context: Context, settings: Settings, local: LocalTree, remote_ids: list[str]) -> None:
    """Snapshots of subjects the run has changed, read again after its last write to them, so the next run starts
    from what the server now holds; planned against it, the fragments of those that need nothing more let the next
    run repeat their plan."""
    assert context.snapshots is not None
    try:
        changed = pairs(local.tree, Tree(tuple(read_batch(context.client, remote_ids))))
        context.snapshots.record_trees(changed)
        mine = dataclasses.replace(local, tree=Tree(tuple(m for m, _ in changed)), warnings=(), settled=frozenset())
        actual = Tree(tuple(theirs for _, theirs in changed))
        facts = journal_facts(context.journal, actual, gather_facts(context.client, context.journal, mine, actual,
                                                                    settings.jobs))
    except ImportToolError:  # the run's outcome stands; the next plan reads these subjects in full
        return
    context.snapshots.record_fragments(diff(mine, actual, facts, context.project.name, settings.on_conflict,
                                            context.options or PlanOptions()).fragments)
