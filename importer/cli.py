"""The command line: parse arguments, call the library, choose output, map outcomes to exit codes."""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import documents, render, report, runlog, shard, workflow
from .cancel import Cancellation
from .config import project_name
from .durations import parse_duration
from .errors import ExitCode, ImportToolError, InputError
from .metadata import MetadataPolicy
from .private import check_writable, open_private_append, write_private
from .progress import TqdmHandler
from .render import plural
from .scan import LAYOUTS, ScanOptions
from .secrets import scrub
from .selection import Selection
from .steps import ConflictPolicy, Plan, from_json, to_json
from .workflow import Settings

SUMMARY = logging.getLogger("moveshelf_import.summary")  # the run's last line, for --log-file

_DESCRIPTION = """\
Import gait-lab session folders into Moveshelf, declaratively: `plan` shows what would
change on the server, `apply` makes the server match. Re-running is safe: nothing is
created twice, unchanged files are not uploaded again, an interrupted run resumes.

exit codes: 0 success or nothing to do, 1 fatal error, 2 invalid input or usage
(nothing written), 3 some steps failed (re-run to resume), 4 another run holds the
lock, 5 changes pending (plan --detailed-exitcode), 130 interrupted."""


def _terminate(*_: object) -> None:
    """SIGTERM (a scheduler stopping the job) stops like Ctrl-C: the journal is kept, the run resumes later."""
    raise KeyboardInterrupt


def _emulator(args: argparse.Namespace) -> int:
    from .emulator.server import EmulatorServer

    if args.complete_after < 0:
        raise InputError(f"--complete-after must be a number of seconds >= 0, not {args.complete_after:g}")

    server = EmulatorServer(args.host, args.port, args.data_dir, tuple(args.project), args.api_key,
                            args.latency_ms, args.url_ttl, clip_path_slash=args.clip_path_slash,
                            complete_after=args.complete_after, strict_checksum=args.strict_checksum)
    print(f"Moveshelf emulator listening on {server.graphql_url}", flush=True)
    variants = [name for name, on in (("clip-path-slash", args.clip_path_slash),
                                      (f"complete-after {args.complete_after:g}s", args.complete_after > 0),
                                      ("strict-checksum", args.strict_checksum)) if on]
    if variants:
        print(f"  variants: {', '.join(variants)}", flush=True)
    print(f"  data: {server.data_dir}   projects: {', '.join(p['name'] for p in server.store.projects())}",
          flush=True)
    if args.write_config:
        print(f"  wrote {server.write_config(args.write_config)} and its key file", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return ExitCode.OK


def _as_given(options: dict[str, Any]) -> dict[str, Any]:
    """Options a plan depends on (`workflow.planned_with`) as the command line spells them: `reports` is a flag in
    a plan and `--reports auto|none` on the command line."""
    return {name: ("auto" if value else "none") if name == "reports" else value for name, value in options.items()}


def _planning(args: argparse.Namespace, saved: Plan | None) -> dict[str, Any]:
    """The options a plan depends on: as given, else as the saved plan was made with, else the defaults. A saved
    plan is applied as it was made; an option given otherwise would make its steps stale, so it is refused."""
    recorded = _as_given(saved.options) if saved else {}
    chosen = {}
    for name, default in _as_given(workflow.planned_with(Settings(paths=()))).items():
        given = getattr(args, name, None)
        if given is not None and name in recorded and given != recorded[name]:
            option = "--" + name.replace("_", "-")
            made = f"with {option} {recorded[name]}" if recorded[name] is not None else f"without {option}"
            raise InputError(f"{option} {given}: the saved plan was made {made}",
                             f"leave {option} out to apply the plan as it was made, or make a new plan with it")
        chosen[name] = given if given is not None else recorded.get(name, default)
    return chosen


def _settings(args: argparse.Namespace, saved: Plan | None = None) -> Settings:
    for option in ("jobs", "attempts"):
        if getattr(args, option, 1) < 1:
            raise InputError(f"--{option} must be at least 1")
    types = {}
    for item in args.data_type:
        ext, _, kind = item.partition("=")
        if not ext or not kind:
            raise InputError(f"--data-type {item!r}: expected EXTENSION=TYPE, e.g. gcd=raw or mp4=video")
        types[ext.lower().lstrip(".")] = kind
    planning = _planning(args, saved)
    reports = planning["reports"] == "auto"
    if planning["reports_norm"] and not reports:
        raise InputError("--reports-norm needs --reports auto")
    return Settings(paths=tuple(args.paths), project=getattr(args, "project", None),
                    config=getattr(args, "config", None), state_dir=getattr(args, "state_dir", None),
                    on_conflict=ConflictPolicy(planning["on_conflict"]), jobs=getattr(args, "jobs", 8),
                    verify=getattr(args, "verify", False), attempts=getattr(args, "attempts", 6),
                    shard=shard.parse(args.shard) if getattr(args, "shard", None) else None,
                    scan=ScanOptions(args.layout, types, args.date_format, args.require_date, args.on_invalid,
                                     _min_age(args)),
                    selection=Selection(tuple(args.include), tuple(args.exclude), tuple(args.subject)),
                    full=getattr(args, "full", False),
                    recheck_after=parse_duration(getattr(args, "recheck_after", None) or "7d", "--recheck-after"),
                    reports=reports, reports_norm=planning["reports_norm"],
                    metadata_policy=MetadataPolicy(planning["metadata_policy"]))


def _min_age(args: argparse.Namespace) -> float | None:
    given = getattr(args, "min_age", None)
    return parse_duration(given, "--min-age") if given else None


def _setup_logging(quiet: bool, log_file: Path | None) -> None:
    log = logging.getLogger("moveshelf_import")
    log.handlers.clear()
    log.setLevel(logging.INFO)
    console = TqdmHandler()
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.addFilter(lambda record: record.name != SUMMARY.name)  # stdout has it already
    log.addHandler(console)
    if log_file:
        handler = logging.StreamHandler(open_private_append(log_file))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)


def _validate(args: argparse.Namespace) -> int:
    local = workflow.validate(_settings(args))
    subjects = local.tree.subjects
    sessions = [se for s in subjects for se in s.sessions]
    trials = [t for se in sessions for t in se.trials]
    print(f"valid: {plural(len(subjects), 'subject')}, {plural(len(sessions), 'session')}, "
          f"{plural(len(trials), 'trial')}, {plural(sum(len(t.files) for t in trials), 'file')}; "
          f"{len(local.unmapped)} unmapped")
    for unmapped in local.unmapped:
        print(f"  unmapped: {unmapped.path}: {unmapped.reason}")
    for warning in local.warnings:
        print(f"  warning: {warning}")
    for aside in local.set_aside:
        print(f"  set aside: {aside.path}: {'; '.join(aside.problems)}")
    return ExitCode.ATTENTION if local.set_aside else ExitCode.OK


def _plan(args: argparse.Namespace) -> int:
    check_writable(args.out)
    the_plan = workflow.plan(_settings(args))
    if args.out:
        write_private(args.out, render.as_json(to_json(the_plan)))
    print(render.as_json(to_json(the_plan)) if args.format == "json" else render.plan_text(the_plan), end="")
    pending = the_plan.steps or the_plan.conflicts
    return ExitCode.CHANGES_PENDING if args.detailed_exitcode and pending else ExitCode.OK


def _confirm(args: argparse.Namespace) -> Callable[[Plan], bool]:
    def confirm(the_plan: Plan) -> bool:
        if not args.quiet:
            print(render.plan_text(the_plan), end="", flush=True)
        if not the_plan.steps or args.yes or not sys.stdin.isatty():
            return True
        print("Apply these changes? Only 'yes' applies: ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() == "yes"  # asked on stderr: stdout may be a file
    return confirm


def _saved_plan(path: Path) -> Plan:
    return from_json(documents.load(path, "plan.schema.json", "saved plan",
                                    "save plans with `moveshelf-import plan ... --out PLAN.json`"))


def _stale(target: str, action: str) -> None:
    print(f"not applied: {target} ({action}): {workflow.STALE}", file=sys.stderr)


def _dry_run(args: argparse.Namespace, saved: Plan | None) -> int:
    """`apply --dry-run`: the plan apply would carry out, shown and not applied; exits like `plan`."""
    the_plan, stale = workflow.preview(_settings(args, saved), saved)
    print(render.plan_text(the_plan), end="")
    for step in stale:
        _stale(str(step.target), step.action.value)
    return ExitCode.OK


def _apply(args: argparse.Namespace) -> int:
    saved = _saved_plan(args.plan) if args.plan else None
    if args.dry_run:
        return _dry_run(args, saved)
    check_writable(args.report)
    _setup_logging(args.quiet, args.log_file)
    mode = "quiet" if args.quiet else ("bars" if sys.stderr.isatty() else "lines")
    started = time.time()
    try:
        the_plan, outcome = workflow.apply(_settings(args, saved), mode, _confirm(args), saved, args.cancel)
    except (ImportToolError, KeyboardInterrupt) as exc:
        _stopped(args, exc, started)
        raise
    if outcome is None:
        print("Not applied.")
        return ExitCode.OK
    runlog.write(outcome)
    return _outcome(outcome, args.report, args.quiet)


def _stopped(args: argparse.Namespace, error: BaseException, started: float) -> None:
    """A run that ended before applying anything still leaves its outcome in the log and the report."""
    outcome = runlog.stopped_outcome(error)
    message = scrub(str(error)) or outcome
    SUMMARY.error(f"run {outcome}: {' '.join(message.split())}")  # one line: log readers grep by line
    if args.report:
        project = project_name(args.project, "(unknown)")
        write_private(args.report, render.as_json(report.stopped(project, outcome, message, started, time.time())))


def _outcome(outcome: dict, report_file: Path | None, quiet: bool = False) -> int:
    """Say how a run (or merged runs) went, write the report, and choose the exit code. Quiet and nothing done
    and nothing to look at: say nothing (cron mails only when a person should look)."""
    if report_file:
        write_private(report_file, render.as_json(outcome))
    for step in outcome["steps"]:
        if step["error"] == workflow.STALE:
            _stale(step["target"], step["action"])
    if not quiet or outcome["outcome"] != "ok" or outcome["summary"]["steps"]:
        print(render.report_line(outcome))
    SUMMARY.info(render.report_line(outcome))
    match outcome["outcome"]:
        case "fatal":
            print(f"error: {outcome.get('fatal')}", file=sys.stderr)
            return ExitCode.FATAL
        case "interrupted":
            print(f"interrupted: {plural(outcome['summary']['not_attempted'], 'step')} not started; run the same "
                  "command to resume", file=sys.stderr)
            return ExitCode.INTERRUPTED
        case "partial":
            print(_attention(outcome), file=sys.stderr)
            return ExitCode.ATTENTION
    return ExitCode.OK


def _attention(outcome: dict) -> str:
    """Why a person should look at a partial run, and what to do: a stale step needs a new plan, not a re-run."""
    stale = sum(s["error"] == workflow.STALE for s in outcome["steps"])
    unfinished = outcome["summary"]["steps"] - outcome["summary"]["applied"] - stale
    reasons = []
    if unfinished:
        reasons.append(f"{plural(unfinished, 'step')} did not apply (see above); run the same command to resume")
    if stale:
        reasons.append(f"{plural(stale, 'step')} {workflow.STALE}")
    if outcome.get("conflicts"):
        reasons.append(f"{plural(len(outcome['conflicts']), 'conflict')} left alone: see `plan`, or use "
                       "--on-conflict replace")
    if outcome.get("set_aside"):
        reasons.append(f"{plural(len(outcome['set_aside']), 'session')} set aside as invalid (see the log); fix "
                       "them and the next run imports them")
    return "attention: " + "; ".join(reasons)


def _merge(args: argparse.Namespace) -> int:
    return _outcome(report.merge([report.load(path) for path in args.reports]), args.out)


def _view(args: argparse.Namespace) -> int:
    """Exit 0 once the page or table is written, whatever the runs' outcome: judging runs is `merge`'s job."""
    from . import report_views  # Jinja2 loads only for this command: cron runs of apply start faster

    reports = [report_views.check(documents.read(path, "report"), str(path)) for path in args.reports]
    views = {"html": report_views.html, "csv": report_views.csv_text}
    write_private(args.out, views[args.report_command](reports))
    print(f"wrote {args.out}")
    return 0


def _add_input_options(command: argparse.ArgumentParser, optional_paths: bool = False) -> None:
    command.add_argument("paths", nargs="*" if optional_paths else "+", type=Path, metavar="PATH",
                         help="an import root (subject folders below it), a subject folder or a session folder")
    command.add_argument("--include", action="append", default=[], metavar="GLOB",
                         help="only sessions whose subject/session or subject folder path (relative to the import "
                              "root) matches, e.g. 'Smith*' (repeatable)")
    command.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                         help="leave out sessions whose subject/session or subject folder path matches, e.g. "
                              "'*/2019-*' (repeatable)")
    command.add_argument("--subject", action="append", default=[], metavar="NAME_OR_MRN",
                         help="only this subject, by folder name or MRN (repeatable)")
    command.add_argument("--layout", choices=LAYOUTS, default="auto",
                         help="what PATH is; auto: a folder holding moveshelf_config_import.json is a session, "
                              "one whose subfolders hold it is a subject, else a root (default: auto)")
    command.add_argument("--data-type", action="append", default=[], metavar="EXT=TYPE",
                         help="data type for an extension, e.g. gcd=data (repeatable; default: mp4/avi/mov/mkv/mpg "
                              "video, pdf doc, png/jpg/jpeg/webp img, else raw)")
    dates = command.add_argument_group("session dates", "the config's session_date wins; else a date in the "
                                       "folder name, year first (2023-07-18, 2023_7_18, 20230718) unless told")
    dates.add_argument("--date-format", metavar="STRPTIME",
                       help="read folder-name dates in this form, e.g. %%d-%%m-%%Y for 18-07-2023")
    dates.add_argument("--require-date", action="store_true",
                       help="a session without a date is an error, not a warning")
    command.add_argument("--on-invalid", choices=["fail", "skip"], default="fail",
                         help="fail: any invalid session stops the run, nothing is written; skip: invalid sessions "
                              "(and subjects whose folders disagree about identity) are set aside and listed, the "
                              "rest is imported, and the run exits 3 (default: fail)")


def _add_server_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--project", metavar="ORG/NAME", help="the Moveshelf project (or MOVESHELF_PROJECT)")
    command.add_argument("--config", type=Path, metavar="FILE",
                         help="mvshlf-config.json (default: MOVESHELF_CONFIG, else ./mvshlf-config.json); "
                              "MOVESHELF_API_KEY overrides its key file")
    command.add_argument("--on-conflict", choices=[p.value for p in ConflictPolicy],
                         help="a server file with the same name and other content: skip (report it), replace "
                              "(upload, then delete the old record) or fail (write nothing) (default: skip)")
    command.add_argument("-j", "--jobs", type=int, default=8, metavar="N",
                         help="requests and uploads at once (default: %(default)s)")
    command.add_argument("--attempts", type=int, default=6, metavar="N",
                         help="tries per request before a step counts as failed (default: %(default)s)")
    command.add_argument("--state-dir", type=Path, metavar="DIR",
                         help="where the journal and lock live (default: the user state folder)")
    command.add_argument("--verify", action="store_true",
                         help="re-read every local file instead of trusting the size+mtime checksum cache, and ask "
                              "storage for the checksum of every compared server file")
    command.add_argument("--reports", choices=["auto", "none"],
                         help="auto: ask Moveshelf for its automatic interactive reports of each session this run "
                              "creates or changes, once its data is applied (default: none)")
    command.add_argument("--reports-norm", metavar="NAME",
                         help="with --reports auto: make them with the project's norm of this name")
    command.add_argument("--metadata-policy", choices=[p.value for p in MetadataPolicy],
                         help="fill-empty: only fill empty fields (Moveshelf's rule); update-mine: also replace a "
                              "value the server still holds as this tool last wrote it, keeping values a person "
                              "changed (default: fill-empty)")
    snapshots = command.add_argument_group("snapshots", "a subject unchanged in the folders and on the server "
                                           "(its updated stamp) is planned from its last full read")
    snapshots.add_argument("--full", action="store_true", help="read every subject and folder again; trust no snapshot")
    snapshots.add_argument("--recheck-after", metavar="DURATION", default="7d",
                           help="read a subject in full once its snapshot is this old, e.g. 12h (default: %(default)s)")
    command.add_argument("--min-age", metavar="DURATION",
                         help="defer a session folder in which any file changed more recently than this (e.g. 90s, "
                              "30m, 2h): it is still being copied; a later run imports it")
    command.add_argument("--shard", metavar="K/N",
                         help="import only the subjects of shard K of N (1 <= K <= N), by a stable hash of MRN or "
                              "name; each shard keeps its own journal and lock")


def _version() -> str:
    try:
        return importlib.metadata.version("moveshelf-import")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moveshelf-import", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check folders and config files; no network",
                                   description="Check the folders and every moveshelf_config_import.json without "
                                               "touching the network. Exit 2 lists every problem.")
    _add_input_options(validate)
    validate.set_defaults(run=_validate)

    plan = commands.add_parser("plan", help="show what apply would change on the server",
                               description="Compare the folders with the server and show the changes, "
                                           "writing nothing.")
    _add_input_options(plan)
    _add_server_options(plan)
    plan.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    plan.add_argument("--out", type=Path, metavar="PLAN.json", help="also save the plan as JSON")
    plan.add_argument("--detailed-exitcode", action="store_true", help="exit 5 when there are changes, 0 when none")
    plan.set_defaults(run=_plan)

    apply = commands.add_parser("apply", help="make the server hold what the folders hold",
                                description="Plan, then apply: create subjects, sessions and trials, upload "
                                            "files, fill metadata. Safe to re-run; an interrupted run resumes.")
    _add_input_options(apply, optional_paths=True)
    _add_server_options(apply)
    apply.add_argument("--plan", type=Path, metavar="PLAN.json",
                       help="apply exactly this saved plan, with the options it was made with; steps the folders "
                            "or the server have made stale are reported and not applied (PATH and --project default "
                            "to the plan's)")
    apply.add_argument("--dry-run", action="store_true",
                       help="show what apply would do (with --plan: which saved steps still hold) and write nothing")
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation on a terminal")
    apply.add_argument("--report", type=Path, metavar="R.json", help="write a JSON report of every step")
    apply.add_argument("-q", "--quiet", action="store_true", help="print only the summary line and errors (for cron)")
    apply.add_argument("--log-file", type=Path, metavar="FILE", help="also append progress and errors here")
    apply.set_defaults(run=_apply)

    reports = commands.add_parser("report", help="work with apply reports")
    report_commands = reports.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    merge = report_commands.add_parser("merge", help="combine the reports of several shards into one",
                                       description="Combine shards' apply reports: steps side by side, counts "
                                                   "summed. Exits 3 when any step failed or was skipped.")
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
    merge.add_argument("--out", type=Path, metavar="MERGED.json", help="write the merged report here")
    merge.set_defaults(run=_merge)
    for name, what, out in (("html", "a self-contained page: totals, problems, tables, upload chart", "PAGE.html"),
                            ("csv", "a table of every step, one row each", "STEPS.csv")):
        view = report_commands.add_parser(name, help=f"render reports as {what}",
                                          description=f"Render one or more apply reports (e.g. shards') as {what}. "
                                                      "The file holds patient names and is created private (0600).")
        view.add_argument("reports", nargs="+", type=Path, metavar="REPORT.json")
        view.add_argument("--out", type=Path, metavar=out, required=True, help="write it here")
        view.set_defaults(run=_view)

    emulator = commands.add_parser(
        "emulator", help="run a Moveshelf-compatible server on this machine",
        description="Run a Moveshelf-compatible GraphQL server with signed upload and download URLs, "
                    "for rehearsing a migration with no account. Stop it with Ctrl-C.")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    emulator.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)")
    emulator.add_argument("--data-dir", type=Path, help="where rows and blobs persist (default: a temporary folder)")
    emulator.add_argument("--project", action="append", default=[], metavar="ORG/NAME",
                          help="create this project (repeatable; default: demo/gait-lab on an empty store)")
    emulator.add_argument("--api-key", help="the bearer key to accept (default: a random key kept in --data-dir)")
    emulator.add_argument("--write-config", type=Path, metavar="DIR",
                          help="write mvshlf-config.json and mvshlf-api-key.json pointing at this server")
    emulator.add_argument("--latency-ms", type=int, default=0, help="delay added to every request, like a network")
    emulator.add_argument("--url-ttl", type=int, default=3600, metavar="SECONDS",
                          help="lifetime of signed upload/download URLs (default: %(default)s)")
    variants = emulator.add_argument_group(
        "variants", "behaviour the public sources leave open; see docs/emulator-fidelity.md")
    variants.add_argument("--clip-path-slash", action="store_true",
                          help="store and return clip projectPaths with a trailing '/'")
    variants.add_argument("--complete-after", type=float, default=0.0, metavar="SECONDS",
                          help="files read 'Processing' for this long after their PUT (default: 0)")
    variants.add_argument("--strict-checksum", action="store_true",
                          help="refuse a PUT whose bytes do not match the create mutation's crc32c even "
                               "without an x-goog-hash header")
    emulator.set_defaults(run=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one place where exceptions become exit codes."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.cancel = Cancellation()  # this run's: Ctrl-C and SIGTERM (as KeyboardInterrupt) set it
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except ImportToolError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {scrub(str(exc))}\n  hint: re-run with --debug and report it",
              file=sys.stderr)
        return ExitCode.FATAL


def run() -> None:
    code = main()
    # What the run made (a plan and trees of a lab's files) is left to the operating system: on the way out the
    # interpreter would walk every object once more for reference cycles, a tenth of a second at 1000 subjects.
    gc.freeze()
    sys.exit(code)

