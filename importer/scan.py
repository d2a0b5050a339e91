"""Folders → the desired tree, by the rules of DESIGN.md ("Folder layout → Moveshelf tree").

Scanning only lists and reads small config files; checksums are filled in afterwards
(`checksum.fill`), so `validate` stays fast and the rules stay testable on any folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath
from typing import Any, NamedTuple, Protocol

from . import dates
from .errors import InputError
from .folders import Entry, Kind, below, display, entries, entry, folders, root_problem, unreadable
from .model import (
    ADDITIONAL_FILES,
    DEFAULT_CONDITION,
    RAW_MOTION_DATA,
    DataFile,
    Deferred,
    LocalTree,
    Session,
    SetAside,
    Subject,
    Tree,
    Trial,
    Unmapped,
    key,
)
from .paths import shown
from .spec import CONFIG_NAME, InvalidInput, Problem, SessionConfig, load, session_date

LAYOUTS = ("auto", "root", "subject", "session")
DATA_TYPES = {**dict.fromkeys(("mp4", "avi", "mov", "mkv", "mpg"), "video"), "pdf": "doc",
              **dict.fromkeys(("png", "jpg", "jpeg", "webp"), "img")}
DOCUMENTS = {"pdf", "png", "jpg", "jpeg", "webp"}


@dataclass(frozen=True, slots=True)
class ScanOptions:
    layout: str = "auto"
    data_types: dict[str, str] = field(default_factory=dict)  # extension -> data type overrides
    date_format: str | None = None  # strptime format of day-first (or other ambiguous) dates in folder names
    require_date: bool = False  # a session without a date is an error, not a warning
    on_invalid: str = "fail"  # "skip": invalid sessions, and subjects whose folders disagree, are set aside
    min_age: float | None = None  # seconds: a session with a file changed more recently is deferred
    now: float | None = None  # the time min_age counts from (None: the clock)


@dataclass(frozen=True, slots=True)
class _SessionFolder:
    root: Path
    folder: Path


SessionPlace = _SessionFolder  # a session folder and the import root it was found below


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the scan of one valid session folder found: kept by a `Memory` for the next run."""

    session: Session
    config: SessionConfig | None
    warnings: tuple[str, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """A subject whose session folders are all unchanged since an earlier run: its identity, and what its scan
    said; its sessions stay in the `Memory` unless the plan needs them."""

    subject: Subject  # without sessions
    warnings: tuple[str, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()


class Memory(Protocol):
    """The scan results of earlier runs (`snapshot.Snapshots`): a folder unchanged since is not scanned again, and
    a subject folder whose session folders are all unchanged is not even read."""

    def recall(self, place: SessionPlace) -> Remembered | None: ...

    def remember(self, place: SessionPlace, scanned: Remembered) -> None: ...

    def settled(self, folder: Path, places: list[SessionPlace]) -> Settled | None: ...

    def remember_subject(self, places: list[SessionPlace], settled: Settled) -> None: ...

    def newest_change(self, place: SessionPlace) -> float: ...


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def data_type(ext: str, overrides: dict[str, str]) -> str:
    """The data type of files with this extension."""
    return overrides.get(ext) or DATA_TYPES.get(ext, "raw")


def _role(path: Path, layout: str) -> str:
    """What a given PATH is; problems listing it are reported when it is listed for real."""
    if layout != "auto":
        return layout
    if os.path.lexists(path / CONFIG_NAME):
        return "session"
    if any(os.path.lexists(d / CONFIG_NAME) for d in folders(path, path, [])):
        return "subject"
    return "root"


def session_folders(paths: list[Path], layout: str, problems: list[Problem]) -> list[_SessionFolder]:
    """Every session folder below the given paths, with the import root it belongs to."""
    found = []
    for given in paths:
        path, problem = root_problem(given)
        if path is None:
            problems.append(problem)
            continue
        match _role(path, layout):
            case "session":
                found.append(_SessionFolder(path.parent.parent, path))
            case "subject":
                found += [_SessionFolder(path.parent, s) for s in folders(path, path.parent, problems)]
            case _:
                found += [_SessionFolder(path, s) for subject in folders(path, path, problems)
                          for s in folders(subject, path, problems)]
    return sorted(dict.fromkeys(found), key=lambda s: s.folder)  # listed in order: the sort only checks it


class _File(NamedTuple):
    """A file of a session folder: the names from the session folder down to it (`("Walk01.c3d",)`,
    `("Shod", "Walk01.c3d")`), its path as listed, and its name's stem (as `Path.stem` has it) and extension, read
    once. Plain strings: a lab has hundreds of thousands of files."""

    parts: tuple[str, ...]
    path: str
    stem: str
    ext: str

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def condition(self) -> str:
        """The condition a file's folder names: a subfolder of the session folder, else the default one."""
        return self.parts[0] if len(self.parts) > 1 else DEFAULT_CONDITION


def _file(parts: tuple[str, ...], path: str) -> _File:
    name = parts[-1]
    dot = name.rfind(".")
    return _File(parts, path, name[:dot] if 0 < dot < len(name) - 1 else name, extension(name))


def _in_path_order(files: list[_File]) -> list[_File]:
    """Files in the order of their paths as the platform compares them: name by name, ignoring case on Windows."""
    if os.path.normcase("A") == "A":
        return sorted(files)  # by `parts` first, and no two files have the same
    return sorted(files, key=lambda f: tuple(map(os.path.normcase, f.parts)))


def _file_problem(item: Entry) -> str | None:
    if item.kind is Kind.OTHER:
        return "is not a regular file (a pipe, socket or device); remove it from the session folder"
    return unreadable(item.path)


def _files(where: _SessionFolder, problems: list[Problem], warnings: list[str]) -> list[_File]:
    """The session's files in path order, junk left out; unreadable files, odd names and links leaving the root
    are refused."""
    listed: list[_File] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(str(where.folder), ())]
    config = os.path.join(where.folder, CONFIG_NAME)
    while pending:
        folder, parts = pending.pop()
        for item in entries(folder, where.root, problems):
            if item.path == config:
                continue
            if item.kind is Kind.FOLDER and item.linked:
                warnings.append(f"{display(item.path, where.root)}: linked folder not followed")
            elif item.kind is Kind.FOLDER:
                pending.append((item.path, (*parts, item.name)))
            elif why := _file_problem(item):
                problems.append(Problem(display(item.path, where.root), "(file)", why))
            else:
                listed.append(_file((*parts, item.name), item.path))
    return _in_path_order(listed)


def _case_warning(file: _File, trial: str, where: _SessionFolder) -> str:
    return (f"{display(file.path, where.root)}: taken for trial {trial!r}, whose name differs only in case; "
            f"rename the file to {trial}{PurePath(file.name).suffix} to silence this warning")


def _undeclared_names(files: list[_File]) -> dict[tuple[str, str], str]:
    """(condition, case-folded stem) -> trial name, without conditionDefinition; .c3d files name their trial.
    `files` are in path order, so the sort keeps it among .c3d files and among the others."""
    names: dict[tuple[str, str], str] = {}
    for file in sorted(files, key=lambda f: f.ext != "c3d"):
        if len(file.parts) == 1 and file.ext != "c3d":
            continue
        names.setdefault((file.condition, key(file.stem).casefold()), file.stem)
    return names


def _claim(files: list[_File], where: _SessionFolder, config: SessionConfig | None, warnings: list[str]) -> tuple[
        dict[tuple[str, str], list[_File]], list[Unmapped]]:
    """Which trial, (condition, trial name), each file belongs to; a match ignoring case is taken, with a warning.
    Each trial's files keep the path order of `files`."""
    trials: dict[tuple[str, str], list[_File]] = defaultdict(list)
    unmapped = []
    declaring = config is not None and config.conditions is not None
    exact = {key(t): (c, t) for c, ts in config.conditions.items() for t in ts} if declaring else {}
    declared = {name.casefold(): trial for name, trial in exact.items()}
    undeclared = {} if declaring else _undeclared_names(files)
    for file in files:
        stem = key(file.stem)
        folded, ext = stem.casefold(), file.ext
        condition = file.condition
        trial = exact.get(stem) or declared.get(folded) or ((condition, undeclared[(condition, folded)])
                                   if (condition, folded) in undeclared else None)
        if trial is not None:
            if trial[1] != stem and key(trial[1]) != stem:
                warnings.append(_case_warning(file, trial[1], where))
            trials[trial].append(file)
        elif ext in DOCUMENTS:
            trials[(ADDITIONAL_FILES, file.stem)].append(file)
        elif ext == "zip":
            trials[(ADDITIONAL_FILES, RAW_MOTION_DATA)].append(file)
        else:
            reason = ("no trial of conditionDefinition has this name" if declaring
                      else "not a trial: at the session root only .c3d files and files named like them are trials")
            unmapped.append(Unmapped(display(file.path, where.root), reason, str(where.folder.parent)))
    return trials, unmapped


def _trial(condition: str, name: str, claimed: list[_File], where: _SessionFolder, below_root: str,
           config: SessionConfig | None, options: ScanOptions, problems: list[Problem]) -> Trial:
    """One trial from its files (in path order: the first of two names alike is kept); `below_root` is the session
    folder's path below the import root, which starts each file's client id."""
    seen: dict[str, _File] = {}
    files = []
    for file in claimed:
        file_name = file.name
        if (alike := key(file_name)) in seen:
            problems.append(Problem(display(file.path, where.root), "(file)",
                                    f"trial {name!r} already has a file named {file_name!r} "
                                    f"({display(seen[alike].path, where.root)}); rename one of them"))
            continue
        seen[alike] = file
        files.append(DataFile(name=file_name, data_type=data_type(file.ext, options.data_types), source=file.path,
                              client_id=f"{below_root}/{'/'.join(file.parts)}"))
    return Trial(name=name, condition=condition, files=tuple(files), side=config.sides.get(name) if config else None,
                 representative=_sides(config.representative.get(name, "") if config else ""))


@cache
def _sides(representative: str) -> tuple[str, ...]:
    """`("left", "right")` of representativeTrials' "left, right"; a lab writes few different values."""
    listed = representative.replace(" ", "").split(",")
    return tuple(s for s in ("left", "right") if s in listed)


def _config(where: _SessionFolder, problems: list[Problem], warnings: list[str]) -> SessionConfig | None:
    """The session's config file, if it is a readable JSON file inside the root; else a problem naming it."""
    path = os.path.join(where.folder, CONFIG_NAME)  # a string: no Path object for each of a lab's sessions
    found = entry(path, where.root, problems)
    if found is None:
        return None
    shown_as = display(path, where.root)
    if found.kind is not Kind.FILE:
        problems.append(Problem(shown_as, "$", f"is a {found.kind.value}, not a JSON file; "
                                "replace it with the session's settings file or remove it"))
        return None
    try:
        config = load(path, shown_as)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return None
    warnings.extend(config.warnings)
    return config


def _date(where: _SessionFolder, config: SessionConfig | None, options: ScanOptions, problems: list[Problem],
          warnings: list[str]) -> str | None:
    """The session date; a session without one is a warning, or an error under --require-date."""
    file = config.path if config else display(where.folder, where.root)
    try:
        day, missing = session_date(config, where.folder.name, file, options.date_format)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        return None
    if day is None and options.require_date:
        problems.append(Problem(file, "$.session_date" if config else "(folder name)",
                                f"no session date (--require-date); {missing}"))
    elif day is None:
        warnings.append(f"{display(where.folder, where.root)}: no session date; {missing}")
    return day


def _session(where: _SessionFolder, options: ScanOptions, problems: list[Problem], warnings: list[str],
             unmapped: list[Unmapped]) -> tuple[Session, SessionConfig | None]:
    config = _config(where, problems, warnings)
    day = _date(where, config, options, problems, warnings)
    files = _files(where, problems, warnings)
    claimed, left_over = _claim(files, where, config, warnings)
    unmapped.extend(left_over)
    below_root = below(where.folder, where.root)
    trials = [_trial(c, t, paths, where, below_root, config, options, problems)
              for (c, t), paths in sorted(claimed.items())]
    _check_named_trials(config, trials, files, problems)
    metadata = {k: v for k, v in (config.session_metadata if config else {}).items() if k != "session_date"}
    return Session(name=where.folder.name, date=day, metadata=metadata, trials=tuple(trials)), config


def _nearest(name: str, files: list[_File], taken: set[str]) -> str:
    """`; similar file names found: Walk3.c3d, Wlak03.c3d` — files no trial took that the user may have meant."""
    folded = {t.casefold() for t in taken}
    free = [f for f in files if key(f.stem).casefold() not in folded]
    close = difflib.get_close_matches(name, sorted({f.stem for f in free}), n=3, cutoff=0.6)
    names = [f.name for stem in close for f in free if f.stem == stem]
    return f"; similar file names found: {', '.join(names[:5])}" if names else ""


def _check_named_trials(config: SessionConfig | None, trials: list[Trial], files: list[_File],
                        problems: list[Problem]) -> None:
    """Declared trials need a file; options may name only trials that exist."""
    if config is None:
        return
    file = config.path
    present = {key(t.name) for t in trials}
    for condition, names in (config.conditions or {}).items():
        for i, name in enumerate(names):
            if key(name) not in present:
                problems.append(Problem(file, f"$.conditionDefinition.{condition}[{i}]",
                                        f"trial {name!r} has no file in the session folder (expected e.g. "
                                        f"{name}.c3d{_nearest(name, files, present)}); add or rename the file, "
                                        "or remove the trial"))
    if config.conditions is None:
        for section, names in (("representativeTrials", config.representative), ("trialSideSelection", config.sides)):
            problems.extend(Problem(file, f"$.{section}.{name}", f"no trial named {name!r} in the session folder"
                                    f"{_nearest(name, files, present)}; rename the file or correct the name")
                            for name in names if key(name) not in present)


def _blank(value: Any) -> bool:
    return value in ("", None, [], {}) or (isinstance(value, dict) and value.get("value") in ("", []))


def _interventions(name: str, sessions: list[tuple[Session, SessionConfig | None]], warnings: list[str]) -> list:
    """The latest session's interventions; any other session that lists different ones is warned about by name."""
    given = [(session, config.interventions) for session, config in sessions if config and config.interventions]
    if not given:
        return []
    latest, imported = given[-1]
    for session, listed in given[:-1]:
        if listed != imported:
            warnings.append(f"subject {name!r}: interventionMetadata of session {session.name!r} differs from that "
                            f"of session {latest.name!r}; the list of {latest.name!r} is imported: "
                            f"{json.dumps(imported, ensure_ascii=False)}")
    return imported


def _subject(name: str, folder: Path, sessions: list[tuple[Session, SessionConfig | None]],
             problems: list[Problem], warnings: list[str]) -> Subject:
    """One subject from all its session folders; the earliest session's values win, interventions the latest."""
    metadata: dict[str, Any] = {}
    interventions: list[Any] = []
    for _, config in sessions:
        if config is None:
            continue
        for field_name, value in config.subject_metadata.items():
            if field_name not in metadata or _blank(metadata[field_name]):
                metadata[field_name] = value
            elif not _blank(value) and value != metadata[field_name]:
                if field_name == "ehr-id":
                    problems.append(Problem(config.path, "$.subjectMetadata.ehr-id",
                                            f"MRN {value!r} differs from {metadata[field_name]!r} in another "
                                            f"session of subject {name!r}; one subject has one MRN"))
                else:
                    warnings.append(f"{config.path}: $.subjectMetadata.{field_name}: differs from an earlier session "
                                    f"of {name!r}; the earlier value is imported")
    interventions = _interventions(name, sessions, warnings)
    if interventions:
        metadata["interventions"] = interventions
    mrn = metadata.get("ehr-id") or None
    return Subject(name=name, mrn=mrn, metadata=metadata, sessions=tuple(s for s, _ in sessions), source=str(folder))


@dataclass(frozen=True, slots=True)
class _Scanned:
    """One session folder, scanned, with its own problems (so it can be set aside alone)."""

    where: _SessionFolder
    session: Session
    config: SessionConfig | None
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...] = ()
    unmapped: tuple[Unmapped, ...] = ()


def _newest_change(folder: Path) -> float:
    """The latest mtime of anything below a session folder; unreadable entries count as old (the scan reports
    them once the folder is old enough)."""
    newest, pending = 0.0, [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                for item in listing:
                    stat = item.stat(follow_symlinks=False)
                    newest = max(newest, stat.st_mtime)
                    if item.is_dir(follow_symlinks=False):
                        pending.append(Path(item.path))
        except OSError:
            continue
    return newest


def _defer(found: list[_SessionFolder], options: ScanOptions, memory: Memory | None
           ) -> tuple[list[_SessionFolder], list[Deferred]]:
    """Session folders still being written (a file younger than --min-age) are left for a later run; `memory`
    measures the age in the same walk that fingerprints the folder."""
    if not options.min_age:
        return found, []
    now = options.now if options.now is not None else time.time()
    kept, deferred = [], []
    for where in found:
        age = now - (memory.newest_change(where) if memory else _newest_change(where.folder))
        if age < options.min_age:
            deferred.append(Deferred(display(where.folder, where.root), f"still being written (a file changed "
                                     f"{max(age, 0):.0f} s ago, less than --min-age), deferred"))
        else:
            kept.append(where)
    return kept, deferred


def _scan_session(where: _SessionFolder, options: ScanOptions) -> _Scanned:
    problems: list[Problem] = []
    warnings: list[str] = []
    unmapped: list[Unmapped] = []
    session, config = _session(where, options, problems, warnings, unmapped)
    return _Scanned(where, session, config, tuple(problems), tuple(warnings), tuple(unmapped))


def _scan_or_recall(where: _SessionFolder, options: ScanOptions, memory: Memory | None) -> _Scanned:
    """A session folder's scan, or what `memory` holds of it when the folder has not changed since."""
    known = memory.recall(where) if memory else None
    if known is not None:
        return _Scanned(where, known.session, known.config, (), known.warnings, known.unmapped)
    scanned = _scan_session(where, options)
    if memory and not scanned.problems:
        memory.remember(where, Remembered(scanned.session, scanned.config, scanned.warnings, scanned.unmapped))
    return scanned


def _settle(found: list[_SessionFolder], memory: Memory | None) -> tuple[list[Settled], list[_SessionFolder]]:
    """Subjects all of whose session folders `memory` knows unchanged, and the session folders left to scan."""
    by_subject: dict[Path, list[_SessionFolder]] = defaultdict(list)
    for where in found:
        by_subject[where.folder.parent].append(where)
    settled, rest = [], []
    for folder, places in by_subject.items():
        known = memory.settled(folder, places) if memory else None
        if known is None:
            rest += places
        else:
            settled.append(known)
    return settled, rest


class _Unsettled(Exception):
    """A settled subject now shares its name or MRN with another folder: the scan is made again in full, so the
    problem names its sessions."""


def _subjects(scanned: list[_Scanned], settled: list[Settled], warnings: list[str], memory: Memory | None,
              invalid: frozenset[Path] = frozenset()) -> tuple[list[Subject], dict[Path, list[Problem]]]:
    """Subjects from their valid session folders (and those settled), and the problems of each subject folder
    (identity disagreements); `memory` keeps each subject without problems none of whose folders is `invalid`."""
    by_subject: dict[Path, list[_Scanned]] = defaultdict(list)
    for item in scanned:
        by_subject[item.where.folder.parent].append(item)
    built: list[tuple[Subject, list[_Scanned], list[str]]] = []
    problems: dict[Path, list[Problem]] = defaultdict(list)
    for folder, items in by_subject.items():
        its_warnings: list[str] = []
        built.append((_subject(folder.name, folder, [(i.session, i.config) for i in items], problems[folder],
                               its_warnings), items, its_warnings))
        warnings += its_warnings
    for subject, problem in _identity_problems([b[0] for b in built] + [s.subject for s in settled]):
        if subject.source in {s.subject.source for s in settled}:
            raise _Unsettled
        problems[Path(subject.source or "")].append(problem)
    for subject, items, its_warnings in built:
        folder = Path(subject.source or "")
        if memory and not problems[folder] and folder not in invalid and not any(i.problems for i in items):
            memory.remember_subject([i.where for i in items], Settled(
                dataclasses.replace(subject, sessions=()), tuple(w for i in items for w in i.warnings)
                + tuple(its_warnings), tuple(u for i in items for u in i.unmapped)))
    return [b[0] for b in built], {folder: found for folder, found in problems.items() if found}


def _set_aside(scanned: list[_Scanned], settled: list[Settled], warnings: list[str], memory: Memory | None
               ) -> tuple[list[Subject], list[SetAside]]:
    """`--on-invalid skip`: invalid sessions are left out, then subjects whose folders disagree about identity."""
    valid = [i for i in scanned if not i.problems]
    aside = [SetAside(display(i.where.folder, i.where.root), tuple(str(p) for p in i.problems))
             for i in scanned if i.problems]
    invalid = frozenset(i.where.folder.parent for i in scanned if i.problems)
    subjects, problems = _subjects(valid, settled, warnings, memory, invalid)
    for item in valid:
        if item.where.folder.parent in problems:
            aside.append(SetAside(display(item.where.folder, item.where.root),
                                  tuple(str(p) for p in problems[item.where.folder.parent])))
    kept = [s for s in subjects if Path(s.source or "") not in problems]
    return kept, sorted(aside, key=lambda a: a.path)


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """The scan makes hundreds of thousands of small objects and no reference cycles, yet the cycle collector
    would walk the growing tree again and again while it is made (a quarter of a large lab's scan): it waits, and
    what was made then goes straight to the oldest generation (freeze, unfreeze) instead of being walked once more
    as young objects."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def scan(paths: list[Path], options: ScanOptions | None = None, memory: Memory | None = None) -> LocalTree:
    """The desired tree of the given folders; raises InvalidInput listing every problem found, unless
    `on_invalid` is "skip", which sets invalid sessions aside instead. Session folders `memory` knows unchanged
    are not scanned again, and subjects whose session folders it knows all unchanged are not read."""
    with _cycle_collector_paused():
        return _scan(paths, options or ScanOptions(), memory)


def _scan(paths: list[Path], options: ScanOptions, memory: Memory | None, settle: bool = True) -> LocalTree:
    if options.date_format and (why := dates.format_error(options.date_format)):
        raise InputError(f"--date-format {options.date_format!r}: {why}")
    problems: list[Problem] = []
    listed = session_folders(paths, options.layout, problems)
    if problems and (options.on_invalid != "skip" or not listed):
        problems += [p for where in listed for p in _scan_session(where, options).problems]
        raise InvalidInput(problems)  # in skip mode too when nothing readable is left to import
    found, deferred = _defer(listed, options, memory)
    settled, found = _settle(found, memory) if settle else ([], found)
    scanned = [_scan_or_recall(where, options, memory) for where in found]
    warnings = [w for i in scanned for w in i.warnings] + [w for s in settled for w in s.warnings]
    unmapped = [u for i in scanned for u in i.unmapped] + [u for s in settled for u in s.unmapped]
    aside = [SetAside(p.file, (str(p),)) for p in problems]  # skip mode: what lies beside the sessions
    try:
        if options.on_invalid == "skip":
            subjects, sessions_aside = _set_aside(scanned, settled, warnings, memory)
            aside += sessions_aside
        else:
            subjects, by_folder = _subjects(scanned, settled, warnings, memory)
            problems = [p for i in scanned for p in i.problems] + [p for found in by_folder.values() for p in found]
            if problems:
                raise InvalidInput(problems)
    except _Unsettled:
        return _scan(paths, options, memory, settle=False)
    if not listed:
        warnings.append("no session folders found below " + ", ".join(shown(p) for p in paths))
    subjects += [s.subject for s in settled]
    return LocalTree(tree=Tree(tuple(sorted(subjects, key=lambda s: key(s.name)))),
                     roots=tuple(sorted({str(w.root) for w in listed})),
                     paths=tuple(str(p.resolve()) for p in paths), unmapped=tuple(unmapped),
                     warnings=tuple(warnings), set_aside=tuple(aside), deferred=tuple(deferred),
                     settled=frozenset(s.subject.source or "" for s in settled))


def _identity_problems(subjects: list[Subject]) -> list[tuple[Subject, Problem]]:
    """One folder per subject name and per MRN: the server must never get a second subject for either. Every
    folder of a shared name or MRN gets the problem, so `--on-invalid skip` sets them all aside."""
    found = []
    for label, identity in (("name", lambda s: key(s.name)), ("MRN", lambda s: s.mrn)):
        groups: dict[str, list[Subject]] = defaultdict(list)
        for subject in subjects:
            if identity(subject):
                groups[identity(subject)].append(subject)
        for value, group in groups.items():
            for subject in group if len(group) > 1 else ():
                others = ", ".join(str(o.source) for o in group if o is not subject)
                found.append((subject, Problem(subject.source or subject.name, "(folder)",
                                               f"subject {label} {value!r} is also used by {others}; "
                                               "merge the folders or correct the MRN")))
    return found
