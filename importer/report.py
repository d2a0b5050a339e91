"""The report of a run: one entry per step of the plan, the run's outcome; and the merge of shards' reports."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import documents
from .errors import InputError
from .scheduler import Status
from .steps import Plan

if TYPE_CHECKING:
    from .executor import StepResult

FORMAT = "moveshelf-import/report"
VERSION = 2
COUNTS = ("applied", "skipped", "failed", "not_attempted")
OUTCOMES = ("ok", "partial", "interrupted", "locked", "invalid", "fatal")  # from best to worst


@lru_cache(maxsize=4096)
def timestamp(seconds: float | None) -> str | None:
    """ISO 8601 in UTC, so that reports of machines in other time zones sort and merge. Remembered: the steps of a
    batch share their times, and a large run has tens of thousands of steps."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def _seconds(started: str, finished: str) -> float:
    return round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 3)


def outcome_of(results: list[StepResult], plan: Plan, interrupted: bool, fatal: str | None) -> str:
    """The worst that happened: fatal > interrupted > partial (a person should look) > ok."""
    if fatal:
        return "fatal"
    if interrupted:
        return "interrupted"
    if plan.conflicts or plan.set_aside or any(r.status is not Status.APPLIED for r in results):
        return "partial"
    return "ok"


def build(plan: Plan, results: list[StepResult], started: float, finished: float, *, interrupted: bool = False,
          fatal: str | None = None, shard: tuple[int, int] | None = None, sent: int | None = None) -> dict[str, Any]:
    """The run's outcome (valid against report.schema.json); the counts add up to the steps.

    `bytes` counts the files stored; `bytes_sent` all that went out (retries and uploads cut short included).
    """
    stored = sum(r.bytes for r in results)
    counts = {s.value: sum(r.status is s for r in results) for s in Status}
    document = {
        "format": FORMAT, "version": VERSION, "project": plan.project, "roots": list(plan.roots),
        "outcome": outcome_of(results, plan, interrupted, fatal),
        "started": timestamp(started), "finished": timestamp(finished),
        "summary": {"steps": len(results), **counts, "bytes": stored,
                    "bytes_sent": stored if sent is None else sent, "seconds": round(finished - started, 3)},
        "steps": [{"id": r.node.id, "action": r.node.action.value, "target": str(r.node.target),
                   "status": r.status.value, "error": r.error, "bytes": r.bytes, "seconds": r.seconds,
                   "started": timestamp(r.started), "finished": timestamp(r.finished)} for r in results],
        "conflicts": list(plan.conflicts), "unmapped": list(plan.unmapped), "set_aside": list(plan.set_aside),
        "deferred": list(plan.deferred),
    }
    if fatal:
        document["fatal"] = fatal
    if shard:
        document["shards"] = [f"{shard[0]}/{shard[1]}"]
    return document


def stopped(project: str, outcome: str, message: str, started: float, finished: float) -> dict[str, Any]:
    """The report of a run that ended before it applied anything (invalid input, lock held, unreachable, key
    refused, interrupted while planning), so the report file never keeps an older night's content."""
    return {**build(Plan(project=project), [], started, finished, fatal=message), "outcome": outcome}


def load(path: Path) -> dict[str, Any]:
    """A report file, checked against the schema."""
    return documents.load(path, "report.schema.json", "report")


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards' reports as one: steps side by side, counts summed, the worst outcome, the wall time from first
    start to last end."""
    projects = {d["project"] for d in documents}
    if len(projects) != 1:
        raise InputError(f"reports of different projects cannot be merged: {', '.join(sorted(projects))}")
    started, finished = min(d["started"] for d in documents), max(d["finished"] for d in documents)
    steps = [step for d in documents for step in d["steps"]]
    summary = {"steps": len(steps), **{c: sum(d["summary"][c] for d in documents) for c in COUNTS},
               "bytes": sum(d["summary"]["bytes"] for d in documents),
               "bytes_sent": sum(d["summary"].get("bytes_sent", d["summary"]["bytes"]) for d in documents),
               "seconds": _seconds(started, finished)}
    merged = {"format": FORMAT, "version": VERSION, "project": projects.pop(),
              "roots": sorted({r for d in documents for r in d.get("roots", [])}),
              "outcome": max((d["outcome"] for d in documents), key=OUTCOMES.index),
              "started": started, "finished": finished, "summary": summary, "steps": steps,
              "conflicts": [c for d in documents for c in d.get("conflicts", [])],
              "unmapped": [u for d in documents for u in d.get("unmapped", [])],
              "set_aside": [a for d in documents for a in d.get("set_aside", [])],
              "deferred": [a for d in documents for a in d.get("deferred", [])],
              "shards": [s for d in documents for s in d.get("shards", [])]}
    fatal = [d["fatal"] for d in documents if d.get("fatal")]
    if fatal:
        merged["fatal"] = "; ".join(fatal)
    return merged
