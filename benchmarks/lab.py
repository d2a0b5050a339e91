"""A generated gait lab for benchmarks: subjects × sessions × trials × (C3D-sized, GCD-sized) files."""

from __future__ import annotations

import json
import os
from pathlib import Path


def make_lab(root: Path, subjects: int = 20, sessions: int = 2, trials: int = 6,
             c3d_bytes: int = 200_000, gcd_bytes: int = 20_000) -> Path:
    """Write the lab below `root` (random content, so no two files are alike)."""
    for s in range(subjects):
        for k in range(sessions):
            folder = root / f"Subject{s:03d}" / f"2025-{k + 1:02d}-{s % 28 + 1:02d}"
            folder.mkdir(parents=True)
            names = [f"Walk{t + 1:02d}" for t in range(trials)]
            config = {"subjectMetadata": {"ehr-id": f"MRN{s:05d}", "subject-first-name": f"First{s}",
                                          "subject-sex": "Female" if s % 2 else "Male"},
                      "interventionMetadata": [{"id": 0, "date": "2024-01-01", "site": "Left"}],
                      "sessionMetadata": {"session-type": "Gait", "interview-fms5m": str(k + 1)},
                      "conditionDefinition": {"Barefoot": names},
                      "representativeTrials": {names[0]: "left,right"},
                      "trialSideSelection": {names[0]: "left", names[1]: "right"}}
            (folder / "moveshelf_config_import.json").write_text(json.dumps(config, indent=2))
            for name in names:
                (folder / f"{name}.c3d").write_bytes(os.urandom(c3d_bytes))
                (folder / f"{name}.GCD").write_bytes(os.urandom(gcd_bytes // 2).hex().encode())
    return root
