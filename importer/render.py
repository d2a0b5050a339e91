"""Text views of plans and reports, rendered from the same data as their JSON views."""

from __future__ import annotations

import json
from typing import Any

from . import steps as st
from .address import Address
from .steps import Action, Plan, Step

_INDENT = {"subject": 0, "session": 1, "trial": 2, "file": 3}


def size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _fields(changes: dict[str, Any]) -> str:
    return ", ".join(("+" if c["before"] is None else "~") + name for name, c in changes.items())


def _label(step: Step) -> str:
    match step.payload:
        case st.CreateSubject(mrn=mrn):
            return f"subject {step.target.subject}" + (f" (MRN {mrn})" if mrn else "")
        case st.UpdateSubjectMetadata() | st.UpdateSessionMetadata():
            payload = step.payload
            parts = [f"metadata: {_fields(payload.changes)}"] if payload.changes else []
            parts += [f"date {payload.date}"] if isinstance(payload, st.UpdateSessionMetadata) and payload.date else []
            parts += [f"(server keeps {', '.join(payload.kept)})"] if payload.kept else []
            return " ".join(parts)
        case st.CreateSession(date=date):
            return f"session {step.target.session}" + (f" ({date})" if date else " (no date)")
        case st.CreateTrial(title=title, condition=condition):
            return f"trial {condition}/{title}"
        case st.UploadFile(data_type=data_type, size=file_size):
            return f"file {step.target.file} ({data_type}, {size(file_size)})"
        case st.RemoveRecord(status=status, why=why):
            return f"stale record of {step.target.file} ({status}, {why})"
        case st.UpdateTrialMetadata(side=side, representative=representative):
            options = [f"side {side}"] if side else []
            options += [f"representative {','.join(representative)}"] if representative else []
            return "options: " + ", ".join(options)
    raise AssertionError(step.action)


def _name(address: Address) -> str:
    return {"subject": address.subject, "session": address.session,
            "trial": f"{address.condition}/{address.trial}"}[address.kind] or ""


def _context(step: Step, shown: set[Address], lines: list[str]) -> None:
    """Lines naming the unchanged objects a change lies in (and, for an update, the object itself), so every
    change reads in place."""
    target = step.target
    chain = [Address(target.subject), target.session_address, target.parent, target]
    for address in dict.fromkeys(a for a in chain if a is not None):
        is_target = address == target
        if address in shown or (is_target and not step.action.value.startswith("update_")):
            continue
        shown.add(address)
        lines.append(f"{'    ' * _INDENT[address.kind]}  {address.kind} {_name(address)}")


def plan_text(plan: Plan) -> str:
    lines = [f"Plan for project {plan.project} ({', '.join(plan.roots) or 'no folders'})", ""]
    shown: set[Address] = set()
    for step in plan.steps:
        _context(step, shown, lines)
        shown.add(step.target)
        reason = f"  [{step.reason}]" if step.reason else ""
        level = _INDENT[step.target.kind] + step.action.value.startswith("update_")
        lines.append(f"{'    ' * level}{step.action.sigil:>3} {_label(step)}{reason}")
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
