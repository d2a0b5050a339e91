"""Narrowing a run to part of the folders: `--include`, `--exclude` and `--subject`, as a pure function.

Patterns match folder paths relative to the import root (`Smith`, `Smith/2019-03-01`), so the same
command selects the same sessions on every machine and in every shard. Matching is case-sensitive
and on NFC text, like every other name comparison of the tool.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePath

from .errors import InputError
from .model import LocalTree, Session, Subject, Unmapped, key


@dataclass(frozen=True, slots=True)
class Selection:
    """What the command line asked for; empty means everything."""

    include: tuple[str, ...] = ()  # globs: a session is kept when it or its subject matches one
    exclude: tuple[str, ...] = ()  # globs: a session is dropped when it or its subject matches one
    subjects: tuple[str, ...] = ()  # subject names or MRNs

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude or self.subjects)

    def describe(self) -> str:
        return " ".join([*(f"--include {p!r}" for p in self.include), *(f"--exclude {p!r}" for p in self.exclude),
                         *(f"--subject {s!r}" for s in self.subjects)])


def _folder(subject: Subject) -> str:
    """The subject's folder name (its name, unless a scan of another layout named it otherwise)."""
    return key(Path(subject.source).name) if subject.source else key(subject.name)


def _matches(paths: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(path, key(pattern)) for path in paths for pattern in patterns)


def _named(subject: Subject, names: tuple[str, ...]) -> bool:
    wanted = {key(n) for n in names}
    return not names or key(subject.name) in wanted or (subject.mrn is not None and key(subject.mrn) in wanted)


def _kept_sessions(subject: Subject, selection: Selection) -> tuple[Session, ...]:
    folder = _folder(subject)

    def kept(session: Session) -> bool:
        paths = (f"{folder}/{key(session.name)}", folder)  # a session is named after its folder
        included = not selection.include or _matches(paths, selection.include)
        return included and not _matches(paths, selection.exclude)

    return tuple(s for s in subject.sessions if kept(s)) if _named(subject, selection.subjects) else ()


def _session_folder(unmapped: Unmapped) -> str | None:
    """The session folder an unmapped file lies in: its path reads `<root>/<subject>/<session>/...`."""
    if unmapped.subject_folder is None:
        return None
    parts = PurePath(unmapped.path).parts
    return str(Path(unmapped.subject_folder) / parts[2]) if len(parts) > 3 else None


def select(local: LocalTree, selection: Selection) -> LocalTree:
    """The sessions the selection keeps, their subjects, and only their unmapped files.

    Raises InputError when the selection keeps nothing, naming the patterns, since a typo
    would otherwise read as "No changes".
    """
    if not selection:
        return local
    subjects = []
    for subject in local.tree.subjects:
        sessions = _kept_sessions(subject, selection)
        if sessions:
            subjects.append(dataclasses.replace(subject, sessions=sessions))
    if not subjects:
        raise InputError(f"{selection.describe()} match no session folder below {', '.join(local.paths)}",
                         "patterns match paths relative to the import root, e.g. 'Smith*' or 'Smith*/2019-*'")
    subject_folders = {s.source for s in subjects}
    session_folders = {str(Path(s.source or "") / se.name) for s in subjects for se in s.sessions}
    unmapped = tuple(u for u in local.unmapped if u.subject_folder in subject_folders
                     and _session_folder(u) in (None, *session_folders))
    return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=tuple(subjects)),
                               unmapped=unmapped,
                               set_aside=tuple(a for a in local.set_aside if _left_out(a.path, selection)),
                               deferred=tuple(d for d in local.deferred if _left_out(d.path, selection)))


def _left_out(path: str, selection: Selection) -> bool:
    """Whether a session left out of the run (set aside, deferred) is one the selection asks for: its path reads
    `<root>/<subject>/<session>`; its subject is known by folder name only (its config may be unreadable)."""
    parts = PurePath(path).parts[1:3]
    if len(parts) < 2:
        return not selection.include and not selection.subjects
    folder, paths = key(parts[0]), (f"{key(parts[0])}/{key(parts[1])}", key(parts[0]))
    named = not selection.subjects or folder in {key(n) for n in selection.subjects}
    included = not selection.include or _matches(paths, selection.include)
    return named and included and not _matches(paths, selection.exclude)
