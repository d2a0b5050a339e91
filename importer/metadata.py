"""The documented metadata import rule, as pure functions.

Existing non-empty values are never overwritten; only empty fields are filled: an empty
string, a `{"value": "" | []}` object, or list entries `{"value": "", "context": c}`
matched by context. Keys absent on the server are added. Interventions are replaced
whenever the import supplies any.

`update-mine` (opt-in) lets corrections in the folders reach the server: a value the server
still holds exactly as this tool last wrote it is replaced by the folder's value, while a
value a person changed since (or wrote) is kept. Interventions follow it as one whole list.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import Written

INTERVENTIONS = "interventions"


class MetadataPolicy(enum.Enum):
    FILL_EMPTY = "fill-empty"  # Moveshelf's documented rule
    UPDATE_MINE = "update-mine"  # also replace what this tool wrote and nobody changed since


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
    """What an import does to one object's metadata, field by field; an entry may say `why`."""

    merged: dict[str, Any]
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {"before", "after"[, "why"]}
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {"server", "local"[, "why"]}

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


# -- update-mine -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Reasons:
    """Why update-mine replaced or kept each field, for the plan."""

    replaced: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)


def _replaced(mine: Written) -> str:
    return f"written by this import on {mine.on}, unchanged since"


def _kept(mine: Written | None) -> str:
    return f"changed on the server since this import wrote it on {mine.on}" if mine else "not written by this import"


def _update_fields(existing: dict[str, Any], imported: dict[str, Any], merged: dict[str, Any],
                   written: Mapping[str, Written], reasons: _Reasons, whole: frozenset[str]) -> None:
    """Over a fill-empty merge: a field still different from the folder's value takes it when the server still
    holds what this tool last wrote there. Fields in `whole` have rules of their own."""
    for name, wanted in imported.items():
        if name in whole or name not in existing or merged.get(name) == wanted:
            continue
        mine = written.get(name)
        if mine is not None and mine.value == existing[name]:
            merged[name] = copy.deepcopy(wanted)
            reasons.replaced[name] = _replaced(mine)
        else:
            reasons.kept[name] = _kept(mine)


def _update_interventions(existing: dict[str, Any], imported: dict[str, Any], merged: dict[str, Any],
                          written: Mapping[str, Written], reasons: _Reasons) -> None:
    """The list as one value: the folder's replaces the server's only when the server has none or still holds
    the list this tool last wrote; a list a person changed or wrote is kept whole."""
    server, wanted = existing.get(INTERVENTIONS), imported.get(INTERVENTIONS)
    if not wanted or not server or server == wanted:
        return
    mine = written.get(INTERVENTIONS)
    if mine is not None and mine.value == server:
        merged[INTERVENTIONS] = copy.deepcopy(wanted)
        reasons.replaced[INTERVENTIONS] = _replaced(mine)
    else:
        merged[INTERVENTIONS] = copy.deepcopy(server)
        reasons.kept[INTERVENTIONS] = _kept(mine)


def _explained(change: MetadataChange, reasons: _Reasons) -> MetadataChange:
    """The change with each update-mine decision's reason beside its values."""
    def why(entries: dict[str, dict[str, Any]], said: dict[str, str]) -> dict[str, dict[str, Any]]:
        return {name: {**entry, "why": said[name]} if name in said else entry for name, entry in entries.items()}
    return MetadataChange(change.merged, why(change.changes, reasons.replaced), why(change.kept, reasons.kept))


def _change(existing: dict[str, Any] | None, imported: dict[str, Any], merged: dict[str, Any],
            policy: MetadataPolicy, written: Mapping[str, Written] | None, subject: bool) -> MetadataChange:
    if policy is MetadataPolicy.FILL_EMPTY:
        return describe(existing, imported, merged)
    reasons = _Reasons()
    merged = copy.deepcopy(merged)
    _update_fields(existing or {}, imported, merged, written or {}, reasons,
                   frozenset({INTERVENTIONS}) if subject else frozenset())
    if subject:
        _update_interventions(existing or {}, imported, merged, written or {}, reasons)
    return _explained(describe(existing, imported, merged), reasons)


def subject_change(existing: dict[str, Any] | None, imported: dict[str, Any],
                   policy: MetadataPolicy = MetadataPolicy.FILL_EMPTY,
                   written: Mapping[str, Written] | None = None) -> MetadataChange:
    """A subject's fields by `policy`; interventions by replacement (fill-empty) or as one field (update-mine)."""
    return _change(existing, imported, merge_subject(existing, imported), policy, written, subject=True)


def session_change(existing: dict[str, Any] | None, imported: dict[str, Any],
                   policy: MetadataPolicy = MetadataPolicy.FILL_EMPTY,
                   written: Mapping[str, Written] | None = None) -> MetadataChange:
    return _change(existing, imported, merge(existing, imported), policy, written, subject=False)
