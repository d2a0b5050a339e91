"""Migration at scale: concurrency, resume after kill -9 and Ctrl-C, saved plans, shards, verify."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from importer.cli import main
from importer.model import Subject
from importer.shard import shard_of

from .conftest import PROJECT, Gql, inventory, mutations

FILES = 20  # data files in sample_sessions


def spawn(tmp_path: Path, lab: Path, *extra: str) -> subprocess.Popen:
    """`moveshelf-import apply` in its own process, as cron or a batch scheduler runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "importer", "apply", str(lab), "--project", PROJECT, "--yes", "--config",
         str(tmp_path / "config" / "mvshlf-config.json"), "--state-dir", str(tmp_path / "state"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(gql: Gql, condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition(gql.stats()):
        assert time.monotonic() < deadline, "the run never got that far"
        time.sleep(0.02)


def complete_files(gql: Gql) -> int:
    return sum(1 for row in inventory(gql) if row[0] == "file" and row[-1] == "Complete")


@pytest.mark.parametrize("jobs", ["1", "8"])
def test_any_concurrency_builds_the_same_server_state(cli, lab, gql: Gql, expected, jobs: str):
    result = cli("apply", str(lab), "--yes", "--jobs", jobs)
    assert result.code == 0, result.err
    assert inventory(gql) == expected


@pytest.mark.parametrize("point", [
    lambda s: s["graphql"].get("createPatient", 0) >= 1,
    lambda s: s["uploads"] >= 3,
    lambda s: s["uploads"] >= 14,
], ids=["after-first-subject", "early-uploads", "late-uploads"])
def test_kill_9_at_any_point_then_rerun_converges(tmp_path, lab, gql: Gql, expected, point):
    gql.faults({"match": "*", "fault": "delay:40"})
    process = spawn(tmp_path, lab, "--jobs", "2")
    wait_for(gql, point)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.5)  # requests the dead client had sent in full still finish on the server
    gql.faults()
    done_before = complete_files(gql)
    uploads_before = gql.stats()["uploads"]
    rerun = spawn(tmp_path, lab)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert inventory(gql) == expected
    assert gql.stats()["uploads"] - uploads_before == FILES - done_before  # nothing Complete is sent again


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path, lab, gql: Gql, expected):
    gql.faults({"match": "*", "fault": "delay:40"})
    process = spawn(tmp_path, lab, "--jobs", "2", "--report", str(tmp_path / "r.json"))
    wait_for(gql, lambda s: s["uploads"] >= 4)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "steps not started; run the same command to resume" in err
    report = json.loads((tmp_path / "r.json").read_text())
    summary = report["summary"]
    assert report["outcome"] == "interrupted" and summary["not_attempted"] > 0
    assert sum(summary[k] for k in ("applied", "skipped", "failed", "not_attempted")) == summary["steps"] == 50
    gql.faults()
    rerun = spawn(tmp_path, lab)
    assert rerun.wait(timeout=60) == 0
    assert inventory(gql) == expected


def test_a_saved_plan_applies_only_what_is_still_true(cli, lab, gql: Gql, tmp_path: Path):
    assert cli("plan", str(lab), "--out", str(tmp_path / "plan.json")).code == 0
    saved = json.loads((tmp_path / "plan.json").read_text())
    changed = lab / "Subject02/2025-05-20/Walk01.GCD"
    changed.write_text(changed.read_text() + "!Extra\n1.0\n")
    (lab / "Subject02/2025-05-20/Walk02.png").write_bytes(b"\x89PNG new image")
    result = cli("apply", "--plan", str(tmp_path / "plan.json"), "--yes", "--report", str(tmp_path / "r.json"))
    assert result.code == 3
    assert ("not applied: /Subject02/2025-05-20/Orthosis/Walk01/Walk01.GCD (upload_file): changed since the plan "
            "was made: run plan again") in result.err
    assert "attention: 2 steps changed since the plan was made: run plan again" in result.err
    assert "run the same command" not in result.err  # it would apply the same stale steps again: none
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {s["id"]: s["status"] for s in report["steps"]}
    assert set(statuses) == {s["id"] for s in saved["steps"]}
    stale = sorted(i for i, s in statuses.items() if s == "skipped")
    assert stale == ["update_trial_metadata:/Subject02/2025-05-20/Orthosis/Walk02",
                     "upload_file:/Subject02/2025-05-20/Orthosis/Walk01/Walk01.GCD"]
    assert "1 change not in the saved plan is left for the next plan" in result.out
    fresh = cli("plan", str(lab))
    assert "Walk01.GCD" in fresh.out and "Walk02.png" in fresh.out and "Plan: 3 changes" in fresh.out


def test_a_saved_plan_for_another_project_or_a_broken_file_is_refused(cli, lab, tmp_path: Path):
    assert cli("plan", str(lab), "--out", str(tmp_path / "plan.json")).code == 0
    document = json.loads((tmp_path / "plan.json").read_text())
    document["project"] = "org/other"
    (tmp_path / "other.json").write_text(json.dumps(document))
    other = cli("apply", "--plan", str(tmp_path / "other.json"), "--yes")
    assert other.code == 2 and "for project 'org/other'" in other.err
    del document["steps"][0]["action"]
    (tmp_path / "broken.json").write_text(json.dumps(document))
    broken = cli("apply", "--plan", str(tmp_path / "broken.json"), "--yes")
    assert broken.code == 2 and "$.steps[0]" in broken.err


def test_shards_are_stable_and_total():
    subjects = [Subject(f"S{i}", mrn=f"M{i}" if i % 3 else None) for i in range(200)]
    for count in (1, 2, 3, 7):
        shards = [shard_of(s, count) for s in subjects]
        assert set(shards) <= set(range(1, count + 1)) and len(set(shards)) == count
        assert shards == [shard_of(s, count) for s in subjects]
    assert shard_of(Subject("renamed", mrn="M1"), 5) == shard_of(Subject("S1", mrn="M1"), 5)
    assert [shard_of(s, 4) for s in subjects[:6]] == [3, 3, 2, 1, 3, 2]  # pinned: a change re-shards migrations


def test_shards_applied_apart_equal_one_run_and_reports_merge(cli, lab, gql: Gql, expected, tmp_path: Path, capsys):
    reports = []
    for index in (1, 2):
        reports.append(tmp_path / f"r{index}.json")
        result = cli("apply", str(lab), "--yes", "--shard", f"{index}/2", "--report", str(reports[-1]))
        assert result.code == 0, result.err
    assert inventory(gql) == expected
    assert main(["report", "merge", *map(str, reports), "--out", str(tmp_path / "merged.json")]) == 0
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["summary"]["steps"] == merged["summary"]["applied"] == 50 == len(merged["steps"])
    assert merged["shards"] == ["1/2", "2/2"] and "Applied 50 of 50 steps" in capsys.readouterr().out
    assert main(["apply", str(lab), "--shard", "3/2"]) == 2


def test_quick_check_trusts_size_and_mtime_and_verify_reads_again(cli, lab, gql: Gql, tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    target = lab / "Subject01/2025-03-14/Walk01.GCD"
    stat = target.stat()
    target.write_bytes(target.read_bytes().replace(b"!Cadence", b"!cADENCE"))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0
    verified = cli("plan", str(lab), "--verify")
    assert "Walk01.GCD: the server's file differs from the local file" in verified.out


def test_verify_asks_storage_when_the_journal_is_wrong(cli, lab, gql: Gql, tmp_path: Path):
    assert cli("apply", str(lab), "--yes").code == 0
    with sqlite3.connect(next((tmp_path / "state").glob("*/journal.sqlite3"))) as journal:
        journal.execute("UPDATE content SET crc32c = 'AAAAAA=='")
    downloads, writes = gql.stats()["downloads"], mutations(gql.stats())
    assert "differs from the local file" in cli("plan", str(lab), "--full").out  # keeps that as the fragment
    assert cli("plan", str(lab), "--verify", "--detailed-exitcode").code == 0
    assert gql.stats()["downloads"] - downloads == FILES  # one-byte ranged GETs, one per file
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0  # the journal learned the truth
    assert mutations(gql.stats()) == writes
