"""The command line: parse arguments, call the library, choose output, map outcomes to exit codes."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

from .errors import ImportToolError, InputError

EXIT_INTERRUPTED = 130

_DESCRIPTION = """\
Import gait-lab session folders into Moveshelf, declaratively: `plan` shows what would
change on the server, `apply` makes the server match. Re-running is safe: nothing is
created twice, unchanged files are not uploaded again, an interrupted run resumes.

exit codes: 0 success or nothing to do, 1 fatal error, 2 invalid input or usage
(nothing written), 3 some steps failed (re-run to resume), 4 another run holds the
lock, 5 changes pending (plan --detailed-exitcode), 130 interrupted."""


def _emulator(args: argparse.Namespace) -> int:
    from .emulator.server import EmulatorServer

    server = EmulatorServer(args.host, args.port, args.data_dir, tuple(args.project), args.api_key,
                            args.latency_ms, args.url_ttl)
    print(f"Moveshelf emulator listening on {server.graphql_url}", flush=True)
    print(f"  data: {server.data_dir}   projects: {', '.join(p['name'] for p in server.store.projects())}",
          flush=True)
    if args.write_config:
        print(f"  wrote {server.write_config(args.write_config)} and its key file", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moveshelf-import", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    emulator.set_defaults(run=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one place where exceptions become exit codes."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ImportToolError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc}\n  hint: re-run with --debug and report it",
              file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())


__all__ = ["InputError", "main", "run"]
