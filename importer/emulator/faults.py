"""Scripted failures: what a real network and a real service do to a migration.

A rule matches a GraphQL root field name (`createClips`), `upload`, `download` or `*`,
fires at most `times` times (all the time when omitted) with `probability`, drawn from a
generator seeded by the configuration so a failing test replays exactly.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Any

_FAULT = re.compile(r"^(status:\d{3}(:retry-after=\d+)?|reset|truncate:\d+|delay:\d+|"
                    r"commit-then-status:\d{3}|commit-then-reset)$")


class FaultConfigError(ValueError):
    """The fault configuration cannot be understood."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inflict on one request."""

    kind: str  # status | reset | truncate | delay | commit-then-status | commit-then-reset
    status: int = 0
    retry_after: int | None = None
    amount: int = 0  # bytes for truncate, milliseconds for delay

    @classmethod
    def parse(cls, text: str) -> Fault:
        if not _FAULT.match(text):
            raise FaultConfigError(f"unknown fault {text!r}")
        head, _, rest = text.partition(":")
        match head:
            case "status":
                code, _, after = rest.partition(":retry-after=")
                return cls("status", status=int(code), retry_after=int(after) if after else None)
            case "commit-then-status":
                return cls(head, status=int(rest))
            case "truncate" | "delay":
                return cls(head, amount=int(rest))
        return cls(head)


@dataclass(slots=True)
class _Rule:
    match: str
    fault: Fault
    text: str
    times: int | None
    probability: float


class Faults:
    """The active rules, and a log of what fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._random = random.Random(0)
        self.log: list[dict[str, Any]] = []

    def configure(self, config: dict[str, Any]) -> None:
        """Replace the rules; an empty rule list turns faults off."""
        if not isinstance(config, dict) or not isinstance(config.get("rules", []), list):
            raise FaultConfigError('expected {"seed": N, "rules": [{"match", "fault", "times", "probability"}]}')
        rules = []
        for i, rule in enumerate(config.get("rules", [])):
            if not isinstance(rule, dict) or not isinstance(rule.get("match"), str):
                raise FaultConfigError(f"rules[{i}]: needs a string 'match'")
            times = rule.get("times")
            probability = rule.get("probability", 1.0)
            if times is not None and (not isinstance(times, int) or times < 0):
                raise FaultConfigError(f"rules[{i}].times: expected a whole number")
            if not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
                raise FaultConfigError(f"rules[{i}].probability: expected a number from 0 to 1")
            fault = Fault.parse(str(rule.get("fault", "")))
            rules.append(_Rule(rule["match"], fault, rule["fault"], times, float(probability)))
        with self._lock:
            self._rules = rules
            self._random = random.Random(config.get("seed", 0))
            self.log = []

    def pick(self, names: list[str]) -> Fault | None:
        """The fault to inflict on a request touching `names`, if any; records it as fired."""
        with self._lock:
            for rule in self._rules:
                hit = next((n for n in names if rule.match in (n, "*")), None)
                if hit is None or rule.times == 0 or self._random.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                self.log.append({"seq": len(self.log) + 1, "match": rule.match, "target": hit,
                                 "fault": rule.text})
                return rule.fault
        return None

    def fired(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.log)
