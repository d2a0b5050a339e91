"""Snapshots: subjects unchanged in the folders and on the server are planned without reading them again, and a
change the server's stamp does not show is still seen after --full and once the snapshot is older than
--recheck-after (time injected, never slept)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from importer import steps, workflow
from importer.client import Client
from importer.durations import parse_duration
from importer.emulator.api import parse_global_id
from importer.emulator.server import EmulatorServer
from importer.errors import ExitCode
from importer.remote import SUBJECTS_PER_REQUEST, ReadBack, read_batch
from importer.steps import ConflictPolicy
from importer.workflow import Settings

from .conftest import PROJECT, Gql

TREE_OF = """query($id: ID!) { node(id: $id) { ... on Patient { updated sessions { clips { additionalData {
  id originalFileName } } } } } }"""
LIST = "query($id: ID!) { node(id: $id) { ... on Project { patientsList { id name updated } } } }"


def subjects(gql: Gql) -> dict[str, dict]:
    return {p["name"]: p for p in gql(LIST, id=gql.project_id())["node"]["patientsList"]}


def delete_quietly(emulator: EmulatorServer, gql: Gql, subject: str, file_name: str) -> None:
    """Delete a file record and put the subject's `updated` stamp back: a change a server's stamp might not show."""
    patient = subjects(gql)[subject]
    tree = gql(TREE_OF, id=patient["id"])["node"]
    data_id = next(d["id"] for s in tree["sessions"] for c in s["clips"] for d in c["additionalData"]
                   if d["originalFileName"] == file_name)
    gql("mutation($id: ID!) { deleteAdditionalData(id: $id) { ok } }", id=data_id)
    pk = parse_global_id(patient["id"])[1]
    with emulator.store.transaction():
        emulator.store._db.execute("UPDATE patient SET updated = ? WHERE pk = ?", (patient["updated"], pk))
    assert subjects(gql)[subject]["updated"] == patient["updated"]


def settings(tmp_path: Path, lab: Path, **changes) -> Settings:
    return Settings(paths=(lab,), project=PROJECT, config=tmp_path / "config" / "mvshlf-config.json",
                    state_dir=tmp_path / "state", **changes)


def test_every_write_in_a_subject_tree_changes_its_stamp(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    before = subjects(gql)["Subject01"]["updated"]
    tree = gql(TREE_OF, id=subjects(gql)["Subject01"]["id"])["node"]
    assert tree["updated"] == before
    data_id = tree["sessions"][0]["clips"][0]["additionalData"][0]["id"]
    gql("mutation($id: ID!) { deleteAdditionalData(id: $id) { ok } }", id=data_id)
    assert subjects(gql)["Subject01"]["updated"] > before
    assert subjects(gql)["Subject02"]["updated"] != subjects(gql)["Subject01"]["updated"]


def test_unchanged_subjects_come_from_snapshots_and_cost_two_requests(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    before = gql.stats()
    planned = cli("plan", str(lab), "--format", "json")
    after = gql.stats()
    assert planned.code == 0
    document = json.loads(planned.out)
    assert document["steps"] == [] and document["snapshot"]["from_snapshot"] == document["snapshot"]["subjects"] == 2
    assert document["snapshot"]["settled"] == 2  # the apply planned them again after its writes: nothing to diff
    assert after["graphql_requests"] - before["graphql_requests"] == 2  # the project and the subject list
    assert "2 of 2 subjects planned from snapshots" in cli("plan", str(lab)).out


def test_a_folder_change_reads_its_subject_again(cli, lab, gql: Gql):
    assert cli("apply", str(lab), "--yes").code == 0
    (lab / "Subject02/2025-05-20/notes.pdf").write_bytes(b"%PDF-1.4 new")
    before = gql.stats()
    planned = json.loads(cli("plan", str(lab), "--format", "json").out)
    assert planned["snapshot"]["from_snapshot"] == 1
    assert [s["action"] for s in planned["steps"]] == ["create_trial", "upload_file"]
    assert gql.stats()["graphql"]["node"] - before["graphql"]["node"] == 2  # the list, and Subject02's tree
    assert cli("apply", str(lab), "--yes").code == 0
    again = json.loads(cli("plan", str(lab), "--format", "json").out)
    assert again["steps"] == [] and again["snapshot"]["from_snapshot"] == 2  # written from the read after the run


def test_a_change_the_stamp_misses_is_seen_after_full_and_once_the_snapshot_is_old(cli, lab, gql: Gql, emulator,
                                                                                       tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0  # every subject now has a snapshot
    delete_quietly(emulator, gql, "Subject01", "Walk01.c3d")
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0  # unseen: planned from the snapshot
    full = cli("plan", str(lab), "--full")
    assert "Walk01.c3d" in full.out and "planned from snapshots" not in full.out
    assert cli("apply", str(lab), "--yes").code == 0
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0

    delete_quietly(emulator, gql, "Subject02", "Walk01.GCD")
    assert not workflow.plan(settings(tmp_path, lab, now=time.time() + 6 * 86400)).steps  # 6 days: still trusted
    late = workflow.plan(settings(tmp_path, lab, now=time.time() + 8 * 86400))  # 8 days: read in full again
    assert [str(s.target) for s in late.steps] == ["/Subject02/2025-05-20/Orthosis/Walk01/Walk01.GCD"]
    assert late.snapshot["from_snapshot"] == 0
    hourly = workflow.plan(settings(tmp_path, lab, now=time.time() + 8 * 86400 + 2 * 3600, recheck_after=parse_duration("1h", "--recheck-after")))
    assert hourly.snapshot["from_snapshot"] == 0


def outcome(plan) -> dict:
    """What a plan says, its snapshot section aside (warnings as a set: a settled subject's come in another order)."""
    document = steps.to_json(plan)
    return {**{k: v for k, v in document.items() if k not in ("snapshot", "warnings", "ids")},
            "warnings": sorted(document["warnings"])}


def test_a_settled_plan_says_what_a_full_plan_says(cli, lab, gql: Gql, official_api, tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    subject = subjects(gql)["Subject01"]["id"]
    official_api.createSession(PROJECT, "/Subject01/2024-01-01/", subject, "2024-01-01")  # on the server only
    (lab / "Subject02/2025-05-20/Walk01.c3d").write_bytes(b"changed after the import")  # a conflict
    first = workflow.plan(settings(tmp_path, lab))  # reads both subjects, keeps their fragments
    assert first.snapshot["settled"] == 0 and first.conflicts and first.server_only
    settled = workflow.plan(settings(tmp_path, lab))
    assert settled.snapshot["settled"] == settled.snapshot["from_snapshot"] == 2
    assert outcome(settled) == outcome(first) == outcome(workflow.plan(settings(tmp_path, lab, full=True)))
    assert "2 of 2 subjects planned from snapshots" in cli("plan", str(lab)).out


def test_other_planning_options_plan_a_settled_subject_again(lab, cli, tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    (lab / "Subject02/2025-05-20/Walk01.c3d").write_bytes(b"changed after the import")
    workflow.plan(settings(tmp_path, lab))
    assert workflow.plan(settings(tmp_path, lab)).snapshot["settled"] == 2
    replace = workflow.plan(settings(tmp_path, lab, on_conflict=ConflictPolicy.REPLACE))
    assert [s.action.value for s in replace.steps] == ["replace_file", "remove_record"]
    assert replace.snapshot["settled"] == 0  # every fragment was planned under --on-conflict skip
    assert workflow.plan(settings(tmp_path, lab)).conflicts  # skip again: the conflict is still said


def test_a_settled_subject_whose_mrn_another_folder_takes_is_a_problem(lab, cli, tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    workflow.plan(settings(tmp_path, lab))
    copy = lab / "Subject03/2025-01-01"
    copy.mkdir(parents=True)
    config = json.loads((lab / "Subject01/2025-03-14/moveshelf_config_import.json").read_text())
    (copy / "moveshelf_config_import.json").write_text(json.dumps(config))
    planned = cli("plan", str(lab))
    assert planned.code == ExitCode.INPUT
    assert "Subject01" in planned.err and "Subject03" in planned.err and "MRN" in planned.err


def test_a_subject_is_read_back_only_once_every_step_of_the_run_on_it_has_its_result(emulator, gql: Gql):
    """The read a subject's next snapshot is made from comes after the run's last write to it; full batches of
    subjects are read (and settled) while the run goes on, the rest when it ends."""
    names = [f"S{i:02}" for i in range(SUBJECTS_PER_REQUEST + 1)]
    created = gql("mutation($p: String!) { " + " ".join(
        f'{n}: createPatient(projectId: $p, name: "{n}") {{ patient {{ id }} }}' for n in names) + " }",
        p=gql.project_id())
    ids = {n: created[n]["patient"]["id"] for n in names}
    client, trees = Client(emulator.graphql_url, emulator.api_key), []
    read_back = ReadBack([*names, names[0]], ids.get, lambda batch: trees.extend(read_batch(client, batch)))
    reads = lambda: gql.stats()["graphql"].get("node", 0)  # noqa: E731
    for name in names[:-1]:
        read_back.finished(name)  # the first subject has a second step, still without a result
    assert reads() == 0
    read_back.finished(names[-1])
    read_back.finished(names[0])
    deadline = time.time() + 10
    while reads() < SUBJECTS_PER_REQUEST and time.time() < deadline:
        time.sleep(0.01)
    assert reads() == SUBJECTS_PER_REQUEST  # a full request's worth, sent before the run ends
    read_back.wait()
    assert sorted(s.name for s in trees) == names and reads() == len(names)
