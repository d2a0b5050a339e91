"""`make bench`: every benchmark, one table of ratios against the baseline and the budget in DESIGN.md.

Figures are measurements, never pass/fail; a missed target is printed as such.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import emulator_rps
import import_vs_baseline
import large_file
import planner


def row(name: str, ours: str, baseline: str, figure: str, target: str, met: bool) -> str:
    return f"| {name} | {ours} | {baseline} | {figure} | {target} | {'yes' if met else 'NO'} |"


def main() -> None:
    rps = emulator_rps.measure()
    side = import_vs_baseline.measure()
    large = large_file.measure()
    plan = planner.measure()
    sessions = side["sessions"]
    (first, again), (base_first, base_again) = side["ours"], side["baseline"]
    speed_first = base_first["seconds"] / first["seconds"]
    speed_again = base_again["seconds"] / again["seconds"]
    per_session, base_per_session = first["graphql_requests"] / sessions, base_first["graphql_requests"] / sessions
    lines = [
        f"Lab: {sessions} sessions, {side['files']} files; emulator with --latency-ms 20; "
        f"moveshelf-import apply --jobs 8 vs the import guide's workflow with moveshelf-api.",
        "",
        "| measure | moveshelf-import | baseline | figure | target | met |",
        "|---|---|---|---|---|---|",
        row("first import", f"{first['seconds']:.1f} s", f"{base_first['seconds']:.1f} s",
            f"{speed_first:.1f}x faster", ">= 8x", speed_first >= 8),
        row("re-run, nothing changed", f"{again['seconds']:.2f} s, {again['downloads']} downloads",
            f"{base_again['seconds']:.1f} s, {base_again['downloads']} downloads", f"{speed_again:.0f}x faster",
            ">= 50x, 0 downloads", speed_again >= 50 and again["downloads"] == 0),
        row("GraphQL requests per session (first import)", f"{per_session:.1f}", f"{base_per_session:.1f}",
            f"{per_session / base_per_session:.2f} of baseline", "<= 0.25", per_session <= base_per_session / 4),
        row("requests of the re-run", f"{again['graphql_requests']} for {sessions // 2} subjects",
            f"{base_again['graphql_requests']}", f"{again['graphql_requests'] / (sessions // 2):.2f} per subject",
            "<= 2 per subject", again["graphql_requests"] <= sessions),
        row("peak RSS uploading a 2 GB file", f"{large['peak_rss_mb']} MB", "-", f"{large['peak_rss_mb']} MB",
            "<= 150 MB", large["peak_rss_mb"] <= 150),
        row("importer CPU per GB uploaded", f"{large['cpu_seconds_per_gb']} s/GB", "-",
            f"{large['cpu_seconds']} s for 2 GB", "<= 1.5 s/GB", large["cpu_seconds_per_gb"] <= 1.5),
        "",
        f"Emulator: {rps['per_second']} sequential GraphQL requests/s on loopback (no added latency).",
        f"Planner: {plan['subjects']} subjects, {plan['files']} files compared in {plan['seconds']} s.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
