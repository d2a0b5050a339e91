"""Selection as a pure function over the scanner's tree: which sessions --include/--exclude/--subject keep."""

from __future__ import annotations

import dataclasses

import pytest

from importer.errors import InputError
from importer.model import Deferred, LocalTree, Session, SetAside, Subject, Tree, Unmapped
from importer.selection import Selection, select


def lab() -> LocalTree:
    def subject(name: str, mrn: str, *sessions: str) -> Subject:
        return Subject(name, mrn=mrn, source=f"/lab/{name}",
                       sessions=tuple(Session(s) for s in sessions))

    return LocalTree(Tree((subject("Smith A", "11", "2019-03-01", "2024-05-02"), subject("Jones", "22", "2019-01-01"))),
                     roots=("/lab",), paths=("/lab",),
                     unmapped=(Unmapped("lab/Smith A/2019-03-01/a.txt", "x", "/lab/Smith A"),
                               Unmapped("lab/Smith A/2024-05-02/b.txt", "x", "/lab/Smith A"),
                               Unmapped("lab/Jones/2019-01-01/c.txt", "x", "/lab/Jones")))


def kept(local: LocalTree) -> list[str]:
    return [f"{s.name}/{se.name}" for s in local.tree.subjects for se in s.sessions]


@pytest.mark.parametrize(("selection", "sessions"), [
    (Selection(), ["Smith A/2019-03-01", "Smith A/2024-05-02", "Jones/2019-01-01"]),
    (Selection(include=("Smith*",)), ["Smith A/2019-03-01", "Smith A/2024-05-02"]),
    (Selection(include=("Smith*",), exclude=("*/2019-*",)), ["Smith A/2024-05-02"]),
    (Selection(include=("*/2019-*",)), ["Smith A/2019-03-01", "Jones/2019-01-01"]),
    (Selection(exclude=("Jones",)), ["Smith A/2019-03-01", "Smith A/2024-05-02"]),
    (Selection(include=("Jones", "Smith A/2024*")), ["Smith A/2024-05-02", "Jones/2019-01-01"]),
    (Selection(subjects=("22",)), ["Jones/2019-01-01"]),
    (Selection(subjects=("Smith A",), exclude=("*/2024-*",)), ["Smith A/2019-03-01"]),
    (Selection(include=("smith*",), subjects=("Jones",)), []),
])
def test_a_session_is_kept_when_it_or_its_subject_is_included_and_neither_is_excluded(selection, sessions):
    if not sessions:
        with pytest.raises(InputError, match=r"--include 'smith\*' --subject 'Jones' match no session folder"):
            select(lab(), selection)
        return
    assert kept(select(lab(), selection)) == sessions


def test_unmapped_files_of_dropped_subjects_and_sessions_go_too():
    narrowed = select(lab(), Selection(include=("Smith*",), exclude=("*/2019-*",)))
    assert [u.path for u in narrowed.unmapped] == ["lab/Smith A/2024-05-02/b.txt"]
    assert select(lab(), Selection()) == lab()


def test_sessions_set_aside_or_deferred_follow_the_selection():
    local = dataclasses.replace(
        lab(), set_aside=(SetAside("lab/Smith A/2019-03-01", ("bad",)), SetAside("lab/Jones/2020-01-01", ("bad",))),
        deferred=(Deferred("lab/Smith A/2024-01-01", "still being written"),))
    selected = select(local, Selection(include=("Smith*",), exclude=("*/2019-*",)))
    assert selected.set_aside == () and [d.path for d in selected.deferred] == ["lab/Smith A/2024-01-01"]
    assert [a.path for a in select(local, Selection(subjects=("Jones",))).set_aside] == ["lab/Jones/2020-01-01"]
