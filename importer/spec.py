"""Reading and checking `moveshelf_config_import.json`: schema first, then cross-checks.

Every problem names the file and the JSON path, so a data manager can fix all of them
in one pass; nothing is written while any remains.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import jsonschema
import platformdirs

from . import dates, documents
from .documents import json_path, validator
from .errors import InputError
from .paths import shown
from .private import open_private_append, private_folder

CONFIG_NAME = "moveshelf_config_import.json"
CONFIG_SCHEMA = "moveshelf_config_import.schema.json"
KNOWN_KEYS = ("subjectMetadata", "interventionMetadata", "sessionMetadata", "conditionDefinition",
              "representativeTrials", "trialSideSelection", "session_date")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located precisely."""

    file: str
    json_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.json_path}: {self.message}"


class InvalidInput(InputError):
    """The input has problems; each names its file and JSON path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid input ({len(problems)} problem{'s' * (len(problems) != 1)}), nothing was written:"
                         f"\n{lines}", "fix the files named above, then run `moveshelf-import validate PATH` again")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A session folder's settings, checked."""

    path: str
    subject_metadata: dict[str, Any] = field(default_factory=dict)
    interventions: list[Any] = field(default_factory=list)
    session_metadata: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, list[str]] | None = None
    representative: dict[str, str] = field(default_factory=dict)
    sides: dict[str, str] = field(default_factory=dict)
    session_date: str | None = None
    warnings: tuple[str, ...] = ()


def _message(error: jsonschema.ValidationError) -> str:
    """A schema error said the way a data manager can act on."""
    if error.validator in ("format", "pattern") and error.schema.get("format") == "date":
        return f"{error.instance!r} is not a valid date; use YYYY-MM-DD, e.g. 2025-09-05"
    if error.validator == "anyOf" and {"const": ""} in error.schema.get("anyOf", []):
        return f"{error.instance!r} is not a valid date; use YYYY-MM-DD or an empty string"
    if error.validator == "oneOf":
        return (f"{json.dumps(error.instance)[:60]} is not a metadata value; use a string, a list of "
                '{"value": ..., "context": "left"|"right"}, or {"multiselect": true, "value": [...]}')
    if error.validator == "pattern" and error.schema.get("pattern", "").startswith("^\\s*(left"):
        return f"{error.instance!r} is not a side; use 'left', 'right' or 'left,right'"
    if error.validator == "pattern":
        return f"{error.instance!r} is not a valid name (it must not contain '/' or '\\')"
    return error.message


def valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _errors(document: Any) -> list[jsonschema.ValidationError]:
    """What the schema finds wrong with a document, in JSON path order."""
    return sorted(validator(CONFIG_SCHEMA).iter_errors(document), key=lambda e: list(e.absolute_path))


def _violations(document: Any, file: str) -> list[Problem]:
    return [Problem(file, json_path(e.absolute_path), _message(e)) for e in _errors(document)]


_ONE_KEY_AT_A_TIME = {"type", "properties", "$schema", "$id", "$defs", "$comment", "title", "description"}
_ONE_FIELD_AT_A_TIME = {"type", "properties", "additionalProperties", "$comment", "title", "description"}
_VALID_PARTS: set[str] = set()  # texts of sections and fields (see `_parts`) found valid in this process


def _per_key(schema: Any, allowed: set[str]) -> bool:
    """Whether an object schema says only what each key holds, nothing that spans keys (required, propertyNames,
    maxProperties, ...): its keys' values can then be checked one at a time."""
    return isinstance(schema, dict) and schema.get("type") == "object" and set(schema) <= allowed


@cache
def _by_section() -> bool:
    """Whether a config's top-level values can be checked one at a time."""
    return _per_key(validator(CONFIG_SCHEMA).schema, _ONE_KEY_AT_A_TIME)


@cache
def _by_field(section: str) -> bool:
    """Whether the fields of a section's object can be checked one at a time."""
    return _per_key(validator(CONFIG_SCHEMA).schema.get("properties", {}).get(section), _ONE_FIELD_AT_A_TIME)


_NOT_FOR_STRINGS = {"properties", "additionalProperties", "patternProperties", "required", "propertyNames",
                    "minProperties", "maxProperties", "items", "prefixItems", "contains", "minItems", "maxItems",
                    "uniqueItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
_ANNOTATIONS = {"title", "description", "$comment", "default", "examples"}


def _string_types(schema: Any) -> set[str] | None:
    """The types a schema names (None: it names none)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    return {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else None


def _rejects_every_string(schema: Any) -> bool:
    types = _string_types(schema)
    return types is not None and "string" not in types


def _accepts_every_string(schema: Any) -> bool:
    """Whether a schema holds for every string, from `type`, `anyOf`, `oneOf` and keywords that apply to other
    types only; any other keyword (`pattern`, `minLength`, `enum`, `format`, ...) answers no."""
    if schema is True:
        return True
    if not isinstance(schema, dict) or not set(schema) <= {"type", "anyOf", "oneOf"} | _NOT_FOR_STRINGS | _ANNOTATIONS:
        return False
    types = _string_types(schema)
    branches = schema.get("oneOf", [])
    return ((types is None or "string" in types)
            and ("anyOf" not in schema or any(_accepts_every_string(b) for b in schema["anyOf"]))
            and ("oneOf" not in schema or sum(_accepts_every_string(b) for b in branches) == 1
                 and sum(_rejects_every_string(b) for b in branches) == len(branches) - 1))


@cache
def _any_string(section: str, field: str | None) -> bool:
    """Whether a string is a valid value of this field of a section checked field by field (None: a field the
    section's schema does not name)."""
    schema = validator(CONFIG_SCHEMA).schema.get("properties", {}).get(section, {})
    named = schema.get("properties", {})
    return _by_field(section) and _accepts_every_string(named[field] if field in named else
                                                        schema.get("additionalProperties", True))


def _needs_check(path: tuple[str, ...], value: Any) -> bool:
    """A metadata field holding a string that its schema takes whatever it says (a name, an MRN) needs no check."""
    if len(path) != 2 or not isinstance(value, str):
        return True
    named = validator(CONFIG_SCHEMA).schema.get("properties", {}).get(path[0], {}).get("properties", {})
    return not _any_string(path[0], path[1] if path[1] in named else None)


def _sections(document: dict[str, Any]) -> dict[str, str]:
    """Each top-level key with its value as `'key': value`, in key order: the texts by which a config and its parts
    are known to have been checked. A value parsed from JSON (dicts, lists, strings, numbers, true, false, null)
    has one `repr`, from which it could be built again, so two values with one text are one value; fields in
    another order give another text, which costs only a check made again. (`repr` takes half the time of JSON.)"""
    return {name: f"{name!r}: {document[name]!r}" for name in sorted(document)}


def _parts(name: str, value: Any, text: str) -> list[tuple[str, tuple[str, ...], Any]]:
    """What to check of a section, as (text, JSON path, value): each field alone where the schema allows (a subject's
    name differs from the next subject's, its sex and diagnosis do not), else the whole section."""
    if not (isinstance(value, dict) and value and _by_field(name)):
        return [(text, (name,), value)]
    return [(f"{name!r}.{key!r}: {value[key]!r}", (name, key), value[key]) for key in value]


def _joined(parts: list[tuple[str, tuple[str, ...], Any]]) -> dict[str, Any]:
    """The parts as one document, each at its path: checked together, they are found wrong where checked alone
    they would be (no schema rule spans them), with one walk of the schema instead of one a part."""
    document: dict[str, Any] = {}
    for _, path, value in parts:
        if len(path) == 1:
            document[path[0]] = value
        else:
            document.setdefault(path[0], {})[path[1]] = value
    return document


def _schema_problems(document: dict[str, Any], sections: dict[str, str], file: str) -> list[Problem]:
    """Schema violations, in JSON path order. Top-level values, and the fields of metadata, are told apart when the
    schema allows, and one found valid before (a protocol's conditions, a subject's metadata in its next session,
    the same session type in every session) is not checked again: a lab's configs repeat most of their values."""
    if not _by_section():
        return _violations(document, file)
    unknown = [part for name, text in sections.items() if text not in _VALID_PARTS
               for part in _parts(name, document[name], text)
               if part[0] not in _VALID_PARTS and _needs_check(part[1], part[2])]
    errors = _errors(_joined(unknown)) if unknown else []
    wrong = {tuple(e.absolute_path)[:2] for e in errors} | {tuple(e.absolute_path)[:1] for e in errors}
    _VALID_PARTS.update(text for text, path, _ in unknown if path not in wrong)
    _VALID_PARTS.update(text for name, text in sections.items() if (name,) not in wrong)
    return [Problem(file, json_path(e.absolute_path), _message(e)) for e in errors]


def _cross_problems(document: dict[str, Any], file: str) -> list[Problem]:
    """What the schema cannot say: a trial in one condition only, one value per context, options of declared
    trials."""
    problems = []
    conditions = document.get("conditionDefinition")
    declared: dict[str, str] = {}
    for condition, trials in (conditions or {}).items():
        for i, trial in enumerate(trials):
            if trial in declared:
                problems.append(Problem(file, f"$.conditionDefinition.{condition}[{i}]",
                                        f"trial {trial!r} is already declared in condition {declared[trial]!r}; "
                                        "a trial belongs to one condition"))
            declared.setdefault(trial, condition)
    for section in ("subjectMetadata", "sessionMetadata"):
        for name, value in document.get(section, {}).items():
            contexts = [e.get("context") for e in value if "context" in e] if isinstance(value, list) else []
            for repeated in sorted({c for c in contexts if contexts.count(c) > 1}):
                problems.append(Problem(file, f"$.{section}.{name}", f"context {repeated!r} appears more than once; "
                                        "give each context one value"))
    if conditions is not None:
        for section in ("representativeTrials", "trialSideSelection"):
            for trial in document.get(section, {}):
                if trial not in declared:
                    problems.append(Problem(file, f"$.{section}.{trial}",
                                            f"trial {trial!r} is not declared in conditionDefinition"))
    return problems


def session_date(config: SessionConfig | None, folder_name: str, file: str,
                 date_format: str | None = None) -> tuple[str | None, str | None]:
    """The session date and, when there is none, why: the config's date wins over a date in the folder name."""
    if config and config.session_date:
        return config.session_date, None
    if config and isinstance(config.session_metadata.get("session_date"), str):
        return config.session_metadata["session_date"], None
    found = dates.from_name(folder_name, date_format)
    if found.invalid:
        raise InvalidInput([Problem(file, "(folder name)", f"{found.invalid!r} in folder name {shown(folder_name)!r} "
                                    "is not a valid date; rename the folder or set session_date")])
    if found.day:
        return found.day, None
    if found.ambiguous:
        return None, (f"{found.ambiguous!r} in the folder name may be day-first or month-first; pass --date-format "
                      "(e.g. --date-format %d-%m-%Y) or set session_date")
    return None, "set session_date in moveshelf_config_import.json or put the date in the folder name (YYYY-MM-DD)"


class _Valid:
    """Digests of configs found valid, so each content is checked once: in this process, and across runs in a
    private file of the user cache folder (its name holds the schema's digest, so a new schema starts afresh).
    New digests go to the file in writes of up to `BATCH` lines, the rest at exit: a run killed before it loses
    only the time to check those configs again."""

    BATCH = 200  # lines of 33 bytes: one write(2) to an O_APPEND file, whole beside another process's

    def __init__(self) -> None:
        self._known: set[str] | None = None
        self._lock = threading.Lock()
        self._file: Path | None = None
        self._out: TextIO | None = None
        self._pending: list[str] = []
        atexit.register(self.flush)

    def _load(self) -> set[str]:
        if self._known is None:
            schema = resources.files("importer").joinpath(f"schemas/{CONFIG_SCHEMA}").read_bytes()
            name = f"valid-configs-{hashlib.blake2b(schema + CACHE_KEY, digest_size=8).hexdigest()}"
            self._file = Path(platformdirs.user_cache_dir("moveshelf-import")) / name
            try:
                self._known = set(self._file.read_text().split())
            except (OSError, UnicodeDecodeError):
                self._known = set()
        return self._known

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._load()

    def add(self, digest: str) -> None:
        with self._lock:
            self._load().add(digest)
            self._pending.append(digest + "\n")
            if len(self._pending) >= self.BATCH:
                self._write()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        lines, self._pending = "".join(self._pending), []
        if not lines or self._file is None:  # could not be written before: this run checks again what it finds
            return
        try:
            if self._out is None:
                private_folder(self._file.parent)
                self._out = open_private_append(self._file)
            self._out.write(lines)
            self._out.flush()
        except (OSError, InputError):  # a cache that cannot be written only costs time
            self._file = None


VALID = _Valid()
CACHE_KEY = repr((KNOWN_KEYS, "repr")).encode()  # what else a digest depends on: the known keys, how texts are made


def checked(document: Any, file: str) -> list[Problem]:
    """Schema violations and cross-check failures of one parsed config, checked once per content: a document already
    found valid (here or in an earlier run) is not checked again."""
    if not isinstance(document, dict):
        return _violations(document, file)  # the schema's first word: a config is an object
    sections = _sections(document)
    text = "{" + ", ".join(sections.values()) + "}"
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    if digest in VALID:
        return []
    problems = _schema_problems(document, sections, file) or _cross_problems(document, file)
    if not problems:
        VALID.add(digest)
    return problems


def load(path: str | Path, display: str) -> SessionConfig:
    """Read and check one config file; raise InvalidInput naming `display` and the JSON path."""
    try:
        document = documents.parse(path)
    except documents.Unreadable as exc:
        raise InvalidInput([Problem(display, exc.location, exc.reason)]) from None
    problems = checked(document, display)
    if problems:
        raise InvalidInput(problems)
    unknown = [k for k in document if k not in KNOWN_KEYS]
    return SessionConfig(
        path=display,
        subject_metadata=dict(document.get("subjectMetadata", {})),
        interventions=list(document.get("interventionMetadata", [])),
        session_metadata=dict(document.get("sessionMetadata", {})),
        conditions=document.get("conditionDefinition"),
        representative=dict(document.get("representativeTrials", {})),
        sides=dict(document.get("trialSideSelection", {})),
        session_date=document.get("session_date"),
        warnings=tuple(f"{display}: $.{k}: unknown key, ignored (known keys: {', '.join(KNOWN_KEYS)})"
                       for k in unknown),
    )
