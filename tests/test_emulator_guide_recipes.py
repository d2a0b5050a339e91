"""Scripts written the way the recipes of Moveshelf's import guide are written, run against the emulator.

They are this project's own code, shaped like the guide's sections: "Upload data files" in batch from a
session folder with `moveshelf_config_import.json`, "Retrieve data files", "Download large data sets"
(parallel downloads) and "Extending the Moveshelf API" (a subclass with its own GraphQL query). Each runs
the unmodified official client over HTTP, against the default emulator and against its variants.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from moveshelf_api import util
from moveshelf_api.api import MoveshelfApi

from .conftest import PROJECT
from .test_emulator_fidelity import variant, wait_until

IMPORT_CONFIG = {
    "subjectMetadata": {"ehr-id": "MRN-42", "subject-first-name": "Ada", "subject-sex": "Female"},
    "interventionMetadata": [{"id": 0, "date": "2020-03-01", "site": "Left knee", "procedures": []}],
    "sessionMetadata": {"interview-fms5m": "2",
                        "vicon-leg-length": [{"value": "501", "context": "left"}, {"value": "503", "context": "right"}]},
    "conditionDefinition": {"Barefoot": ["Walk01", "Walk02"], "Shoes": ["Walk03"]},
    "representativeTrials": {"Walk01": "left,right", "Walk03": "right"},
    "trialSideSelection": {"Walk02": "left"},
}
VARIANTS = {"default": {}, "clip-path-slash": {"clip_path_slash": True}}


class GaitLabApi(MoveshelfApi):
    """A client with one more query, as the guide's "Extending the Moveshelf API" section builds one."""

    def getProjectOverview(self, project_id: str) -> dict:  # noqa: N802 - named like the methods it sits beside
        query = """query overview($projectId: ID!) { node(id: $projectId) { ... on Project {
            name configuration canEdit template { name data } norms { id projectPath }
            patients { id name metadata sessions { id date projectPath metadata
              clips { id title projectPath uploadStatus hasCharts
                additionalData { id dataType originalFileName uploadStatus originalDataDownloadUri } } } } } } }"""
        return self._dispatch_graphql(query, projectId=project_id)["node"]


@pytest.fixture(params=list(VARIANTS))
def client(request, tmp_path: Path):
    """The official client against the default emulator and against each variant."""
    with variant(tmp_path, **VARIANTS[request.param]) as (server, api):
        api.variant = request.param
        yield api


def project_id(api: MoveshelfApi) -> str:
    projects = api.getUserProjects()
    return projects[[p["name"] for p in projects].index(PROJECT)]["id"]


def session_folder(root: Path, subject: str = "Ada", session: str = "2021-7-4") -> Path:
    """A session folder as a lab keeps it: the config file, one GCD per trial, and a PDF report."""
    folder = root / subject / session
    folder.mkdir(parents=True)
    (folder / "moveshelf_config_import.json").write_text(json.dumps(IMPORT_CONFIG))
    for trial in ("Walk01", "Walk02", "Walk03"):
        (folder / f"{trial}.GCD").write_text(f"!{trial}\n1.0\n2.0\n")
        (folder / f"{trial}.json").write_text(json.dumps({"trial": trial}))
    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    return folder


# -- the batch import recipe -------------------------------------------------------------------------------------
def subject_for(api: MoveshelfApi, config: dict, name: str) -> dict:
    """Find the subject by MRN or create it, then import its metadata with the interventions."""
    metadata = dict(config.get("subjectMetadata", {}))
    found = api.getProjectSubjectByEhrId(metadata["ehr-id"], project_id(api))
    subject_id = found["id"] if found else api.createSubject(PROJECT, name)["id"]
    metadata["interventions"] = config.get("interventionMetadata", [])
    api.updateSubjectMetadataInfo(subject_id, json.dumps(metadata))
    return api.getSubjectDetails(subject_id)


def session_for(api: MoveshelfApi, subject: dict, name: str, config: dict) -> dict:
    """Find the session by the name in its path or create it; then import its metadata."""
    existing = [s for s in subject.get("sessions", []) if s["projectPath"].split("/")[2] == name]
    if existing:
        session_id = existing[0]["id"]
    else:
        session_id = api.createSession(PROJECT, f"/{subject['name']}/{name}/", subject["id"], name)["id"]
    api.updateSessionMetadataInfo(session_id, name, json.dumps({"metadata": config.get("sessionMetadata", {})}))
    return api.getSessionById(session_id)


def trial_options(config: dict, trial: str, data_id: str) -> str:
    template: dict = {}
    if config.get("trialSideSelection", {}).get(trial):
        template["sideAdditionalData"] = {data_id: config["trialSideSelection"][trial]}
    flags = {side: True for side in ("left", "right") if side in config.get("representativeTrials", {}).get(trial, "")}
    if flags:
        template["representativeTrial"] = flags
    return json.dumps({"trialTemplate": template} if template else {})


def upload_missing(api: MoveshelfApi, clip_id: str, path: Path, data_type: str) -> str | None:
    """Upload a file unless the trial already holds one of that name (the guide's first upload variant)."""
    if path.name in [d["originalFileName"] for d in api.getAdditionalData(clip_id)]:
        return None
    return api.uploadAdditionalData(str(path), clip_id, data_type, path.name)


def import_session_folder(api: MoveshelfApi, folder: Path) -> None:
    config = json.loads((folder / "moveshelf_config_import.json").read_text())
    subject = subject_for(api, config, folder.parent.name)
    session = session_for(api, subject, folder.name, config)
    conditions = util.getConditionsFromSession(session, [])
    for condition_name, trials in config.get("conditionDefinition", {}).items():
        matching = [c for c in conditions if c["path"].replace("/", "") == condition_name]
        condition = matching[0] if matching else {"path": condition_name, "clips": []}
        for trial in trials:
            clip_id = util.addOrGetTrial(api, session, condition, trial)
            data_id = upload_missing(api, clip_id, folder / f"{trial}.GCD", "raw")
            upload_missing(api, clip_id, folder / f"{trial}.json", "data")
            if data_id:
                api.updateClipMetadata(clip_id, {"title": trial}, trial_options(config, trial, data_id))
    files = [c for c in conditions if c["path"].replace("/", "") == "Additional files"]
    report_clip = util.addOrGetTrial(api, session, files[0] if files else {"path": "Additional files", "clips": []},
                                     "report")
    upload_missing(api, report_clip, folder / "report.pdf", "doc")


def test_batch_import_of_a_session_folder_twice_makes_one_copy(client: MoveshelfApi, tmp_path: Path):
    folder = session_folder(tmp_path / "lab")
    import_session_folder(client, folder)
    import_session_folder(client, folder)
    [listed] = client.getProjectSubjects(project_id(client))
    assert (listed["name"], listed["externalId"]) == ("Ada", "MRN-42")
    subject = client.getSubjectData(listed["id"])
    metadata = json.loads(subject["metadata"])
    assert metadata["subject-first-name"] == "Ada" and metadata["interventions"][0]["site"] == "Left knee"
    [session] = subject["sessions"]
    assert session["projectPath"] == "/Ada/2021-7-4/" and session["date"].startswith("2021-07-04")
    assert json.loads(session["metadata"])["metadata"]["vicon-leg-length"][1]["value"] == "503"
    trials = {(c["projectPath"].rstrip("/").rsplit("/", 1)[1], c["title"]): sorted(
        d["originalFileName"] for d in c["additionalData"]) for c in session["clips"]}
    assert trials == {("Barefoot", "Walk01"): ["Walk01.GCD", "Walk01.json"],
                      ("Barefoot", "Walk02"): ["Walk02.GCD", "Walk02.json"],
                      ("Shoes", "Walk03"): ["Walk03.GCD", "Walk03.json"], ("Additional files", "report"): ["report.pdf"]}
    walk02 = next(c for c in session["clips"] if c["title"] == "Walk02")
    gcd = next(d["id"] for d in walk02["additionalData"] if d["originalFileName"] == "Walk02.GCD")
    options = json.loads(client.getClipData(walk02["id"])["customOptions"])
    assert options == {"trialTemplate": {"sideAdditionalData": {gcd: "left"}}}
    walk01 = next(c["id"] for c in session["clips"] if c["title"] == "Walk01")
    assert json.loads(client.getClipData(walk01)["customOptions"])["trialTemplate"]["representativeTrial"] == {
        "left": True, "right": True}


# -- the retrieval and download recipes -----------------------------------------------------------------------------
def test_download_by_extension_selects_and_parses_the_json_files(client: MoveshelfApi, tmp_path: Path):
    import_session_folder(client, session_folder(tmp_path / "lab"))
    subject_ids = [s["id"] for s in client.getProjectSubjects(project_id(client))]
    urls, file_paths = [], []
    for subject in (client.getSubjectData(i) for i in subject_ids):
        for session in subject.get("sessions", []):
            for clip in session.get("clips", []):
                for data in clip.get("additionalData", []):
                    if data["originalDataDownloadUri"].endswith(".json"):
                        urls.append(data["originalDataDownloadUri"])
                        file_paths.append(f'{clip["projectPath"]}{clip["title"]}/{data["originalFileName"]}')
    assert [json.loads(requests.get(u, timeout=10).content.decode()) for u in urls] == [
        {"trial": "Walk01"}, {"trial": "Walk02"}, {"trial": "Walk03"}]
    if client.variant == "clip-path-slash":  # the layout the guide's f-string implies
        assert file_paths[0] == "/Ada/2021-7-4/Barefoot/Walk01/Walk01.json"
    else:
        assert file_paths[0] == "/Ada/2021-7-4/BarefootWalk01/Walk01.json"


def test_retrieve_data_files_of_a_trial_filtered_by_extension(client: MoveshelfApi, tmp_path: Path):
    import_session_folder(client, session_folder(tmp_path / "lab"))
    subject = client.getSubjectDetails(client.getProjectSubjects(project_id(client))[0]["id"])
    session = client.getSessionById(subject["sessions"][0]["id"])
    conditions = util.getConditionsFromSession(session, [])
    barefoot = next(c for c in conditions if c["path"].replace("/", "") == "Barefoot")
    walk02 = next(c["id"] for c in barefoot["clips"] if c["title"] == "Walk02")
    wanted = [d for d in client.getAdditionalData(walk02) if os.path.splitext(d["originalFileName"])[1].lower() == ".gcd"]
    contents = [requests.get(d["originalDataDownloadUri"], timeout=10).content
                for d in wanted if d["uploadStatus"] == "Complete"]
    assert contents == [b"!Walk02\n1.0\n2.0\n"]


def test_retrieve_recipe_waits_for_complete_under_the_processing_delay(tmp_path: Path):
    with variant(tmp_path, complete_after=1.0) as (_server, api):
        import_session_folder(api, session_folder(tmp_path / "lab"))
        session = api.getSubjectData(api.getProjectSubjects(project_id(api))[0]["id"])["sessions"][0]
        clip_id = next(c["id"] for c in session["clips"] if c["title"] == "report")  # the last file uploaded

        def complete() -> list[str]:
            return [d["originalFileName"] for d in api.getAdditionalData(clip_id) if d["uploadStatus"] == "Complete"]

        assert complete() == []  # the guide downloads only what is Complete
        assert wait_until(lambda: complete() == ["report.pdf"])


def test_parallel_downloads_of_subjects_and_sessions(client: MoveshelfApi, tmp_path: Path):
    for subject, session in (("Ada", "2021-7-4"), ("Ben", "2022-05-23"), ("Cy", "2023-1-15")):
        config = json.loads(json.dumps(IMPORT_CONFIG))
        config["subjectMetadata"]["ehr-id"] = f"MRN-{subject}"
        folder = session_folder(tmp_path / "lab", subject, session)
        (folder / "moveshelf_config_import.json").write_text(json.dumps(config))
        import_session_folder(client, folder)
    http = requests.Session()

    def download(url: str) -> dict | None:
        try:
            return json.loads(http.get(url, timeout=10).content.decode())
        except ValueError:
            return None

    subject_ids = [s["id"] for s in client.getProjectSubjects(project_id(client))]
    with ThreadPoolExecutor(max_workers=5) as pool:
        subjects = list(pool.map(client.getSubjectData, subject_ids))
    session_ids = [s["id"] for subject in subjects for s in subject["sessions"]]
    with ThreadPoolExecutor(max_workers=5) as pool:
        sessions = list(pool.map(lambda i: client.getSessionById(i, include_additional_data=True), session_ids))
    urls = [d["originalDataDownloadUri"] for s in sessions for c in s["clips"] for d in c["additionalData"]
            if d["originalDataDownloadUri"].endswith(".json")]
    with ThreadPoolExecutor(max_workers=5) as pool:
        downloaded = list(pool.map(download, urls))
    assert len(urls) == 9 and downloaded.count({"trial": "Walk03"}) == 3 and None not in downloaded


def test_subclass_with_its_own_query(tmp_path: Path, client: MoveshelfApi):
    import_session_folder(client, session_folder(tmp_path / "lab"))
    custom = GaitLabApi(api_key_file=str(tmp_path / "variant-config" / "mvshlf-api-key.json"), api_url=client.api_url)
    overview = custom.getProjectOverview(project_id(custom))
    assert overview["name"] == PROJECT and json.loads(overview["configuration"]) == {} and overview["norms"] == []
    assert "sessionMetadataTabs" in json.loads(overview["template"]["data"])
    [patient] = overview["patients"]
    assert json.loads(patient["metadata"])["ehr-id"] == "MRN-42"
    files = [d["originalFileName"] for s in patient["sessions"] for c in s["clips"] for d in c["additionalData"]]
    assert sorted(files)[:2] == ["Walk01.GCD", "Walk01.json"] and len(files) == 7
    assert custom.getUserProjects() == client.getUserProjects()  # the inherited methods still work
