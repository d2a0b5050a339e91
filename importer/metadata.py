"""The documented metadata import rule, as pure functions.

Existing non-empty values are never overwritten; only empty fields are filled: an empty
string, a `{"value": "" | []}` object, or list entries `{"value": "", "context": c}`
matched by context. Keys absent on the server are added. Interventions are replaced
whenever the import supplies any.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

INTERVENTIONS = "interventions"


def _merge_list(existing: list, imported: Any) -> list:
    merged = list(existing)
    for i, entry in enumerate(existing):
        if not (isinstance(entry, dict) and entry.get("value") in ("", [])):
            continue
        if "context" not in entry:
            return copy.deepcopy(imported)
        for candidate in imported if isinstance(imported, list) else []:
            if isinstance(candidate, dict) and candidate.get("context") == entry["context"]:
                merged[i] = copy.deepcopy(candidate)
    return merged


def merge(existing: dict[str, Any] | None, imported: dict[str, Any]) -> dict[str, Any]:
    """Existing metadata with the imported values filled in where the server is empty."""
    if not existing:
        return copy.deepcopy(imported)
    merged = copy.deepcopy(existing)
    for name, value in existing.items():
        if name not in imported:
            continue
        if (isinstance(value, str) and value == "") or (isinstance(value, dict) and value.get("value") in ("", [])):
            merged[name] = copy.deepcopy(imported[name])
        elif isinstance(value, list):
            merged[name] = _merge_list(value, imported[name])
    for name, value in imported.items():
        merged.setdefault(name, copy.deepcopy(value))
    return merged


def merge_subject(existing: dict[str, Any] | None, imported: dict[str, Any]) -> dict[str, Any]:
    """Subject metadata: the import rule for fields, replacement for interventions."""
    existing = dict(existing or {})
    imported = dict(imported)
    existing_interventions = existing.pop(INTERVENTIONS, None)
    imported_interventions = imported.pop(INTERVENTIONS, None)
    merged = merge(existing, imported)
    if imported_interventions:
        merged[INTERVENTIONS] = copy.deepcopy(imported_interventions)
    elif existing_interventions is not None:
        merged[INTERVENTIONS] = existing_interventions
    return merged


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """What an import does to one object's metadata, field by field."""

    merged: dict[str, Any]
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {"before", "after"}
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {"server", "local"}

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def describe(existing: dict[str, Any] | None, imported: dict[str, Any], merged: dict[str, Any]) -> MetadataChange:
    """The field-level changes of a merge, and the local values it leaves out because the server differs."""
    existing = existing or {}
    changes = {name: {"before": existing.get(name), "after": value}
               for name, value in merged.items() if existing.get(name) != value}
    kept = {name: {"server": existing[name], "local": imported[name]}
            for name in imported if name in existing and merged.get(name) != imported[name]}
    return MetadataChange(merged, changes, kept)


def subject_change(existing: dict[str, Any] | None, imported: dict[str, Any]) -> MetadataChange:
    return describe(existing, imported, merge_subject(existing, imported))


def session_change(existing: dict[str, Any] | None, imported: dict[str, Any]) -> MetadataChange:
    return describe(existing, imported, merge(existing, imported))
