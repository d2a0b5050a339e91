"""Views of apply reports for people: a self-contained HTML page and a CSV of the steps.

Pure functions from report dicts to text, so they are tested without files and reused from Python. Reports of
every version are accepted: version 1 (epoch-float times, `unmapped` as a count, no per-step times) and version 2
(ISO times, per-step times, deferred and set-aside sessions); a field that is absent is shown as unknown rather than
refused, because a migration's old reports must stay readable after the tool moves on.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jinja2

from .errors import InputError
from .render import size

FORMAT = "moveshelf-import/report"
UPLOADS = ("upload_file", "replace_file")
CSV_COLUMNS = ("target", "action", "status", "error", "bytes", "seconds", "started", "finished")
# Worst first: the combined outcome of several shards is the worst of theirs.
OUTCOMES = ("fatal", "locked", "invalid", "interrupted", "partial", "ok")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # cells a spreadsheet would run as a formula
CHART_WIDTH, CHART_HEIGHT, CHART_MARGIN, CHART_LEFT = 960, 260, 32, 80  # room on the left for "104.5 MB"


def check(document: Any, name: str) -> dict[str, Any]:
    """The document if it is an apply report, else an InputError naming it (the schema check is version-bound)."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"{name} is not a moveshelf-import report (no \"format\": \"{FORMAT}\")")
    steps = document.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise InputError(f"{name}: \"steps\" must be a list of steps")
    return document


def when(value: Any) -> datetime | None:
    """A time of either report version (epoch seconds or ISO 8601), in UTC when it has no zone; None if unknown."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return None


def _outcome(document: dict[str, Any]) -> str:
    """Version 2 states the outcome; for version 1 it follows from the fields that existed then."""
    if document.get("outcome") in OUTCOMES:
        return document["outcome"]
    if document.get("fatal"):
        return "fatal"
    if document.get("interrupted"):
        return "interrupted"
    summary = document.get("summary", {})
    return "partial" if summary.get("failed") or summary.get("skipped") else "ok"


def _listed(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = document.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _unmapped_count(document: dict[str, Any]) -> int:
    """Version 1 counted unmapped files; version 2 lists them."""
    value = document.get("unmapped", 0)
    return len(value) if isinstance(value, list) else int(value or 0)


def combine(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Several reports (shards, or runs of one migration) as one: steps and problems side by side.

    Unlike `report.merge` this keeps the fields of every version (times as datetimes, unmapped files listed or
    counted), so a page of old and new shards can be drawn; it is for viewing, not for writing back.
    """
    projects = {str(d.get("project", "?")) for d in documents}
    if len(projects) != 1:
        raise InputError(f"reports of different projects cannot be combined: {', '.join(sorted(projects))}")
    starts = [t for t in (when(d.get("started")) for d in documents) if t]
    ends = [t for t in (when(d.get("finished")) for d in documents) if t]
    fatal = [d["fatal"] for d in documents if d.get("fatal")]
    return {
        "project": projects.pop(), "roots": sorted({str(r) for d in documents for r in d.get("roots", [])}),
        "outcome": min((_outcome(d) for d in documents), key=OUTCOMES.index),
        "fatal": fatal, "started": min(starts, default=None), "finished": max(ends, default=None),
        "steps": [s for d in documents for s in d["steps"]],
        "conflicts": [c for d in documents for c in _listed(d, "conflicts")],
        "unmapped": [u for d in documents for u in _listed(d, "unmapped")],
        "unmapped_count": sum(_unmapped_count(d) for d in documents),
        "deferred": [x for d in documents for x in _listed(d, "deferred")],
        "set_aside": [x for d in documents for x in _listed(d, "set_aside")],
        "shards": [s for d in documents for s in d.get("shards", [])],
        "seconds": sum(float(d.get("summary", {}).get("seconds") or 0) for d in documents),
        "reports": len(documents),
    }


def _segments(target: str) -> list[str]:
    return [s for s in str(target).split("/") if s]


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return "unknown"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stamp(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    offset = moment.utcoffset()
    zone = "UTC" if not offset else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}"


@dataclass
class Session:
    """The steps of one session, with the trial/file path under the session as the row's label."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(row["status"] for row in self.rows)

    @property
    def bytes(self) -> int:
        return sum(row["bytes"] for row in self.rows)


@dataclass
class Subject:
    name: str
    anchor: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # steps on the subject itself
    sessions: dict[str, Session] = field(default_factory=dict)

    @property
    def has_problem(self) -> bool:
        rows = self.rows + [r for s in self.sessions.values() for r in s.rows]
        return any(r["status"] != "applied" for r in rows)


def _row(step: dict[str, Any], label: str) -> dict[str, Any]:
    seconds = step.get("seconds")
    return {"label": label, "action": str(step.get("action", "?")).replace("_", " "),
            "status": str(step.get("status", "?")), "error": step.get("error") or "",
            "bytes": int(step.get("bytes") or 0), "size": size(step.get("bytes")) if step.get("bytes") else "",
            "seconds": duration(seconds) if isinstance(seconds, int | float) else ""}


def subjects(steps: list[dict[str, Any]]) -> list[Subject]:
    """Steps grouped by subject and session (sorted by name), in the order they ran within a session."""
    found: dict[str, Subject] = {}
    for step in steps:
        parts = _segments(step.get("target", ""))
        if not parts:
            continue
        subject = found.setdefault(parts[0], Subject(parts[0], f"subject-{len(found) + 1}"))
        if len(parts) == 1:
            subject.rows.append(_row(step, "(the subject)"))
            continue
        session = subject.sessions.setdefault(parts[1], Session(parts[1]))
        session.rows.append(_row(step, "/".join(parts[2:]) or "(the session)"))
    for subject in found.values():
        subject.sessions = dict(sorted(subject.sessions.items()))
    return sorted(found.values(), key=lambda s: s.name)


def totals(combined: dict[str, Any], grouped: list[Subject]) -> dict[str, Any]:
    """The numbers at the top of the page; files count the upload steps, done or not."""
    steps = combined["steps"]
    uploads = [s for s in steps if s.get("action") in UPLOADS]
    started, finished = combined["started"], combined["finished"]
    wall = (finished - started).total_seconds() if started and finished else combined["seconds"] or None
    return {"subjects": len(grouped), "sessions": sum(len(s.sessions) for s in grouped),
            "files": len(uploads), "files_done": sum(s.get("status") == "applied" for s in uploads),
            "bytes": size(sum(int(s.get("bytes") or 0) for s in steps)), "duration": duration(wall),
            "steps": len(steps), "status": Counter(str(s.get("status")) for s in steps)}


def chart(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Cumulative bytes uploaded by the time each upload finished, as SVG coordinates; or why it cannot be drawn."""
    uploads = [s for s in steps if s.get("action") in UPLOADS and s.get("status") == "applied" and s.get("bytes")]
    timed = sorted((t, int(s["bytes"])) for s in uploads if (t := when(s.get("finished"))))
    untimed = len(uploads) - len(timed)
    if not uploads:
        return {"drawn": False, "why": "No file was uploaded in this run, so there is nothing to chart."}
    if not timed:
        return {"drawn": False, "why": "This report has no per-step times (reports before version 2 do not "
                                       "record them), so bytes uploaded over time cannot be drawn."}
    starts = [t for s in uploads if (t := when(s.get("started")))]
    origin = min([*starts, timed[0][0]])
    span = max((timed[-1][0] - origin).total_seconds(), 1e-3)
    total = sum(b for _, b in timed)
    width, height = CHART_WIDTH - CHART_LEFT - CHART_MARGIN, CHART_HEIGHT - 2 * CHART_MARGIN

    def x(moment: datetime) -> float:
        return round(CHART_LEFT + width * (moment - origin).total_seconds() / span, 1)

    def y(amount: int) -> float:
        return round(CHART_MARGIN + height * (1 - amount / total), 1)

    points, running = [(float(CHART_LEFT), y(0))], 0
    for moment, amount in timed:
        points.append((x(moment), y(running)))  # a step line: bytes count once the upload finished
        running += amount
        points.append((x(moment), y(running)))
    return {"drawn": True, "width": CHART_WIDTH, "height": CHART_HEIGHT, "margin": CHART_MARGIN, "left": CHART_LEFT,
            "right": CHART_WIDTH - CHART_MARGIN, "bottom": CHART_HEIGHT - CHART_MARGIN,
            "points": " ".join(f"{a},{b}" for a, b in points), "total": size(total),
            "ticks": [(y(round(total * q / 4)), size(round(total * q / 4))) for q in range(5)], "start": stamp(origin),
            "end": f"{stamp(timed[-1][0])} (+{duration(span)})", "span": duration(span), "uploads": len(timed),
            "untimed": untimed}


def _entry(item: dict[str, Any]) -> dict[str, Any]:
    """A listed path with its reason and problems, whatever of those the report left out (the page shows '?')."""
    found = item.get("problems")
    listed = [found] if isinstance(found, str) else list(found) if isinstance(found, list) else []
    return {"path": item.get("path", "?"), "reason": item.get("reason", ""), "problems": listed}


def problems(combined: dict[str, Any], anchors: dict[str, str]) -> dict[str, Any]:
    """Everything that needs a person's attention, each linked to its subject's table where there is one."""
    failed = [{**_row(s, str(s.get("target", ""))), "anchor": anchors.get((_segments(s.get("target", "")) or [""])[0])}
              for s in combined["steps"] if s.get("status") == "failed"]
    return {"fatal": combined["fatal"], "failed": failed, "set_aside": [_entry(x) for x in combined["set_aside"]],
            "conflicts": [{"target": c.get("target", "?"), "reason": c.get("reason", ""),
                           "extra": {k: v for k, v in c.items() if k not in ("target", "reason")}}
                          for c in combined["conflicts"]],
            "deferred": [_entry(x) for x in combined["deferred"]],
            "unmapped": [_entry(x) for x in combined["unmapped"]],
            "unmapped_count": combined["unmapped_count"],
            "skipped": sum(s.get("status") == "skipped" for s in combined["steps"]),
            "not_attempted": sum(s.get("status") == "not_attempted" for s in combined["steps"])}


def _environment() -> jinja2.Environment:
    """Autoescape always on: subject and session names are patients' names and reach the page as data."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader("importer", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["size"] = size
    return environment


def html(documents: list[dict[str, Any]]) -> str:
    """One self-contained page (inline CSS and SVG, nothing fetched) for one report or several combined."""
    combined = combine(documents)
    grouped = subjects(combined["steps"])
    context = {"report": combined, "outcome": combined["outcome"], "subjects": grouped,
               "totals": totals(combined, grouped), "chart": chart(combined["steps"]),
               "problems": problems(combined, {s.name: s.anchor for s in grouped}),
               "started": stamp(combined["started"]), "finished": stamp(combined["finished"])}
    return _environment().get_template("report.html.j2").render(context)


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula is kept as text (a leading quote), as OWASP advises."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


def csv_text(documents: list[dict[str, Any]]) -> str:
    """One row per step of every report, in the reports' order, under a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for step in combine(documents)["steps"]:
        writer.writerow([_cell("" if step.get(c) is None else step.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()
