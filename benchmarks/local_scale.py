"""The local side at migration scale: `validate` (the scanner) of 5,000 subjects / 120,000 files, and the pure
planner on trees of that size, each run in its own process from this tree and, side by side, from another
source tree (`--baseline DIR`, e.g. an older commit extracted with `git archive`).
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from pathlib import Path

from lab import make_lab
from scaling import REPEATS, ROOT, median_run, run

HERE = Path(__file__).parent


def validate(lab: Path, source: Path) -> dict:
    """`validate` run twice with a fresh user cache folder: first (cold) and again (configs seen before)."""
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        command = [sys.executable, "-m", "importer", "validate", str(lab)]
        cold = run(command, source, {"XDG_CACHE_HOME": cache})
        return {**cold, "again": run(command, source, {"XDG_CACHE_HOME": cache})}


def planner(subjects: int, source: Path) -> dict:
    """The planner benchmark's own figure (the diff alone), from a process importing `source`'s importer."""
    import subprocess

    out = subprocess.run([sys.executable, str(HERE / "planner.py"), str(subjects)], cwd=source, check=True,
                         env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def measure(subjects: int = 5000, baseline: Path | None = None) -> dict:
    """Validate and plan at `subjects` (2 sessions × 6 trials × 2 files each), ours and the baseline's; validate
    REPEATS times each, in turn, keeping the run of median time of each (cold and again alike)."""
    with tempfile.TemporaryDirectory(prefix="bench-local-") as folder:
        lab = make_lab(Path(folder) / "lab", subjects, sessions=2, trials=6, c3d_bytes=64, gcd_bytes=32)
        sources = {"validate": ROOT, **({"baseline_validate": baseline} if baseline else {})}
        runs: dict[str, list[dict]] = {name: [] for name in sources}
        for _ in range(REPEATS):
            for name, source in sources.items():
                runs[name].append(validate(lab, source))
        result = {"subjects": subjects, "files": subjects * 24, "planner": planner(subjects, ROOT),
                  **{name: {**median_run(found), "again": median_run([r["again"] for r in found])}
                     for name, found in runs.items()}}
        if baseline:
            result["baseline_planner"] = planner(subjects, baseline)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("subjects", type=int, nargs="?", default=5000)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    print(measure(args.subjects, args.baseline))
