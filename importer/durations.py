"""Durations as operators write them on a command line: `90s`, `30m`, `2h`, `7d` (a bare number is seconds)."""

from __future__ import annotations

import re

from .errors import InputError

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str) -> float:
    """Seconds, or an input error naming the option and the forms it takes."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"{option} {text!r}: expected a duration such as 90s, 30m, 2h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]
