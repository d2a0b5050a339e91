"""The importer against the emulator over HTTP on loopback: idempotency, faults, conflicts, bad input."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import requests

from importer.cli import main
from importer.state import run_lock

from .conftest import CREATE_PATIENT, PROJECT, UPDATE_PATIENT, Gql, inventory, mutations, server_tree


def test_apply_then_plan_finds_nothing_and_a_second_apply_writes_nothing(cli, lab, gql: Gql, tmp_path: Path):
    first = cli("apply", str(lab), "--yes", "--report", str(tmp_path / "report.json"))
    assert first.code == 0, first.err
    assert "Applied 50 of 50 steps" in first.out
    report = json.loads((tmp_path / "report.json").read_text())
    schema = json.loads(resources.files("importer").joinpath("schemas/report.schema.json").read_text())
    jsonschema.validate(report, schema)
    assert report["summary"]["applied"] == report["summary"]["steps"] == 50
    before = gql.stats()
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0
    again = cli("apply", str(lab), "--yes")
    after = gql.stats()
    assert again.code == 0 and "No changes" in again.out
    assert mutations(after) == mutations(before)
    assert (after["uploads"], after["downloads"]) == (before["uploads"], 0)

    [sam, noor] = sorted(server_tree(gql), key=lambda p: p["name"])
    assert json.loads(sam["metadata"])["interventions"][0]["surgeon"] == "Dr. de Vries"
    first_session = next(s for s in sam["sessions"] if s["projectPath"].endswith("2025-03-14/"))
    assert first_session["date"] == "2025-03-14T00:00:00+00:00"
    assert json.loads(first_session["metadata"])["metadata"]["session-type"] == "Gait"
    walk01 = next(c for c in first_session["clips"] if c["title"] == "Walk01")
    options = json.loads(walk01["customOptions"])["trialTemplate"]
    assert options["representativeTrial"] == {"left": True, "right": True}
    assert sorted(options["sideAdditionalData"]) == sorted(d["id"] for d in walk01["additionalData"])
    assert sorted(s["projectPath"] for s in noor["sessions"]) == ["/Subject02/2025-05-20/", "/Subject02/Follow-up visit/"]
    c3d = next(d for d in walk01["additionalData"] if d["originalFileName"] == "Walk01.c3d")
    assert requests.get(c3d["originalDataDownloadUri"]).content == (lab / "Subject01/2025-03-14/Walk01.c3d").read_bytes()


def test_subject_found_by_mrn_under_another_name_is_not_duplicated(cli, lab, gql: Gql):
    patient = gql(CREATE_PATIENT, p=PROJECT, n="Sam J")["createPatient"]["patient"]["id"]
    gql(UPDATE_PATIENT, id=patient, m=json.dumps({"ehr-id": "1001"}))
    result = cli("apply", str(lab), "--yes")
    assert result.code == 0, result.err
    assert "matched by MRN '1001' to the server's subject 'Sam J'" in result.out
    names = sorted(p["name"] for p in server_tree(gql))
    assert names == ["Sam J", "Subject02"]
    sam = next(p for p in server_tree(gql) if p["name"] == "Sam J")
    assert sorted(s["projectPath"] for s in sam["sessions"]) == ["/Sam J/2025-03-14/", "/Sam J/2025-09-02/"]


def test_metadata_fills_only_empty_fields_and_replaces_interventions(cli, lab, gql: Gql):
    patient = gql(CREATE_PATIENT, p=PROJECT, n="Subject01")["createPatient"]["patient"]["id"]
    gql(UPDATE_PATIENT, id=patient, m=json.dumps({"ehr-id": "1001", "subject-first-name": "Samuel",
                                                  "subject-last-name": "", "interventions": [{"id": 9}]}))
    session = gql("""mutation($pid: ID!) { createSession(projectId: "demo/gait-lab", projectPath: "/Subject01/2025-03-14/",
        patientId: $pid) { session { id } } }""", pid=patient)["createSession"]["session"]["id"]
    gql("""mutation($id: ID!, $m: JSONString) { updateSession(sessionId: $id, sessionName: "2025-03-14",
        sessionMetadata: $m) { updated } }""", id=session, m=json.dumps({"metadata": {
        "vicon-leg-length": [{"value": "", "context": "left"}, {"value": "700", "context": "right"}]}}))
    plan = cli("plan", str(lab))
    assert 'server keeps subject-first-name "Samuel" (folders say "Sam")' in plan.out
    assert 'subject-last-name: (empty) → "Jansen"' in plan.out and "~ metadata, date 2025-03-14" in plan.out
    assert cli("apply", str(lab), "--yes").code == 0
    sam = next(p for p in server_tree(gql) if p["name"] == "Subject01")
    metadata = json.loads(sam["metadata"])
    assert metadata["subject-first-name"] == "Samuel" and metadata["subject-last-name"] == "Jansen"
    assert [i["id"] for i in metadata["interventions"]] == [0]
    stored = json.loads(sam["sessions"][0]["metadata"])["metadata"]
    assert stored["vicon-leg-length"] == [{"value": "712", "context": "left"}, {"value": "700", "context": "right"}]
    assert sam["sessions"][0]["date"] == "2025-03-14T00:00:00+00:00"


@pytest.mark.parametrize("fault", ["commit-then-status:500", "commit-then-reset"])
@pytest.mark.parametrize("target", ["createPatient", "createSession", "createClips", "createAdditionalData", "upload"])
def test_ambiguous_failures_never_duplicate(cli, lab, gql: Gql, expected, target: str, fault: str):
    gql.faults({"match": target, "fault": fault, "times": 2})
    first = cli("apply", str(lab), "--yes")
    hit = [e["target"] for e in gql.fault_log()]
    assert hit in ([target], [target, target])  # creates of many subjects and sessions share a request
    assert first.code == 0, first.err
    gql.faults()
    assert cli("apply", str(lab), "--yes").code == 0
    assert inventory(gql) == expected
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0


def test_transient_errors_and_rate_limits_are_retried(cli, lab, gql: Gql, expected):
    gql.faults({"match": "*", "fault": "status:503", "probability": 0.5, "times": 8},
               {"match": "createClips", "fault": "status:429:retry-after=1", "times": 1})
    result = cli("apply", str(lab), "--yes")
    assert result.code == 0, result.err
    fired = [e["fault"] for e in gql.fault_log()]
    assert fired.count("status:429:retry-after=1") == 1 and fired.count("status:503") >= 2, fired
    gql.faults()
    assert inventory(gql) == expected


def test_a_stale_unfinished_upload_is_replaced(cli, lab, gql: Gql, expected):
    gql.faults({"match": "upload", "fault": "status:500", "times": 1})
    failed = cli("apply", str(lab), "--yes", "--attempts", "1")
    assert failed.code == 3 and "failed:" in failed.err
    stale = [row for row in inventory(gql) if row[0] == "file" and row[-1] == "Processing"]
    assert len(stale) == 1
    gql.faults()
    plan = cli("plan", str(lab))
    name = stale[0][3]  # whichever upload the fault hit
    assert f"+ file {name}" in plan.out
    assert f"- stale record of {name} (Processing, left by an interrupted run)" in plan.out
    assert cli("apply", str(lab), "--yes").code == 0
    assert inventory(gql) == expected


def change(lab: Path) -> Path:
    changed = lab / "Subject01/2025-03-14/Walk01.GCD"
    changed.write_text(changed.read_text().replace("!Cadence", "!Cadence 1"))
    return changed


@pytest.mark.parametrize("fresh_journal", [False, True])
def test_changed_file_is_a_conflict_and_skip_leaves_it(cli, lab, gql: Gql, fresh_journal: bool):
    assert cli("apply", str(lab), "--yes").code == 0
    change(lab)
    before = gql.stats()
    result = cli("apply", str(lab), "--yes", state="other-state" if fresh_journal else "state")
    assert result.code == 3 and "1 conflict left alone" in result.out  # a person should look
    assert "Walk01.GCD: the server's file differs from the local file" in result.out
    after = gql.stats()
    assert after["uploads"] == before["uploads"] and mutations(after) == mutations(before)
    assert after["downloads"] == before["downloads"] + (20 if fresh_journal else 0)


def test_changed_file_replaced_on_request(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    changed = change(lab)
    assert cli("apply", str(lab), "--yes", "--on-conflict", "replace").code == 0
    records = [d for p in server_tree(gql) for s in p["sessions"] for c in s["clips"] for d in c["additionalData"]
               if d["originalFileName"] == "Walk01.GCD" and s["projectPath"] == "/Subject01/2025-03-14/"]
    assert len(records) == 1 and records[0]["uploadStatus"] == "Complete"
    assert requests.get(records[0]["originalDataDownloadUri"]).content == changed.read_bytes()
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0


def test_changed_file_with_fail_policy_writes_nothing(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    change(lab)
    (lab / "Subject02/2025-05-20/Extra.pdf").write_bytes(b"%PDF-1.4 new")
    before = gql.stats()
    result = cli("apply", str(lab), "--yes", "--on-conflict", "fail")
    assert result.code == 1 and "conflict" in result.err and "nothing was written" in result.err
    assert mutations(gql.stats()) == mutations(before) and gql.stats()["uploads"] == before["uploads"]


INVALID = [
    ("Subject01/2025-03-14", "{not json", "line 1 column 2"),
    ("Subject01/2025-03-14", '{"interventionMetadata": {"id": 0}}', "$.interventionMetadata"),
    ("Subject02/Follow-up visit", '{"session_date": "2025-02-30", "conditionDefinition": {"B": ["Run01"]}}',
     "$.session_date: '2025-02-30' is not a valid date"),
    ("Subject02/2025-05-20", '{"conditionDefinition": {"O": ["Walk01", "Walk02"]}, "representativeTrials": '
     '{"Walk09": "left"}}', "$.representativeTrials.Walk09: trial 'Walk09' is not declared"),
    ("Subject02/2025-05-20", '{"conditionDefinition": {"O": ["Walk01", "Walk02", "Walk07"]}}',
     "$.conditionDefinition.O[2]: trial 'Walk07' has no file"),
    ("Subject02/2025-05-20", '{"conditionDefinition": {"O": ["Walk01"], "P": ["Walk01", "Walk02"]}}',
     "$.conditionDefinition.P[0]: trial 'Walk01' is already declared"),
    ("Subject02/2025-05-20", '{"sessionMetadata": {"leg": [{"value": "1", "context": "left"}, {"value": "2", '
     '"context": "left"}]}, "conditionDefinition": {"O": ["Walk01", "Walk02"]}}',
     "$.sessionMetadata.leg: context 'left' appears more than once"),
    ("Subject02/2025-05-20", '{"subjectMetadata": {"subject-date-of-birth": "17-04-2012"}, "conditionDefinition": '
     '{"O": ["Walk01", "Walk02"]}}', "$.subjectMetadata.subject-date-of-birth: '17-04-2012' is not a valid date"),
]


@pytest.mark.parametrize(("session", "text", "message"), INVALID)
def test_invalid_input_exits_2_names_file_and_path_and_writes_nothing(cli, lab, gql: Gql, session, text, message):
    (lab / session / "moveshelf_config_import.json").write_text(text)
    for command in ("validate", "plan", "apply"):
        result = cli(command, str(lab), *(["--yes"] if command == "apply" else []))
        assert result.code == 2, (command, result.out, result.err)
        assert f"lab/{session}/moveshelf_config_import.json" in result.err and message in result.err
        assert "Traceback" not in result.err
    assert gql.stats()["graphql"] == {} and gql.stats()["uploads"] == 0


def test_connection_errors_are_clear(cli, lab, tmp_path: Path, emulator):
    (tmp_path / "config" / "mvshlf-api-key.json").write_text('{"secretKey": "wrong-key"}')
    rejected = cli("plan", str(lab))
    assert rejected.code == 1 and "rejected the API key" in rejected.err
    (tmp_path / "config" / "mvshlf-api-key.json").write_text(json.dumps({"secretKey": emulator.api_key}))
    unknown = main(["plan", str(lab), "--project", "org/none", "--config",
                    str(tmp_path / "config" / "mvshlf-config.json"), "--state-dir", str(tmp_path / "s")])
    assert unknown == 1
    config = json.loads((tmp_path / "config" / "mvshlf-config.json").read_text())
    config["apiUrl"] = "http://127.0.0.1:9/graphql"
    (tmp_path / "config" / "mvshlf-config.json").write_text(json.dumps(config))
    unreachable = cli("plan", str(lab), "--attempts", "1")
    assert unreachable.code == 1 and "cannot reach http://127.0.0.1:9/graphql" in unreachable.err
    (tmp_path / "config" / "mvshlf-config.json").write_text("{")
    broken = cli("plan", str(lab))
    assert broken.code == 2 and "mvshlf-config.json: line 1 column 2: not valid JSON" in broken.err


def test_unknown_project_lists_the_visible_ones(lab, tmp_path: Path, emulator, capsys):
    code = main(["plan", str(lab), "--project", "org/none", "--config", str(tmp_path / "config" / "mvshlf-config.json"),
                 "--state-dir", str(tmp_path / "s")])
    assert code == 1 and f"(visible: {PROJECT})" in capsys.readouterr().err


def test_the_api_key_never_appears(cli, lab, gql: Gql, tmp_path: Path, emulator):
    outputs = [cli("plan", str(lab), "--format", "json", "--out", str(tmp_path / "plan.json")),
               cli("apply", str(lab), "--yes", "--report", str(tmp_path / "r.json"), "--log-file", str(tmp_path / "l"))]
    gql.faults({"match": "*", "fault": "status:500", "times": 3})
    change(lab)
    outputs.append(cli("apply", str(lab), "--yes", "--attempts", "1", "--on-conflict", "replace"))
    (tmp_path / "config" / "mvshlf-api-key.json").write_text('{"secretKey": "wrong-key-123"}')
    outputs.append(cli("plan", str(lab)))
    assert "Applied 50 of 50 steps" in (tmp_path / "l").read_text()
    schema = json.loads(resources.files("importer").joinpath("schemas/plan.schema.json").read_text())
    jsonschema.validate(json.loads(outputs[0].out), schema)
    assert json.loads(outputs[0].out) == json.loads((tmp_path / "plan.json").read_text())
    texts = [o.out + o.err for o in outputs]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.glob("**/*")
              if p.is_file() and "config" not in p.parts and "emulator" not in p.parts]
    assert len(texts) > 6
    assert not [t for t in texts if emulator.api_key in t or "wrong-key-123" in t]


def test_a_second_run_while_one_holds_the_lock_exits_4(cli, lab, gql: Gql, tmp_path: Path):
    assert cli("plan", str(lab)).code == 0  # creates the state folder
    [folder] = (tmp_path / "state").iterdir()
    with run_lock(folder, (str(lab),), PROJECT):
        held = cli("apply", str(lab), "--yes")
    assert held.code == 4 and f"another apply (PID {os.getpid()}) is running" in held.err
    assert mutations(gql.stats()) == 0
    assert cli("apply", str(lab), "--yes").code == 0  # released with its holder


def test_a_server_that_stays_down_is_reported_as_unreachable_not_as_a_bug(cli, lab, gql: Gql):
    gql.faults({"match": "node", "fault": "status:503"})
    result = cli("plan", str(lab), "--attempts", "1")
    assert result.code == 1
    assert "cannot reach http://127.0.0.1:" in result.err and "after 1 attempt:" in result.err
    assert "unexpected" not in result.err and "Traceback" not in result.err


def test_a_fatal_run_reports_fatal_and_a_merge_keeps_it(cli, lab, gql: Gql, tmp_path: Path):
    gql.faults({"match": "createClips", "fault": "status:401"})
    result = cli("apply", str(lab), "--yes", "--report", str(tmp_path / "fatal.json"))
    assert result.code == 1 and "rejected the API key" in result.err
    fatal = json.loads((tmp_path / "fatal.json").read_text())
    assert fatal["outcome"] == "fatal" and "rejected the API key" in fatal["fatal"]
    gql.faults()
    assert cli("apply", str(lab), "--yes", "--report", str(tmp_path / "ok.json")).code == 0
    assert main(["report", "merge", str(tmp_path / "fatal.json"), str(tmp_path / "ok.json"),
                 "--out", str(tmp_path / "merged.json")]) == 1
    assert json.loads((tmp_path / "merged.json").read_text())["outcome"] == "fatal"


def test_the_package_exports_do_not_shadow_its_modules():
    import importer
    import importer.executor
    import importer.planner

    assert callable(importer.plan) and callable(importer.apply)
    assert importer.planner.diff and importer.executor.Executor
