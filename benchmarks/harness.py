"""Shared by the benchmarks: an emulator in its own process, as a lab would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

# The emulator stands in for a remote service: its rows and blobs go to memory where the machine has a tmpfs, so that
# its filesystem work (an inode per stored file) does not take the cores the importer is measured on.
MEMORY = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@contextmanager
def emulator(latency_ms: int = 0) -> Iterator[tuple[str, Path]]:
    """(base URL, folder holding mvshlf-config.json) of a fresh emulator process."""
    with tempfile.TemporaryDirectory(prefix="bench-emulator-", dir=MEMORY) as folder:
        process = subprocess.Popen(
            [sys.executable, "-m", "importer", "emulator", "--port", "0", "--latency-ms", str(latency_ms),
             "--data-dir", f"{folder}/data", "--write-config", folder],
            stdout=subprocess.PIPE, text=True)
        try:
            first = process.stdout.readline()
            url = first.rsplit(" ", 1)[-1].strip().removesuffix("/graphql")
            while not (Path(folder) / "mvshlf-config.json").exists():
                process.stdout.readline()
            yield url, Path(folder)
        finally:
            process.terminate()
            process.wait(timeout=10)


def stats(url: str) -> dict:
    return requests.get(f"{url}/_emulator/stats", timeout=10).json()


def api_key(config_dir: Path) -> str:
    return json.loads((config_dir / "mvshlf-api-key.json").read_text())["secretKey"]
