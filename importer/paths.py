"""Paths as people read them, and the names the server can take.

On POSIX a file name is bytes; Python hands over the ones that are not UTF-8 as lone
surrogates, which cannot be printed, stored in the journal or sent as JSON. Such names
are input errors, and every message shows them with the odd bytes escaped (`P\\xe9ter`),
so the user can find the file.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath


def shown(path: str | PurePath) -> str:
    """The path for a message: bytes that are not UTF-8 escaped as `\\xNN`."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def is_utf8(name: str) -> bool:
    """Whether the name came from valid UTF-8 bytes (no surrogates left by the file system decoding)."""
    if name.isascii():  # most names, told apart at once
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_utf8_message(what: str = "name") -> str:
    return (f"the {what} is not valid UTF-8 and cannot be sent to Moveshelf; "
            "rename it (e.g. with `convmv -f latin1 -t utf8 --notest`) and run again")


def inside(path: Path, root: Path) -> bool:
    """Whether a resolved path is the root or below it."""
    return path == root or path.is_relative_to(root)
