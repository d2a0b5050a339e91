"""The config check one section and one metadata field at a time says what a check of the whole document says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from importer import spec

_VALUES = st.one_of(
    st.sampled_from(["Male", "", "2020-01-01", "2020-13-45"]), st.text(max_size=5),
    st.integers(0, 3), st.none(), st.booleans(),
    st.lists(st.fixed_dictionaries({}, optional={"value": st.sampled_from(["1", 2, ["a"], None]),
                                                 "context": st.sampled_from(["left", "right", 3])}), max_size=3),
    st.fixed_dictionaries({}, optional={"value": st.sampled_from(["a", ["a", "b"], [1], 5]),
                                        "multiselect": st.sampled_from([True, "yes"])}),
)
_FIELDS = st.dictionaries(st.sampled_from(["ehr-id", "subject-date-of-birth", "subject-sex", "session_date",
                                           "session-type", "interview-fms5m"]), _VALUES, max_size=4)
_CONFIGS = st.fixed_dictionaries({}, optional={
    "subjectMetadata": st.one_of(_FIELDS, st.lists(st.integers(), max_size=1), st.text(max_size=2)),
    "sessionMetadata": st.one_of(_FIELDS, st.none()),
    "session_date": st.sampled_from(["2024-01-02", "2024-1-2", 7]),
})


@settings(max_examples=300, deadline=None)
@given(_CONFIGS)
def test_checking_part_by_part_finds_what_the_whole_document_check_finds(config: dict):
    whole = spec._violations(config, "f.json")
    assert spec._schema_problems(config, spec._sections(config), "f.json") == whole
    assert spec._schema_problems(config, spec._sections(config), "f.json") == whole  # with the parts remembered


def test_a_string_is_not_checked_where_the_schema_takes_every_string_and_is_where_it_does_not():
    assert not spec._needs_check(("subjectMetadata", "ehr-id"), "MRN0001")
    assert not spec._needs_check(("subjectMetadata", "subject-first-name"), "Ada")  # any field: a metadata value
    assert not spec._needs_check(("sessionMetadata", "session-type"), "Gait")
    assert spec._needs_check(("subjectMetadata", "subject-date-of-birth"), "2020-13-45")  # a date's pattern
    assert spec._needs_check(("subjectMetadata", "ehr-id"), 7)  # not a string
    assert spec._needs_check(("session_date",), "2024-01-02")  # a section, not a field


def test_values_a_json_parser_tells_apart_are_known_by_texts_apart():
    """The texts configs and their parts are remembered by: one text for two values would let a value that was
    never checked pass as one that was."""
    alike_as_str = [(True, 1), (1, 1.0), ("1", 1), (None, "None"), ([1], "[1]"), ({"a": 1}, "{'a': 1}"),
                    ("it's", 'it\'s"'), ("\ud800", "\\ud800"), ({"a": [True]}, {"a": [1]})]
    for one, other in alike_as_str:
        assert spec._sections({"subjectMetadata": one}) != spec._sections({"subjectMetadata": other})
        assert [text for text, _, _ in spec._parts("sessionMetadata", {"f": one}, "")] != [
            text for text, _, _ in spec._parts("sessionMetadata", {"f": other}, "")]
