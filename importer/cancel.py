"""The run's cancellation: Ctrl-C or SIGTERM asks every part of a run to stop starting work.

It is its own object, not a flag of the HTTP client, so that a run which ends for another
reason (a fatal error) is never mistaken for an interrupted one.
"""

from __future__ import annotations

import threading

from .errors import Interrupted


class Cancellation:
    """Set once by the command line's signal handling; read by the scheduler and the client's waits."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Interrupted once the run is cancelled: called before work starts."""
        if self._event.is_set():
            raise Interrupted("interrupted")

    def sleep(self, seconds: float) -> None:
        """Wait, unless the run is cancelled meanwhile."""
        if self._event.wait(max(0.0, seconds)):
            raise Interrupted("interrupted while waiting to retry")
