"""JSON documents the tool reads back (saved plans, reports, configs), checked against its schemas."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .errors import InputError
from .paths import shown

MAX_DEPTH = 64  # deeper than any real document; deep nesting only costs recursion in every later walk
_TOO_DEEP = f"is nested more than {MAX_DEPTH} levels deep, which no valid document is; replace the file"


class Unreadable(Exception):
    """A JSON file that cannot be used, with where in it (or `$` for the whole file) and why."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


def json_path(parts: Iterable[str | int]) -> str:
    """`$.sessionMetadata.vicon-leg-length[1]`: the path a reader can follow by eye."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _inlined(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every bare `{"$ref": "#/$defs/NAME"}` replaced by that definition, so jsonschema follows no
    reference while it validates (looking them up was a third of a config's check); the schemas' definitions are
    not recursive."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {name: _inlined(value, defs) for name, value in node.items()}
    return [_inlined(value, defs) for value in node] if isinstance(node, list) else node


@cache
def validator(schema: str) -> jsonschema.protocols.Validator:
    """The validator of one of `schemas/`, built once, with format checks (dates) on."""
    document = json.loads(resources.files("importer").joinpath(f"schemas/{schema}").read_text())
    cls = jsonschema.validators.validator_for(document)
    return cls(_inlined(document, document.get("$defs", {})), format_checker=cls.FORMAT_CHECKER)


def _depth(document: Any) -> int:
    """Nesting depth, counted without recursion (the document may be deeper than the stack)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _text(path: str | Path) -> str:
    try:
        with open(path, "rb") as file:  # bytes, then text: a third less than a text-mode open
            return file.read().decode("utf-8-sig")
    except IsADirectoryError:
        raise Unreadable("$", "is a folder, not a file; remove or rename the folder") from None
    except PermissionError:
        raise Unreadable("$", "cannot be read (permission denied); give the importing user read access") from None
    except FileNotFoundError:
        raise Unreadable("$", "does not exist (or is a broken link)") from None
    except UnicodeDecodeError as exc:
        raise Unreadable(f"byte {exc.start}", "is not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise Unreadable("$", f"cannot be read: {exc.strerror or exc}") from None


def parse(path: str | Path) -> Any:
    """The parsed JSON of a file, or Unreadable saying where and why (never a RecursionError or an OSError)."""
    text = _text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise Unreadable("$", _TOO_DEEP) from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(document) > MAX_DEPTH:  # each level opens one
        raise Unreadable("$", _TOO_DEEP)
    return document


def load(path: Path, schema: str, what: str, hint: str | None = None) -> dict[str, Any]:
    """A JSON file valid against `schema`, or an InputError naming the file and the JSON path."""
    document = read(path, what, hint)
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(document))
    if error is not None:
        raise InputError(f"{what} {shown(path)}: {json_path(error.absolute_path)}: {error.message}", hint)
    return document


def read(path: Path, what: str, hint: str | None = None) -> Any:
    """A JSON file as data, or an InputError naming it; for documents whose schema check is the caller's."""
    try:
        return parse(path)
    except Unreadable as exc:
        raise InputError(f"{what} {shown(path)}: {exc}", hint) from None
