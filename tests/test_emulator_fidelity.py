"""Where the emulator was measured to differ from the real Moveshelf, and the variants for what is unknown.

Each test drives the emulator over HTTP on loopback, with the unmodified official client where it can.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import google_crc32c
import pytest
import requests
from moveshelf_api import util
from moveshelf_api.api import MoveshelfApi

from importer.emulator import store as store_module
from importer.emulator.server import EmulatorServer

from .conftest import CREATE_PATIENT, PROJECT, UPDATE_PATIENT, Gql

CLIP_FILES = """query($id: ID!, $types: [String]) { node(id: $id) { ... on MocapClip {
  all: additionalData { originalFileName } picked: additionalData(dataTypeFilter: $types) { originalFileName dataType }
} } }"""
SESSION_NORMS = """query($id: ID!) { node(id: $id) { ... on Session { projectPath
  norms { id name status uploadStatus projectPath clips { id title } } clips { projectPath } } } }"""
PATIENT_METADATA = "query($id: ID!) { node(id: $id) { ... on Patient { metadata } } }"


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


@contextmanager
def variant(tmp_path: Path, **options: object) -> Iterator[tuple[EmulatorServer, MoveshelfApi]]:
    """A second emulator started with variant options, and the official client pointed at it."""
    server = EmulatorServer(data_dir=tmp_path / "variant", projects=(PROJECT,), **options).start()
    try:
        config = server.write_config(tmp_path / "variant-config")
        settings = json.loads(config.read_text())
        yield server, MoveshelfApi(api_key_file=str(config.parent / settings["apiKeyFileName"]),
                                   api_url=settings["apiUrl"])
    finally:
        server.stop()


def new_session(api: MoveshelfApi, subject: str = "S1", name: str = "2024-02-03", day: str | None = None) -> dict:
    created = api.createSubject(PROJECT, subject)
    session = api.createSession(PROJECT, f"/{subject}/{name}/", created["id"], day)
    return api.getSessionById(session["id"])


def upload(api: MoveshelfApi, session: dict, tmp_path: Path, condition: str, trial: str, name: str,
           content: bytes, data_type: str = "raw") -> tuple[str, str]:
    """(clip id, data id) of a file uploaded the way the guide uploads one."""
    clip_id = util.addOrGetTrial(api, session, {"path": condition, "clips": []}, trial)
    path = tmp_path / name
    path.write_bytes(content)
    return clip_id, api.uploadAdditionalData(str(path), clip_id, data_type, name)


def wait_until(check: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- gaps measured with Moveshelf's own scripts ---------------------------------------------------------------------
def test_session_answers_norms_as_older_examples_query_them(official_api, gql: Gql):
    session = new_session(official_api)
    util.addOrGetTrial(official_api, session, {"path": "Walk", "clips": []}, "Walk01")
    node = gql(SESSION_NORMS, id=session["id"])["node"]
    assert node["norms"] == []
    # the older helper groups clips and then norms by condition, reading session['norms'] unguarded
    conditions = {c["projectPath"][len(node["projectPath"]):] for c in node["clips"]}
    conditions |= {n["projectPath"][len(node["projectPath"]):] for n in node["norms"] if n["projectPath"]}
    assert conditions == {"Walk"}


@pytest.mark.parametrize(("sent", "stored"), [("2021-7-4", "2021-07-04"), ("2022-05-3", "2022-05-03"),
                                              ("2020-02-29", "2020-02-29")])
def test_session_dates_the_client_accepts_are_stored_zero_padded(official_api, sent: str, stored: str):
    session = new_session(official_api, day=sent)
    assert session["date"] == f"{stored}T00:00:00+00:00"
    assert official_api.updateSessionMetadataInfo(session["id"], "renamed", json.dumps({"metadata": {}}),
                                                  session_date="2019-1-2") is True
    again = official_api.getSessionById(session["id"])
    assert again["date"] == "2019-01-02T00:00:00+00:00" and again["projectPath"] == "/S1/renamed/"


def test_session_named_with_an_unpadded_date_gets_that_date(official_api):
    """The client reads the date from the path when none is given, as Moveshelf's own examples name sessions."""
    session = new_session(official_api, name="2022-5-23")
    assert session["projectPath"] == "/S1/2022-5-23/" and session["date"] == "2022-05-23T00:00:00+00:00"


@pytest.mark.parametrize("day", ["2021-13-4", "2021-2-30", "21-7-4", "2021/7/4"])
def test_dates_that_are_no_dates_are_still_refused(gql: Gql, day: str):
    patient = gql(CREATE_PATIENT, p=PROJECT, n="S")["createPatient"]["patient"]["id"]
    answer = gql.post("""mutation($pid: ID!, $d: String) { createSession(projectId: "demo/gait-lab",
        projectPath: "/S/x/", patientId: $pid, sessionDate: $d) { session { id } } }""", pid=patient, d=day)
    assert f"Invalid session date '{day}'" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize("name", ["Walk01.json", "Gait report 3.pdf", "Zürich #2.c3d"])
def test_download_uri_ends_with_the_original_file_name_and_downloads(official_api, tmp_path: Path, name: str):
    session = new_session(official_api)
    clip_id, data_id = upload(official_api, session, tmp_path, "Walk", "Walk01", name, b'{"a": 1}')
    [data] = official_api.getAdditionalData(clip_id)
    uri = data["originalDataDownloadUri"]
    assert uri.endswith(name.rsplit(".", 1)[1]) and unquote(urlsplit(uri).path).endswith(f"/{name}")
    assert requests.get(uri, timeout=10).content == b'{"a": 1}'
    assert official_api.isCurrentVersionUploaded(str(tmp_path / name), clip_id) is True


def test_download_uri_signature_is_checked(official_api, tmp_path: Path):
    session = new_session(official_api)
    clip_id, _ = upload(official_api, session, tmp_path, "Walk", "Walk01", "a.json", b"{}")
    uri = official_api.getAdditionalData(clip_id)[0]["originalDataDownloadUri"]
    head, signature, name = uri.rsplit("/", 2)
    forged = f"{head}/{'0' * len(signature)}/{name}"
    answer = requests.get(forged, timeout=10)
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text
    other_blob = uri.replace("/_storage/data/1/", "/_storage/data/2/")
    assert requests.get(other_blob, timeout=10).status_code == 403


def test_additional_data_filtered_by_data_type(official_api, gql: Gql, tmp_path: Path):
    session = new_session(official_api)
    clip_id, _ = upload(official_api, session, tmp_path, "Walk", "Walk01", "Walk01.json", b"{}", "data")
    for name, data_type in (("Walk01.mp4", "video"), ("Walk01.c3d", "raw")):
        (tmp_path / name).write_bytes(name.encode())
        official_api.uploadAdditionalData(str(tmp_path / name), clip_id, data_type, name)
    node = gql(CLIP_FILES, id=clip_id, types=["data"])["node"]
    assert [d["originalFileName"] for d in node["all"]] == ["Walk01.json", "Walk01.mp4", "Walk01.c3d"]
    assert node["picked"] == [{"originalFileName": "Walk01.json", "dataType": "data"}]
    several = gql(CLIP_FILES, id=clip_id, types=["raw", "video"])["node"]["picked"]
    assert [d["originalFileName"] for d in several] == ["Walk01.mp4", "Walk01.c3d"]
    assert gql(CLIP_FILES, id=clip_id, types=[])["node"]["picked"] == []
    assert len(gql(CLIP_FILES, id=clip_id, types=None)["node"]["picked"]) == 3


def test_put_without_x_goog_hash_is_not_checked_against_the_mutation(gql: Gql, official_api, tmp_path: Path):
    """Signed storage URLs check only a checksum they are given; the official client gives none."""
    session = new_session(official_api)
    clip_id = util.addOrGetTrial(official_api, session, {"path": "Walk", "clips": []}, "Walk01")
    created = gql("""mutation($input: CreateAdditionalDataInput) { createAdditionalData(input: $input) {
        uploadUrl data { id } } }""", input={"clipId": clip_id, "dataType": "raw", "filename": "x.c3d",
                                             "crc32c": crc(b"declared"), "clientId": "x"})["createAdditionalData"]
    answer = requests.put(created["uploadUrl"], data=b"other bytes",
                          headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert answer.status_code == 200
    [data] = official_api.getAdditionalData(clip_id)
    assert data["uploadStatus"] == "Complete"
    stored = requests.get(data["originalDataDownloadUri"], timeout=10)
    assert stored.content == b"other bytes" and f"crc32c={crc(b'other bytes')}" in stored.headers["x-goog-hash"]


def test_strict_checksum_variant_refuses_bytes_that_differ_from_the_mutation(tmp_path: Path):
    with variant(tmp_path, strict_checksum=True) as (server, api):
        gql = Gql(server)
        session = new_session(api)
        clip_id = util.addOrGetTrial(api, session, {"path": "Walk", "clips": []}, "Walk01")
        created = gql("""mutation($input: CreateAdditionalDataInput) { createAdditionalData(input: $input) {
            uploadUrl } }""", input={"clipId": clip_id, "dataType": "raw", "filename": "x.c3d",
                                     "crc32c": crc(b"declared")})["createAdditionalData"]
        refused = requests.put(created["uploadUrl"], data=b"other bytes", timeout=10)
        assert refused.status_code == 400 and "<Code>BadDigest</Code>" in refused.text
        assert api.getAdditionalData(clip_id)[0]["uploadStatus"] == "Processing"
        (tmp_path / "ok.c3d").write_bytes(b"fine")
        api.uploadAdditionalData(str(tmp_path / "ok.c3d"), clip_id, "raw", "ok.c3d")
        assert [d["uploadStatus"] for d in api.getAdditionalData(clip_id)] == ["Processing", "Complete"]


def test_update_patient_without_metadata_keeps_the_metadata(gql: Gql, official_api):
    subject = official_api.createSubject(PROJECT, "Kept")
    official_api.updateSubjectMetadataInfo(subject["id"], json.dumps({"ehr-id": "M-1", "subject-sex": "Female"}))
    before = gql(PATIENT_METADATA, id=subject["id"])["node"]["metadata"]
    assert gql(UPDATE_PATIENT, id=subject["id"])["updatePatient"]["updated"] is True
    assert gql("mutation($id: ID!) { updatePatient(patientId: $id) { updated } }", id=subject["id"])
    assert gql(PATIENT_METADATA, id=subject["id"])["node"]["metadata"] == before
    gql(UPDATE_PATIENT, id=subject["id"], m=json.dumps({}))  # an explicit empty object still replaces
    assert json.loads(gql(PATIENT_METADATA, id=subject["id"])["node"]["metadata"]) == {}


def test_project_answers_the_configuration_the_guide_extension_queries(gql: Gql):
    answer = gql("query($id: ID!) { node(id: $id) { ... on Project { configuration norms { id projectPath } } } }",
                 id=gql.project_id())
    assert json.loads(answer["node"]["configuration"]) == {} and answer["node"]["norms"] == []


# -- variants -----------------------------------------------------------------------------------------------------
def test_clip_path_slash_variant_stores_and_answers_a_trailing_slash(tmp_path: Path):
    with variant(tmp_path, clip_path_slash=True) as (server, api):
        session = new_session(api)
        walk = util.addOrGetTrial(api, session, {"path": "Barefoot", "clips": []}, "Walk01")
        util.addOrGetTrial(api, session, {"path": "Shoes/", "clips": []}, "Walk02")
        session = api.getSessionById(session["id"])
        assert [c["projectPath"] for c in session["clips"]] == ["/S1/2024-02-03/Barefoot/", "/S1/2024-02-03/Shoes/"]
        conditions = util.getConditionsFromSession(session, [])
        assert [c["path"] for c in conditions] == ["Barefoot/", "Shoes/"]
        found = next(c for c in conditions if c["path"].replace("/", "") == "Barefoot")  # the guide's lookup
        assert util.addOrGetTrial(api, session, found, "Walk01") == walk
        clip = session["clips"][0]
        assert f'{clip["projectPath"]}{clip["title"]}/Walk01.c3d' == "/S1/2024-02-03/Barefoot/Walk01/Walk01.c3d"
        with sqlite3.connect(server.data_dir / "moveshelf.sqlite3") as db:
            assert db.execute("SELECT project_path FROM clip ORDER BY pk").fetchall() == [
                ("/S1/2024-02-03/Barefoot/",), ("/S1/2024-02-03/Shoes/",)]


def test_clip_paths_are_kept_as_sent_by_default(official_api):
    session = new_session(official_api)
    util.addOrGetTrial(official_api, session, {"path": "Barefoot", "clips": []}, "Walk01")
    assert [c["projectPath"] for c in official_api.getSessionById(session["id"])["clips"]] == [
        "/S1/2024-02-03/Barefoot"]


def test_complete_after_variant_reports_processing_until_the_delay_is_over(tmp_path: Path):
    with variant(tmp_path, complete_after=0.4) as (_server, api):
        session = new_session(api)
        clip_id, _ = upload(api, session, tmp_path, "Walk", "Walk01", "Walk01.c3d", b"bytes")
        [data] = api.getAdditionalData(clip_id)
        assert data["uploadStatus"] == "Processing"
        assert requests.get(data["originalDataDownloadUri"], timeout=10).content == b"bytes"  # the bytes are there
        assert wait_until(lambda: api.getAdditionalData(clip_id)[0]["uploadStatus"] == "Complete")
        (tmp_path / "whole.c3d").write_bytes(b"clip-level file")
        uploaded = api.uploadFile(str(tmp_path / "whole.c3d"), PROJECT, {"title": "whole"})
        status = "query($id: ID!) { node(id: $id) { ... on MocapClip { uploadStatus } } }"
        assert api._dispatch_graphql(status, id=uploaded)["node"]["uploadStatus"] == "Processing"


def test_uploads_are_complete_at_once_by_default(official_api, tmp_path: Path):
    session = new_session(official_api)
    clip_id, _ = upload(official_api, session, tmp_path, "Walk", "Walk01", "Walk01.c3d", b"bytes")
    assert official_api.getAdditionalData(clip_id)[0]["uploadStatus"] == "Complete"


def test_command_line_starts_the_variants(tmp_path: Path):
    command = [sys.executable, "-m", "importer", "emulator", "--port", "0", "--data-dir", str(tmp_path / "d"),
               "--write-config", str(tmp_path / "c"), "--clip-path-slash", "--complete-after", "30",
               "--strict-checksum"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        assert "wrote" in lines[3] and "variants: clip-path-slash, complete-after 30s, strict-checksum" in lines[1]
        api_config = json.loads((tmp_path / "c" / "mvshlf-config.json").read_text())
        api = MoveshelfApi(api_key_file=str(tmp_path / "c" / "mvshlf-api-key.json"), api_url=api_config["apiUrl"])
        session = new_session(api)
        util.addOrGetTrial(api, session, {"path": "Walk", "clips": []}, "Walk01")
        assert api.getSessionById(session["id"])["clips"][0]["projectPath"].endswith("/Walk/")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_command_line_refuses_a_negative_delay(capsys):
    from importer.cli import main

    assert main(["emulator", "--port", "0", "--complete-after", "-1"]) == 2
    assert "--complete-after" in capsys.readouterr().err


# -- privacy and persistence ---------------------------------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_folder_database_and_key_files_are_private(tmp_path: Path, official_api):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "mvshlf-api-key.json").write_text("{}")
    (tmp_path / "keys" / "mvshlf-api-key.json").chmod(0o644)
    server = EmulatorServer(data_dir=folder, projects=(PROJECT,)).start()
    try:
        server.write_config(tmp_path / "keys")
        Gql(server)(CREATE_PATIENT, p=PROJECT, n="Private")
        assert mode(folder) == 0o700 and mode(folder / "blobs") == 0o700
        databases = list(folder.glob("moveshelf.sqlite3*"))
        assert folder / "moveshelf.sqlite3" in databases
        assert {p.name: mode(p) for p in databases} == {p.name: 0o600 for p in databases}
        assert mode(tmp_path / "keys" / "mvshlf-api-key.json") == 0o600
    finally:
        server.stop()


def test_a_data_folder_made_before_the_variants_still_opens(tmp_path: Path):
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / "moveshelf.sqlite3") as db:
        db.executescript(store_module._SCHEMA)
        db.execute("INSERT INTO project(name) VALUES (?)", (PROJECT,))
        db.execute("INSERT INTO clip(project_pk, title, project_path, created, upload_status) "
                   "VALUES (1, 'Old', '/S/x/C', '2020-01-01', 'Complete')")
    server = EmulatorServer(data_dir=folder).start()
    try:
        clips = Gql(server)("query($id: ID!) { node(id: $id) { ... on Project { clips { edges { node {"
                            " title uploadStatus } } } } } }", id=Gql(server).project_id())
        assert clips["node"]["clips"]["edges"] == [{"node": {"title": "Old", "uploadStatus": "Complete"}}]
    finally:
        server.stop()


def test_a_clip_belongs_to_the_session_whose_path_is_its_longest_prefix_of_whole_segments(tmp_path: Path):
    store = store_module.Store(tmp_path / "data")
    project = store.ensure_project("lab/gait")["pk"]
    patient = store.create_patient(project, "S1")["pk"]
    sessions = {path: store.create_session(project, patient, path, None)["pk"]
                for path in ("/S1/2025-01-01/", "/S1/2025-01-01/extra/", "/S10/2025-01-01/")}
    found = {path: (store.session_for_clip_path(project, path) or {}).get("pk") for path in (
        "/S1/2025-01-01/Walk/trial1", "/S1/2025-01-01/extra/Walk/trial1", "/S1/2025-01-01/Walk/trial1/",
        "/S10/2025-01-01/Walk/t", "/S1/2025-01-0/Walk/t", "/S1/2025-01-01", "no-slash")}
    assert found == {"/S1/2025-01-01/Walk/trial1": sessions["/S1/2025-01-01/"],
                     "/S1/2025-01-01/extra/Walk/trial1": sessions["/S1/2025-01-01/extra/"],
                     "/S1/2025-01-01/Walk/trial1/": sessions["/S1/2025-01-01/"],
                     "/S10/2025-01-01/Walk/t": sessions["/S10/2025-01-01/"],
                     "/S1/2025-01-0/Walk/t": None, "/S1/2025-01-01": None, "no-slash": None}
    other = store.ensure_project("lab/other")["pk"]
    assert store.session_for_clip_path(other, "/S1/2025-01-01/Walk/trial1") is None
    store.close()


def test_a_mutation_that_fails_half_way_leaves_nothing_and_a_failed_inner_transaction_only_its_own(tmp_path: Path):
    server = EmulatorServer(data_dir=tmp_path / "data")
    store = server.store
    project = store.ensure_project("lab/gait")["pk"]

    def half_then_fail(*_args):
        store.create_patient(project, "written, then undone")
        raise RuntimeError("failed after its first write")

    with pytest.raises(RuntimeError):
        server.api._atomic(half_then_fail)(None, None)
    assert store.patients(project) == []
    with store.transaction():
        store.create_patient(project, "kept")
        with pytest.raises(RuntimeError), store.transaction():
            store.create_patient(project, "undone")
            raise RuntimeError("the inner one fails")
    assert [p["name"] for p in store.patients(project)] == ["kept"]
    store.close()
