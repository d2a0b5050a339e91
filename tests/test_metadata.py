"""The metadata import rule: documented cases and properties, and agreement with the official client."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st
from moveshelf_api.api import MoveshelfApi

from importer.metadata import MetadataPolicy, merge, merge_subject, session_change, subject_change
from importer.model import Written

KEYS = st.sampled_from(["a", "b", "c", "leg"])
TEXT = st.sampled_from(["", "x", "y"])
ENTRY = st.fixed_dictionaries({"value": TEXT, "context": st.sampled_from(["left", "right"])})
VALUE = st.one_of(TEXT, st.lists(ENTRY, max_size=2, unique_by=lambda e: e["context"]), st.fixed_dictionaries({"value": st.sampled_from(["", [], "v"])}))
METADATA = st.dictionaries(KEYS, VALUE, max_size=4)


def test_documented_cases():
    existing = {"first": "Bob", "last": "", "leg": [{"value": "", "context": "left"}, {"value": "5", "context": "right"}],
                "sex": {"value": ""}, "interventions": [{"id": 0}]}
    imported = {"first": "Robert", "last": "Smith", "leg": [{"value": "4", "context": "left"},
                                                             {"value": "9", "context": "right"}],
                "sex": {"multiselect": True, "value": ["Male"]}, "new": "added", "interventions": [{"id": 1}]}
    merged = merge_subject(existing, imported)
    assert merged == {"first": "Bob", "last": "Smith", "leg": [{"value": "4", "context": "left"},
                                                               {"value": "5", "context": "right"}],
                      "sex": {"multiselect": True, "value": ["Male"]}, "new": "added", "interventions": [{"id": 1}]}


def test_interventions_kept_when_import_has_none():
    assert merge_subject({"interventions": [{"id": 0}]}, {"a": "x"}) == {"a": "x", "interventions": [{"id": 0}]}
    assert merge_subject({"interventions": [{"id": 0}]}, {"interventions": []})["interventions"] == [{"id": 0}]


def test_change_lists_fields_filled_and_fields_kept():
    change = subject_change({"first": "Bob", "last": ""}, {"first": "Robert", "last": "Smith", "sex": "M"})
    assert change.changes == {"last": {"before": "", "after": "Smith"}, "sex": {"before": None, "after": "M"}}
    assert change.kept == {"first": {"server": "Bob", "local": "Robert"}}
    assert not session_change({"a": "1"}, {"a": "1"}).changed


@given(METADATA, METADATA)
def test_agrees_with_the_official_client(existing, imported):
    theirs = MoveshelfApi._merge_metadata_dictionaries(copy.deepcopy(existing), copy.deepcopy(imported))
    assert merge(existing, imported) == theirs


@given(METADATA, METADATA)
def test_never_overwrites_a_non_empty_string_and_keeps_every_key(existing, imported):
    merged = merge(existing, imported)
    assert set(merged) == set(existing) | set(imported)
    for name, value in existing.items():
        if isinstance(value, str) and value:
            assert merged[name] == value


@given(METADATA, METADATA)
def test_merging_twice_changes_nothing_more(existing, imported):
    once = merge(existing, imported)
    assert merge(once, imported) == once
    assert not session_change(once, imported).changed


@given(METADATA, METADATA)
def test_update_mine_without_anything_written_is_fill_empty(existing, imported):
    mine = session_change(existing, imported, MetadataPolicy.UPDATE_MINE, {})
    assert mine.merged == session_change(existing, imported).merged


@given(METADATA, METADATA)
def test_update_mine_over_values_all_written_by_this_tool_takes_the_folders(existing, imported):
    written = {name: Written(value, "2026-11-20") for name, value in existing.items()}
    merged = session_change(existing, imported, MetadataPolicy.UPDATE_MINE, written).merged
    assert {name: merged[name] for name in imported} == imported
    assert not session_change(merged, imported, MetadataPolicy.UPDATE_MINE, written).changed
