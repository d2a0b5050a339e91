"""Scaling: first import, no-op re-run and a nightly run (one new session) at N subjects.

A lab of N subjects × 2 sessions × 4 trials × 2 small files, an emulator with --latency-ms 20 in its own process,
`moveshelf-import apply --jobs 8` in its own process (wall time, CPU and peak RSS from the OS), the requests it made
and the emulator's CPU from the emulator's counters (the two share the machine). Beside each run: the critical-path
limit, the larger of the dependent round trips × latency and the requests ÷ jobs × latency, and the ratio of the
run's time to it. "no-op again" is run 5 times: its row is the run of median wall time.

`--baseline DIR` runs the importer of another source tree (e.g. an older commit, `git archive` into DIR) instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import emulator, stats
from lab import make_lab

PROJECT = "demo/gait-lab"
ROOT = Path(__file__).resolve().parent.parent
LATENCY_MS = 20
JOBS = 8
# Dependent round trips of each kind of run: the reads (projects, subject list, and the trees when any are read)
# then, for new data, subject → session → trials → file records → PUT → trial options.
CHAIN = {"first import": 8, "no-op": 2, "no-op again": 2, "nightly": 9}
REPEATS = 5  # runs of "no-op again" (it changes nothing, so it can be run again): the median is kept


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time: one figure that a single slow or fast moment of a noisy machine does not set."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def run(command: list[str], source: Path, env: dict[str, str] | None = None) -> dict:
    """Run one importer command from `source`; wall seconds, CPU seconds and peak RSS of the process, as
    /usr/bin/time reports them (a child forked straight from this large process would inherit its peak RSS)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(source)}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as measured:
        process = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", measured.name, *command], cwd=source,
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if process.returncode != 0:
            raise SystemExit(f"benchmark command failed ({process.returncode}): {' '.join(command)}\n"
                             f"{process.stderr[-2000:]}")
        wall, user, system, rss_kb = measured.read().split()[-4:]
    return {"seconds": float(wall), "cpu": float(user) + float(system), "rss_mb": int(rss_kb) / 1024}


def add_session(lab: Path) -> Path:
    """A new session folder for the first subject (as a lab's nightly copy brings)."""
    subject = sorted(p for p in lab.iterdir() if p.is_dir())[0]
    first = sorted(p for p in subject.iterdir() if p.is_dir())[0]
    new = subject / "2026-01-31"
    shutil.copytree(first, new)
    for path in new.iterdir():
        if path.suffix.lower() in (".c3d", ".gcd"):
            path.write_bytes(os.urandom(path.stat().st_size))
    return new


def limit(kind: str, requests: int, jobs: int = JOBS) -> float:
    return max(CHAIN[kind], requests / jobs) * LATENCY_MS / 1000


def measure(subjects: int, source: Path = ROOT, jobs: int = JOBS, kinds: tuple[str, ...] = tuple(CHAIN)) -> list[dict]:
    """The runs of `kinds` (in order: first import, no-op, no-op again, nightly) on a fresh lab and emulator."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder, emulator(LATENCY_MS) as (url, config_dir):
        lab = make_lab(Path(folder) / "lab", subjects, sessions=2, trials=4, c3d_bytes=2_000, gcd_bytes=400)
        command = [sys.executable, "-m", "importer", "apply", str(lab), "--project", PROJECT, "--config",
                   str(config_dir / "mvshlf-config.json"), "--state-dir", f"{folder}/state", "--yes", "--quiet",
                   "--jobs", str(jobs)]
        for kind in CHAIN:
            if kind == "nightly":
                add_session(lab)
            runs = REPEATS if kind == "no-op again" else 1
            before = stats(url)
            timing = median_run([run(command, source) for _ in range(runs)])
            after = stats(url)
            graphql = (after["graphql_requests"] - before["graphql_requests"]) // runs
            uploads = (after["uploads"] - before["uploads"]) // runs
            requests = graphql + uploads + (after["downloads"] - before["downloads"]) // runs
            if kind in kinds:
                rows.append({"subjects": subjects, "kind": kind, **timing, "graphql": graphql, "uploads": uploads,
                             "emulator_cpu": (after["cpu_seconds"] - before["cpu_seconds"]) / runs,
                             "requests": requests, "limit": limit(kind, requests, jobs),
                             "cpu_per_request_ms": 1000 * timing["cpu"] / max(1, requests)})
            if kind == kinds[-1]:
                break
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| subjects | run | wall | GraphQL | uploads | importer CPU | CPU/request | emulator CPU | peak RSS "
             "| limit | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['subjects']} | {r['kind']} | {r['seconds']:.2f} s | {r['graphql']} | {r['uploads']} | "
                     f"{r['cpu']:.2f} s | {r['cpu_per_request_ms']:.2f} ms | {r['emulator_cpu']:.1f} s | "
                     f"{r['rss_mb']:.0f} MB | "
                     f"{r['limit']:.2f} s | {r['seconds'] / r['limit']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("subjects", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--baseline", type=Path, help="run the importer of this source tree instead")
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [r for n in args.subjects for r in measure(n, args.baseline or ROOT, args.jobs)]
    print(json.dumps(rows, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
