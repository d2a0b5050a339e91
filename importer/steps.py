"""The plan as data: actions, one typed payload per action, steps, the plan, and its JSON form.

The planner builds these, the renderer and the executor read them; nothing here does I/O.
The JSON form (`schemas/plan.schema.json`) keeps a step's payload under `detail`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .address import Address
from .model import Fragment

FORMAT = "moveshelf-import/plan"
VERSION = 1


class Action(enum.Enum):
    CREATE_SUBJECT = "create_subject"
    UPDATE_SUBJECT_METADATA = "update_subject_metadata"
    CREATE_SESSION = "create_session"
    UPDATE_SESSION_METADATA = "update_session_metadata"
    CREATE_TRIAL = "create_trial"
    UPLOAD_FILE = "upload_file"
    REPLACE_FILE = "replace_file"
    REMOVE_RECORD = "remove_record"
    UPDATE_TRIAL_METADATA = "update_trial_metadata"
    CREATE_REPORTS = "create_reports"

    @property
    def sigil(self) -> str:
        return {"create": "+", "upload": "+", "update": "~", "replace": "-/+", "remove": "-"}[self.value.split("_")[0]]


class ConflictPolicy(enum.Enum):
    SKIP = "skip"
    REPLACE = "replace"
    FAIL = "fail"


def _addresses() -> Any:
    """A field of addresses, kept in JSON as their rendered paths."""
    return field(default=(), metadata={"encode": lambda v: [str(a) for a in v],
                                       "decode": lambda v: tuple(Address.parse(a) for a in v)})


def _names() -> Any:
    """A field of strings, kept in JSON as a list."""
    return field(default=(), metadata={"encode": list, "decode": tuple})


@dataclass(frozen=True, slots=True)
class CreateSubject:
    """A subject the folders hold and the server lacks; its MRN is set by the metadata step after it."""

    name: str
    mrn: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateSubjectMetadata:
    """Fills the subject's empty fields; the whole merged object is sent because the service replaces it."""

    changes: dict[str, Any]  # field -> {"before", "after"}
    kept: dict[str, Any]  # field -> {"server", "local"}: what the server keeps
    metadata: dict[str, Any]  # the whole merged metadata sent


@dataclass(frozen=True, slots=True)
class CreateSession:
    """A session, created at its projectPath `/<subject>/<session>/`, with its date when one is known."""

    name: str
    project_path: str
    date: str | None = None  # YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class UpdateSessionMetadata:
    """Fills the session's empty fields (and its date, only when the server has none)."""

    changes: dict[str, Any]
    kept: dict[str, Any]
    name: str
    stored: dict[str, Any]  # the whole stored object sent, {"metadata": {...}, ...}
    date: str | None = None  # set only when the server has no date


@dataclass(frozen=True, slots=True)
class CreateTrial:
    """A trial (clip); its condition is only the last part of its projectPath."""

    title: str
    condition: str
    project_path: str


@dataclass(frozen=True, slots=True)
class UploadFile:
    """The upload of a local file; for `replace_file`, also the server records it replaces."""

    source: str  # absolute local path: read, never sent
    name: str
    data_type: str
    size: int
    crc32c: str
    client_id: str
    replaces: tuple[str, ...] = field(default=(), metadata={"encode": list, "decode": tuple, "omit_empty": True})


@dataclass(frozen=True, slots=True)
class RemoveRecord:
    """A file record this tool created that is not the one kept: an interrupted upload's leftover, a redundant
    copy, or the old content a replacement superseded. Records of others are never removed."""

    data_id: str
    name: str
    status: str  # the record's uploadStatus when planned
    why: str  # for display: "left by an interrupted run", "a copy of the same bytes", "replaced"


@dataclass(frozen=True, slots=True)
class UpdateTrialMetadata:
    """Title and trialTemplate options; `side_files` name the files whose new data ids the options key on."""

    title: str
    base_options: dict[str, Any] | None
    side: str | None
    representative: tuple[str, ...] = _names()
    side_files: tuple[Address, ...] = _addresses()


@dataclass(frozen=True, slots=True)
class CreateReports:
    """Moveshelf's automatic interactive reports of a session, asked for once its data is applied, so they are
    made from the trials this run imported; with the norm (reference data) the run named, if any."""

    norm_id: str | None = None
    norm_name: str | None = None


Payload = (CreateSubject | UpdateSubjectMetadata | CreateSession | UpdateSessionMetadata | CreateTrial | UploadFile
           | RemoveRecord | UpdateTrialMetadata | CreateReports)
PAYLOADS: dict[Action, type] = {
    Action.CREATE_SUBJECT: CreateSubject, Action.UPDATE_SUBJECT_METADATA: UpdateSubjectMetadata,
    Action.CREATE_SESSION: CreateSession, Action.UPDATE_SESSION_METADATA: UpdateSessionMetadata,
    Action.CREATE_TRIAL: CreateTrial, Action.UPLOAD_FILE: UploadFile, Action.REPLACE_FILE: UploadFile,
    Action.REMOVE_RECORD: RemoveRecord, Action.UPDATE_TRIAL_METADATA: UpdateTrialMetadata,
    Action.CREATE_REPORTS: CreateReports,
}


def payload_to_json(payload: Payload) -> dict[str, Any]:
    encoded = {}
    for f in dataclasses.fields(payload):
        value = getattr(payload, f.name)
        if f.metadata.get("omit_empty") and not value:
            continue
        encoded[f.name] = f.metadata["encode"](value) if "encode" in f.metadata else value
    return encoded


def payload_from_json(action: Action, detail: dict[str, Any]) -> Payload:
    kind = PAYLOADS[action]
    values = {f.name: f.metadata["decode"](detail[f.name]) if "decode" in f.metadata else detail[f.name]
              for f in dataclasses.fields(kind) if f.name in detail}
    return kind(**values)


@dataclass(frozen=True, slots=True)
class Step:
    """One change. The payload is what the executor needs; `reason` is for display only."""

    id: str
    action: Action
    target: Address
    payload: Payload
    depends_on: tuple[str, ...] = ()
    reason: str = ""

    @property
    def upload_size(self) -> int:
        return self.payload.size if isinstance(self.payload, UploadFile) else 0


def step_id(action: Action, target: Address, record: str | None = None) -> str:
    """Unique in a plan: a file can have several records to remove, so those name the record too."""
    return f"{action.value}:{target}" + (f"#{record}" if record else "")


@dataclass(frozen=True, slots=True)
class Plan:
    project: str
    steps: tuple[Step, ...] = ()
    ids: dict[Address, str] = field(default_factory=dict)  # server ids of what already exists
    unmapped: tuple[dict[str, str], ...] = ()
    conflicts: tuple[dict[str, Any], ...] = ()
    server_only: tuple[dict[str, str], ...] = ()  # {"target", "kind"}: on the server, not in the folders
    set_aside: tuple[dict[str, Any], ...] = ()  # {"path", "problems"}: invalid sessions left out (--on-invalid skip)
    deferred: tuple[dict[str, str], ...] = ()  # {"path", "reason"}: sessions still being written (--min-age)
    warnings: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # what was scanned, so a saved plan can be checked against the same folders
    snapshot: dict[str, Any] = field(default_factory=dict)  # how many subjects were planned from snapshots
    options: dict[str, Any] = field(default_factory=dict)  # what it was planned with, so a saved plan applies as made
    fragments: dict[str, Fragment] = field(default_factory=dict)  # server subject id -> fragment of one needing no step

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(step.action.value for step in self.steps)
        return {"changes": len(self.steps), **{a.value: counts.get(a.value, 0) for a in Action},
                "bytes_to_upload": sum(s.upload_size for s in self.steps), "unmapped": len(self.unmapped),
                "conflicts": len(self.conflicts), "server_only": len(self.server_only),
                "set_aside": len(self.set_aside), "deferred": len(self.deferred)}


def to_json(plan: Plan) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "project": plan.project, "roots": list(plan.roots),
            "paths": list(plan.paths),
            "steps": [{"id": s.id, "action": s.action.value, "target": str(s.target), "depends_on": list(s.depends_on),
                       "reason": s.reason, "detail": payload_to_json(s.payload)} for s in plan.steps],
            "ids": {str(a): i for a, i in plan.ids.items()}, "summary": plan.summary,
            "unmapped": list(plan.unmapped), "conflicts": list(plan.conflicts),
            "server_only": list(plan.server_only), "set_aside": list(plan.set_aside),
            "deferred": list(plan.deferred), "warnings": list(plan.warnings),
            **({"snapshot": plan.snapshot} if plan.snapshot else {}),
            **({"options": plan.options} if plan.options else {})}


def from_json(document: dict[str, Any]) -> Plan:
    """A saved plan, read back; the caller validates it against plan.schema.json first."""
    steps = tuple(Step(s["id"], Action(s["action"]), Address.parse(s["target"]),
                       payload_from_json(Action(s["action"]), s.get("detail", {})), tuple(s["depends_on"]),
                       s.get("reason", "")) for s in document["steps"])
    return Plan(project=document["project"], roots=tuple(document.get("roots", [])),
                paths=tuple(document.get("paths", [])), steps=steps,
                ids={Address.parse(a): i for a, i in document.get("ids", {}).items()},
                unmapped=tuple(document.get("unmapped", [])), conflicts=tuple(document.get("conflicts", [])),
                server_only=tuple(document.get("server_only", [])), set_aside=tuple(document.get("set_aside", [])),
                deferred=tuple(document.get("deferred", [])), warnings=tuple(document.get("warnings", [])),
                snapshot=dict(document.get("snapshot", {})), options=dict(document.get("options", {})))
