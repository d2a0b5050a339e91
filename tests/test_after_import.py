"""After the import, against the emulator over HTTP: interactive reports (`--reports auto`) and metadata
corrections (`--metadata-policy update-mine`)."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import UPDATE_PATIENT, Gql, inventory, mutations, server_tree

REPORTS = "createAutomaticInteractiveReports"
CONFIG = "moveshelf_config_import.json"
SESSION_REPORTS = """query($id: ID!) { node(id: $id) { ... on Project { patients { sessions { projectPath
  reports { id title } } } } } }"""


def requested(gql: Gql) -> int:
    return gql.stats()["graphql"].get(REPORTS, 0)


def reports_by_session(gql: Gql) -> dict[str, int]:
    patients = gql(SESSION_REPORTS, id=gql.project_id())["node"]["patients"]
    return {s["projectPath"]: len(s["reports"]) for p in patients for s in p["sessions"]}


def edit_config(lab: Path, session: str, change) -> None:
    path = lab / session / CONFIG
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def steps_of(report: Path, action: str) -> list[dict]:
    return [s for s in json.loads(report.read_text())["steps"] if s["action"] == action]


# -- interactive reports -----------------------------------------------------------------------------------------
def test_reports_are_requested_once_per_changed_session_and_never_for_an_unchanged_one(cli, lab, gql: Gql):
    plan = cli("plan", str(lab), "--reports", "auto", "--format", "json")
    steps = json.loads(plan.out)["steps"]
    reports = [s for s in steps if s["action"] == "create_reports"]
    assert len(reports) == 4
    first = next(s for s in reports if s["target"] == "/Subject01/2025-03-14")
    assert set(first["depends_on"]) == {s["id"] for s in steps if s["target"].startswith("/Subject01/2025-03-14")
                                        and s["action"] != "create_reports"}

    applied = cli("apply", str(lab), "--yes", "--reports", "auto")
    assert applied.code == 0, applied.err
    assert "+ automatic interactive reports" in applied.out and "4 report requests" in applied.out
    assert requested(gql) == 4 and set(reports_by_session(gql).values()) == {1}

    again = cli("apply", str(lab), "--yes", "--reports", "auto")
    assert again.code == 0 and "No changes" in again.out and requested(gql) == 4

    (lab / "Subject02/2025-05-20/notes.pdf").write_bytes(b"%PDF-1.4 notes")
    changed = cli("apply", str(lab), "--yes", "--reports", "auto")
    assert changed.code == 0, changed.err
    assert requested(gql) == 5
    assert reports_by_session(gql)["/Subject02/2025-05-20/"] == 2
    assert sum(reports_by_session(gql).values()) == 5


def test_a_saved_plan_is_applied_with_the_options_it_was_made_with(cli, lab, gql: Gql, tmp_path: Path):
    saved = tmp_path / "plan.json"
    assert cli("plan", str(lab), "--reports", "auto", "--metadata-policy", "update-mine", "--out", str(saved)).code == 0
    assert json.loads(saved.read_text())["options"] == {"on_conflict": "skip", "reports": True, "reports_norm": None,
                                                        "metadata_policy": "update-mine"}

    refused = cli("apply", "--plan", str(saved), "--yes", "--metadata-policy", "fill-empty")
    assert refused.code == 2
    assert "the saved plan was made with --metadata-policy update-mine" in refused.err
    assert inventory(gql) == [] and mutations(gql.stats()) == 0

    applied = cli("apply", "--plan", str(saved), "--yes")
    assert applied.code == 0, applied.err
    assert "stale" not in applied.out + applied.err
    assert requested(gql) == 4 and set(reports_by_session(gql).values()) == {1}


def test_without_the_option_no_report_is_requested(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    assert requested(gql) == 0
    assert cli("apply", str(lab), "--yes", "--reports", "auto").code == 0
    assert requested(gql) == 0, "the sessions did not change, so their reports are not asked for"


def test_a_failed_report_request_is_a_failed_step_and_the_data_is_imported(cli, lab, gql: Gql, expected,
                                                                             tmp_path: Path):
    gql.faults({"match": REPORTS, "fault": "status:400", "times": 1})
    report = tmp_path / "run.json"
    first = cli("apply", str(lab), "--yes", "--reports", "auto", "--report", str(report))
    assert first.code == 3
    statuses = sorted(s["status"] for s in steps_of(report, "create_reports"))
    assert statuses == ["applied", "applied", "applied", "failed"]
    assert all(s["status"] == "applied" for s in json.loads(report.read_text())["steps"]
               if s["action"] != "create_reports")
    assert inventory(gql) == expected

    [owed] = [s["target"] for s in steps_of(report, "create_reports") if s["status"] == "failed"]
    plan = cli("plan", str(lab), "--reports", "auto")
    assert "an earlier run's request was not answered" in plan.out and "1 report request" in plan.out
    second = cli("apply", str(lab), "--yes", "--reports", "auto", "--report", str(report))
    assert second.code == 0, second.err
    assert [s["target"] for s in steps_of(report, "create_reports")] == [owed]
    assert set(reports_by_session(gql).values()) == {1}
    assert "No changes" in cli("plan", str(lab), "--reports", "auto").out


def test_an_ambiguous_report_request_is_not_repeated(cli, lab, gql: Gql):
    gql.faults({"match": REPORTS, "fault": "commit-then-status:502", "times": 1})
    assert cli("apply", str(lab), "--yes", "--reports", "auto").code == 0
    assert set(reports_by_session(gql).values()) == {1}


def test_an_unknown_norm_stops_before_anything_is_written(cli, lab, gql: Gql):
    result = cli("apply", str(lab), "--yes", "--reports", "auto", "--reports-norm", "TD children")
    assert result.code == 1 and "no norm named 'TD children'" in result.err
    assert mutations(gql.stats()) == 0
    usage = cli("plan", str(lab), "--reports-norm", "TD children")
    assert usage.code == 2 and "--reports auto" in usage.err


# -- metadata corrections ----------------------------------------------------------------------------------------
def _person_sets(gql: Gql, subject: str, **fields) -> None:
    """A person edits the subject in Moveshelf: the whole metadata object, as the web app sends it."""
    patient = next(p for p in _patients(gql) if p["name"] == subject)
    gql(UPDATE_PATIENT, id=patient["id"], m=json.dumps({**json.loads(patient["metadata"]), **fields}))


def _patients(gql: Gql) -> list[dict]:
    return gql("query($id: ID!) { node(id: $id) { ... on Project { patients { id name metadata } } } }",
               id=gql.project_id())["node"]["patients"]


def _subject01(gql: Gql) -> dict:
    return json.loads(next(p for p in server_tree(gql) if p["name"] == "Subject01")["metadata"])


def test_update_mine_replaces_what_this_tool_wrote_and_keeps_what_a_person_changed(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    _person_sets(gql, "Subject01", **{"subject-first-name": "Sammy"})
    edit_config(lab, "Subject01/2025-03-14", lambda c: (
        c["subjectMetadata"].update({"subject-last-name": "Janssen", "subject-first-name": "Samuel"}),
        c["sessionMetadata"].update({"session-type": "Gait 3D"})))

    default = cli("plan", str(lab))
    assert 'server keeps subject-last-name "Jansen" (folders say "Janssen")' in default.out
    assert "No changes" in default.out

    plan = cli("plan", str(lab), "--metadata-policy", "update-mine")
    assert 'subject-last-name: "Jansen" → "Janssen" (written by this import on ' in plan.out
    assert "unchanged since)" in plan.out
    assert 'session-type: "Gait" → "Gait 3D" (written by this import on ' in plan.out
    assert ('server keeps subject-first-name "Sammy" (folders say "Samuel"; changed on the server since this '
            "import wrote it on ") in plan.out

    applied = cli("apply", str(lab), "--yes", "--metadata-policy", "update-mine")
    assert applied.code == 0, applied.err
    metadata = _subject01(gql)
    assert metadata["subject-last-name"] == "Janssen" and metadata["subject-first-name"] == "Sammy"
    sessions = next(p for p in server_tree(gql) if p["name"] == "Subject01")["sessions"]
    stored = next(json.loads(s["metadata"]) for s in sessions if s["projectPath"].endswith("2025-03-14/"))
    assert stored["metadata"]["session-type"] == "Gait 3D"
    assert "No changes" in cli("plan", str(lab), "--metadata-policy", "update-mine").out


def test_update_mine_treats_interventions_as_one_list(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0

    def surgeon(name: str):
        return lambda c: c["interventionMetadata"][0].update({"surgeon": name})

    edit_config(lab, "Subject01/2025-03-14", surgeon("Dr. Bakker"))
    assert cli("apply", str(lab), "--yes", "--metadata-policy", "update-mine").code == 0
    assert [i["surgeon"] for i in _subject01(gql)["interventions"]] == ["Dr. Bakker"]

    by_hand = [*_subject01(gql)["interventions"], {"id": 1, "date": "2025-06-01", "surgeon": "Dr. Smit"}]
    _person_sets(gql, "Subject01", interventions=by_hand)
    edit_config(lab, "Subject01/2025-03-14", surgeon("Dr. Visser"))
    plan = cli("plan", str(lab), "--metadata-policy", "update-mine")
    assert "server keeps interventions" in plan.out and "changed on the server since this import wrote it" in plan.out
    assert cli("apply", str(lab), "--yes", "--metadata-policy", "update-mine").code == 0
    assert _subject01(gql)["interventions"] == by_hand
