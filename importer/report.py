"""The report of a run: one entry per step of the plan; and the merge of several shards' reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import documents
from .apply import Status, StepResult
from .errors import InputError
from .plan import Plan

FORMAT = "moveshelf-import/report"
COUNTS = ("applied", "skipped", "failed", "not_attempted")


def build(plan: Plan, results: list[StepResult], started: float, finished: float, interrupted: bool,
          shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The run's outcome (valid against report.schema.json); the counts add up to the steps."""
    counts = {s.value: sum(r.status is s for r in results) for s in Status}
    document = {
        "format": FORMAT, "version": 1, "project": plan.project, "roots": list(plan.roots),
        "started": started, "finished": finished, "interrupted": interrupted,
        "summary": {"steps": len(results), **counts, "bytes": sum(r.bytes for r in results),
                    "seconds": round(finished - started, 3)},
        "steps": [{"id": r.step.id, "action": r.step.action.value, "target": r.step.target,
                   "status": r.status.value, "error": r.error, "bytes": r.bytes, "seconds": r.seconds}
                  for r in results],
        "conflicts": list(plan.conflicts), "unmapped": len(plan.unmapped),
    }
    if shard:
        document["shards"] = [f"{shard[0]}/{shard[1]}"]
    return document


def load(path: Path) -> dict[str, Any]:
    """A report file, checked against the schema."""
    return documents.load(path, "report.schema.json", "report")


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Shards' reports as one: steps side by side, counts summed, the wall time from first start to last end."""
    projects = {d["project"] for d in documents}
    if len(projects) != 1:
        raise InputError(f"reports of different projects cannot be merged: {', '.join(sorted(projects))}")
    started, finished = min(d["started"] for d in documents), max(d["finished"] for d in documents)
    steps = [step for d in documents for step in d["steps"]]
    summary = {"steps": len(steps), **{c: sum(d["summary"][c] for d in documents) for c in COUNTS},
               "bytes": sum(d["summary"]["bytes"] for d in documents), "seconds": round(finished - started, 3)}
    return {"format": FORMAT, "version": 1, "project": projects.pop(),
            "roots": sorted({r for d in documents for r in d.get("roots", [])}), "started": started,
            "finished": finished, "interrupted": any(d.get("interrupted") for d in documents),
            "summary": summary, "steps": steps, "conflicts": [c for d in documents for c in d.get("conflicts", [])],
            "unmapped": sum(d.get("unmapped", 0) for d in documents),
            "shards": [s for d in documents for s in d.get("shards", [])]}
