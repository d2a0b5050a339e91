"""JSON documents the tool reads back (saved plans, reports, configs), checked against its schemas."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from .errors import InputError


def json_path(parts: Iterable[str | int]) -> str:
    """`$.sessionMetadata.vicon-leg-length[1]`: the path a reader can follow by eye."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


@cache
def validator(schema: str) -> jsonschema.protocols.Validator:
    """The validator of one of `schemas/`, with format checks (dates) on."""
    document = json.loads(resources.files("importer").joinpath(f"schemas/{schema}").read_text())
    cls = jsonschema.validators.validator_for(document)
    return cls(document, format_checker=cls.FORMAT_CHECKER)


def load(path: Path, schema: str, what: str, hint: str | None = None) -> dict[str, Any]:
    """A JSON file valid against `schema`, or an InputError naming the file and the JSON path."""
    document = read(path, what, hint)
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(document))
    if error is not None:
        raise InputError(f"{what} {path}: {json_path(error.absolute_path)}: {error.message}", hint)
    return document


def read(path: Path, what: str, hint: str | None = None) -> Any:
    """A JSON file as data, or an InputError naming it; for documents whose schema check is the caller's."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {path} cannot be read: {exc}", hint) from None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it can hold patient names), replacing it whole or not at all."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
