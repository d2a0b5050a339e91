"""The unmodified official `moveshelf-api` client, through every workflow of Moveshelf's import guide."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
import requests
from moveshelf_api import util
from moveshelf_api.api import GraphQlException

from .conftest import PROJECT


def project_id(api) -> str:
    projects = api.getUserProjects()
    return projects[[p["name"] for p in projects].index(PROJECT)]["id"]


def find_or_create_subject(api, mrn: str, name: str) -> dict:
    """The guide's 'Create subject' example."""
    subject = api.getProjectSubjectByEhrId(mrn, project_id(api))
    if subject is not None:
        return api.getSubjectDetails(subject["id"])
    created = api.createSubject(PROJECT, name)
    api.updateSubjectMetadataInfo(created["id"], json.dumps({"ehr-id": mrn}))
    return api.getSubjectDetails(created["id"])


def find_or_create_session(api, subject: dict, name: str, day: str) -> dict:
    """The guide's 'Create session' example."""
    for session in subject.get("sessions", []):
        if session["projectPath"].split("/")[2] == name:
            return api.getSessionById(session["id"])
    created = api.createSession(PROJECT, f"/{subject['name']}/{name}/", subject["id"], day)
    return api.getSessionById(created["id"])


@pytest.fixture
def session(official_api) -> dict:
    subject = find_or_create_subject(official_api, "MRN-1", "Subject1")
    return find_or_create_session(official_api, subject, "2025-09-05", "2025-09-05")


def test_subject_found_by_mrn_not_created_twice(official_api):
    first = find_or_create_subject(official_api, "MRN-7", "Alice")
    again = find_or_create_subject(official_api, "MRN-7", "Alice renamed")
    assert again["id"] == first["id"] and again["name"] == "Alice"
    assert json.loads(again["metadata"])["ehr-id"] == "MRN-7"
    listed = official_api.getProjectSubjects(project_id(official_api))
    assert [(s["name"], s["externalId"]) for s in listed] == [("Alice", "MRN-7")]


def test_subject_metadata_import_fills_only_empty_fields_and_replaces_interventions(official_api):
    subject = find_or_create_subject(official_api, "MRN-2", "Bob")
    official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({
        "subject-first-name": "Bob", "subject-last-name": "",
        "vicon-leg-length": [{"value": "", "context": "left"}, {"value": "500", "context": "right"}],
        "interventions": [{"id": 0, "date": "2020-01-01", "site": "A"}]}))
    official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({
        "subject-first-name": "Robert", "subject-last-name": "Smith",
        "vicon-leg-length": [{"value": "490", "context": "left"}, {"value": "999", "context": "right"}],
        "interventions": [{"id": 0, "date": "2021-02-02", "site": "B"}]}))
    metadata = json.loads(official_api.getSubjectDetails(subject["id"])["metadata"])
    assert metadata["subject-first-name"] == "Bob"
    assert metadata["subject-last-name"] == "Smith"
    assert metadata["vicon-leg-length"] == [{"value": "490", "context": "left"}, {"value": "500", "context": "right"}]
    assert metadata["interventions"] == [{"id": 0, "date": "2021-02-02", "site": "B"}]


def test_metadata_validator_rejects_bad_interventions_and_dates(official_api):
    subject = find_or_create_subject(official_api, "MRN-3", "Carol")
    errors = official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({
        "subject-date-of-birth": "05/09/2010", "interventions": {"id": 0}}))
    assert errors is None  # the client swallows the errors it printed and skips the update
    metadata = json.loads(official_api.getSubjectDetails(subject["id"])["metadata"])
    assert "subject-date-of-birth" not in metadata


def test_session_found_again_and_metadata_imported_with_contexts(official_api, session):
    subject = official_api.getSubjectDetails(session["patient"]["id"])
    assert find_or_create_session(official_api, subject, "2025-09-05", "2025-09-05")["id"] == session["id"]
    assert session["date"] == "2025-09-05T00:00:00+00:00"
    updated = official_api.updateSessionMetadataInfo(session["id"], "2025-09-05", json.dumps({"metadata": {
        "interview-fms5m": "1", "vicon-leg-length": [{"value": "507", "context": "left"},
                                                     {"value": "510", "context": "right"}]}}))
    assert updated is True
    official_api.updateSessionMetadataInfo(session["id"], "2025-09-05", json.dumps({"metadata": {
        "interview-fms5m": "6"}}))
    stored = json.loads(official_api.getSessionById(session["id"])["metadata"])
    assert stored["metadata"]["interview-fms5m"] == "1"
    assert stored["metadata"]["vicon-leg-length"][1] == {"value": "510", "context": "right"}


def test_add_or_get_trial_creates_finds_and_auto_names(official_api, session):
    condition = {"path": "Barefoot", "clips": []}
    walk = util.addOrGetTrial(official_api, session, condition, "Walk01")
    session = official_api.getSessionById(session["id"])
    conditions = util.getConditionsFromSession(session, [])
    assert [c["path"] for c in conditions] == ["Barefoot"]
    assert util.addOrGetTrial(official_api, session, conditions[0], "Walk01") == walk
    first = util.addOrGetTrial(official_api, session, {"path": "Shoes", "clips": []})
    shoes = util.getConditionsFromSession(official_api.getSessionById(session["id"]), [])[1]
    second = util.addOrGetTrial(official_api, session, shoes)
    assert [official_api.getClipData(c)["title"] for c in (first, second)] == ["Trial-1", "Trial-2"]
    clips = official_api.getSessionById(session["id"])["clips"]
    assert [(c["title"], c["projectPath"]) for c in clips] == [
        ("Walk01", "/Subject1/2025-09-05/Barefoot"), ("Trial-1", "/Subject1/2025-09-05/Shoes"),
        ("Trial-2", "/Subject1/2025-09-05/Shoes")]


def test_upload_raw_pdf_and_zip_and_check_current_version(official_api, session, tmp_path: Path):
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    gcd = tmp_path / "Walk01.GCD"
    gcd.write_text("!LeftHipAnglesX\n1.0\n2.0\n")
    data_id = official_api.uploadAdditionalData(str(gcd), trial, "raw", gcd.name)
    assert official_api.isCurrentVersionUploaded(str(gcd), trial) is True
    gcd.write_text("!LeftHipAnglesX\n1.5\n2.0\n")
    assert official_api.isCurrentVersionUploaded(str(gcd), trial) is False

    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    files = util.addOrGetTrial(official_api, session, {"path": "Additional files", "clips": []}, "report")
    official_api.uploadAdditionalData(str(report), files, "doc", report.name)
    raw = tmp_path / "raw.zip"
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("Walk01.x1d", b"\x00" * 100)
    raw_trial = util.addOrGetTrial(official_api, official_api.getSessionById(session["id"]),
                                   {"path": "Additional files", "clips": []}, "Raw motion data")
    official_api.uploadAdditionalData(str(raw), raw_trial, "raw", "Raw motion data - 2025-09-05.zip")

    data = official_api.getAdditionalData(trial)
    assert [(d["id"], d["originalFileName"], d["dataType"], d["uploadStatus"]) for d in data] == [
        (data_id, "Walk01.GCD", "raw", "Complete")]
    full = official_api.getSessionById(session["id"], include_additional_data=True)
    names = sorted(d["originalFileName"] for c in full["clips"] for d in c["additionalData"])
    assert names == ["Raw motion data - 2025-09-05.zip", "Walk01.GCD", "report.pdf"]


def test_trial_template_custom_options_round_trip(official_api, session, tmp_path: Path):
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk02")
    gcd = tmp_path / "Walk02.GCD"
    gcd.write_text("data")
    data_id = official_api.uploadAdditionalData(str(gcd), trial, "raw", gcd.name)
    options = {"trialTemplate": {"sideAdditionalData": {data_id: "left"},
                                 "representativeTrial": {"left": True, "right": True}}}
    official_api.updateClipMetadata(trial, {"title": "Walk02"}, json.dumps(options))
    clip = official_api.getClipData(trial)
    assert clip["title"] == "Walk02" and json.loads(clip["customOptions"]) == options


def test_subject_data_holds_the_whole_tree(official_api, session, tmp_path: Path):
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    (tmp_path / "Walk01.c3d").write_bytes(b"c3d" * 10)
    official_api.uploadAdditionalData(str(tmp_path / "Walk01.c3d"), trial, "raw", "Walk01.c3d")
    data = official_api.getSubjectData(session["patient"]["id"])
    [only] = data["sessions"]
    assert only["projectPath"] == "/Subject1/2025-09-05/"
    assert only["clips"][0]["additionalData"][0]["originalFileName"] == "Walk01.c3d"


def test_filtered_subjects_and_sessions(official_api):
    pid = project_id(official_api)
    for mrn, name, sex, day in (("M1", "Ann", "Female", "2025-01-10"), ("M2", "Ben", "Male", "2025-03-01"),
                                ("M3", "Cat", "Female", "2024-06-01")):
        subject = find_or_create_subject(official_api, mrn, name)
        official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({"subject-sex": sex}))
        created = find_or_create_session(official_api, subject, day, day)
        official_api.updateSessionMetadataInfo(created["id"], day, json.dumps({"metadata": {"session-type": "Gait"}}))
    female = official_api.getFilteredProjectSubjects(pid, {"key": "subject-sex", "operator": "EQ", "value": "Female"})
    assert sorted(s["name"] for s in female) == ["Ann", "Cat"]
    nested = {"logic": "AND", "filters": [{"key": "subject-sex", "operator": "EQ", "value": "Female"},
                                          {"logic": "OR", "filters": [
                                              {"key": "ehr-id", "operator": "EQ", "value": "M3"},
                                              {"key": "ehr-id", "operator": "EQ", "value": "M9"}]}]}
    assert [s["name"] for s in official_api.getFilteredProjectSubjects(pid, nested)] == ["Cat"]
    in_2025 = official_api.getFilteredProjectSubjects(
        pid, None, {"sessionDates": {"startDate": "2025-01-01", "endDate": "2025-12-31"},
                    "numSessions": {"min": 1, "max": 5}}, include_additional_data=True)
    assert sorted(s["name"] for s in in_2025) == ["Ann", "Ben"]
    sessions = official_api.getFilteredProjectSessions(
        pid, start_date="2025-01-01", end_date="2025-12-31",
        session_metadata_filters=[{"key": "session-type", "operator": "IN", "values": ["Gait", "Run"]}],
        patient_metadata_filters=[{"key": "subject-sex", "operator": "EQ", "value": "Male"}])
    assert [s["patient"]["name"] for s in sessions] == ["Ben"]
    between = official_api.getFilteredProjectSessions(
        pid, session_metadata_filters=[{"key": "session-type", "operator": "BETWEEN", "values": ["Gait", "Gaiz"]}])
    assert len(between) == 3
    dated = official_api.getProjectSessions(pid, "2025-01-01", "2025-02-01")
    assert [s["projectPath"] for s in dated] == ["/Ann/2025-01-10/"]


def test_interactive_reports_and_gait_tool_job(official_api, session):
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    assert official_api.generateAutomaticInteractiveReports(session["id"]) is True
    assert official_api.generateConditionSummaryReport(session["id"], "Summary", [trial]) is True
    assert official_api.generateCurrentVsPreviousSessionReport(session["id"], "Prev", [trial]) is True
    assert official_api.generateCurrentSessionComparisonReport(session["id"], "Cmp", [trial]) is True
    subject = official_api.getSubjectDetails(session["patient"]["id"])
    assert [r["title"] for r in subject["reports"]] == ["Automatic report", "Summary", "Prev", "Cmp"]
    job = official_api.processGaitTool([trial], "walking")
    assert official_api.getJobStatus(job)["status"] == "Complete"


def test_every_delete_cascades(official_api, session, tmp_path: Path, gql):
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    (tmp_path / "a.GCD").write_text("a")
    data_id = official_api.uploadAdditionalData(str(tmp_path / "a.GCD"), trial, "raw", "a.GCD")
    assert official_api.deleteAdditionalData(data_id) is True
    assert official_api.getAdditionalData(trial) == []
    other = util.addOrGetTrial(official_api, official_api.getSessionById(session["id"]),
                               {"path": "Shoes", "clips": []}, "Walk09")
    assert official_api.deleteClipByCondition(session["id"], "Shoes")["deleted_count"] == 1
    assert official_api.getClipData(other) is None
    assert official_api.deleteClip(trial) is True
    (tmp_path / "b.GCD").write_text("b")
    kept = util.addOrGetTrial(official_api, official_api.getSessionById(session["id"]),
                              {"path": "Barefoot", "clips": []}, "Walk03")
    kept_data = official_api.uploadAdditionalData(str(tmp_path / "b.GCD"), kept, "raw", "b.GCD")
    assert official_api.deleteSession(session["id"]) is True
    assert official_api.getClipData(kept) is None
    orphan = gql("query($id: ID!) { node(id: $id) { id } }", id=kept_data)
    assert orphan["node"] is None
    assert official_api.deleteSubjects([session["patient"]["id"]]) == {session["patient"]["id"]: True}
    assert official_api.getProjectSubjects(project_id(official_api)) == []


def test_unknown_id_is_null_and_bad_mutation_id_is_an_error(official_api):
    assert official_api.getClipData("TW9jYXBDbGlwOjk5OQ==") is None
    assert official_api.getSubjectDetails("not-an-id") is None
    with pytest.raises(GraphQlException):
        official_api.deleteSession("U2Vzc2lvbjo5OTk=")


def test_project_level_reads(official_api, session, tmp_path: Path):
    pid = project_id(official_api)
    trial = util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    assert official_api.getProjectDatasets(pid) == []
    assert "sessionMetadataTabs" in official_api.getProjectTemplate(pid)
    info = official_api.getProjectInfo(pid)
    assert info["name"] == PROJECT and info["projectConfiguration"]["name"]
    assert [c["id"] for c in official_api.getProjectClips(pid, 10, include_download_link=True)] == [trial]
    assert [p["name"] for p in official_api.getProjectAndClips()] == [PROJECT]
    context = official_api.getSubjectContext(session["patient"]["id"])
    assert context["project"]["id"] == pid and context["name"] == "Subject1"


def test_clip_level_upload_and_direct_clip_creation(official_api, tmp_path: Path):
    pid = project_id(official_api)
    bare = official_api.createClip(PROJECT, {"title": "Empty", "projectPath": "/Solo/2025-01-01/Walk"})
    (tmp_path / "Walk01.c3d").write_bytes(b"c3d bytes")
    uploaded = official_api.uploadFile(str(tmp_path / "Walk01.c3d"), PROJECT, {"title": "Walk01"})
    clips = official_api.getProjectClips(pid, 10, include_download_link=True)
    assert [(c["id"], c["title"], c["originalFileName"]) for c in clips] == [
        (bare, "Empty", None), (uploaded, "Walk01", "Walk01.c3d")]
    assert clips[1]["originalDataDownloadUri"].endswith("/Walk01.c3d") and clips[0]["originalDataDownloadUri"] is None
    download = requests.get(clips[1]["originalDataDownloadUri"], timeout=10)
    assert download.content == b"c3d bytes"


def test_delete_one_subject_and_read_metadata_with_the_util_helper(official_api):
    subject = find_or_create_subject(official_api, "MRN-9", "Dora")
    official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({"subject-sex": "Female"}))
    assert util.getPatientMetadata(official_api, subject["id"]) == {"ehr-id": "MRN-9", "subject-sex": "Female"}
    assert official_api.deleteSubject(subject["id"]) is True
    assert official_api.getProjectSubjectByEhrId("MRN-9", project_id(official_api)) is None


def test_filtered_sessions_from_a_session_overview_url(official_api):
    pid = project_id(official_api)
    for mrn, name, sex, day in (("U1", "Eve", "Female", "2025-02-01"), ("U2", "Finn", "Male", "2025-03-01")):
        subject = find_or_create_subject(official_api, mrn, name)
        official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({"subject-sex": sex}))
        created = find_or_create_session(official_api, subject, day, day)
        official_api.updateSessionMetadataInfo(created["id"], day, json.dumps({"metadata": {"session-type": "Gait"}}))
    url = (f"https://moveshelf.com/project/{pid}/sessions?startDate=2025-01-01&endDate=2025-12-31"
           "&subject-sex=Male&session-type=Gait")
    sessions = official_api.getFilteredProjectSessions(project_id=pid, session_overview_url=url)
    assert [s["projectPath"] for s in sessions] == ["/Finn/2025-03-01/"]


def test_every_public_method_of_the_official_client_is_exercised():
    """A newer client with a new method fails here until a test drives it against the emulator."""
    import inspect

    from moveshelf_api.api import MoveshelfApi

    public = {name for name, _ in inspect.getmembers(MoveshelfApi, inspect.isfunction) if not name.startswith("_")}
    public |= {name for name, value in vars(util).items()
               if inspect.isfunction(value) and value.__module__ == util.__name__ and not name.startswith("_")}
    called = set()
    for source in Path(__file__).parent.glob("test_emulator_*.py"):
        called |= set(re.findall(r"\.(\w+)\(", source.read_text()))
    assert len(public) >= 40 and public - called == set()
