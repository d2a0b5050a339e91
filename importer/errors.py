"""Every failure the tool raises, and the one table of exit codes.

Failures are classified once, here, and everything else reads the classification: the
client's retry policy retries `TransientError`, the executor reconciles creates after one
and counts a `RemoteError` as a failed step, and `cli.main` turns an `ImportToolError`
into its exit code. No other module defines an exit-code number.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a run's exit status means (DESIGN.md, "Command line contract")."""

    OK = 0  # the server holds what the folders hold (deferred sessions and unmapped files apart)
    FATAL = 1  # unreachable, key refused, request rejected
    INPUT = 2  # invalid input or usage: nothing was written
    ATTENTION = 3  # a person should look: failed steps (a re-run resumes), conflicts, sessions set aside
    LOCKED = 4  # another run holds the lock
    CHANGES_PENDING = 5  # plan --detailed-exitcode: changes or conflicts pending
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


class ImportToolError(Exception):
    """A failure with a message for the user and, where one helps, a hint at the fix."""

    exit_code = ExitCode.FATAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}\n  hint: {self.hint}" if self.hint else message


class InputError(ImportToolError):
    """Invalid input or usage: nothing was written."""

    exit_code = ExitCode.INPUT


class FatalError(ImportToolError):
    """The run cannot go on: rejected key, missing project, a policy that forbids going on."""

    exit_code = ExitCode.FATAL


class LockHeld(ImportToolError):
    """Another run holds the lock for this project and import root."""

    exit_code = ExitCode.LOCKED


class Interrupted(ImportToolError):
    """The run is stopping (Ctrl-C, SIGTERM): no new request is started; a re-run resumes."""

    exit_code = ExitCode.INTERRUPTED


class RemoteError(ImportToolError):
    """One request failed. In the executor that fails its step; anywhere else it ends the run."""

    exit_code = ExitCode.FATAL


class TransientError(RemoteError):
    """A failure that may pass (connection trouble, timeout, 408/429/5xx, a cut-off answer).

    After a write was sent its outcome is unknown: a create is reconciled, never repeated blindly.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(TransientError):
    """A transient failure that outlasted its retries."""

    def __init__(self, url: str, attempts: int, last: TransientError) -> None:
        super().__init__(f"cannot reach {url} after {attempts} attempt{'s' * (attempts != 1)}: {last}",
                         last.retry_after)
        self.hint = ("check apiUrl in the config file and the network; a re-run resumes. For a rehearsal start "
                     "`moveshelf-import emulator --write-config .`")


class Rejected(RemoteError):
    """The service refused the request; repeating it will not help."""

