"""One tree model for both sides: subject → session → trial (in a condition) → data file.

The desired tree (from folders) and the actual tree (from the server) use the same
types, so the planner is a walk of two trees in step. Fields that only one side knows
(a local source path, a server id, an upload status) are None on the other.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

ADDITIONAL_FILES = "Additional files"
RAW_MOTION_DATA = "Raw motion data"
DEFAULT_CONDITION = "Default"
COMPLETE = "Complete"


def key(name: str) -> str:
    """The one normaliser for matching names on both sides (Unicode NFC; ASCII names are NFC already)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


@dataclass(frozen=True, slots=True)
class DataFile:
    """A data file of a trial (Moveshelf's "additional data")."""

    name: str
    data_type: str
    source: str | None = None  # absolute local path (desired side only; never sent)
    client_id: str | None = None  # path relative to the import root, sent as clientId
    size: int | None = None
    crc32c: str | None = None  # base64 of the big-endian CRC32C
    remote_id: str | None = None
    upload_status: str | None = None
    download_uri: str | None = None


@dataclass(frozen=True, slots=True)
class Trial:
    """A trial (Moveshelf "clip") in a condition of a session."""

    name: str
    condition: str
    files: tuple[DataFile, ...] = ()
    side: str | None = None  # trialSideSelection
    representative: tuple[str, ...] = ()  # representativeTrials: ("left",), ("left", "right")
    remote_id: str | None = None
    custom_options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    date: str | None = None  # YYYY-MM-DD
    metadata: dict[str, Any] = field(default_factory=dict)  # the inner session metadata
    trials: tuple[Trial, ...] = ()
    remote_id: str | None = None
    remote_path: str | None = None  # projectPath on the server
    stored_metadata: dict[str, Any] | None = None  # the whole stored object, {"metadata": {...}, ...}


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    mrn: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # subject metadata with "interventions"
    sessions: tuple[Session, ...] = ()
    source: str | None = None  # the subject folder
    remote_id: str | None = None
    updated: str | None = None  # the server's `updated` stamp, when it gives one


@dataclass(frozen=True, slots=True)
class Norm:
    """A project's reference data (normal gait curves), which interactive reports compare a session against;
    chosen by name on the command line, sent by id."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Written:
    """A metadata value this tool wrote to a server object, and the day: a server value still equal to it was
    not changed by a person since."""

    value: Any
    on: str  # YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class Fragment:
    """What the diff made of a subject that needed no step: while neither its folders nor the server's subject
    change, the next plan repeats it instead of reading, scanning and diffing the subject again."""

    conflicts: tuple[dict[str, Any], ...] = ()
    server_only: tuple[dict[str, str], ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """What the server does not say, from the journal and storage: about its file records, the metadata this tool
    wrote, and report requests an earlier run did not see answered."""

    content: dict[str, tuple[str, int]] = field(default_factory=dict)  # data id -> (crc32c, size) it holds
    ours: frozenset[str] = frozenset()  # data ids of records this tool created
    stored: frozenset[str] = frozenset()  # data ids whose bytes storage accepted from this tool
    written: dict[str, dict[str, Written]] = field(default_factory=dict)  # object id -> field -> last written
    reports_owed: frozenset[str] = frozenset()  # session addresses whose report request is unanswered
    fragments: dict[str, Fragment] = field(default_factory=dict)  # server subject id -> its settled plan


@dataclass(frozen=True, slots=True)
class Tree:
    subjects: tuple[Subject, ...] = ()


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A local file no rule claims: listed, never uploaded."""

    path: str
    reason: str
    subject_folder: str | None = None


@dataclass(frozen=True, slots=True)
class SetAside:
    """A session folder left out of this run because its input is invalid (`--on-invalid skip`)."""

    path: str  # the session folder, relative to the import root's parent
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Deferred:
    """A session folder left for a later run because a file in it is still being written (`--min-age`)."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class LocalTree:
    """What the scanner found: the desired tree plus what it could not place or left out."""

    tree: Tree
    roots: tuple[str, ...]
    paths: tuple[str, ...] = ()  # the folders the scan was given
    unmapped: tuple[Unmapped, ...] = ()
    warnings: tuple[str, ...] = ()
    set_aside: tuple[SetAside, ...] = ()
    deferred: tuple[Deferred, ...] = ()
    settled: frozenset[str] = frozenset()  # subject folders unchanged since their snapshot: sessions not loaded


def path_key(project_path: str) -> str:
    """A projectPath as a pairing key: the service may or may not return it with a trailing `/`."""
    return key(project_path.rstrip("/"))


def same_path(a: str, b: str) -> bool:
    return path_key(a) == path_key(b)


def session_path(subject_name: str, session_name: str) -> str:
    """A session's projectPath: `/<subject>/<session>/`."""
    return f"/{subject_name}/{session_name}/"


def trial_path(session_project_path: str, condition: str) -> str:
    """A trial's projectPath: the session path followed by its condition."""
    return f"{session_project_path}{condition}"
