"""Scanner rules for plans a clinician can read: session dates, trial names that differ in case, interventions."""

from __future__ import annotations

from pathlib import Path

import pytest

from importer.dates import format_error, from_name
from importer.errors import InputError
from importer.scan import ScanOptions, scan
from importer.spec import InvalidInput

from .test_scan import session, trials


@pytest.mark.parametrize(("name", "expected"), [
    ("2023-07-18", "2023-07-18"), ("2023-7-8", "2023-07-08"), ("2023_07_18 follow-up", "2023-07-18"),
    ("2023.07.18", "2023-07-18"), ("20230718", "2023-07-18"), ("Session 2023-07-18", "2023-07-18"),
    ("Visit_2023.07.18_pm", "2023-07-18"), ("follow-up 20230718", "2023-07-18"),
    ("18-07-2023", None), ("x2023-07-18", None), ("Walk 12345678", None), ("Follow-up visit", None),
])
def test_dates_in_folder_names_year_first_at_the_start_or_as_a_word(name: str, expected: str | None):
    assert from_name(name).day == expected


@pytest.mark.parametrize(("name", "date_format", "expected"), [
    ("18-07-2023", "%d-%m-%Y", "2023-07-18"), ("Visit 18.7.2023", "%d.%m.%Y", "2023-07-18"),
    ("18 July 2023 gait", "%d %B %Y", "2023-07-18"), ("2023-07-18", "%d-%m-%Y", "2023-07-18"),
])
def test_day_first_names_need_a_date_format(name: str, date_format: str, expected: str):
    assert from_name(name, date_format).day == expected
    assert format_error(date_format) is None


def test_the_config_date_wins_and_dates_are_zero_padded(tmp_path: Path):
    session(tmp_path, "Ann", "2023-7-8 gait", {"W.c3d": b"1"})
    session(tmp_path, "Ann", "2023-07-19", {"W.c3d": b"1"}, {"session_date": "2024-01-02"})
    session(tmp_path, "Bob", "Visit 18-07-2023", {"W.c3d": b"1"})
    local = scan([tmp_path], ScanOptions(date_format="%d-%m-%Y"))
    dates = {se.name: se.date for s in local.tree.subjects for se in s.sessions}
    assert dates == {"2023-7-8 gait": "2023-07-08", "2023-07-19": "2024-01-02", "Visit 18-07-2023": "2023-07-18"}


def test_sessions_without_a_date_are_warned_about_or_refused(tmp_path: Path):
    session(tmp_path, "Ann", "Visit 18-07-2023", {"W.c3d": b"1"})
    session(tmp_path, "Ann", "Follow-up", {"W.c3d": b"1"})
    warnings = scan([tmp_path]).warnings
    assert any("Ann/Visit 18-07-2023: no session date; '18-07-2023' in the folder name may be day-first" in w
               and "--date-format" in w for w in warnings)
    assert any("Ann/Follow-up: no session date; set session_date" in w for w in warnings)
    with pytest.raises(InvalidInput) as raised:
        scan([tmp_path], ScanOptions(require_date=True))
    assert "Ann/Follow-up: (folder name): no session date (--require-date)" in str(raised.value)


def test_an_unusable_date_format_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="--date-format '%Y': it must name the year, month and day"):
        scan([tmp_path], ScanOptions(date_format="%Y"))


def test_validate_and_plan_print_the_missing_date_warning(lab: Path, cli):
    (lab / "Subject02" / "Follow-up visit" / "moveshelf_config_import.json").write_text("{}")
    for command in ("validate", "plan"):
        result = cli(command, str(lab))
        assert result.code == 0 and "lab/Subject02/Follow-up visit: no session date" in result.out, result


def test_a_file_matching_a_trial_only_when_case_is_ignored_is_taken_with_a_warning(tmp_path: Path):
    session(tmp_path, "Ann", "2025-01-02", {"Walk01.c3d": b"1", "walk02.c3d": b"2", "WALK02.mp4": b"3",
                                            "Shoes/Run01.c3d": b"4", "Shoes/run01.GCD": b"5", "run03.gcd": b"6",
                                            "Run03.c3d": b"7"},
            {"conditionDefinition": {"Barefoot": ["Walk01", "Walk02"]}})
    session(tmp_path, "Bob", "2025-01-02", {"Shoes/Run01.c3d": b"4", "Shoes/run01.GCD": b"5", "run03.gcd": b"6",
                                            "Run03.c3d": b"7"})
    local = scan([tmp_path])
    found = trials(local)
    assert found[("Barefoot", "Walk02")] == ["WALK02.mp4", "walk02.c3d"]
    assert found[("Shoes", "Run01")] == ["Run01.c3d", "run01.GCD"] and found[("Default", "Run03")] == [
        "Run03.c3d", "run03.gcd"]
    assert any("Ann/2025-01-02/walk02.c3d: taken for trial 'Walk02', whose name differs only in case" in w
               for w in local.warnings)
    assert any("Bob/2025-01-02/Shoes/run01.GCD: taken for trial 'Run01'" in w for w in local.warnings)


def test_a_trial_without_files_names_the_nearest_file_names(tmp_path: Path):
    session(tmp_path, "Ann", "S", {"Walk01.c3d": b"1", "Walk3.c3d": b"2", "Wlak03.GCD": b"3", "other.txt": b""},
            {"conditionDefinition": {"Barefoot": ["Walk01", "Walk03"]}})
    with pytest.raises(InvalidInput) as raised:
        scan([tmp_path])
    assert ("$.conditionDefinition.Barefoot[1]: trial 'Walk03' has no file in the session folder (expected e.g. "
            "Walk03.c3d; similar file names found: Walk3.c3d, Wlak03.GCD); add or rename the file") in str(raised.value)


def test_interventions_that_differ_between_sessions_are_warned_about(tmp_path: Path):
    session(tmp_path, "Ann", "2024-01-01", {"W.c3d": b"1"}, {"interventionMetadata": [{"id": 0, "site": "Left"}]})
    session(tmp_path, "Ann", "2024-06-01", {"W.c3d": b"1"}, {})
    session(tmp_path, "Ann", "2025-01-01", {"W.c3d": b"1"}, {"interventionMetadata": [{"id": 1, "site": "Right"}]})
    session(tmp_path, "Bob", "2024-01-01", {"W.c3d": b"1"}, {"interventionMetadata": [{"id": 0}]})
    session(tmp_path, "Bob", "2025-01-01", {"W.c3d": b"1"}, {"interventionMetadata": [{"id": 0}]})
    local = scan([tmp_path])
    ann = next(s for s in local.tree.subjects if s.name == "Ann")
    assert ann.metadata["interventions"] == [{"id": 1, "site": "Right"}]
    differing = [w for w in local.warnings if "interventionMetadata" in w]
    assert differing == ["subject 'Ann': interventionMetadata of session '2024-01-01' differs from that of session "
                         "'2025-01-01'; the list of '2025-01-01' is imported: [{\"id\": 1, \"site\": \"Right\"}]"]
