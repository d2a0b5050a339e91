"""The command-line habits people bring: --version, short flags, dry runs, saved plans, narrowing a run."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from importer.cli import main

from .conftest import PROJECT, Gql, mutations, server_tree


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"moveshelf-import {importlib.metadata.version('moveshelf-import')}"


def test_short_flags_mean_the_long_ones(cli, lab, gql: Gql):
    result = cli("apply", str(lab), "-y", "-q", "-j", "2")
    assert result.code == 0, result.err
    assert result.out.startswith("Applied 50 of 50 steps") and "Plan for project" not in result.out
    assert len(server_tree(gql)) == 2


def test_apply_dry_run_shows_the_plan_and_writes_nothing(cli, lab, gql: Gql, tmp_path: Path):
    result = cli("apply", str(lab), "--dry-run")
    assert result.code == 0, result.err
    assert "Plan: 50 changes" in result.out and "Applied" not in result.out
    assert mutations(gql.stats()) == 0 and gql.stats()["uploads"] == 0
    assert not (tmp_path / "report.json").exists()


def test_a_saved_plan_names_its_project(lab, gql: Gql, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("MOVESHELF_PROJECT", raising=False)
    common = ["--config", str(tmp_path / "config" / "mvshlf-config.json"), "--state-dir", str(tmp_path / "state")]
    assert main(["plan", str(lab), "--project", PROJECT, "--out", str(tmp_path / "plan.json"), *common]) == 0
    capsys.readouterr()
    assert main(["apply", "--plan", str(tmp_path / "plan.json"), "--dry-run", *common]) == 0
    assert "Plan: 50 changes" in capsys.readouterr().out and mutations(gql.stats()) == 0
    assert main(["apply", "--plan", str(tmp_path / "plan.json"), "--yes", *common]) == 0
    assert "Applied 50 of 50 steps" in capsys.readouterr().out
    assert main(["apply", "--yes", str(lab), *common]) == 2
    assert "no project given" in capsys.readouterr().err


def test_include_exclude_and_subject_narrow_every_command(cli, lab, gql: Gql):
    checked = cli("validate", str(lab), "--include", "Subject0*", "--exclude", "*/2025-09-*", "--subject", "1001")
    assert checked.out.startswith("valid: 1 subject, 1 session, 6 trials, 9 files; 1 unmapped"), checked.out
    planned = cli("plan", str(lab), "--format", "json", "--include", "Subject02/Follow*")
    assert {s["target"].split("/")[2] for s in json.loads(planned.out)["steps"] if s["target"].count("/") > 1} == {
        "Follow-up visit"}
    assert json.loads(planned.out)["unmapped"] == []
    applied = cli("apply", str(lab), "--yes", "--subject", "Subject01", "--exclude", "Subject01/2025-03-14")
    assert applied.code == 0, applied.err
    [subject] = server_tree(gql)
    assert [s["projectPath"] for s in subject["sessions"]] == ["/Subject01/2025-09-02/"]


def test_a_selection_that_matches_nothing_is_an_input_error(cli, lab, gql: Gql):
    for command in ("validate", "plan", "apply"):
        result = cli(command, str(lab), "--include", "Smith*", "--subject", "9999")
        assert result.code == 2, (command, result.err)
        assert "--include 'Smith*' --subject '9999' match no session folder" in result.err
    assert gql.stats()["graphql"] == {}
