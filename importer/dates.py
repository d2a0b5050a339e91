"""Session dates read from folder names.

Labs name session folders in many ways; the unambiguous year-first forms are read at the
start of the name or as a separate word in it (`2023_07_18 follow-up`, `Session 2023-07-18`).
Day-first and month-first names (`18-07-2023`) cannot be told apart, so they are read only
with an explicit `--date-format` (strptime syntax). Dates are returned zero-padded ISO.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

_EDGE_BEFORE, _EDGE_AFTER = r"(?<![0-9A-Za-z])", r"(?![0-9A-Za-z])"
_YEAR_FIRST = (
    re.compile(_EDGE_BEFORE + r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})" + _EDGE_AFTER),
    re.compile(_EDGE_BEFORE + r"(?P<y>\d{4})(?P<s>[_.])(?P<m>\d{2})(?P=s)(?P<d>\d{2})" + _EDGE_AFTER),
    re.compile(_EDGE_BEFORE + r"(?P<y>(?:19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})" + _EDGE_AFTER),
)
_AMBIGUOUS = re.compile(_EDGE_BEFORE + r"\d{1,2}[-_.]\d{1,2}[-_.]\d{4}" + _EDGE_AFTER)
_DIRECTIVES = {"d": r"\d{1,2}", "m": r"\d{1,2}", "Y": r"\d{4}", "y": r"\d{2}", "b": r"[A-Za-z]{3,}",
               "B": r"[A-Za-z]{3,}", "%": "%"}


@dataclass(frozen=True, slots=True)
class Found:
    """What a folder name says about the date: a date, a text that is not a valid date, or a hint."""

    day: str | None = None
    invalid: str | None = None
    ambiguous: str | None = None


def format_error(date_format: str) -> str | None:
    """Why a --date-format cannot read dates, or None when it can (it must name year, month and day)."""
    try:
        pattern = _format_regex(date_format)
    except ValueError as exc:
        return str(exc)
    sample = date(2023, 7, 18)
    try:
        text = sample.strftime(date_format)
        readable = pattern.fullmatch(text) and datetime.strptime(text, date_format).date() == sample
    except ValueError:
        readable = False
    return None if readable else "it must name the year, month and day, e.g. %d-%m-%Y or %d.%m.%Y"


def _format_regex(date_format: str) -> re.Pattern[str]:
    parts, i = [], 0
    while i < len(date_format):
        if date_format[i] != "%":
            parts.append(re.escape(date_format[i]))
            i += 1
            continue
        directive = date_format[i + 1:i + 2]
        if directive not in _DIRECTIVES:
            raise ValueError(f"%{directive} is not supported; use %d, %m, %b, %B, %Y and %y")
        parts.append(_DIRECTIVES[directive])
        i += 2
    return re.compile("".join(parts))


def _with_format(name: str, date_format: str) -> Found | None:
    pattern = re.compile(_EDGE_BEFORE + _format_regex(date_format).pattern + _EDGE_AFTER)
    match = pattern.search(name)
    if match is None:
        return None
    try:
        return Found(day=datetime.strptime(match.group(0), date_format).date().isoformat())
    except ValueError:
        return Found(invalid=match.group(0))


def _year_first(name: str) -> Found | None:
    matches = [m for m in (p.search(name) for p in _YEAR_FIRST) if m]
    if not matches:
        return None
    first = min(matches, key=lambda m: m.start())
    try:
        return Found(day=date(int(first["y"]), int(first["m"]), int(first["d"])).isoformat())
    except ValueError:
        return Found(invalid=first.group(0))


@lru_cache(maxsize=4096)
def from_name(name: str, date_format: str | None = None) -> Found:
    """The date in a folder name: `date_format` first when given, then the year-first forms. Remembered: a lab's
    session folders are named after few dates and forms (`2025-03-14`, `Session 1`), by the thousand."""
    found = (_with_format(name, date_format) if date_format else None) or _year_first(name)
    if found is not None:
        return found
    ambiguous = _AMBIGUOUS.search(name)
    return Found(ambiguous=ambiguous.group(0) if ambiguous else None)
