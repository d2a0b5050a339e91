"""Keeping the API key out of everything the tool prints, logs or saves.

Servers and proxies sometimes echo the request (headers included) in an error body, and
exceptions carry those bodies; so every message that leaves the process goes through
`scrub`, which replaces the key and any `Authorization` value with `***`. The key is
registered once, when the connection is loaded, so callers far from it can scrub too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"
_AUTHORIZATION = re.compile(
    r"""(?P<name>authorization["']?\s*[:=]\s*["']?)(?P<scheme>(?:bearer|basic|token)\s+)?(?P<value>[^\s"',;}\]]+)""",
    re.IGNORECASE)
_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str) -> None:
    """Register a secret that every later `scrub` removes (the key of the connection in use)."""
    if secret:
        with _lock:
            _known.add(secret)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """The text with each secret (given or remembered) and every Authorization header value replaced by ***."""
    with _lock:
        every = {*_known, *(s for s in secrets if s)}
    for secret in sorted(every, key=len, reverse=True):  # a longer secret may contain a shorter one
        text = text.replace(secret, MASK)
    return _AUTHORIZATION.sub(lambda m: f"{m['name']}{m['scheme'] or ''}{MASK}", text)
