"""`make demo`: the main job end to end on the embedded default — the emulator and sample_sessions/.

Starts a fresh emulator, shows the plan, applies it with progress, plans again to show
that nothing is left to do, and says how to browse the result.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
WORK = HERE / ".demo"
CLI = [sys.executable, "-m", "importer"]
COMMON = ["--project", "demo/gait-lab", "--config", ".demo/mvshlf-config.json", "--state-dir", ".demo/state"]


def run(*args: str, check: bool = True) -> int:
    print(f"\n$ moveshelf-import {shlex.join(args)}", flush=True)
    code = subprocess.run([*CLI, *args], cwd=HERE).returncode
    if check and code not in (0, 5):
        sys.exit(f"demo: the command above exited {code}")
    return code


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    emulator = subprocess.Popen([*CLI, "emulator", "--port", "0", "--data-dir", str(WORK / "emulator"),
                                 "--write-config", str(WORK)], cwd=HERE, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            print(emulator.stdout.readline().rstrip(), flush=True)
        run("validate", "sample_sessions")
        run("plan", "sample_sessions", *COMMON)
        run("apply", "sample_sessions", *COMMON, "--yes", "--report", ".demo/report.json")
        code = run("plan", "sample_sessions", *COMMON, "--detailed-exitcode")
        print(f"(exit code {code}: {'no changes left' if code == 0 else 'changes pending'})")
        print("Browse the result: `.venv/bin/moveshelf-import emulator --data-dir .demo/emulator "
              "--write-config .demo`, then use the official moveshelf-api client with .demo/mvshlf-config.json, "
              "or `moveshelf-import plan` against it. The run's report is in .demo/report.json.")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
