"""Peak memory and CPU of the importer while it checksums and uploads one large (sparse) file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import emulator, stats


def measure(gigabytes: float = 2.0) -> dict:
    size = int(gigabytes * 1_000_000_000)
    with tempfile.TemporaryDirectory(prefix="bench-large-") as folder:
        session = Path(folder) / "lab" / "Subject001" / "2025-01-01"
        session.mkdir(parents=True)
        (session / "moveshelf_config_import.json").write_text(json.dumps(
            {"subjectMetadata": {"ehr-id": "LARGE1"}, "conditionDefinition": {"Walk": ["Walk01"]}}))
        with (session / "Walk01.c3d").open("wb") as sparse:
            sparse.truncate(size)
        with emulator() as (url, config_dir):
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "importer", "apply", str(session.parent.parent), "--project", "demo/gait-lab",
                 "--config", str(config_dir / "mvshlf-config.json"), "--state-dir", f"{folder}/state", "--yes",
                 "--quiet"], stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            uploaded = stats(url)["bytes_in"]
    if status != 0 or uploaded != size:
        raise SystemExit(f"large-file import failed (status {status}, {uploaded} of {size} bytes)")
    cpu = usage.ru_utime + usage.ru_stime
    return {"bytes": size, "seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(cpu, 2), "cpu_seconds_per_gb": round(cpu / (size / 1e9), 2)}


if __name__ == "__main__":
    print(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0))
