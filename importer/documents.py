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
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {path} cannot be read: {exc}", hint) from None
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(document))
    if error is not None:
        raise InputError(f"{what} {path}: {json_path(error.absolute_path)}: {error.message}", hint)
    return document
