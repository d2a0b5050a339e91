"""Text views of plans and reports, rendered from the same data as their JSON views."""

from __future__ import annotations

import json
from typing import Any

from .plan import Action, Plan

_LEVEL = {1: 0, 2: 1, 4: 2, 5: 3}  # path segments of a target -> indentation (a trial is condition/name)


def size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _fields(changes: dict[str, Any]) -> str:
    return ", ".join(("+" if c["before"] is None else "~") + name for name, c in changes.items())


def _label(action: Action, detail: dict[str, Any], name: str) -> str:
    match action:
        case Action.CREATE_SUBJECT:
            return f"subject {name}" + (f" (MRN {detail['mrn']})" if detail.get("mrn") else "")
        case Action.UPDATE_SUBJECT_METADATA | Action.UPDATE_SESSION_METADATA:
            parts = [f"metadata: {_fields(detail['changes'])}"] if detail.get("changes") else []
            parts += [f"date {detail['date']}"] if detail.get("date") else []
            parts += [f"(server keeps {', '.join(detail['kept'])})"] if detail.get("kept") else []
            return " ".join(parts)
        case Action.CREATE_SESSION:
            return f"session {name}" + (f" ({detail['date']})" if detail.get("date") else " (no date)")
        case Action.CREATE_TRIAL:
            return f"trial {detail['condition']}/{detail['title']}"
        case Action.UPLOAD_FILE | Action.REPLACE_FILE:
            return f"file {name} ({detail['data_type']}, {size(detail.get('size'))})"
        case Action.UPDATE_TRIAL_METADATA:
            options = [f"side {detail['side']}"] if detail.get("side") else []
            options += [f"representative {','.join(detail['representative'])}"] if detail.get("representative") else []
            return "options: " + ", ".join(options)
    raise AssertionError(action)


def _context(segments: list[str], shown: set[str], lines: list[str]) -> None:
    """Lines naming the unchanged parents of a change, so every change reads in place."""
    for depth in (1, 2, 4):
        if len(segments) > depth:
            prefix = "/" + "/".join(segments[:depth])
            if prefix not in shown:
                shown.add(prefix)
                name = "/".join(segments[2:4]) if depth == 4 else segments[depth - 1]
                kind = {1: "subject", 2: "session", 4: "trial"}[depth]
                lines.append(f"{'    ' * _LEVEL[depth]}  {kind} {name}")


def plan_text(plan: Plan) -> str:
    lines = [f"Plan for project {plan.project} ({', '.join(plan.roots) or 'no folders'})", ""]
    shown: set[str] = set()
    for step in plan.steps:
        segments = step.target.strip("/").split("/")
        _context(segments, shown, lines)
        shown.add(step.target)
        reason = f"  [{step.reason}]" if step.reason else ""
        level = _LEVEL.get(len(segments), 3) + step.action.value.startswith("update_")
        indent = "    " * level
        lines.append(f"{indent}{step.action.sigil:>3} {_label(step.action, step.detail, segments[-1])}{reason}")
    if not plan.steps:
        lines.append("No changes: the server already holds what the folders hold.")
    for title, rows in (("Unmapped files (not uploaded)", [f"{u['path']}: {u['reason']}" for u in plan.unmapped]),
                        ("Conflicts (left alone)", [f"{c['target']}: {c['reason']}" for c in plan.conflicts]),
                        ("Warnings", list(plan.warnings))):
        if rows:
            lines += ["", f"{title}:", *(f"  {row}" for row in rows)]
    lines += ["", summary_line(plan)]
    return "\n".join(lines) + "\n"


def summary_line(plan: Plan) -> str:
    s = plan.summary
    creates = [f"{s[a]} {n}" for a, n in (("create_subject", "subjects"), ("create_session", "sessions"),
                                           ("create_trial", "trials")) if s[a]]
    updates = sum(s[a.value] for a in Action if a.value.startswith("update_"))
    return (f"Plan: {s['changes']} changes: {', '.join(creates) or 'nothing'} to create, "
            f"{s['upload_file']} files to upload and {s['replace_file']} to replace ({size(s['bytes_to_upload'])}), "
            f"{updates} metadata updates; {s['unmapped']} unmapped, {s['conflicts']} conflicts.")


def report_line(report: dict[str, Any]) -> str:
    c = report["summary"]
    conflicts = len(report.get("conflicts", []))
    return (f"Applied {c['applied']} of {c['steps']} steps ({c['failed']} failed, {c['skipped']} skipped, "
            f"{c['not_attempted']} not attempted), uploaded {size(c['bytes'])} in {c['seconds']:.1f} s"
            + (f"; {conflicts} conflict{'s' * (conflicts != 1)} left alone (see `plan`)." if conflicts else "."))


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
