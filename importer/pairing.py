"""One pairing rule for every level: local objects and server objects, matched by keys in order.

Like rclone's march, each pair has one of three outcomes — only local, matched, only on the
server — and a key that several server objects share is reported as a duplicate, never
guessed at. Subjects pair by MRN, then name; sessions by name; trials by condition and
name; data files by name. Keys are normalised (`model.key`) by the caller's key functions.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .model import Subject, key

L = TypeVar("L")
R = TypeVar("R")
KeyOf = Callable[[object], Hashable | None]  # None: this object has no such key (e.g. no MRN)


@dataclass(frozen=True, slots=True)
class Pairing(Generic[L, R]):
    each: tuple[tuple[L, tuple[R, ...]], ...]  # every local object, in order, with the server objects of its key
    server_only: tuple[R, ...]

    @property
    def matched(self) -> tuple[tuple[L, R], ...]:
        return tuple((item, found[0]) for item, found in self.each if len(found) == 1)

    @property
    def duplicates(self) -> tuple[tuple[L, tuple[R, ...]], ...]:
        """Local objects whose key several server objects share."""
        return tuple((item, found) for item, found in self.each if len(found) > 1)


def _index(items: Sequence[R], key_of: KeyOf) -> dict[Hashable, list[R]]:
    index: dict[Hashable, list[R]] = {}
    for item in items:
        value = key_of(item)
        if value is not None:
            index.setdefault(value, []).append(item)
    return index


def _found(item: L, keys: Sequence[KeyOf], indexes: list[dict[Hashable, list[R]]]) -> tuple[R, ...]:
    for key_of, index in zip(keys, indexes, strict=True):
        value = key_of(item)
        if value is not None and value in index:
            return tuple(index[value])
    return ()


def pair(local: Iterable[L], server: Iterable[R], keys: Sequence[KeyOf]) -> Pairing[L, R]:
    """Pair in one pass: each local object takes the first key that finds server objects. Linear in both sides."""
    server = list(server)
    indexes = [_index(server, key_of) for key_of in keys]
    each = tuple((item, _found(item, keys, indexes)) for item in local)
    claimed = {id(r) for _, found in each for r in found}
    return Pairing(each, tuple(r for r in server if id(r) not in claimed))


SUBJECT_KEYS = (lambda s: s.mrn or None, lambda s: key(s.name))  # MRN first, so a renamed folder is found
SESSION_KEYS = (lambda s: key(s.name),)
TRIAL_KEYS = (lambda t: (key(t.condition), key(t.name)),)
FILE_KEYS = (lambda f: key(f.name),)


def match_subjects(local: tuple[Subject, ...], server: tuple[Subject, ...]
                   ) -> tuple[dict[int, Subject], dict[int, str]]:
    """The server subject of each local one (by `id`), and the problem of each that cannot be paired safely."""
    pairing = pair(local, server, SUBJECT_KEYS)
    matched: dict[int, Subject] = {}
    problems: dict[int, str] = {}
    for subject, remote in pairing.matched:
        if key(remote.name) == key(subject.name) and subject.mrn and remote.mrn and remote.mrn != subject.mrn:
            problems[id(subject)] = (f"the server's subject {remote.name!r} has MRN {remote.mrn!r}, "
                                     f"the folder says {subject.mrn!r}")
        else:
            matched[id(subject)] = remote
    for subject, remotes in pairing.duplicates:
        by_mrn = subject.mrn and all(r.mrn == subject.mrn for r in remotes)
        problems[id(subject)] = (f"{len(remotes)} subjects on the server have MRN {subject.mrn!r}" if by_mrn else
                                 f"{len(remotes)} subjects on the server are named {subject.name!r}")
    return matched, problems
