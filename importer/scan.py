"""Folders → the desired tree, by the rules of DESIGN.md ("Folder layout → Moveshelf tree").

Scanning only lists and reads small config files; checksums are filled in afterwards
(`checksum.fill`), so `validate` stays fast and the rules stay testable on any folder.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .model import (
    ADDITIONAL_FILES,
    DEFAULT_CONDITION,
    RAW_MOTION_DATA,
    DataFile,
    LocalTree,
    Session,
    Subject,
    Tree,
    Trial,
    Unmapped,
    key,
)
from .spec import CONFIG_NAME, InvalidInput, Problem, SessionConfig, load, session_date

LAYOUTS = ("auto", "root", "subject", "session")
JUNK = {".DS_Store", "Thumbs.db", "desktop.ini", "ehthumbs.db"}
DATA_TYPES = {**dict.fromkeys(("mp4", "avi", "mov", "mkv", "mpg"), "video"), "pdf": "doc",
              **dict.fromkeys(("png", "jpg", "jpeg", "webp"), "img")}
DOCUMENTS = {"pdf", "png", "jpg", "jpeg", "webp"}


@dataclass(frozen=True, slots=True)
class ScanOptions:
    layout: str = "auto"
    data_types: dict[str, str] = field(default_factory=dict)  # extension -> data type overrides


@dataclass(frozen=True, slots=True)
class _SessionFolder:
    root: Path
    folder: Path


def is_junk(name: str) -> bool:
    """Hidden files and what operating systems leave behind."""
    return name.startswith(".") or name.startswith("~$") or name in JUNK


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def data_type(name: str, overrides: dict[str, str]) -> str:
    ext = extension(name)
    return overrides.get(ext) or DATA_TYPES.get(ext, "raw")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_junk(p.name))


def _role(path: Path, layout: str) -> str:
    if layout != "auto":
        return layout
    if (path / CONFIG_NAME).is_file():
        return "session"
    if any((d / CONFIG_NAME).is_file() for d in _subdirs(path)):
        return "subject"
    return "root"


def session_folders(paths: list[Path], layout: str) -> list[_SessionFolder]:
    """Every session folder below the given paths, with the import root it belongs to."""
    found = []
    for given in paths:
        path = given.resolve()
        if not path.is_dir():
            raise InvalidInput([Problem(str(given), "(path)", "is not a folder")])
        match _role(path, layout):
            case "session":
                found.append(_SessionFolder(path.parent.parent, path))
            case "subject":
                found += [_SessionFolder(path.parent, s) for s in _subdirs(path)]
            case _:
                found += [_SessionFolder(path, s) for subject in _subdirs(path) for s in _subdirs(subject)]
    return sorted(set(found), key=lambda s: s.folder)


def _display(path: Path, root: Path) -> str:
    return PurePosixPath(path.relative_to(root.parent)).as_posix()


def _files(where: _SessionFolder, problems: list[Problem], warnings: list[str]) -> list[Path]:
    """The session's files, junk left out; links that leave the import root are refused."""
    listed = []
    for folder, dirs, names in os.walk(where.folder):
        here = Path(folder)
        for name in list(dirs):
            if is_junk(name) or (here / name).is_symlink():
                dirs.remove(name)
                if not is_junk(name):
                    warnings.append(f"{_display(here / name, where.root)}: linked folder not followed")
        for name in sorted(names):
            path = here / name
            if is_junk(name) or (here == where.folder and name == CONFIG_NAME):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(where.root):
                problems.append(Problem(_display(path, where.root), "(file)",
                                        "is a link that leaves the import root; copy the file in or remove the link"))
                continue
            listed.append(path)
    return listed


def _claim(files: list[Path], where: _SessionFolder, config: SessionConfig | None) -> tuple[
        dict[tuple[str, str], list[Path]], list[Unmapped]]:
    """Which trial, (condition, trial name), each file belongs to."""
    trials: dict[tuple[str, str], list[Path]] = defaultdict(list)
    unmapped = []
    declaring = config is not None and config.conditions is not None
    declared = {key(t): (c, t) for c, ts in config.conditions.items() for t in ts} if declaring else {}
    root_trials = {key(p.stem) for p in files if p.parent == where.folder and extension(p.name) == "c3d"}
    for path in files:
        stem, ext = key(path.stem), extension(path.name)
        at_root = path.parent == where.folder
        if declaring and stem in declared:
            trials[declared[stem]].append(path)
        elif not declaring and not at_root:
            trials[(path.relative_to(where.folder).parts[0], path.stem)].append(path)
        elif not declaring and stem in root_trials:
            trials[(DEFAULT_CONDITION, path.stem)].append(path)
        elif ext in DOCUMENTS:
            trials[(ADDITIONAL_FILES, path.stem)].append(path)
        elif ext == "zip":
            trials[(ADDITIONAL_FILES, RAW_MOTION_DATA)].append(path)
        else:
            reason = ("no trial of conditionDefinition has this name" if declaring
                      else "not a trial: at the session root only .c3d files and files named like them are trials")
            unmapped.append(Unmapped(_display(path, where.root), reason, str(where.folder.parent)))
    return trials, unmapped


def _trial(condition: str, name: str, paths: list[Path], where: _SessionFolder, config: SessionConfig | None,
           options: ScanOptions, problems: list[Problem]) -> Trial:
    seen: dict[str, Path] = {}
    files = []
    for path in sorted(paths):
        if key(path.name) in seen:
            problems.append(Problem(_display(path, where.root), "(file)",
                                    f"trial {name!r} already has a file named {path.name!r} "
                                    f"({_display(seen[key(path.name)], where.root)}); rename one of them"))
            continue
        seen[key(path.name)] = path
        files.append(DataFile(name=path.name, data_type=data_type(path.name, options.data_types), source=str(path),
                              client_id=PurePosixPath(path.relative_to(where.root)).as_posix()))
    representative = (config.representative.get(name, "") if config else "").replace(" ", "")
    return Trial(name=name, condition=condition, files=tuple(files), side=config.sides.get(name) if config else None,
                 representative=tuple(s for s in ("left", "right") if s in representative.split(",")))


def _session(where: _SessionFolder, options: ScanOptions, problems: list[Problem], warnings: list[str],
             unmapped: list[Unmapped]) -> tuple[Session, SessionConfig | None]:
    display = _display(where.folder / CONFIG_NAME, where.root)
    config = None
    if (where.folder / CONFIG_NAME).is_file():
        try:
            config = load(where.folder / CONFIG_NAME, display)
            warnings.extend(config.warnings)
        except InvalidInput as exc:
            problems.extend(exc.problems)
    try:
        day = session_date(config, where.folder.name, display)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        day = None
    claimed, left_over = _claim(_files(where, problems, warnings), where, config)
    unmapped.extend(left_over)
    trials = [_trial(c, t, paths, where, config, options, problems) for (c, t), paths in sorted(claimed.items())]
    _check_named_trials(config, trials, display, problems)
    metadata = {k: v for k, v in (config.session_metadata if config else {}).items() if k != "session_date"}
    return Session(name=where.folder.name, date=day, metadata=metadata, trials=tuple(trials),
                   source=str(where.folder)), config


def _check_named_trials(config: SessionConfig | None, trials: list[Trial], file: str,
                        problems: list[Problem]) -> None:
    """Declared trials need a file; options may name only trials that exist."""
    if config is None:
        return
    present = {key(t.name) for t in trials}
    for condition, names in (config.conditions or {}).items():
        for i, name in enumerate(names):
            if key(name) not in present:
                problems.append(Problem(file, f"$.conditionDefinition.{condition}[{i}]",
                                        f"trial {name!r} has no file in the session folder "
                                        f"(expected e.g. {name}.c3d); add the file or remove the trial"))
    if config.conditions is None:
        for section, names in (("representativeTrials", config.representative), ("trialSideSelection", config.sides)):
            problems.extend(Problem(file, f"$.{section}.{name}", f"no trial named {name!r} in the session folder")
                            for name in names if key(name) not in present)


def _blank(value: Any) -> bool:
    return value in ("", None, [], {}) or (isinstance(value, dict) and value.get("value") in ("", []))


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
        interventions = config.interventions or interventions
    if interventions:
        metadata["interventions"] = interventions
    mrn = metadata.get("ehr-id") or None
    return Subject(name=name, mrn=mrn, metadata=metadata, sessions=tuple(s for s, _ in sessions), source=str(folder))


def scan(paths: list[Path], options: ScanOptions | None = None) -> LocalTree:
    """The desired tree of the given folders; raises InvalidInput listing every problem found."""
    options = options or ScanOptions()
    problems: list[Problem] = []
    warnings: list[str] = []
    unmapped: list[Unmapped] = []
    by_subject: dict[Path, list[tuple[Session, SessionConfig | None]]] = defaultdict(list)
    folders = session_folders(paths, options.layout)
    for where in folders:
        by_subject[where.folder.parent].append(_session(where, options, problems, warnings, unmapped))
    subjects = [_subject(folder.name, folder, sessions, problems, warnings) for folder, sessions in by_subject.items()]
    _check_identities(subjects, problems)
    if problems:
        raise InvalidInput(problems)
    if not folders:
        warnings.append("no session folders found below " + ", ".join(str(p) for p in paths))
    return LocalTree(tree=Tree(tuple(sorted(subjects, key=lambda s: key(s.name)))),
                     roots=tuple(sorted({str(w.root) for w in folders})),
                     paths=tuple(str(p.resolve()) for p in paths), unmapped=tuple(unmapped),
                     warnings=tuple(warnings))


def _check_identities(subjects: list[Subject], problems: list[Problem]) -> None:
    """One folder per subject name and per MRN: the server must never get a second subject for either."""
    for label, identity in (("name", lambda s: key(s.name)), ("MRN", lambda s: s.mrn)):
        seen: dict[str, Subject] = {}
        for subject in subjects:
            value = identity(subject)
            if value and value in seen:
                problems.append(Problem(subject.source or subject.name, "(folder)",
                                        f"subject {label} {value!r} is also used by {seen[value].source}; "
                                        "merge the folders or correct the MRN"))
            seen.setdefault(value, subject)
