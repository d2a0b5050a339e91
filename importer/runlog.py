"""What every run leaves where the operator looks: log lines per session imported and per problem,
and the report of a run that stopped before it applied anything.

A nightly job is read through its log file and its exit code, so a run that ends on invalid
input, a held lock, an unreachable server or Ctrl-C says so there as well as a run that worked.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from .address import Address
from .errors import InputError, Interrupted, LockHeld
from .render import plural, size

log = logging.getLogger("moveshelf_import")


def stopped_outcome(error: BaseException) -> str:
    """The report's outcome for a run that ended on this exception."""
    if isinstance(error, (KeyboardInterrupt, Interrupted)):
        return "interrupted"
    if isinstance(error, LockHeld):
        return "locked"
    if isinstance(error, InputError):
        return "invalid"
    return "fatal"


def sessions_imported(report: dict[str, Any]) -> list[str]:
    """One line per session in which this run applied something: its files and bytes. Steps are grouped by the
    first two segments of their target, and each session's address is parsed once (a run has tens of thousands of
    steps)."""
    files: dict[str, int] = defaultdict(int)
    stored: dict[str, int] = defaultdict(int)
    for step in report["steps"]:
        if step["status"] == "applied":
            session = "/".join(step["target"].split("/", 3)[:3])
            files[session] += step["action"] in ("upload_file", "replace_file")
            stored[session] += step["bytes"]
    sessions = sorted(a for a in map(Address.parse, files) if a.session is not None)
    return [f"imported {a}: {plural(files[str(a)], 'file')}, {size(stored[str(a)])}" for a in sessions]


def problems(report: dict[str, Any]) -> list[str]:
    """What needs a person, one line each (failed steps are logged as they fail)."""
    return ([f"conflict, left alone: {c['target']}: {c['reason']}" for c in report.get("conflicts", [])]
            + [f"set aside: {a['path']}: {'; '.join(a['problems'])}" for a in report.get("set_aside", [])])


def write(report: dict[str, Any]) -> None:
    """Sessions imported and deferred at INFO (the log file), problems at WARNING (also on a quiet console)."""
    for line in sessions_imported(report):
        log.info(line)
    for deferred in report.get("deferred", []):
        log.info(f"deferred: {deferred['path']}: {deferred['reason']}")
    for line in problems(report):
        log.warning(line)
