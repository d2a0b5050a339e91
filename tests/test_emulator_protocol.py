"""The emulator's transport: auth, bad requests, signed storage, faults, stats and persistence."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import google_crc32c
import pytest
import requests
from moveshelf_api import util

from importer.emulator.server import EmulatorServer

from .conftest import PROJECT, Gql

CREATE_PATIENT = "mutation($p: String!, $n: String!) { createPatient(projectId: $p, name: $n) { patient { id } } }"
PATIENTS = "query($id: ID!) { node(id: $id) { ... on Project { patientsList { id name } } } }"
CREATE_CLIPS = """mutation($input: ClipCreationInput!) {
  createClips(input: $input) { response { clientId uploadUrl mocapClip { id } } } }"""
CREATE_DATA = """mutation($input: CreateAdditionalDataInput) {
  createAdditionalData(input: $input) { uploadUrl data { id uploadStatus } } }"""
CLIP_DATA = """query($id: ID!) { node(id: $id) { ... on MocapClip {
  additionalData { id uploadStatus originalFileName originalDataDownloadUri } } } }"""


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def new_data(gql: Gql, content: bytes, declared: bytes | None = None) -> tuple[str, str]:
    """(data id, upload URL) of a fresh record in a fresh clip, declaring the checksum of `declared`."""
    clip = gql(CREATE_CLIPS, input={"project": PROJECT, "clips": [
        {"clientId": "c", "metadata": {"title": "t", "projectPath": "/S/X/C"}}]})
    clip_id = clip["createClips"]["response"][0]["mocapClip"]["id"]
    created = gql(CREATE_DATA, input={"clipId": clip_id, "dataType": "raw", "filename": "f.c3d",
                                      "crc32c": crc(content if declared is None else declared), "clientId": "f"})
    return created["createAdditionalData"]["data"]["id"], created["createAdditionalData"]["uploadUrl"]


def record(gql: Gql, data_id: str) -> dict:
    clip_id = base64.b64encode(b"MocapClip:%d" % 1).decode()
    return next(d for d in gql(CLIP_DATA, id=clip_id)["node"]["additionalData"] if d["id"] == data_id)


# -- authentication and bad requests ----------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc"])
def test_missing_or_wrong_key_is_401_with_json_errors(emulator: EmulatorServer, header):
    headers = {"Authorization": header} if header else {}
    answer = requests.post(emulator.graphql_url, json={"query": "{ viewer { projects { id } } }"}, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["message"] == "Invalid or missing API key"


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "Malformed GraphQL request body"),
    (b'{"variables": {}}', "Malformed GraphQL request body"),
    (b'{"query": "{ viewer { nope } }"}', "Cannot query field 'nope'"),
    (b'{"query": "{ viewer { projects "}', "Syntax Error"),
    (b'{"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": [1]}}', "$id"),
])
def test_bad_requests_answer_graphql_shaped_errors(gql: Gql, body: bytes, fragment: str):
    answer = gql.http.post(gql.server.graphql_url, data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert fragment in answer.json()["errors"][0]["message"]
    assert "Traceback" not in answer.text
    assert gql("{ viewer { projects { name } } }")["viewer"]["projects"] == [{"name": PROJECT}]


def test_unknown_node_is_null_and_mutation_on_unknown_id_is_an_error(gql: Gql):
    assert gql("query($id: ID!) { node(id: $id) { id } }", id="UGF0aWVudDo5OTk=") == {"node": None}
    assert gql("query($id: ID!) { node(id: $id) { id } }", id="%%%") == {"node": None}
    answer = gql.post("mutation($id: ID!) { deletePatient(patientId: $id) { deleted } }", id="UGF0aWVudDo5OTk=")
    assert answer.status_code == 200 and "does not exist" in answer.json()["errors"][0]["message"]


def test_clips_are_created_many_at_once_in_a_project_named_by_id_or_name(gql: Gql):
    for project in (PROJECT, gql.project_id()):
        answer = gql(CREATE_CLIPS, input={"project": project, "clips": [
            {"clientId": f"c{i}", "metadata": {"title": f"T{i}", "projectPath": "/S/X/C"}} for i in range(3)]})
        assert [r["clientId"] for r in answer["createClips"]["response"]] == ["c0", "c1", "c2"]
    assert gql.stats()["graphql"]["createClips"] == 2


def test_unknown_input_field_is_rejected(gql: Gql):
    answer = gql.post(CREATE_CLIPS, input={"project": PROJECT, "clips": [{"clientId": "c", "colour": "red"}]})
    assert answer.status_code == 400 and "colour" in answer.json()["errors"][0]["message"]


def test_session_date_is_validated(gql: Gql):
    patient = gql(CREATE_PATIENT, p=PROJECT, n="S")["createPatient"]["patient"]["id"]
    answer = gql.post("""mutation($pid: ID!) { createSession(projectId: "demo/gait-lab", projectPath: "/S/x/",
        patientId: $pid, sessionDate: "2025-13-40") { session { id } } }""", pid=patient)
    assert "Invalid session date" in answer.json()["errors"][0]["message"]


# -- storage --------------------------------------------------------------------------------------------
def test_upload_carrying_x_goog_hash_completes_only_with_matching_checksum(gql: Gql):
    data_id, url = new_data(gql, b"right bytes")
    assert record(gql, data_id)["uploadStatus"] == "Processing"
    for sent in (b"wrong bytes", b"right bytes"):  # a header that matches the bytes, not the mutation's crc32c
        bad = requests.put(url, data=b"wrong bytes", headers={"x-goog-hash": f"crc32c={crc(sent)}"})
        assert bad.status_code == 400 and "<Code>BadDigest</Code>" in bad.text
    assert record(gql, data_id)["uploadStatus"] == "Processing"
    good = requests.put(url, data=b"right bytes", headers={"x-goog-hash": f"crc32c={crc(b'right bytes')}"})
    assert good.status_code == 200
    assert record(gql, data_id)["uploadStatus"] == "Complete"


def test_download_answers_gcs_headers_and_ranges(gql: Gql):
    content = bytes(range(256)) * 40
    data_id, url = new_data(gql, content)
    requests.put(url, data=content).raise_for_status()
    download = record(gql, data_id)["originalDataDownloadUri"]
    whole = requests.get(download)
    assert whole.status_code == 200 and whole.content == content
    hashes = whole.raw.headers.getlist("x-goog-hash")
    assert f"crc32c={crc(content)}" in hashes and any(h.startswith("md5=") for h in hashes)
    assert whole.headers["x-goog-stored-content-length"] == str(len(content)) and whole.headers["ETag"]
    ranged = requests.get(download, headers={"Range": "bytes=0-0"})
    assert ranged.status_code == 206 and ranged.content == content[:1]
    assert ranged.headers["Content-Range"] == f"bytes 0-0/{len(content)}"
    assert ranged.raw.headers.getlist("x-goog-hash") == hashes
    tail = requests.get(download, headers={"Range": "bytes=-10"})
    assert tail.content == content[-10:]


def test_empty_object_answers_its_hashes_to_a_ranged_get(gql: Gql):
    data_id, url = new_data(gql, b"")
    requests.put(url, data=b"").raise_for_status()
    answer = requests.get(record(gql, data_id)["originalDataDownloadUri"], headers={"Range": "bytes=0-0"})
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["x-goog-stored-content-length"] == "0" and f"crc32c={crc(b'')}" in answer.headers["x-goog-hash"]


def test_expired_and_tampered_urls(tmp_path: Path):
    server = EmulatorServer(data_dir=tmp_path / "e", projects=(PROJECT,), url_ttl_seconds=-1).start()
    try:
        gql = Gql(server)
        _, url = new_data(gql, b"x")
        expired = requests.put(url, data=b"x")
        assert expired.status_code == 400 and "<Code>ExpiredToken</Code>" in expired.text
        tampered = requests.put(url.replace("op=put", "op=get"), data=b"x")
        assert tampered.status_code == 403 and "SignatureDoesNotMatch" in tampered.text
    finally:
        server.stop()


# -- faults -------------------------------------------------------------------------------------------------
def test_status_faults_fire_as_configured_and_are_logged(gql: Gql):
    gql.faults({"match": "viewer", "fault": "status:503", "times": 1},
               {"match": "createPatient", "fault": "status:429:retry-after=7", "times": 1})
    query = "{ viewer { projects { id } } }"
    assert gql.post(query).status_code == 503
    assert gql.post(query).status_code == 200
    limited = gql.post(CREATE_PATIENT, p=PROJECT, n="A")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert gql(PATIENTS, id=gql.project_id())["node"]["patientsList"] == []
    assert [(e["target"], e["fault"]) for e in gql.fault_log()] == [
        ("viewer", "status:503"), ("createPatient", "status:429:retry-after=7")]


def test_reset_and_delay_faults(gql: Gql):
    gql.faults({"match": "*", "fault": "reset", "times": 1}, {"match": "viewer", "fault": "delay:300", "times": 1})
    with pytest.raises(requests.ConnectionError):
        requests.post(gql.server.graphql_url, json={"query": "{ viewer { projects { id } } }"},
                      headers={"Authorization": f"Bearer {gql.server.api_key}"})
    started = time.monotonic()
    gql("{ viewer { projects { id } } }")
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("fault", ["commit-then-status:502", "commit-then-reset"])
def test_commit_then_fail_faults_change_state_and_fail_the_answer(gql: Gql, fault: str):
    gql.faults({"match": "createPatient", "fault": fault, "times": 1})
    try:
        answer = gql.post(CREATE_PATIENT, p=PROJECT, n="Ghost")
        assert answer.status_code == 502
    except requests.ConnectionError:
        assert fault == "commit-then-reset"
    assert [p["name"] for p in gql(PATIENTS, id=gql.project_id())["node"]["patientsList"]] == ["Ghost"]


def test_truncated_download_and_probability_zero(gql: Gql):
    content = b"z" * 5000
    data_id, url = new_data(gql, content)
    gql.faults({"match": "upload", "fault": "status:500", "probability": 0.0},
               {"match": "download", "fault": "truncate:100", "times": 1})
    requests.put(url, data=content).raise_for_status()
    with pytest.raises(requests.RequestException):
        requests.get(record(gql, data_id)["originalDataDownloadUri"]).content  # noqa: B018
    assert [e["fault"] for e in gql.fault_log()] == ["truncate:100"]


def test_bad_fault_configuration_is_rejected(gql: Gql):
    answer = requests.post(f"{gql.server.url}/_emulator/faults", json={"rules": [{"match": "*", "fault": "boom"}]})
    assert answer.status_code == 400 and "boom" in answer.json()["errors"][0]["message"]


def test_official_client_duplicates_a_clip_under_commit_then_status(official_api, gql: Gql):
    """The failure our executor must never repeat: a blind retry of a committed create."""
    subject = official_api.createSubject(PROJECT, "Dup")
    session = official_api.createSession(PROJECT, "/Dup/2025-01-01/", subject["id"], "2025-01-01")
    session = official_api.getSessionById(session["id"])
    gql.faults({"match": "createClips", "fault": "commit-then-status:500", "times": 1})
    util.addOrGetTrial(official_api, session, {"path": "Walk", "clips": []}, "Walk01")
    titles = [c["title"] for c in official_api.getSessionById(session["id"])["clips"]]
    assert titles == ["Walk01", "Walk01"]
    assert gql.stats()["graphql"]["createClips"] == 2


# -- stats, reset and persistence ------------------------------------------------------------------------------
def test_stats_count_requests_by_root_field_and_bytes(gql: Gql):
    gql("{ viewer { projects { id } } }")
    data_id, url = new_data(gql, b"12345")
    requests.put(url, data=b"12345").raise_for_status()
    requests.get(record(gql, data_id)["originalDataDownloadUri"]).raise_for_status()
    stats = gql.stats()
    assert stats["graphql"] == {"viewer": 1, "createClips": 1, "createAdditionalData": 1, "node": 1}
    assert (stats["uploads"], stats["downloads"], stats["bytes_in"], stats["bytes_out"]) == (1, 1, 5, 5)
    requests.post(f"{gql.server.url}/_emulator/reset").raise_for_status()
    assert gql.stats()["graphql"] == {}
    assert gql(PATIENTS, id=gql.project_id())["node"]["patientsList"] == []


def test_state_and_key_survive_a_restart(tmp_path: Path):
    first = EmulatorServer(data_dir=tmp_path / "e", projects=(PROJECT,)).start()
    gql = Gql(first)
    gql(CREATE_PATIENT, p=PROJECT, n="Kept")
    data_id, url = new_data(gql, b"persisted")
    requests.put(url, data=b"persisted").raise_for_status()
    key = first.api_key
    first.stop()
    second = EmulatorServer(data_dir=tmp_path / "e").start()
    try:
        again = Gql(second)
        assert second.api_key == key
        assert [p["name"] for p in again(PATIENTS, id=again.project_id())["node"]["patientsList"]] == ["Kept"]
        assert requests.get(record(again, data_id)["originalDataDownloadUri"]).content == b"persisted"
    finally:
        second.stop()


def test_write_config_points_at_the_server(emulator: EmulatorServer, tmp_path: Path):
    config = json.loads((tmp_path / "config" / "mvshlf-config.json").read_text())
    key = json.loads((tmp_path / "config" / config["apiKeyFileName"]).read_text())["secretKey"]
    assert config["apiUrl"] == emulator.graphql_url and key == emulator.api_key
