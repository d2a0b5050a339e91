"""The library's entry points: `validate`, `plan` and `apply`, as the command line uses them.

Order matters for safety: every input is checked before the network is touched, the
lock is taken before the project's subjects are read, and nothing is written before the plan is whole.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from . import checksum, report, shard
from .apply import Executor, Status, StepResult
from .client import Client
from .config import load_connection, project_name
from .errors import FatalError, InputError, LockHeld
from .journal import Journal, state_dir
from .model import LocalTree
from .plan import ConflictPolicy, Plan, Step, approve, diff
from .private import write_private
from .progress import Progress
from .remote import Project, find_project, gather_facts, read_state
from .scan import ScanOptions, scan

STALE = "stale: the folders or the server changed since the plan was saved; run plan again"


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


@dataclass
class Context:
    """An open connection to one project, with its journal."""

    client: Client
    project: Project
    journal: Journal
    folder: Path


def validate(settings: Settings) -> LocalTree:
    """Check the folders and their config files; no network. Raises InvalidInput."""
    return shard.select(scan(list(settings.paths), settings.scan), settings.shard)


@contextmanager
def connect(settings: Settings) -> Iterator[Context]:
    connection = load_connection(settings.config)
    client = Client(connection.api_url, connection.api_key, attempts=settings.attempts)
    project = find_project(client, project_name(settings.project))
    folder = state_dir(settings.state_dir, connection.api_url, project.name, settings.shard)
    journal = Journal(folder / "journal.sqlite3")
    try:
        yield Context(client, project, journal, folder)
    finally:
        journal.close()


def make_plan(settings: Settings, context: Context, local: LocalTree) -> Plan:
    """Measure the files, read the server, and diff."""
    local = checksum.fill(local, context.journal, jobs=min(settings.jobs, 4), verify=settings.verify)
    actual = read_state(context.client, context.project, local.tree, settings.jobs)
    facts = gather_facts(context.client, context.journal, local, actual, settings.jobs, settings.verify)
    return diff(local, actual, facts, context.project.name, settings.on_conflict)


def plan(settings: Settings) -> Plan:
    local = validate(settings)
    with connect(settings) as context:
        return make_plan(settings, context, local)


@contextmanager
def run_lock(folder: Path, roots: tuple[str, ...], project: str) -> Iterator[None]:
    """One apply at a time per project and import root. The OS drops the lock when its holder dies."""
    digest = hashlib.sha256("\n".join(roots).encode()).hexdigest()[:10]
    lock = filelock.FileLock(folder / f"apply-{digest}.lock", mode=0o600)
    holder = folder / f"apply-{digest}.pid"
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        pid = holder.read_text().strip() if holder.exists() else "unknown"
        raise LockHeld(f"another apply (PID {pid}) is running for project {project} and {', '.join(roots)}",
                       "wait for it to finish; a crashed run's lock is released by the operating system") from None
    try:
        write_private(holder, f"{os.getpid()}\n")
        yield
    finally:
        lock.release()


def apply(settings: Settings, progress_mode: str = "lines", confirm: Callable[[Plan], bool] = lambda plan: True,
          saved: Plan | None = None) -> tuple[Plan, dict[str, Any] | None]:
    """Plan (or check a saved plan), ask `confirm`, apply; the plan and the run's report (None if not confirmed).

    A saved plan's steps are applied only where a fresh plan would do exactly the same;
    the others are reported as stale. Raises on invalid input, on conflicts under `fail`,
    and when another run holds the lock.
    """
    local = validate(settings)
    with connect(settings) as context, run_lock(context.folder, local.roots, context.project.name):
        if saved is not None and saved.project != context.project.name:
            raise InputError(f"the saved plan is for project {saved.project!r}, not {context.project.name!r}")
        the_plan, stale = make_plan(settings, context, local), ()
        if saved is not None:
            the_plan, stale = approve(saved, the_plan)
        if settings.on_conflict is ConflictPolicy.FAIL and the_plan.conflicts:
            raise FatalError(f"{len(the_plan.conflicts)} conflict(s) and --on-conflict fail; nothing was written:\n"
                             + "\n".join(f"  {c['target']}: {c['reason']}" for c in the_plan.conflicts),
                             "use --on-conflict skip to leave them, or replace to upload the local files")
        if not confirm(the_plan):
            return the_plan, None
        return the_plan, execute(the_plan, context, settings, progress_mode, stale)


def execute(the_plan: Plan, context: Context, settings: Settings, progress_mode: str,
            stale: tuple[Step, ...] = ()) -> dict[str, Any]:
    """Run the executor with progress; the report, stale steps of a saved plan included as skipped."""
    total_bytes = sum(s.detail.get("size", 0) for s in the_plan.steps)
    progress = Progress(progress_mode, len(the_plan.steps), total_bytes)
    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    executor = Executor(the_plan, context.client, context.project, context.journal, run_id, settings.jobs,
                        progress.on_bytes, progress.on_result)
    started = time.time()
    try:
        results = executor.run()
    finally:
        progress.close()
    results += [StepResult(s, Status.SKIPPED, STALE) for s in stale]
    outcome = report.build(the_plan, results, started, time.time(), context.client.stop.is_set(), settings.shard)
    if executor.fatal:
        outcome["fatal"] = str(executor.fatal)
    return outcome
