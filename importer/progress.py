"""What a run says while it works: bars on a terminal, periodic lines in a log, nothing when quiet.

Failures (status FAILED, nothing else) are always said, at once, whatever the mode; steps a
Ctrl-C kept from starting are neither failures nor progress. The file being uploaded is named,
since one large file can hold the step count still for minutes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from .executor import StepResult
from .render import plural, size
from .scheduler import Status

log = logging.getLogger("moveshelf_import")
NAME = 40  # characters of a file name shown


class TqdmHandler(logging.Handler):
    """Log lines on stderr that do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


@dataclass
class _Transfer:
    """One file's upload as the progress sees it: how far it has got."""

    name: str
    size: int
    at: int = 0


def _short(name: str) -> str:
    return name if len(name) <= NAME else name[:NAME - 1] + "…"


class Progress:
    """Counts steps and bytes; mode is "bars", "lines" or "quiet".

    `sent` is every byte that went out, retries and cut-short uploads included: what the
    run's summary reports. The bar shows the bytes stored so far, so it steps back when an
    upload must start again.
    """

    def __init__(self, mode: str, steps: int, total_bytes: int, every_seconds: float = 10.0) -> None:
        self.mode = mode
        self.sent = 0
        self._lock = threading.Lock()
        self._steps = self._failed = self._bytes = 0
        self._total_steps, self._total_bytes = steps, total_bytes
        self._uploading: dict[int, _Transfer] = {}  # oldest first
        self._started = self._said = time.monotonic()
        self._every = every_seconds
        self._bars: list[tqdm] = []
        if mode == "bars":
            self._bars = [tqdm(total=steps, desc="steps", unit="step", file=sys.stderr, position=0),
                          tqdm(total=total_bytes, desc="upload", unit="B", unit_scale=True, unit_divisor=1000,
                               file=sys.stderr, position=1)]

    def upload(self, name: str, file_size: int) -> Callable[[int], None]:
        """The byte counter for one file's upload (see `Client.upload`), so the progress can name it."""
        transfer = _Transfer(name, file_size)
        return lambda count: self._moved(transfer, count)

    def _moved(self, transfer: _Transfer, count: int) -> None:
        with self._lock:
            transfer.at += count
            self._bytes += count
            self.sent += max(count, 0)
            if 0 < transfer.at < transfer.size:
                self._uploading.setdefault(id(transfer), transfer)
            else:
                self._uploading.pop(id(transfer), None)
            if self._bars:
                self._bars[1].update(count)
                self._bars[1].set_postfix_str(self._current(), refresh=False)
        self._maybe_say()

    def _current(self) -> str:
        """The oldest file under way, and how many more are."""
        files = list(self._uploading.values())
        if not files:
            return ""
        return _short(files[0].name) + (f" (+{len(files) - 1} more)" if len(files) > 1 else "")

    def on_result(self, result: StepResult) -> None:
        if result.status is Status.NOT_ATTEMPTED:
            return
        with self._lock:
            self._steps += 1
            self._failed += result.status is Status.FAILED
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
            failed = f" ({self._failed} failed)" if self._failed else ""
            current = f"; uploading {self._current()}" if self._uploading else ""
            line = (f"progress: {self._steps}/{plural(self._total_steps, 'step')}{failed}, {size(self._bytes)}/"
                    f"{size(self._total_bytes)} uploaded, {size(rate)}/s{current}")
        log.info(line)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
