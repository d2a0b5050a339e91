"""Listing import folders safely: every way a folder can be unusable becomes a Problem naming it.

The scanner must never stop on an OSError half-way, and must see at validate time
everything that would stop a plan or an apply later: folders it may not list, files it may
not read, names that are not UTF-8, pipes and devices, and links — which may point
anywhere, loop, or dangle. A link is followed only when its target (after every hop)
stays inside the import root; links leaving the root are refused at any depth.
"""

from __future__ import annotations

import errno
import os
import stat
from enum import Enum
from pathlib import Path, PurePath, PurePosixPath
from typing import NamedTuple

from .paths import inside, is_utf8, not_utf8_message, shown
from .spec import Problem

JUNK = {".DS_Store", "Thumbs.db", "desktop.ini", "ehthumbs.db"}
_MAX_HOPS = 40  # the kernel's own limit on links followed in one lookup
_EFFECTIVE_IDS = os.access in os.supports_effective_ids  # as open(2) checks: the effective user, not the real one
_READ_ONLY = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)  # a FIFO's open must not block


class Kind(Enum):
    FOLDER = "folder"
    FILE = "file"
    OTHER = "other"  # a pipe, socket or device: never data, and reading one can block forever


class Entry(NamedTuple):
    """A usable entry of a folder: its path as listed (below the root), its name, what it is, and whether it is a
    link. Plain strings in a tuple: a lab lists hundreds of thousands of files, and a `Path` object for each would
    cost more than listing them."""

    path: str
    name: str
    kind: Kind
    linked: bool = False


def is_junk(name: str) -> bool:
    """Hidden files and what operating systems leave behind."""
    return name.startswith(".") or name.startswith("~$") or name in JUNK


def below(path: str | PurePath, folder: Path) -> str:
    """The path relative to `folder`, names joined by "/" (client ids, paths in messages); raises ValueError when it
    is not below. A path listed below the folder is cut from the strings alone, with no `Path` object."""
    text, start = os.fspath(path), os.path.join(folder, "")
    if text.startswith(start):
        return text[len(start):].replace(os.sep, "/")
    return PurePosixPath(Path(path).relative_to(folder)).as_posix()


def display(path: str | PurePath, root: Path) -> str:
    """The path as the user knows it (from the root folder's name down), odd bytes escaped."""
    try:
        return shown(below(path, root.parent))
    except ValueError:
        return shown(path)


def _reason(error: OSError, what: str) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot be read (permission denied); give the importing user read access to the {what} "
                f"(chmod u+r{'x' if what == 'folder' else ''}) or move it out of the import folders")
    return f"cannot be read ({error.strerror or error}); fix or remove the {what}"


def _chain(path: Path, root: Path) -> str:
    """`a.c3d → b.c3d → a.c3d`: the hops of a link loop, for the message."""
    hops, seen, current = [display(path, root)], {path}, path
    for _ in range(_MAX_HOPS):
        try:
            current = (current.parent / os.readlink(current)).absolute()
        except OSError:
            break
        hops.append(display(current, root))
        if current in seen:
            break
        seen.add(current)
    return " → ".join(hops)


def _link_problem(path: str, root: Path) -> tuple[str, str] | None:
    """(what, why) a link may not be followed, or None when its final target is inside the root."""
    try:
        target = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "(link)", f"is a link loop ({_chain(Path(path), root)}); remove one of the links"
        if exc.errno == errno.ENOENT:
            return "(link)", f"is a broken link (to {shown(os.readlink(path))}); remove it or restore its target"
        return "(link)", _reason(exc, "link")
    if not inside(target, root):
        return ("(folder)" if target.is_dir() else "(file)",
                f"is a link that leaves the import root (to {shown(target)}); copy the data in or remove the link")
    return None


def _kind(path: str) -> Kind:
    """What a path is, after its links."""
    mode = os.stat(path).st_mode
    return Kind.FOLDER if stat.S_ISDIR(mode) else Kind.FILE if stat.S_ISREG(mode) else Kind.OTHER


def _listed_kind(item: os.DirEntry) -> Kind:
    """What a listed entry that is not a link is, from the listing itself (no stat on most file systems)."""
    if item.is_dir(follow_symlinks=False):
        return Kind.FOLDER
    return Kind.FILE if item.is_file(follow_symlinks=False) else Kind.OTHER


def _usable(path: str, name: str, linked: bool, listed: os.DirEntry | None, root: Path,
            problems: list[Problem]) -> Entry | None:
    """The entry, or None with the reason added to `problems`: a name that is not UTF-8, a link that may not be
    followed, or one that cannot be looked at. `listed` is the folder listing's entry, which says what an entry
    that is not a link is without a stat."""
    if not is_utf8(name):
        problems.append(Problem(display(path, root), "(name)", not_utf8_message()))
        return None
    refused = _link_problem(path, root) if linked else None
    if refused:
        problems.append(Problem(display(path, root), *refused))
        return None
    try:
        return Entry(path, name, _listed_kind(listed) if listed is not None and not linked else _kind(path), linked)
    except OSError as exc:
        problems.append(Problem(display(path, root), "(file)", _reason(exc, "folder or file")))
        return None


def entry(path: str, root: Path, problems: list[Problem]) -> Entry | None:
    """One entry named by its path (a session's config file): None when there is none, as `os.path.lexists` has
    it, or when it may not be used (with the problem)."""
    try:
        linked = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return None
    return _usable(path, os.path.basename(path), linked, None, root, problems)


def entries(folder: str | Path, root: Path, problems: list[Problem]) -> list[Entry]:
    """The folder's usable entries, sorted, junk left out; every unusable one is added to `problems`."""
    try:
        with os.scandir(folder) as listing:
            items = sorted((item for item in listing if not is_junk(item.name)), key=lambda item: item.name)
    except OSError as exc:
        problems.append(Problem(display(folder, root), "(folder)", _reason(exc, "folder")))
        return []
    found = [_usable(item.path, item.name, item.is_symlink(), item, root, problems) for item in items]
    return [e for e in found if e is not None]


def folders(folder: Path, root: Path, problems: list[Problem]) -> list[Path]:
    """The subfolders (links to folders inside the root included)."""
    return [Path(e.path) for e in entries(folder, root, problems) if e.kind is Kind.FOLDER]


def unreadable(path: str | Path) -> str | None:
    """Why a data file cannot be read, or None: checked at validate time, so plan and apply find no surprise.
    access(2) answers for nearly every file in one system call and no descriptor (half the time of an open and a
    close, over a lab's 100,000s of files); a file it refuses is opened, for the reason. What it cannot see (a
    security module refusing the open, a disk error) is found when the file is read for its checksum."""
    if os.access(path, os.R_OK, effective_ids=_EFFECTIVE_IDS):
        return None
    try:
        descriptor = os.open(path, _READ_ONLY)
    except OSError as exc:
        return _reason(exc, "file")
    os.close(descriptor)
    return None


def root_problem(given: Path) -> tuple[Path | None, Problem | None]:
    """The given PATH resolved, or the problem that stops it from being an import folder."""
    try:
        path = Path(os.path.realpath(given, strict=True))
    except OSError as exc:
        reason = ("is not a folder (it does not exist)" if exc.errno == errno.ENOENT else
                  f"is a link loop ({_chain(given.absolute(), given.absolute().parent)})" if exc.errno == errno.ELOOP
                  else _reason(exc, "folder"))
        return None, Problem(shown(given), "(path)", f"{reason}; name an import root, subject or session folder")
    if not path.is_dir():
        return None, Problem(shown(given), "(path)", "is not a folder; name an import root, subject or session folder")
    if not is_utf8(str(path)):
        return None, Problem(shown(path), "(path)", not_utf8_message("folder's path"))
    return path, None
