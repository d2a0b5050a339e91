"""The folder rules: which folders are sessions, which files are trials, what is refused or left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from importer.model import ADDITIONAL_FILES, DEFAULT_CONDITION, RAW_MOTION_DATA
from importer.scan import ScanOptions, scan
from importer.spec import InvalidInput


def session(root: Path, subject: str, name: str, files: dict[str, bytes], config: dict | None = None) -> Path:
    folder = root / subject / name
    folder.mkdir(parents=True)
    for relative, content in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
    if config is not None:
        (folder / "moveshelf_config_import.json").write_text(json.dumps(config))
    return folder


def trials(local) -> dict[tuple[str, str], list[str]]:
    return {(t.condition, t.name): sorted(f.name for f in t.files)
            for s in local.tree.subjects for se in s.sessions for t in se.trials}


def test_subfolders_are_conditions_without_a_condition_definition(tmp_path: Path):
    session(tmp_path, "Ann", "2025-01-02", {"Barefoot/Walk01.c3d": b"1", "Barefoot/Walk01.mp4": b"2",
                                            "Shoes/Walk02.c3d": b"3", "Run01.c3d": b"4", "Run01.GCD": b"5",
                                            "report.pdf": b"6", "raw.zip": b"7", "notes.txt": b"8",
                                            ".DS_Store": b"", "~$draft.docx": b"", "Thumbs.db": b""})
    local = scan([tmp_path])
    assert trials(local) == {("Barefoot", "Walk01"): ["Walk01.c3d", "Walk01.mp4"], ("Shoes", "Walk02"): ["Walk02.c3d"],
                             (DEFAULT_CONDITION, "Run01"): ["Run01.GCD", "Run01.c3d"],
                             (ADDITIONAL_FILES, "report"): ["report.pdf"], (ADDITIONAL_FILES, RAW_MOTION_DATA): ["raw.zip"]}
    assert [u.path for u in local.unmapped] == [f"{tmp_path.name}/Ann/2025-01-02/notes.txt"]
    types = {f.name: f.data_type for s in local.tree.subjects for se in s.sessions for t in se.trials for f in t.files}
    assert types["Walk01.mp4"] == "video" and types["report.pdf"] == "doc" and types["raw.zip"] == "raw"
    assert local.tree.subjects[0].sessions[0].date == "2025-01-02"


def test_declared_trials_claim_files_anywhere_below_the_session(tmp_path: Path):
    session(tmp_path, "Ann", "Visit", {"Walk01.c3d": b"1", "exports/Walk01.GCD": b"2", "photo.png": b"3",
                                       "Walk01.pdf": b"4"},
            {"conditionDefinition": {"Barefoot": ["Walk01"]}, "session_date": "2025-02-03",
             "trialSideSelection": {"Walk01": "left"}, "representativeTrials": {"Walk01": "right, left"}})
    local = scan([tmp_path], ScanOptions(data_types={"gcd": "data"}))
    assert trials(local) == {("Barefoot", "Walk01"): ["Walk01.GCD", "Walk01.c3d", "Walk01.pdf"],
                             (ADDITIONAL_FILES, "photo"): ["photo.png"]}
    [trial] = [t for t in local.tree.subjects[0].sessions[0].trials if t.condition == "Barefoot"]
    assert trial.side == "left" and trial.representative == ("left", "right")
    gcd = next(f for f in trial.files if f.name == "Walk01.GCD")
    assert gcd.data_type == "data" and gcd.client_id == "Ann/Visit/exports/Walk01.GCD"
    assert local.tree.subjects[0].sessions[0].date == "2025-02-03"


@pytest.mark.parametrize("given", ["root", "subject", "session", "two sessions"])
def test_a_path_may_be_a_root_a_subject_or_a_session(tmp_path: Path, given: str):
    first = session(tmp_path, "Ann", "2025-01-02", {"Walk01.c3d": b"1"}, {})
    second = session(tmp_path, "Ann", "2025-03-04", {"Walk01.c3d": b"1"}, {})
    paths = {"root": [tmp_path], "subject": [first.parent], "session": [first], "two sessions": [first, second]}[given]
    local = scan(paths)
    expected = ["2025-01-02"] if given == "session" else ["2025-01-02", "2025-03-04"]
    assert [se.name for se in local.tree.subjects[0].sessions] == expected
    assert local.roots == (str(tmp_path.resolve()),)


def test_subject_metadata_joins_sessions_and_session_date_sources(tmp_path: Path):
    session(tmp_path, "Ann", "2025-01-02", {"W.c3d": b"1"},
            {"subjectMetadata": {"ehr-id": "7", "subject-sex": "", "a": "first"},
             "interventionMetadata": [{"id": 0}], "sessionMetadata": {"session_date": "2024-12-31"}})
    session(tmp_path, "Ann", "2025-06-01", {"W.c3d": b"1"},
            {"subjectMetadata": {"subject-sex": "Female", "a": "second"}, "interventionMetadata": [{"id": 1}],
             "colour": "blue"})
    local = scan([tmp_path])
    [ann] = local.tree.subjects
    assert ann.mrn == "7" and ann.metadata == {"ehr-id": "7", "subject-sex": "Female", "a": "first",
                                               "interventions": [{"id": 1}]}
    assert [se.date for se in ann.sessions] == ["2024-12-31", "2025-06-01"]
    assert ann.sessions[0].metadata == {}
    assert any("$.subjectMetadata.a: differs from an earlier session" in w for w in local.warnings)
    assert any("$.colour: unknown key, ignored" in w for w in local.warnings)


@pytest.mark.parametrize(("build", "message"), [
    (lambda root: (session(root, "Ann", "2025-01-02", {"W.c3d": b"1"}, {"subjectMetadata": {"ehr-id": "1"}}),
                   session(root, "Ann", "2025-02-02", {"W.c3d": b"1"}, {"subjectMetadata": {"ehr-id": "2"}})),
     "MRN '2' differs from '1'"),
    (lambda root: (session(root, "Ann", "S", {"W.c3d": b"1"}, {"subjectMetadata": {"ehr-id": "1"}}),
                   session(root, "Bob", "S", {"W.c3d": b"1"}, {"subjectMetadata": {"ehr-id": "1"}})),
     "subject MRN '1' is also used by"),
    (lambda root: session(root, "Ann", "2025-02-30 visit", {"W.c3d": b"1"}), "'2025-02-30' in folder name"),
    (lambda root: session(root, "Ann", "S", {"a/Walk01.c3d": b"1", "b/Walk01.c3d": b"2"},
                          {"conditionDefinition": {"C": ["Walk01"]}}), "already has a file named 'Walk01.c3d'"),
    (lambda root: session(root, "Ann", "S", {"W.c3d": b"1"}, {"trialSideSelection": {"X": "left"}}),
     "$.trialSideSelection.X: no trial named 'X'"),
])
def test_inconsistent_folders_are_input_errors(tmp_path: Path, build, message: str):
    build(tmp_path)
    with pytest.raises(InvalidInput) as raised:
        scan([tmp_path])
    assert message in str(raised.value)


def test_links_that_leave_the_root_are_refused_and_links_inside_are_followed(tmp_path: Path):
    outside = tmp_path / "elsewhere.c3d"
    outside.write_bytes(b"secret")
    root = tmp_path / "lab"
    folder = session(root, "Ann", "2025-01-02", {"Walk01.c3d": b"1"})
    (folder / "Walk02.c3d").symlink_to(folder / "Walk01.c3d")
    assert trials(scan([root]))[(DEFAULT_CONDITION, "Walk02")] == ["Walk02.c3d"]
    (folder / "Walk03.c3d").symlink_to(outside)
    with pytest.raises(InvalidInput) as raised:
        scan([root])
    assert "lab/Ann/2025-01-02/Walk03.c3d: (file): is a link that leaves the import root" in str(raised.value)


def test_a_path_that_is_not_a_folder_is_an_input_error(tmp_path: Path):
    with pytest.raises(InvalidInput, match="is not a folder"):
        scan([tmp_path / "missing"])
