"""The importer's main scenarios against the emulator's variants of what the real service may do.

`clip_path_slash`: clip projectPaths come back with a trailing `/`. `complete_after`: a record stays
`Processing` for a while after its PUT. Both must leave one record per file, no duplicates, and a
re-run that writes nothing.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from importer.emulator.server import EmulatorServer

from .conftest import PROJECT, Gql, mutations, server_tree
from .test_scale import FILES, spawn, wait_for

VARIANTS = {"clip-path-slash": {"clip_path_slash": True}, "complete-after": {"complete_after": 2.0}}


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def emulator(request, tmp_path: Path):
    server = EmulatorServer(data_dir=tmp_path / "emulator", projects=(PROJECT,), **VARIANTS[request.param]).start()
    server.write_config(tmp_path / "config")
    yield server
    server.stop()


def assert_one_record_per_file(gql: Gql) -> None:
    """No subject, session, trial or file record twice (paths compared without a trailing `/`)."""
    rows = []
    for patient in server_tree(gql):
        rows.append(("subject", patient["name"]))
        for session in patient["sessions"]:
            rows.append(("session", session["projectPath"].rstrip("/")))
            for clip in session["clips"]:
                path = clip["projectPath"].rstrip("/")
                rows.append(("trial", path, clip["title"]))
                rows += [("file", path, clip["title"], d["originalFileName"]) for d in clip["additionalData"]]
    repeated = [row for row, count in Counter(rows).items() if count > 1]
    assert not repeated, repeated
    assert sum(row[0] == "file" for row in rows) == FILES


def assert_rerun_writes_nothing(cli, lab: Path, gql: Gql) -> None:
    before = gql.stats()
    again = cli("apply", str(lab), "--yes")
    assert again.code == 0 and "No changes" in again.out, again.out + again.err
    after = gql.stats()
    assert mutations(after) == mutations(before) and after["uploads"] == before["uploads"]


def test_first_import_then_a_rerun_that_writes_nothing(cli, lab, gql: Gql):
    first = cli("apply", str(lab), "--yes")
    assert first.code == 0, first.err
    assert "0 failed" in first.out
    assert_one_record_per_file(gql)
    assert_rerun_writes_nothing(cli, lab, gql)


def test_ambiguous_creates_are_reconciled(cli, lab, gql: Gql):
    gql.faults(*({"match": name, "fault": "commit-then-reset", "times": 1}
                 for name in ("createPatient", "createSession", "createClips", "createAdditionalData")))
    result = cli("apply", str(lab), "--yes")
    assert result.code == 0, result.err
    assert len([e for e in gql.fault_log() if e["fault"] == "commit-then-reset"]) == 4
    gql.faults()
    assert_one_record_per_file(gql)
    assert_rerun_writes_nothing(cli, lab, gql)


def test_kill_and_resume(cli, lab, gql: Gql, tmp_path: Path):
    gql.faults({"match": "*", "fault": "delay:40"})
    process = spawn(tmp_path, lab, "--jobs", "2")
    wait_for(gql, lambda s: s["uploads"] >= 5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.5)  # requests the dead client had sent in full still finish on the server
    gql.faults()
    rerun = spawn(tmp_path, lab)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert_one_record_per_file(gql)
    assert_rerun_writes_nothing(cli, lab, gql)
