"""Text views of plans and reports, rendered from the same data as their JSON views."""

from __future__ import annotations

import json
from typing import Any

from . import steps as st
from .address import Address
from .steps import Action, Plan, Step

_INDENT = {"subject": 0, "session": 1, "trial": 2, "file": 3}
SHORT = 40  # characters of a metadata value shown in the text plan


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 change`, `2 changes`: counts read as sentences, not as `1 changes`."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def value(data: Any, limit: int = SHORT) -> str:
    """A metadata value as a clinician reads it: `(empty)` for blanks, JSON otherwise, cut at `limit`."""
    if data in (None, "", [], {}) or (isinstance(data, dict) and data.get("value") in ("", [])):
        return "(empty)"
    text = json.dumps(data, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _why(entry: dict[str, Any]) -> str:
    return f" ({entry['why']})" if entry.get("why") else ""


def kept(name: str, values: dict[str, Any]) -> str:
    """A field the server keeps because it already has another value; both values shown, and why if known."""
    why = f"; {values['why']}" if values.get("why") else ""
    return f"server keeps {name} {value(values['server'])} (folders say {value(values['local'])}{why})"


def _metadata_lines(payload: st.UpdateSubjectMetadata | st.UpdateSessionMetadata) -> list[str]:
    """One line per field the step fills or corrects (with why it is safe), and one per field the server keeps."""
    return ([f"{name}: {value(c['before'])} → {value(c['after'])}{_why(c)}" for name, c in payload.changes.items()]
            + [kept(name, values) for name, values in payload.kept.items()])


def _label(step: Step) -> str:
    match step.payload:
        case st.CreateSubject(mrn=mrn):
            return f"subject {step.target.subject}" + (f" (MRN {mrn})" if mrn else "")
        case st.UpdateSubjectMetadata():
            return "metadata"
        case st.UpdateSessionMetadata(changes=changes, date=date):
            return ", ".join(["metadata"] * bool(changes or not date) + [f"date {date}"] * bool(date))
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
        case st.CreateReports(norm_name=norm):
            return "automatic interactive reports" + (f" (norm {norm})" if norm else "")
    raise AssertionError(step.action)


def _about_itself(step: Step) -> bool:
    """A step that acts on an object already shown (an update, a report request) reads one level under it."""
    return step.action.value.startswith("update_") or step.action is Action.CREATE_REPORTS


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
        if address in shown or (is_target and not _about_itself(step)):
            continue
        shown.add(address)
        lines.append(f"{'    ' * _INDENT[address.kind]}  {address.kind} {_name(address)}")


def _details(step: Step) -> list[str]:
    """The lines under a step's own line: the values of a metadata change."""
    match step.payload:
        case st.UpdateSubjectMetadata() | st.UpdateSessionMetadata():
            return _metadata_lines(step.payload)
    return []


def _step_lines(step: Step) -> list[str]:
    reason = f"  [{step.reason}]" if step.reason else ""
    level = _INDENT[step.target.kind] + _about_itself(step)
    return [f"{'    ' * level}{step.action.sigil:>3} {_label(step)}{reason}",
            *(f"{'    ' * level}      {line}" for line in _details(step))]


def _sections(plan: Plan) -> list[tuple[str, list[str]]]:
    return [("Set aside (invalid, not imported)",
             [f"{a['path']}: {'; '.join(a['problems'])}" for a in plan.set_aside]),
            ("Deferred (still being written)", [f"{d['path']}: {d['reason']}" for d in plan.deferred]),
            ("Unmapped files (not uploaded)", [f"{u['path']}: {u['reason']}" for u in plan.unmapped]),
            ("Conflicts (left alone)", [f"{c['target']}: {c['reason']}" for c in plan.conflicts]),
            ("On the server only (left alone)",
             [f"{o['kind']} {o['target']}" for o in sorted(plan.server_only, key=lambda o: o["target"])]),
            ("Warnings", list(plan.warnings))]


def plan_text(plan: Plan) -> str:
    """Every change under its subject and session lines, then what is left alone, then the counts."""
    lines = [f"Plan for project {plan.project} ({', '.join(plan.roots) or 'no folders'})", ""]
    shown: set[Address] = set()
    for step in plan.steps:
        _context(step, shown, lines)
        shown.add(step.target)
        lines += _step_lines(step)
    if not plan.steps:
        lines.append("No changes: the server already holds what the folders hold.")
    for title, rows in _sections(plan):
        if rows:
            lines += ["", f"{title}:", *(f"  {row}" for row in rows)]
    lines += ["", summary_line(plan)]
    if plan.snapshot.get("from_snapshot"):
        lines.append(snapshot_line(plan.snapshot))
    return "\n".join(lines) + "\n"


def snapshot_line(snapshot: dict[str, Any]) -> str:
    """How many subjects were planned from snapshots (unchanged in the folders and on the server)."""
    newest, oldest = snapshot.get("newest_full_read", ""), snapshot.get("oldest_full_read", "")
    when = f"last read in full {oldest}" + (f" to {newest}" if newest != oldest else "")
    return (f"{snapshot['from_snapshot']} of {plural(snapshot['subjects'], 'subject')} planned from snapshots "
            f"(unchanged in the folders and on the server; {when}); --full reads everything.")


def summary_line(plan: Plan) -> str:
    s = plan.summary
    creates = [plural(s[a], noun) for a, noun in (("create_subject", "subject"), ("create_session", "session"),
                                                  ("create_trial", "trial")) if s[a]]
    updates = sum(s[a.value] for a in Action if a.value.startswith("update_"))
    extras = f", {plural(s['remove_record'], 'stale record')} to remove" if s["remove_record"] else ""
    extras += f", {plural(s['create_reports'], 'report request')}" if s["create_reports"] else ""
    return (f"Plan: {plural(s['changes'], 'change')}: {', '.join(creates) or 'nothing'} to create, "
            f"{plural(s['upload_file'], 'file')} to upload and {s['replace_file']} to replace "
            f"({size(s['bytes_to_upload'])}), {plural(updates, 'metadata update')}{extras}; {s['unmapped']} unmapped, "
            f"{plural(s['conflicts'], 'conflict')}, {s['server_only']} on the server only"
            + "".join(f", {s[k]} {label}" for k, label in (("set_aside", "set aside"), ("deferred", "deferred"))
                      if s[k]) + ".")


def report_line(report: dict[str, Any]) -> str:
    """The run in one line; the bytes are those actually sent (a cut-short upload's included)."""
    c = report["summary"]
    conflicts = len(report.get("conflicts", []))
    sent = c.get("bytes_sent", c["bytes"])
    return (f"Applied {c['applied']} of {plural(c['steps'], 'step')} ({c['failed']} failed, {c['skipped']} skipped, "
            f"{c['not_attempted']} not attempted), sent {size(sent)} in {c['seconds']:.1f} s"
            + (f"; {plural(conflicts, 'conflict')} left alone (see `plan`)." if conflicts else "."))


def as_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
