"""Splitting a migration across machines: each subject belongs to exactly one of N shards.

The assignment hashes the subject's identity (its MRN if it has one, else its name), so it
is stable across runs and machines and needs no coordinator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from .errors import InputError
from .model import LocalTree, Subject, key

_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse(text: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N."""
    match = _SHARD.match(text.strip())
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise InputError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/4",
                         "a Kubernetes indexed Job passes $((JOB_COMPLETION_INDEX + 1))/N")
    return int(match.group(1)), int(match.group(2))


def shard_of(subject: Subject, count: int) -> int:
    """The 1-based shard of a subject among `count`."""
    identity = f"mrn:{subject.mrn}" if subject.mrn else f"name:{key(subject.name)}"
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big") % count + 1


def select(local: LocalTree, shard: tuple[int, int] | None) -> LocalTree:
    """The part of the folders that one shard imports. Sessions set aside or deferred are listed by shard 1 only:
    an invalid session's identity (its MRN) may be unreadable, so it has no shard, and a merged report lists it once."""
    if shard is None:
        return local
    index, count = shard
    kept = tuple(s for s in local.tree.subjects if shard_of(s, count) == index)
    folders = {s.source for s in kept}
    return dataclasses.replace(local, tree=dataclasses.replace(local.tree, subjects=kept),
                               unmapped=tuple(u for u in local.unmapped if u.subject_folder in folders),
                               set_aside=local.set_aside if index == 1 else (),
                               deferred=local.deferred if index == 1 else ())
