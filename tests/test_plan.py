"""The planner as a pure function: trees in, steps out; its JSON round-trips; its text view is pinned."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from importer.address import Address
from importer.metadata import MetadataPolicy
from importer.model import DataFile, Facts, LocalTree, Norm, Session, Subject, Tree, Trial, Unmapped, Written
from importer.planner import PlanOptions, diff
from importer.render import plan_text
from importer.steps import Action, ConflictPolicy, from_json, to_json

GOLDEN = Path(__file__).parent / "golden"


def local_file(name: str, crc: str = "AAAAAA==", size: int = 10) -> DataFile:
    return DataFile(name=name, data_type="raw", source=f"/lab/{name}", client_id=f"S/{name}", size=size, crc32c=crc)


def remote_file(name: str, data_id: str, status: str = "Complete") -> DataFile:
    return DataFile(name=name, data_type="raw", remote_id=data_id, upload_status=status)


def desired(*files: DataFile, side: str | None = None, mrn: str | None = "42", name: str = "Ann") -> LocalTree:
    trial = Trial("Walk01", "Barefoot", files, side=side)
    session = Session("2025-01-02", date="2025-01-02", metadata={"type": "Gait"}, trials=(trial,))
    subject = Subject(name, mrn=mrn, metadata={"ehr-id": mrn, "first": "A"} if mrn else {}, sessions=(session,))
    return LocalTree(Tree((subject,)), roots=("/lab",), unmapped=(Unmapped("Ann/x/notes.txt", "unclaimed"),))


def actual(*files: DataFile, name: str = "Ann", options: dict | None = None) -> Tree:
    trial = Trial("Walk01", "Barefoot", files, remote_id="T1", custom_options=options)
    session = Session("2025-01-02", date="2025-01-02", metadata={"type": "Gait"}, remote_id="SE1",
                      remote_path=f"/{name}/2025-01-02/", stored_metadata={"metadata": {"type": "Gait"}}, trials=(trial,))
    return Tree((Subject(name, mrn="42", metadata={"ehr-id": "42", "first": "A"}, sessions=(session,),
                         remote_id="P1"),))


def test_everything_new_is_created_in_dependency_order():
    plan = diff(desired(local_file("Walk01.c3d"), side="left"), Tree(), Facts(), "org/p")
    assert [(s.action, str(s.target), s.depends_on) for s in plan.steps] == [
        (Action.CREATE_SUBJECT, "/Ann", ()),
        (Action.UPDATE_SUBJECT_METADATA, "/Ann", ("create_subject:/Ann",)),
        (Action.CREATE_SESSION, "/Ann/2025-01-02", ("create_subject:/Ann",)),
        (Action.UPDATE_SESSION_METADATA, "/Ann/2025-01-02", ("create_session:/Ann/2025-01-02",)),
        (Action.CREATE_TRIAL, "/Ann/2025-01-02/Barefoot/Walk01", ("create_session:/Ann/2025-01-02",)),
        (Action.UPLOAD_FILE, "/Ann/2025-01-02/Barefoot/Walk01/Walk01.c3d", ("create_trial:/Ann/2025-01-02/Barefoot/Walk01",)),
        (Action.UPDATE_TRIAL_METADATA, "/Ann/2025-01-02/Barefoot/Walk01",
         ("create_trial:/Ann/2025-01-02/Barefoot/Walk01", "upload_file:/Ann/2025-01-02/Barefoot/Walk01/Walk01.c3d")),
    ]
    assert plan.steps[4].payload.project_path == "/Ann/2025-01-02/Barefoot"
    assert plan.summary["changes"] == 7 and plan.summary["bytes_to_upload"] == 10


def test_matching_server_makes_no_steps():
    plan = diff(desired(local_file("Walk01.c3d", "crc1")), actual(remote_file("Walk01.c3d", "D1")),
                Facts({"D1": ("crc1", 10)}), "org/p")
    assert plan.steps == () and plan.ids[Address.parse("/Ann/2025-01-02/Barefoot/Walk01/Walk01.c3d")] == "D1"


def test_subject_matched_by_mrn_keeps_the_server_name():
    plan = diff(desired(local_file("Walk01.c3d", "crc1"), name="Ann Folder"), actual(remote_file("Walk01.c3d", "D1")),
                Facts({"D1": ("crc1", 10)}), "org/p")
    assert plan.steps == ()
    assert "matched by MRN '42'" in plan.warnings[0]


def test_new_session_of_a_renamed_subject_uses_the_server_path():
    local = desired(local_file("Walk01.c3d"), name="Ann Folder")
    server = Tree((Subject("Ann", mrn="42", metadata={"ehr-id": "42", "first": "A"}, remote_id="P1"),))
    create = next(s for s in diff(local, server, Facts(), "org/p").steps if s.action is Action.CREATE_SESSION)
    assert create.payload.project_path == "/Ann/2025-01-02/" and create.depends_on == ()


@pytest.mark.parametrize(("server", "reason"), [
    ((Subject("Ann", mrn="7", remote_id="P1"),), "has MRN '7'"),
    ((Subject("X", mrn="42", remote_id="P1"), Subject("Y", mrn="42", remote_id="P2")), "2 subjects on the server"),
])
def test_ambiguous_subjects_are_conflicts_never_guesses(server, reason):
    plan = diff(desired(local_file("Walk01.c3d")), Tree(server), Facts(), "org/p")
    assert plan.steps == () and reason in plan.conflicts[0]["reason"]


@pytest.mark.parametrize(("policy", "ours", "actions", "conflicts"), [
    (ConflictPolicy.SKIP, True, [], 1), (ConflictPolicy.FAIL, True, [], 1),
    (ConflictPolicy.REPLACE, True, [Action.REPLACE_FILE, Action.REMOVE_RECORD], 0),
    (ConflictPolicy.REPLACE, False, [], 1)])  # a record of others is never replaced
def test_changed_file_follows_the_conflict_policy(policy, ours, actions, conflicts):
    facts = Facts({"D1": ("old", 10)}, ours=frozenset({"D1"} if ours else ()))
    plan = diff(desired(local_file("Walk01.c3d", "new")), actual(remote_file("Walk01.c3d", "D1")), facts, "org/p",
                policy)
    assert [s.action for s in plan.steps] == actions and len(plan.conflicts) == conflicts
    if actions:
        assert plan.steps[1].payload.data_id == "D1" and plan.steps[1].depends_on == (plan.steps[0].id,)


def test_unknown_server_content_is_a_conflict():
    unknown = diff(desired(local_file("Walk01.c3d")), actual(remote_file("Walk01.c3d", "D1")), Facts(), "org/p")
    assert "cannot be compared" in unknown.conflicts[0]["reason"]


def records_plan(*records: DataFile, facts: Facts):
    return diff(desired(local_file("Walk01.c3d", "c")), actual(*records), facts, "org/p")


def test_an_interrupted_upload_of_this_tool_is_uploaded_again_then_removed():
    plan = records_plan(remote_file("Walk01.c3d", "D1", "Processing"), facts=Facts(ours=frozenset({"D1"})))
    upload, remove = plan.steps
    assert (upload.action, remove.action, remove.payload.data_id) == (Action.UPLOAD_FILE, Action.REMOVE_RECORD, "D1")
    assert remove.depends_on == (upload.id,) and remove.payload.why == "left by an interrupted run"
    assert "- stale record of Walk01.c3d (Processing, left by an interrupted run)" in plan_text(plan)


def test_every_other_record_of_this_tool_is_removed_and_one_good_record_kept():
    records = (remote_file("Walk01.c3d", "D1", "Processing"), remote_file("Walk01.c3d", "D2"),
               remote_file("Walk01.c3d", "D3"))
    facts = Facts({"D2": ("c", 10), "D3": ("c", 10)}, ours=frozenset({"D1", "D2", "D3"}))
    plan = records_plan(*records, facts=facts)
    assert plan.ids[Address.parse("/Ann/2025-01-02/Barefoot/Walk01/Walk01.c3d")] == "D2"
    assert [(s.action, s.payload.data_id, s.payload.why) for s in plan.steps] == [
        (Action.REMOVE_RECORD, "D1", "left by an interrupted run"), (Action.REMOVE_RECORD, "D3", "a copy of the same bytes")]


def test_a_record_stored_by_this_tool_and_still_processing_is_not_uploaded_again():
    facts = Facts({"D1": ("c", 10)}, ours=frozenset({"D1"}), stored=frozenset({"D1"}))
    plan = records_plan(remote_file("Walk01.c3d", "D1", "Processing"), facts=facts)
    assert plan.steps == () and plan.conflicts == ()


def test_records_of_others_are_listed_and_never_removed():
    records = (remote_file("Walk01.c3d", "D1", "Processing"), remote_file("Walk01.c3d", "D2"))
    plan = records_plan(*records, facts=Facts({"D2": ("c", 10)}))
    assert plan.steps == ()
    assert any("1 other record of Walk01.c3d (1 unfinished) not made by this tool, left alone" in w
               for w in plan.warnings)


def test_trial_options_step_only_when_they_differ():
    files = (remote_file("Walk01.c3d", "D1"),)
    wanted = {"trialTemplate": {"sideAdditionalData": {"D1": "left"}}}
    same = diff(desired(local_file("Walk01.c3d", "c"), side="left"), actual(*files, options=wanted),
                Facts({"D1": ("c", 10)}), "org/p")
    assert same.steps == ()
    other = diff(desired(local_file("Walk01.c3d", "c"), side="right"), actual(*files, options=wanted),
                 Facts({"D1": ("c", 10)}), "org/p")
    assert [s.action for s in other.steps] == [Action.UPDATE_TRIAL_METADATA]


def test_json_round_trips_and_is_valid():
    plan = diff(desired(local_file("Walk01.c3d"), side="left"), Tree(), Facts(), "org/p")
    document = to_json(plan)
    schema = json.loads(resources.files("importer").joinpath("schemas/plan.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert from_json(json.loads(json.dumps(document))) == plan
    assert document["summary"]["changes"] == len(document["steps"])


def existing_subject_plan():
    """A subject the server holds already: only its metadata changes, and the server has more than the folders."""
    local = desired(local_file("Walk01.c3d", "crc1"))
    subject = local.tree.subjects[0]
    subject = dataclasses.replace(subject, metadata={"ehr-id": "42", "subject-first-name": "Anne",
                                                     "subject-middle-name": "New", "notes": NOTES})
    local = dataclasses.replace(local, tree=Tree((subject,)))
    server = actual(remote_file("Walk01.c3d", "D1"), remote_file("Old.c3d", "D2"))
    remote = server.subjects[0]
    old_session = Session("2019-06-01", date="2019-06-01", remote_id="SE0", remote_path="/Ann/2019-06-01/")
    remote = dataclasses.replace(remote, sessions=(old_session, *remote.sessions), metadata={
        "ehr-id": "42", "subject-first-name": "Anna", "subject-middle-name": "", "notes": ""})
    return diff(local, Tree((remote,)), Facts({"D1": ("crc1", 10)}), "org/p")


NOTES = "Walks with a posterior leaf-spring orthosis on the left since 2023"
CASES = {"plan": lambda: diff(desired(local_file("Walk01.c3d"), side="left"), Tree(), Facts(), "org/p"),
         "plan-existing": existing_subject_plan}


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_and_json_views_are_pinned(case: str):
    plan = CASES[case]()
    text = plan_text(plan)
    assert text == (GOLDEN / f"{case}.txt").read_text(), "the text view changed; if on purpose, update tests/golden/"
    assert plan_text(from_json(to_json(plan))) == text
    assert to_json(plan) == json.loads((GOLDEN / f"{case}.json").read_text()), "the JSON view changed"


def test_a_metadata_change_of_an_existing_subject_shows_its_values_and_what_the_server_keeps():
    plan = existing_subject_plan()
    assert [s.action for s in plan.steps] == [Action.UPDATE_SUBJECT_METADATA]
    text = plan_text(plan)
    assert 'subject-middle-name: (empty) → "New"' in text
    assert 'server keeps subject-first-name "Anna" (folders say "Anne")' in text
    assert f'notes: (empty) → "{NOTES[:38]}…' in text and NOTES not in text
    assert "On the server only (left alone):\n  session /Ann/2019-06-01\n" in text
    assert "file /Ann/2025-01-02/Barefoot/Walk01/Old.c3d" in text
    assert text.rstrip().endswith("1 change: nothing to create, 0 files to upload and 0 to replace (0 B), "
                                  "1 metadata update; 1 unmapped, 0 conflicts, 2 on the server only.")


def test_what_the_server_keeps_without_any_change_is_a_warning_with_both_values():
    local = desired(local_file("Walk01.c3d", "crc1"))
    subject = dataclasses.replace(local.tree.subjects[0], metadata={"ehr-id": "42", "first": "B"})
    plan = diff(dataclasses.replace(local, tree=Tree((subject,))), actual(remote_file("Walk01.c3d", "D1")),
                Facts({"D1": ("crc1", 10)}), "org/p")
    assert plan.steps == () and plan.warnings == ('/Ann: server keeps first "A" (folders say "B")',)


def test_the_plan_schema_describes_each_actions_payload():
    from importer.documents import validator

    document = to_json(diff(desired(local_file("Walk01.c3d"), side="left"), Tree(), Facts(), "org/p"))
    assert not list(validator("plan.schema.json").iter_errors(document))
    upload = next(s for s in document["steps"] if s["action"] == "upload_file")
    del upload["detail"]["crc32c"]
    errors = list(validator("plan.schema.json").iter_errors(document))
    assert errors and "'crc32c' is a required property" in errors[0].message


def test_objects_only_on_the_server_are_kept_in_the_plan_and_counted():
    extra = Trial("Walk09", "Barefoot", (remote_file("Walk09.c3d", "D9"),), remote_id="T9")
    server = actual(remote_file("Walk01.c3d", "D1"), remote_file("Old.c3d", "D2"))
    subject = server.subjects[0]
    session = dataclasses.replace(subject.sessions[0], trials=(*subject.sessions[0].trials, extra))
    server = Tree((dataclasses.replace(subject, sessions=(session,)),))
    plan = diff(desired(local_file("Walk01.c3d", "crc1")), server, Facts({"D1": ("crc1", 10)}), "org/p")
    assert plan.steps == ()
    assert sorted((o["kind"], o["target"]) for o in plan.server_only) == [
        ("file", "/Ann/2025-01-02/Barefoot/Walk01/Old.c3d"), ("trial", "/Ann/2025-01-02/Barefoot/Walk09")]
    assert plan.summary["server_only"] == 2


# -- interactive reports -----------------------------------------------------------------------------------------
REPORTS = PlanOptions(reports=True)


def test_a_new_session_gets_one_report_request_after_all_its_steps():
    plan = diff(desired(local_file("Walk01.c3d"), side="left"), Tree(), Facts(), "org/p",
                options=PlanOptions(reports=True, norm=Norm("N1", "TD children")))
    *data, last = plan.steps
    assert last.action is Action.CREATE_REPORTS and str(last.target) == "/Ann/2025-01-02"
    assert set(last.depends_on) == {s.id for s in data if s.target.session_address == last.target}
    assert (last.payload.norm_id, last.payload.norm_name) == ("N1", "TD children")
    assert "+ automatic interactive reports (norm TD children)" in plan_text(plan)
    assert plan.summary["create_reports"] == 1 and "1 report request" in plan_text(plan)
    assert from_json(json.loads(json.dumps(to_json(plan)))) == plan


def test_reports_only_for_changed_sessions_and_only_when_asked():
    unchanged = (desired(local_file("Walk01.c3d", "crc1")), actual(remote_file("Walk01.c3d", "D1")),
                 Facts({"D1": ("crc1", 10)}), "org/p")
    assert diff(*unchanged, options=REPORTS).steps == ()
    changed = (desired(local_file("Walk01.c3d", "crc1"), local_file("Walk01.GCD")),) + unchanged[1:]
    assert [s.action for s in diff(*changed, options=REPORTS).steps] == [Action.UPLOAD_FILE, Action.CREATE_REPORTS]
    assert [s.action for s in diff(*changed).steps] == [Action.UPLOAD_FILE]


def test_removing_a_leftover_record_alone_asks_for_no_reports():
    records = (remote_file("Walk01.c3d", "D1"), remote_file("Walk01.c3d", "D2", status="Processing"))
    plan = diff(desired(local_file("Walk01.c3d", "crc1")), actual(*records),
                Facts({"D1": ("crc1", 10)}, ours=frozenset({"D1", "D2"})), "org/p", options=REPORTS)
    assert [s.action for s in plan.steps] == [Action.REMOVE_RECORD]


def test_an_unchanged_session_whose_request_went_unanswered_asks_again():
    facts = Facts({"D1": ("crc1", 10)}, reports_owed=frozenset({"/Ann/2025-01-02"}))
    plan = diff(desired(local_file("Walk01.c3d", "crc1")), actual(remote_file("Walk01.c3d", "D1")), facts, "org/p",
                options=REPORTS)
    [step] = plan.steps
    assert step.action is Action.CREATE_REPORTS and step.depends_on == () and "not answered" in step.reason


# -- metadata corrections ----------------------------------------------------------------------------------------
MINE = PlanOptions(metadata=MetadataPolicy.UPDATE_MINE)


def corrected(server: dict, folder: dict, written: dict, options: PlanOptions = MINE):
    """The plan of one existing subject whose metadata differs; `written`: what this tool last wrote to it."""
    local = desired(local_file("Walk01.c3d", "crc1"))
    local = dataclasses.replace(local, tree=Tree((dataclasses.replace(local.tree.subjects[0], metadata=folder),)))
    remote = actual(remote_file("Walk01.c3d", "D1"))
    remote = Tree((dataclasses.replace(remote.subjects[0], metadata=server),))
    return diff(local, remote, Facts({"D1": ("crc1", 10)}, written={"P1": written}), "org/p", options=options)


def test_update_mine_replaces_what_this_tool_wrote_and_keeps_what_a_person_changed():
    server = {"ehr-id": "42", "last": "Jansen", "first": "Sammy", "sex": "M"}
    folder = {"ehr-id": "42", "last": "Janssen", "first": "Samuel", "sex": "F"}
    written = {"last": Written("Jansen", "2026-11-20"), "first": Written("Sam", "2026-11-20")}
    [step] = corrected(server, folder, written).steps
    assert step.payload.metadata == {"ehr-id": "42", "last": "Janssen", "first": "Sammy", "sex": "M"}
    assert step.payload.changes == {"last": {"before": "Jansen", "after": "Janssen",
                                             "why": "written by this import on 2026-11-20, unchanged since"}}
    assert step.payload.kept["first"]["why"] == "changed on the server since this import wrote it on 2026-11-20"
    assert step.payload.kept["sex"]["why"] == "not written by this import"
    text = plan_text(corrected(server, folder, written))
    assert 'last: "Jansen" → "Janssen" (written by this import on 2026-11-20, unchanged since)' in text
    assert corrected(server, folder, written, PlanOptions()).steps == (), "fill-empty keeps every filled value"


def test_update_mine_takes_interventions_as_one_list():
    ours, theirs = [{"id": 0, "surgeon": "A"}], [{"id": 0, "surgeon": "A"}, {"id": 1, "surgeon": "P"}]
    folder = {"ehr-id": "42", "first": "A", "interventions": [{"id": 0, "surgeon": "B"}]}
    written = {"interventions": Written(ours, "2026-11-20")}
    [step] = corrected({"ehr-id": "42", "first": "A", "interventions": ours}, folder, written).steps
    assert step.payload.metadata["interventions"] == [{"id": 0, "surgeon": "B"}]
    assert "unchanged since" in step.payload.changes["interventions"]["why"]
    kept = corrected({"ehr-id": "42", "first": "A", "interventions": theirs}, folder, written)
    assert kept.steps == () and "server keeps interventions" in kept.warnings[0]
    assert "changed on the server since" in kept.warnings[0]
    replaced = corrected({"ehr-id": "42", "first": "A", "interventions": theirs}, folder, written, PlanOptions())
    assert replaced.steps[0].payload.metadata["interventions"] == folder["interventions"], "fill-empty replaces"
