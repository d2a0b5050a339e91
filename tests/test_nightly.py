"""The nightly job, night after night: invalid sessions set aside, fresh ones deferred, every outcome logged."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from importer.durations import parse_duration
from importer.state import run_lock

from .conftest import PROJECT, SAMPLES, Gql, server_tree

HOUR = 3600


def age(folder: Path, seconds: float) -> None:
    """Make everything below a folder look `seconds` old, as a lab's archive does."""
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def session(lab: Path, subject: str, name: str, config: dict | str, files: tuple[str, ...] = ("Walk01.c3d",)) -> Path:
    folder = lab / subject / name
    folder.mkdir(parents=True)
    (folder / "moveshelf_config_import.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for file in files:
        shutil.copy(SAMPLES / "Subject01/2025-03-14/Walk01.c3d", folder / file)
    return folder


def valid(mrn: str | None = None) -> dict:
    return {"subjectMetadata": {"ehr-id": mrn} if mrn else {}, "conditionDefinition": {"Barefoot": ["Walk01"]}}


def nightly(cli, lab: Path, tmp_path: Path):
    return cli("apply", str(lab), "--yes", "--quiet", "--on-invalid", "skip", "--min-age", "10m",
               "--log-file", str(tmp_path / "nightly.log"), "--report", str(tmp_path / "nightly.json"))


def test_a_nightly_job_keeps_going_defers_what_is_being_written_and_is_silent_when_nothing_changed(
        cli, tmp_path: Path, gql: Gql):
    lab = tmp_path / "lab"
    shutil.copytree(SAMPLES, lab)
    session(lab, "Subject03", "2025-10-01", valid("3003"))
    session(lab, "Subject04", "2025-10-02", '{"subjectMetadata": {"ehr-id": "4004"}, "conditionDefinition": ')
    session(lab, "Twin A", "2025-10-03", valid("5005"))
    session(lab, "Twin B", "2025-10-04", valid("5005"))
    age(lab, HOUR)
    fresh = session(lab, "Subject05", "2025-10-05", valid("6006"))  # still being copied in

    first = nightly(cli, lab, tmp_path)
    assert first.code == 3, first.err
    names = sorted(p["name"] for p in server_tree(gql))
    assert names == ["Subject01", "Subject02", "Subject03"]  # the valid sessions, new and old, were imported
    report = json.loads((tmp_path / "nightly.json").read_text())
    assert report["outcome"] == "partial"
    aside = {a["path"]: a["problems"] for a in report["set_aside"]}
    assert sorted(aside) == ["lab/Subject04/2025-10-02", "lab/Twin A/2025-10-03", "lab/Twin B/2025-10-04"]
    assert "not valid JSON" in aside["lab/Subject04/2025-10-02"][0]
    assert "subject MRN '5005' is also used by" in aside["lab/Twin A/2025-10-03"][0]
    assert [d["path"] for d in report["deferred"]] == ["lab/Subject05/2025-10-05"]
    assert "still being written" in report["deferred"][0]["reason"]
    assert "set aside" in first.err and "Subject04" in first.err  # on the console: a person should look
    log = (tmp_path / "nightly.log").read_text()
    assert "imported /Subject03/2025-10-01: 1 file" in log and "set aside: lab/Twin B/2025-10-04" in log
    assert "deferred: lab/Subject05/2025-10-05" in log and "Applied" in log

    shutil.rmtree(lab / "Subject04")
    shutil.rmtree(lab / "Twin B")
    age(fresh, HOUR)
    second = nightly(cli, lab, tmp_path)
    assert second.code == 0, second.err
    assert sorted(p["name"] for p in server_tree(gql)) == ["Subject01", "Subject02", "Subject03", "Subject05",
                                                          "Twin A"]
    assert json.loads((tmp_path / "nightly.json").read_text())["outcome"] == "ok"

    before = (tmp_path / "nightly.json").read_text()
    third = nightly(cli, lab, tmp_path)
    assert (third.code, third.out, third.err) == (0, "", "")  # cron sends no mail
    assert (tmp_path / "nightly.json").read_text() != before  # written anew: its own times
    assert (tmp_path / "nightly.log").read_text().count("Applied 0 of 0 steps") == 1


def test_every_run_leaves_its_outcome_in_the_log_and_the_report_fatal_ones_included(cli, lab, tmp_path: Path):
    log, report = tmp_path / "run.log", tmp_path / "run.json"
    report.write_text('{"left": "from last night"}')
    args = ("--yes", "--quiet", "--log-file", str(log), "--report", str(report))

    (lab / "Subject01/2025-03-14/moveshelf_config_import.json").write_text("{")
    assert cli("apply", str(lab), *args).code == 2
    assert json.loads(report.read_text())["outcome"] == "invalid"
    assert "run invalid: invalid input" in log.read_text()

    shutil.copy(SAMPLES / "Subject01/2025-03-14/moveshelf_config_import.json", lab / "Subject01/2025-03-14")
    assert cli("apply", str(lab), *args).code == 0
    folder = next((tmp_path / "state").iterdir())
    with run_lock(folder, (str(lab),), PROJECT):
        assert cli("apply", str(lab), *args).code == 4
    assert json.loads(report.read_text())["outcome"] == "locked"

    (tmp_path / "config" / "mvshlf-api-key.json").write_text('{"secretKey": "wrong-key"}')
    assert cli("apply", str(lab), *args).code == 1
    stopped = json.loads(report.read_text())
    assert stopped["outcome"] == "fatal" and "rejected the API key" in stopped["fatal"]
    assert re.findall(r" ERROR run (\w+): ", log.read_text()) == ["invalid", "locked", "fatal"]


def test_durations_read_as_operators_write_them():
    assert [parse_duration(t, "--min-age") for t in ("90s", "30m", "2h", "7d", "45")] == [90, 1800, 7200, 604800, 45]


def test_the_scheduling_examples_use_only_options_the_tool_accepts():
    from importer.cli import _parser

    def options(parser) -> set[str]:
        found = set()
        for action in parser._actions:  # the parser is ours
            found.update(action.option_strings)
            for sub in action.choices.values() if isinstance(action.choices, dict) else ():
                found |= options(sub) if hasattr(sub, "_actions") else set()
        return found

    known = options(_parser())
    others = {"--array", "--job-name", "--cpus-per-task", "--time", "--output", "--now"}  # sbatch, systemctl
    examples = [p for p in (Path(__file__).parent.parent / "examples").rglob("*") if p.is_file()]
    assert len(examples) >= 7
    for example in examples:
        text = example.read_text()
        assert "moveshelf-import" in text, example
        used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) - others
        assert used <= known, (example.name, used - known)
