"""Failures meant for users, each with the exit code the command line gives it.

Only `cli.main` turns these into exit codes; everything else raises them.
"""

from __future__ import annotations


class ImportToolError(Exception):
    """A failure with a message for the user and, where one helps, a hint at the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}\n  hint: {self.hint}" if self.hint else message


class InputError(ImportToolError):
    """Invalid input or usage: nothing was written."""

    exit_code = 2


class FatalError(ImportToolError):
    """The run cannot go on: unreachable server, rejected key, refused request."""

    exit_code = 1


class LockHeld(ImportToolError):
    """Another run holds the lock for this project and import root."""

    exit_code = 4
