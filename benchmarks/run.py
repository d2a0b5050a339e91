"""`make bench`: every benchmark, one table. Figures are ratios and rates, never pass/fail."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import emulator_rps


def main() -> None:
    rps = emulator_rps.measure()
    print(f"emulator: {rps['per_second']} sequential GraphQL requests/s ({rps['requests']} in {rps['seconds']} s)")


if __name__ == "__main__":
    main()
