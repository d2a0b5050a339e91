"""Every bad input ends with exit 2, a message naming the file (and JSON path) and the fix, and no write.

One table: config files, folder shapes, names, links, permissions, connection settings,
options and saved plans. Each case runs through validate, plan and apply --yes where the
command takes that input, against a live emulator that must count zero writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer import folders
from importer.cli import main
from importer.spec import Problem

from .conftest import PROJECT, Result, mutations

S1 = "Subject01/2025-03-14"
CONFIG = "moveshelf_config_import.json"
ALL = ("validate", "plan", "apply")
SERVER = ("plan", "apply")
NOBODY = 65534


@dataclass(frozen=True)
class Where:
    """The folders a case may change: the lab (import root), the test's own folder, the connection config."""

    lab: Path
    tmp: Path
    config: Path  # mvshlf-config.json

    def edit_config(self, **changes: object) -> None:
        document = json.loads(self.config.read_text())
        self.config.write_text(json.dumps({**document, **changes}))

    def edit_session(self, edit: Callable[[dict], None], session: str = S1) -> None:
        path = self.lab / session / CONFIG
        document = json.loads(path.read_text())
        edit(document)
        path.write_text(json.dumps(document))


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Where], object]
    expect: tuple[str, ...]  # in stderr: the file (as the user knows it), the JSON path, the gist
    commands: tuple[str, ...] = ALL
    args: tuple[str, ...] = ("{lab}",)
    unprivileged: bool = False  # chmod cases: root reads anything, so they run as nobody


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _bytes_name(folder: Path, raw: bytes) -> Path:
    return folder / os.fsdecode(raw)


def _session(where: Where, relative: str, files: tuple[str, ...] = ("Walk01.c3d",), config: dict | None = None) -> Path:
    folder = where.lab / relative
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"c3d")
    if config is not None:
        (folder / CONFIG).write_text(json.dumps(config))
    return folder


def _outside(where: Where, name: str = "outside", folder: bool = True) -> Path:
    target = where.tmp / name
    if folder:
        target.mkdir(exist_ok=True)
        (target / "Walk01.c3d").write_bytes(b"secret")
    else:
        target.write_bytes(b"secret")
    return target


def _saved_plan(where: Where, document: object | str | bytes | None = None, folder: bool = False) -> None:
    path = where.tmp / "plan.json"
    if folder:
        path.mkdir()
    elif isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(document if isinstance(document, str) else json.dumps(document))


def _other_project_plan(where: Where) -> None:
    plan = {"format": "moveshelf-import/plan", "version": 1, "project": "other/project", "paths": [str(where.lab)],
            "roots": [str(where.lab)], "steps": [], "summary": {"changes": 0}, "unmapped": [], "conflicts": [],
            "server_only": [], "set_aside": [], "deferred": [], "warnings": []}
    _saved_plan(where, plan)


def _chmod(mode: int, relative: str) -> Callable[[Where], None]:
    return lambda where: os.chmod(where.lab / relative, mode)


def _set(document: dict, section: str, value: object) -> None:
    document[section] = value


CASES = [
    # -- moveshelf_config_import.json ----------------------------------------------------------------
    Case("config nested 100000 deep", lambda w: (w.lab / S1 / CONFIG).write_text(_nest(100_000)),
         (f"lab/{S1}/{CONFIG}: $: is nested more than",)),
    Case("config nested 70 deep", lambda w: w.edit_session(lambda d: _set(d, "sessionMetadata",
                                                                            {"x": json.loads(_nest(70))})),
         (f"lab/{S1}/{CONFIG}: $: is nested more than",)),
    Case("config is a folder", lambda w: ((w.lab / S1 / CONFIG).unlink(), (w.lab / S1 / CONFIG).mkdir()),
         (f"lab/{S1}/{CONFIG}: $: is a folder, not a JSON file",)),
    Case("config is not JSON", lambda w: (w.lab / S1 / CONFIG).write_text("{\"subjectMetadata\": "),
         (f"lab/{S1}/{CONFIG}: line 1 column 21: not valid JSON",)),
    Case("config is empty", lambda w: (w.lab / S1 / CONFIG).write_text(""),
         (f"lab/{S1}/{CONFIG}: line 1 column 1: not valid JSON",)),
    Case("config is not UTF-8", lambda w: (w.lab / S1 / CONFIG).write_bytes(b'{"a": "\xe9"}'),
         (f"lab/{S1}/{CONFIG}: byte 7: is not UTF-8 text; save the file as UTF-8",)),
    Case("config is a list", lambda w: (w.lab / S1 / CONFIG).write_text("[]"),
         (f"lab/{S1}/{CONFIG}: $: [] is not of type 'object'",)),
    Case("invalid session_date", lambda w: w.edit_session(lambda d: _set(d, "session_date", "2025-13-01")),
         (f"lab/{S1}/{CONFIG}: $.session_date: '2025-13-01' is not a valid date",)),
    Case("metadata value of the wrong type", lambda w: w.edit_session(
        lambda d: _set(d, "subjectMetadata", {"ehr-id": 5})), (f"lab/{S1}/{CONFIG}: $.subjectMetadata.ehr-id",)),
    Case("representative side that is not a side", lambda w: w.edit_session(
        lambda d: _set(d, "representativeTrials", {"Walk01": "up"})),
         (f"lab/{S1}/{CONFIG}: $.representativeTrials.Walk01: 'up' is not a side",)),
    Case("trial in two conditions", lambda w: w.edit_session(
        lambda d: _set(d, "conditionDefinition", {"Barefoot": ["Walk01", "Walk02"], "Shoes": ["Walk03", "Walk01"]})),
         (f"lab/{S1}/{CONFIG}: $.conditionDefinition.Shoes[1]: trial 'Walk01' is already declared",)),
    Case("condition name with a slash", lambda w: w.edit_session(
        lambda d: _set(d, "conditionDefinition", {"Bare/foot": ["Walk01", "Walk02", "Walk03"]})),
         (f"lab/{S1}/{CONFIG}: $.conditionDefinition", "is not a valid name")),
    Case("declared trial without a file names the nearest", lambda w: [
        (w.lab / S1 / f"Walk03.{ext}").rename(w.lab / S1 / f"Walk3.{ext}") for ext in ("c3d", "GCD")],
         (f"lab/{S1}/{CONFIG}: $.conditionDefinition.Shoes[0]: trial 'Walk03' has no file",
          "similar file names found: Walk3.GCD, Walk3.c3d")),
    Case("representative trial not declared", lambda w: w.edit_session(
        lambda d: _set(d, "representativeTrials", {"Walk09": "left"})),
         (f"lab/{S1}/{CONFIG}: $.representativeTrials.Walk09: trial 'Walk09' is not declared",)),
    Case("context given twice", lambda w: w.edit_session(lambda d: _set(d, "sessionMetadata", {
        "leg": [{"value": "1", "context": "left"}, {"value": "2", "context": "left"}]})),
         (f"lab/{S1}/{CONFIG}: $.sessionMetadata.leg: context 'left' appears more than once",)),
    Case("MRN differs between sessions", lambda w: w.edit_session(
        lambda d: _set(d, "subjectMetadata", {"ehr-id": "9999"}), "Subject01/2025-09-02"),
         ("lab/Subject01/2025-09-02/moveshelf_config_import.json: $.subjectMetadata.ehr-id: MRN '9999' differs",)),
    Case("config is a broken link", lambda w: ((w.lab / S1 / CONFIG).unlink(),
                                               (w.lab / S1 / CONFIG).symlink_to(w.tmp / "gone.json")),
         (f"lab/{S1}/{CONFIG}: (link): is a broken link",)),
    Case("config is a link leaving the root", lambda w: (
        shutil.move(w.lab / S1 / CONFIG, w.tmp / "elsewhere.json"),
        (w.lab / S1 / CONFIG).symlink_to(w.tmp / "elsewhere.json")),
         (f"lab/{S1}/{CONFIG}: (file): is a link that leaves the import root",)),
    # -- folder shapes --------------------------------------------------------------------------------
    Case("PATH does not exist", lambda w: None, ("missing: (path): is not a folder (it does not exist)",),
         args=("missing",)),
    Case("PATH is a file", lambda w: None, (f"{S1}/Walk01.c3d: (path): is not a folder",),
         args=(f"{{lab}}/{S1}/Walk01.c3d",)),
    Case("invalid date in a folder name", lambda w: _session(w, "Subject03/2025-02-30 visit"),
         ("lab/Subject03/2025-02-30 visit: (folder name): '2025-02-30' in folder name '2025-02-30 visit' is not a "
          "valid date",)),
    Case("no session date with --require-date", lambda w: _session(w, "Subject03/Visit"),
         ("lab/Subject03/Visit: (folder name): no session date (--require-date)",),
         args=("{lab}", "--require-date")),
    Case("one MRN in two subject folders", lambda w: _session(w, "Other/2025-01-01", config={
        "subjectMetadata": {"ehr-id": "1001"}}), ("subject MRN '1001' is also used by", "merge the folders")),
    Case("two files of one name in a trial", lambda w: _session(w, S1, ("exports/Walk01.c3d",)),
         (f"lab/{S1}/exports/Walk01.c3d: (file): trial 'Walk01' already has a file named 'Walk01.c3d'",)),
    Case("a pipe in a session folder", lambda w: os.mkfifo(w.lab / S1 / "Walk04.c3d"),
         (f"lab/{S1}/Walk04.c3d: (file): is not a regular file",)),
    # -- names ----------------------------------------------------------------------------------------------
    Case("file name not UTF-8", lambda w: _bytes_name(w.lab / S1, b"Walk\xff02.c3d").write_bytes(b"x"),
         (f"lab/{S1}/Walk\\xff02.c3d: (name): the name is not valid UTF-8",)),
    Case("subject folder name not UTF-8", lambda w: _session(w, os.fsdecode(b"P\xe9ter/2025-01-01")),
         ("lab/P\\xe9ter: (name): the name is not valid UTF-8",)),
    Case("session folder name not UTF-8", lambda w: _session(w, os.fsdecode(b"Subject01/2025-01-01 \xe9t\xe9")),
         ("lab/Subject01/2025-01-01 \\xe9t\\xe9: (name)",)),
    Case("condition folder name not UTF-8", lambda w: _session(w, "Subject03/2025-01-01",
                                                                (os.fsdecode(b"Barefo\xf6t/Walk01.c3d"),)),
         ("lab/Subject03/2025-01-01/Barefo\\xf6t: (name)",)),
    Case("import root path not UTF-8", lambda w: shutil.copytree(w.lab, _bytes_name(w.tmp, b"l\xe4b")),
         ("l\\xe4b: (path): the folder's path is not valid UTF-8",), args=(os.fsdecode(b"{tmp}/l\xe4b"),)),
    # -- links ----------------------------------------------------------------------------------------------
    Case("symlink loop between two files", lambda w: ((w.lab / S1 / "a.c3d").symlink_to("b.c3d"),
                                                        (w.lab / S1 / "b.c3d").symlink_to("a.c3d")),
         (f"lab/{S1}/a.c3d: (link): is a link loop (lab/{S1}/a.c3d → lab/{S1}/b.c3d → lab/{S1}/a.c3d)",)),
    Case("file linked to itself", lambda w: (w.lab / S1 / "self.c3d").symlink_to("self.c3d"),
         (f"lab/{S1}/self.c3d: (link): is a link loop",)),
    Case("folder linked to itself", lambda w: (w.lab / "Loop").symlink_to("Loop"), ("lab/Loop: (link): is a link loop",)),
    Case("PATH is a link loop", lambda w: (w.tmp / "loop").symlink_to("loop"), ("(path): is a link loop",),
         args=("{tmp}/loop",)),
    Case("subject folder links outside the root", lambda w: (w.lab / "Linked").symlink_to(_outside(w)),
         ("lab/Linked: (folder): is a link that leaves the import root",)),
    Case("session folder links outside the root", lambda w: (w.lab / "Subject01/Linked").symlink_to(_outside(w)),
         ("lab/Subject01/Linked: (folder): is a link that leaves the import root",)),
    Case("condition folder links outside the root", lambda w: (w.lab / S1 / "Extra").symlink_to(_outside(w)),
         (f"lab/{S1}/Extra: (folder): is a link that leaves the import root",)),
    Case("file links outside the root", lambda w: (w.lab / S1 / "Walk04.c3d").symlink_to(_outside(w, "x.c3d", False)),
         (f"lab/{S1}/Walk04.c3d: (file): is a link that leaves the import root",)),
    Case("link to a link that leaves the root", lambda w: (
        (w.lab / "hop.c3d").symlink_to(_outside(w, "x.c3d", False)),
        (w.lab / S1 / "Walk04.c3d").symlink_to(w.lab / "hop.c3d")),
         (f"lab/{S1}/Walk04.c3d: (file): is a link that leaves the import root",)),
    Case("link through a folder link that leaves the root", lambda w: (
        (w.lab / "out").symlink_to(_outside(w)), (w.lab / S1 / "Walk04.c3d").symlink_to("../../out/Walk01.c3d")),
         (f"lab/{S1}/Walk04.c3d: (file): is a link that leaves the import root",)),
    Case("broken file link", lambda w: (w.lab / S1 / "Walk04.c3d").symlink_to("nowhere.c3d"),
         (f"lab/{S1}/Walk04.c3d: (link): is a broken link",)),
    # -- permissions ----------------------------------------------------------------------------------------
    Case("unreadable data file", _chmod(0, f"{S1}/Walk01.c3d"),
         (f"lab/{S1}/Walk01.c3d: (file): cannot be read (permission denied)",), unprivileged=True),
    Case("unreadable session folder", _chmod(0, S1), (f"lab/{S1}: (folder): cannot be read (permission denied)",),
         unprivileged=True),
    Case("unreadable subject folder", _chmod(0, "Subject01"),
         ("lab/Subject01: (folder): cannot be read (permission denied)",), unprivileged=True),
    Case("unreadable config file", _chmod(0, f"{S1}/{CONFIG}"),
         (f"lab/{S1}/{CONFIG}: $: cannot be read (permission denied)",), unprivileged=True),
    # -- connection settings ------------------------------------------------------------------------------
    Case("plain http to another host", lambda w: w.edit_config(apiUrl="http://api.example.org/graphql"),
         ("mvshlf-config.json: $.apiUrl: 'http://api.example.org/graphql' is plain http", "use the https://"),
         SERVER),
    Case("apiUrl not a URL", lambda w: w.edit_config(apiUrl="ftp://example.org"),
         ("mvshlf-config.json: $.apiUrl: expected the GraphQL URL",), SERVER),
    Case("apiUrl without a host", lambda w: w.edit_config(apiUrl="https:///graphql"),
         ("mvshlf-config.json: $.apiUrl: 'https:///graphql' names no host",), SERVER),
    Case("connection config nested deep", lambda w: w.config.write_text(_nest(100_000)),
         ("mvshlf-config.json: $: is nested more than",), SERVER),
    Case("connection config is a folder", lambda w: (w.config.unlink(), w.config.mkdir()),
         ("mvshlf-config.json: $: is a folder",), SERVER),
    Case("connection config is not JSON", lambda w: w.config.write_text("apiUrl=x"),
         ("mvshlf-config.json: line 1 column 1: not valid JSON",), SERVER),
    Case("key file missing", lambda w: w.edit_config(apiKeyFileName="no-such-key.json"),
         ("API key file", "no-such-key.json: $: does not exist"), SERVER),
    Case("key file without secretKey", lambda w: (w.config.parent / "mvshlf-api-key.json").write_text("{}"),
         ("mvshlf-api-key.json: $.secretKey: expected the key as a string",), SERVER),
    # -- options ------------------------------------------------------------------------------------------------
    Case("--jobs 0", lambda w: None, ("--jobs must be at least 1",), SERVER, ("{lab}", "--jobs", "0")),
    Case("--date-format without a day", lambda w: None, ("--date-format '%m-%Y': it must name the year",),
         args=("{lab}", "--date-format", "%m-%Y")),
    Case("--date-format with an unknown directive", lambda w: None, ("--date-format '%d-%Q': %Q is not supported",),
         args=("{lab}", "--date-format", "%d-%Q")),
    Case("--data-type without a type", lambda w: None, ("--data-type 'gcd': expected EXTENSION=TYPE",),
         args=("{lab}", "--data-type", "gcd")),
    Case("--shard out of range", lambda w: None, ("--shard '3/2': expected K/N",), SERVER, ("{lab}", "--shard", "3/2")),
    Case("--state-dir is a file", lambda w: (w.tmp / "state").write_text(""),  # the cli fixture passes {tmp}/state
         ("cannot create the folder", "/state/demo_gait-lab-", "choose another --state-dir"), SERVER),
    Case("plan --out in a missing folder", lambda w: None, ("cannot write", "no-such-folder/plan.json"), ("plan",),
         ("{lab}", "--out", "{tmp}/no-such-folder/plan.json")),
    Case("apply --report in a missing folder", lambda w: None, ("cannot write", "no-such-folder/r.json"), ("apply",),
         ("{lab}", "--report", "{tmp}/no-such-folder/r.json")),
    Case("apply --log-file in a missing folder", lambda w: None, ("cannot open", "no-such-folder/log"), ("apply",),
         ("{lab}", "--log-file", "{tmp}/no-such-folder/log")),
    # -- saved plans ----------------------------------------------------------------------------------------
    Case("saved plan is not JSON", lambda w: _saved_plan(w, "{"), ("saved plan", "plan.json: line 1 column 2"),
         ("apply",), ("--plan", "{tmp}/plan.json")),
    Case("saved plan is a folder", lambda w: _saved_plan(w, folder=True), ("saved plan", "plan.json: $: is a folder"),
         ("apply",), ("--plan", "{tmp}/plan.json")),
    Case("saved plan nested deep", lambda w: _saved_plan(w, _nest(100_000)),
         ("saved plan", "plan.json: $: is nested more than"), ("apply",), ("--plan", "{tmp}/plan.json")),
    Case("saved plan not UTF-8", lambda w: _saved_plan(w, b'{"format": "\xff"}'),
         ("saved plan", "plan.json: byte 12: is not UTF-8"), ("apply",), ("--plan", "{tmp}/plan.json")),
    Case("saved plan of another format", lambda w: _saved_plan(w, {"format": "other"}),
         ("saved plan", "plan.json: $"), ("apply",), ("--plan", "{tmp}/plan.json")),
    Case("saved plan of another project", _other_project_plan, ("the saved plan is for project 'other/project'",),
         ("apply",), ("{lab}", "--plan", "{tmp}/plan.json")),
]


def _argv(case: Case, command: str, where: Where) -> list[str]:
    args = [a.replace("{lab}", str(where.lab)).replace("{tmp}", str(where.tmp)) for a in case.args]
    return [command, *args, *(["--yes"] if command == "apply" else [])]


def _check(result: Result, case: Case, command: str) -> None:
    context = f"{case.id} / {command}: {result.err}"
    assert result.code == 2, context
    assert "Traceback" not in result.err and "unexpected" not in result.err, context
    for text in case.expect:
        assert text in result.err, context
    assert result.err.startswith("error: "), context


def _open_up(folder: Path) -> None:
    """Readable by everyone (the copy nobody works on); the case's own chmod comes after."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o777 if path.is_dir() else 0o644)


@contextmanager
def _shared(lab: Path, config: Path) -> Iterator[Where]:
    """A copy of the lab and the connection config in a folder that nobody may traverse (tmp_path is 0700)."""
    shared = Path(tempfile.mkdtemp(prefix="bad-input-"))
    try:
        shutil.copytree(lab, shared / "lab", symlinks=True)
        shutil.copytree(config.parent, shared / "config")
        (shared / "state").mkdir()
        _open_up(shared)
        shared.chmod(0o755)
        yield Where(shared / "lab", shared, shared / "config" / config.name)
    finally:
        shutil.rmtree(shared)  # as root: whatever the case's modes


def _as_nobody(argv: list[str]) -> Result:
    """main(argv) in a forked child that dropped root, so chmod 000 means what it means for a user."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code and the two files
            code = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = main(argv)
            except BaseException:  # noqa: BLE001 - shown to the parent as a traceback in stderr
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return Result(os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())


def _run_unprivileged(case: Case, lab: Path, tmp_path: Path) -> None:
    with _shared(lab, tmp_path / "config" / "mvshlf-config.json") as where:
        case.setup(where)
        common = ["--project", PROJECT, "--config", str(where.config), "--state-dir", str(where.tmp / "state")]
        for command in case.commands:
            argv = _argv(case, command, where) + ([] if command == "validate" else common)
            _check(_as_nobody(argv), case, command)


def _run_in_process(case: Case, where: Where, cli) -> None:
    try:
        case.setup(where)
        for command in case.commands:
            _check(cli(*_argv(case, command, where)), case, command)
    finally:
        _open_up(where.lab)


def test_the_table_is_large_and_names_each_case_once():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_by_name_and_writes_nothing(case: Case, lab: Path, tmp_path: Path, cli, gql):
    where = Where(lab, tmp_path, tmp_path / "config" / "mvshlf-config.json")
    if case.unprivileged and os.geteuid() == 0:
        _run_unprivileged(case, lab, tmp_path)
    else:
        _run_in_process(case, where, cli)
    stats = gql.stats()
    assert mutations(stats) == 0 and stats["uploads"] == 0, stats


def test_permission_errors_are_problems_even_where_chmod_cannot_be_tested(tmp_path: Path, monkeypatch):
    """The same code path as chmod 000, by a refusing os.access, os.open and os.scandir (runs as root too)."""
    (tmp_path / "lab" / "Ann").mkdir(parents=True)
    data = tmp_path / "lab" / "Ann" / "Walk01.c3d"
    data.write_bytes(b"x")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(folders.os, "open", refuse)
    assert "permission denied" in folders.unreadable(data)
    monkeypatch.setattr(folders.os, "scandir", refuse)
    problems: list[Problem] = []
    assert folders.entries(tmp_path / "lab" / "Ann", tmp_path / "lab", problems) == []
    assert [(p.file, p.json_path) for p in problems] == [("lab/Ann", "(folder)")]
    assert "give the importing user read access to the folder (chmod u+rx)" in problems[0].message
