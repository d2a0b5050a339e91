"""Where a plan step acts: a typed address of a subject, session, trial or data file.

Rendered as the path a reader knows (`/Subject01/2025-03-14/Barefoot/Walk01/Walk01.c3d`);
code asks an address for its kind, parent and session instead of cutting strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

KINDS = ("subject", "session", "trial", "file")


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A subject, optionally narrowed to one of its sessions, a trial (condition and name), a data file."""

    subject: str
    session: str | None = None
    condition: str | None = None
    trial: str | None = None
    file: str | None = None

    @property
    def kind(self) -> str:
        if self.file is not None:
            return "file"
        if self.trial is not None:
            return "trial"
        return "session" if self.session is not None else "subject"

    @property
    def parent(self) -> Address | None:
        """The object this one is created in: a trial's parent is its session (a condition is only a path)."""
        match self.kind:
            case "file":
                return Address(self.subject, self.session, self.condition, self.trial)
            case "trial":
                return Address(self.subject, self.session)
            case "session":
                return Address(self.subject)
        return None

    @property
    def session_address(self) -> Address:
        """The session a trial or file lies in (a subject's is itself)."""
        return Address(self.subject, self.session) if self.session is not None else self

    def child(self, name: str) -> Address:
        """The session, or the data file, of that name below this address."""
        if self.kind == "subject":
            return Address(self.subject, name)
        return Address(self.subject, self.session, self.condition, self.trial, name)

    def trial_of(self, condition: str, name: str) -> Address:
        return Address(self.subject, self.session, condition, name)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in (self.subject, self.session, self.condition, self.trial, self.file) if s is not None)

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)

    @classmethod
    def parse(cls, text: str) -> Address:
        """The address a rendered target names: 1 segment subject, 2 session, 4 trial, 5 file."""
        segments = text.strip("/").split("/") if text.strip("/") else []
        if len(segments) not in (1, 2, 4, 5):
            raise InputError(f"{text!r} is not the address of a subject, session, trial or file")
        return cls(*segments)  # type: ignore[arg-type]
