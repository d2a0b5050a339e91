"""The soak of tests/test_soak.py for several seeds, as one table.

For each seed: apply is killed with SIGKILL at seeded-random moments under injected faults,
then run once with no faults; the table shows the kills that landed, the records on the
server beyond one per local object after that clean apply (by kind), the writes a further
apply makes, and the wall time. Figures are measurements, not pass/fail.

    .venv/bin/python benchmarks/soak.py [--kills 10] [SEED ...]      (default seeds: 1 7 20240611)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_soak import run_soak  # after the repository root is on the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seeds", nargs="*", type=int, default=[1, 7, 20240611])
    parser.add_argument("--kills", type=int, default=10, help="kills that must land per seed (default: 10)")
    parser.add_argument("--verbose", action="store_true", help="also print every run and every extra record")
    args = parser.parse_args()
    print("| seed | kills (runs) | extra records after the clean apply | clean apply exit | "
          "writes of the further apply | wall time |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            result = run_soak(Path(folder), seed=seed, kills=args.kills)
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result.audit.extra_by_kind.items()) if n)
        missing = f"; {len(result.audit.missing)} missing" if result.audit.missing else ""
        wrong = f"; {len(result.audit.wrong_bytes)} with other bytes" if result.audit.wrong_bytes else ""
        print(f"| {seed} | {result.kills} ({len(result.runs)}) | {result.audit.extra}"
              f"{f' ({kinds})' if kinds else ''}{missing}{wrong} | {result.clean_code} | "
              f"{result.further_writes} | {result.seconds:.1f} s |", flush=True)
        if args.verbose:
            print(result.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
