"""What a run says while it works: bars on a terminal, periodic lines in a log, nothing when quiet.

Failures are always said, at once, whatever the mode.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from tqdm import tqdm

from .executor import StepResult
from .render import size
from .scheduler import Status

log = logging.getLogger("moveshelf_import")


class TqdmHandler(logging.Handler):
    """Log lines on stderr that do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


class Progress:
    """Counts steps and bytes; mode is "bars", "lines" or "quiet"."""

    def __init__(self, mode: str, steps: int, total_bytes: int, every_seconds: float = 10.0) -> None:
        self.mode = mode
        self._lock = threading.Lock()
        self._steps = self._bytes = 0
        self._total_steps, self._total_bytes = steps, total_bytes
        self._started = self._said = time.monotonic()
        self._every = every_seconds
        self._bars: list[tqdm] = []
        if mode == "bars":
            self._bars = [tqdm(total=steps, desc="steps", unit="step", file=sys.stderr, position=0),
                          tqdm(total=total_bytes, desc="upload", unit="B", unit_scale=True, unit_divisor=1000,
                               file=sys.stderr, position=1)]

    def on_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += count
            if self._bars:
                self._bars[1].update(count)
        self._maybe_say()

    def on_result(self, result: StepResult) -> None:
        with self._lock:
            self._steps += 1
            if self._bars:
                self._bars[0].update(1)
        if result.status is Status.FAILED:
            log.error(f"failed: {result.node.target} ({result.node.action.value}): {result.error}")
        self._maybe_say()

    def _maybe_say(self) -> None:
        if self.mode != "lines":
            return
        now = time.monotonic()
        with self._lock:
            if now - self._said < self._every and self._steps < self._total_steps:
                return
            self._said = now
            rate = self._bytes / max(now - self._started, 1e-6)
            line = (f"progress: {self._steps}/{self._total_steps} steps, {size(self._bytes)}/"
                    f"{size(self._total_bytes)} uploaded, {size(rate)}/s")
        log.info(line)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
