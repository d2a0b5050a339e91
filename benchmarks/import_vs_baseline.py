"""First import and no-op re-run: moveshelf-import vs the import guide's workflow, side by side.

Both run against their own fresh emulator with --latency-ms 20 on the same generated lab.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import emulator, stats
from lab import make_lab

PROJECT = "demo/gait-lab"
HERE = Path(__file__).parent


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, _ = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark command failed ({status}): {' '.join(command)}")
    return time.perf_counter() - started


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in ("graphql_requests", "uploads", "downloads")}


def run_twice(command: list[str], latency_ms: int) -> list[dict]:
    """Time a first import and an unchanged re-run, with what each asked of the server."""
    rounds = []
    with emulator(latency_ms) as (url, config_dir):
        for _ in range(2):
            before = stats(url)
            seconds = timed([part.replace("{config}", str(config_dir)) for part in command])
            rounds.append({"seconds": seconds, **delta(stats(url), before)})
    return rounds


def measure(subjects: int = 20, sessions: int = 2, trials: int = 6, jobs: int = 8, latency_ms: int = 20) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as folder:
        lab = make_lab(Path(folder) / "lab", subjects, sessions, trials)
        ours = run_twice([sys.executable, "-m", "importer", "apply", str(lab), "--project", PROJECT, "--config",
                          "{config}/mvshlf-config.json", "--state-dir", f"{folder}/state", "--yes", "--quiet",
                          "--jobs", str(jobs)], latency_ms)
        baseline = run_twice([sys.executable, str(HERE / "baseline.py"), "{config}", PROJECT, str(lab)], latency_ms)
    return {"sessions": subjects * sessions, "files": subjects * sessions * trials * 2, "ours": ours,
            "baseline": baseline}


if __name__ == "__main__":
    print(measure(*(int(a) for a in sys.argv[1:])))
