"""What a run says while it works and when Ctrl-C stops it: failures only for failed steps, the file being
uploaded, and the bytes that actually went out."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from importer import cli as cli_module
from importer.address import Address
from importer.cancel import Cancellation
from importer.progress import Progress
from importer.render import size
from importer.scheduler import Result, Status
from importer.steps import Action, CreateSubject, Step

from .conftest import Gql


def result(status: Status, error: str | None = None) -> Result:
    step = Step("create_subject:/Ann", Action.CREATE_SUBJECT, Address("Ann"), CreateSubject("Ann"))
    return Result(step, status, error)


def test_only_failed_steps_are_said_as_failures_and_steps_never_started_are_not_progress(caplog):
    progress = Progress("lines", 3, 0, every_seconds=0)
    with caplog.at_level(logging.INFO, logger="moveshelf_import"):
        progress.on_result(result(Status.NOT_ATTEMPTED, "interrupted"))
        progress.on_result(result(Status.SKIPPED, "depends on x, which was failed"))
        progress.on_result(result(Status.FAILED, "storage answered 500"))
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if line.startswith("failed:")] == [
        "failed: /Ann (create_subject): storage answered 500"]
    assert lines[-1].startswith("progress: 2/3 steps (1 failed), ")


def test_the_file_being_uploaded_is_named_and_every_byte_sent_is_counted(caplog):
    progress = Progress("lines", 2, 300, every_seconds=0)
    big, small = progress.upload("Big scan.pdf", 200), progress.upload("Walk01.c3d", 100)
    with caplog.at_level(logging.INFO, logger="moveshelf_import"):
        big(50)
        small(40)
        big(-50)  # the attempt failed: those bytes must go again
        small(60)
        big(200)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].endswith("; uploading Big scan.pdf") and lines[1].endswith("uploading Big scan.pdf (+1 more)")
    assert lines[2].endswith("uploading Walk01.c3d") and "uploading" not in lines[-1]
    assert progress.sent == 350 and lines[-1].startswith("progress: 0/2 steps, 300 B/300 B uploaded")


def test_ctrl_c_mid_upload_says_what_was_not_started_and_counts_what_was_sent(cli, lab, gql: Gql, tmp_path: Path,
                                                                                monkeypatch):
    big = lab / "Subject02/2025-05-20/Big scan.pdf"
    big.write_bytes(os.urandom(8 << 20))
    cancel = Cancellation()
    monkeypatch.setattr(cli_module, "Cancellation", lambda: cancel)
    counter = Progress.upload

    def upload(self: Progress, name: str, file_size: int):
        count = counter(self, name, file_size)
        seen = 0

        def on_bytes(n: int) -> None:
            nonlocal seen
            count(n)
            seen += max(n, 0)
            if name == big.name and seen >= 2 << 20:
                cancel.cancel()  # as Ctrl-C does, a quarter of the way through the large file
        return on_bytes

    monkeypatch.setattr(Progress, "upload", upload)
    result = cli("apply", str(lab), "--yes", "--report", str(tmp_path / "r.json"))
    assert result.code == 130, result.err
    assert "failed:" not in result.err
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert re.search(rf"^interrupted: {summary['not_attempted']} steps not started; run the same command to resume$",
                     result.err, re.M), result.err
    assert summary["bytes_sent"] >= summary["bytes"] + (2 << 20)
    assert f"sent {size(summary['bytes_sent'])} in" in result.out
    monkeypatch.undo()
    assert cli("apply", str(lab), "--yes").code == 0
    assert cli("plan", str(lab), "--detailed-exitcode").code == 0


def test_the_upload_bar_names_the_file_being_uploaded(capsys):
    progress = Progress("bars", 1, 300)
    progress.upload("Big scan.pdf", 300)(100)
    progress.close()
    assert "Big scan.pdf" in capsys.readouterr().err
