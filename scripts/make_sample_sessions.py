"""Regenerate `sample_sessions/`: a small, realistic gait lab (run from the repository root).

Two subjects, four sessions (three folders named by date, one not), valid C3D files,
GCD text files, a PDF, a PNG, a ZIP of raw data, an unmapped file and OS junk.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import c3d
import numpy as np

ROOT = Path("sample_sessions")
MARKERS = ["LASI", "RASI", "LKNE", "RKNE", "LANK", "RANK", "LHEE", "RHEE"]


def write_c3d(path: Path, seed: int, frames: int = 120) -> None:
    """A walking trial: markers moving forward with a gait-like bounce, 100 Hz."""
    writer = c3d.Writer(point_rate=100.0)
    writer.set_point_labels(MARKERS)
    rng = np.random.default_rng(seed)
    base = rng.uniform(-200, 200, size=(len(MARKERS), 3))
    for i in range(frames):
        points = np.zeros((len(MARKERS), 5), dtype=np.float32)
        points[:, :3] = base + [i * 12.0, 0, 40 * math.sin(i / 8)]
        writer.add_frames([(points, np.zeros((0, 0), dtype=np.float32))])
    with path.open("wb") as handle:
        writer.write(handle)


def write_gcd(path: Path, seed: int) -> None:
    """A GCD text file of kinematic curves, 51 samples per gait cycle."""
    lines = ["#!DST", f"!Cadence {110 + seed % 7}", f"!Speed 1.{seed % 9}"]
    for name, amp in (("LeftHipAnglesX", 35), ("RightHipAnglesX", 34), ("LeftKneeAnglesX", 60)):
        lines.append(f"!{name}")
        lines += [f"{amp * math.sin(2 * math.pi * k / 50 + seed):.3f}" for k in range(51)]
    path.write_text("\n".join(lines) + "\n")


def write_pdf(path: Path, title: str) -> None:
    text = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))


def write_png(path: Path, width: int = 64, height: int = 48) -> None:
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 5 % 256, 128))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def session(folder: Path, config: dict, trials: list[str], seed: int) -> None:
    folder.mkdir(parents=True)
    (folder / "moveshelf_config_import.json").write_text(json.dumps(config, indent=2) + "\n")
    for i, trial in enumerate(trials):
        write_c3d(folder / f"{trial}.c3d", seed + i)
        write_gcd(folder / f"{trial}.GCD", seed + i)


def main() -> None:
    warnings.filterwarnings("ignore", message="No analog data")
    shutil.rmtree(ROOT, ignore_errors=True)
    subject1 = {"ehr-id": "1001", "subject-first-name": "Sam", "subject-last-name": "Jansen",
                "subject-date-of-birth": "2012-04-17", "subject-sex": "Male",
                "subject-diagnosis": "Cerebral Palsy"}
    interventions = [{"id": 0, "date": "2024-11-05", "site": "Left", "surgeon": "Dr. de Vries",
                      "procedures": [{"side": "left", "location": "Gastrocnemius", "procedure": "Lengthening",
                                      "location-modifier": "", "procedure-modifier": "Strayer"}],
                      "surgery-dictation": "Uncomplicated."}]
    first = ROOT / "Subject01" / "2025-03-14"
    session(first, {
        "subjectMetadata": subject1, "interventionMetadata": interventions,
        "sessionMetadata": {"session-type": "Gait", "interview-fms5m": "5",
                            "vicon-leg-length": [{"value": "712", "context": "left"},
                                                 {"value": "715", "context": "right"}]},
        "conditionDefinition": {"Barefoot": ["Walk01", "Walk02"], "Shoes": ["Walk03"]},
        "representativeTrials": {"Walk01": "left,right", "Walk03": "left"},
        "trialSideSelection": {"Walk01": "left", "Walk02": "right"},
    }, ["Walk01", "Walk02", "Walk03"], seed=1)
    write_pdf(first / "Clinical report.pdf", "Gait analysis report - Subject01 - 2025-03-14")
    write_png(first / "Posture.png")
    with zipfile.ZipFile(first / "Raw motion data - 2025-03-14.zip", "w") as archive:
        archive.writestr("Walk01.x1d", bytes(range(256)) * 8)
        archive.writestr("Walk01.system", "Vicon Nexus 2.16\n")
    (first / "operator notes.txt").write_text("Patient tired after Walk02.\n")
    (first / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    second = ROOT / "Subject01" / "2025-09-02"
    session(second, {"subjectMetadata": {"ehr-id": "1001"}, "sessionMetadata": {"session-type": "Gait"},
                     "conditionDefinition": {"Barefoot": ["Walk01", "Walk02"]},
                     "trialSideSelection": {"Walk01": "left", "Walk02": "right"}}, ["Walk01", "Walk02"], seed=10)

    third = ROOT / "Subject02" / "2025-05-20"
    session(third, {"subjectMetadata": {"ehr-id": "1002", "subject-first-name": "Noor", "subject-sex": "Female"},
                    "sessionMetadata": {"session-type": "Gait"},
                    "conditionDefinition": {"Orthosis": ["Walk01", "Walk02"]},
                    "representativeTrials": {"Walk02": "right"}}, ["Walk01", "Walk02"], seed=20)
    write_pdf(third / "Clinical report.pdf", "Gait analysis report - Subject02 - 2025-05-20")

    followup = ROOT / "Subject02" / "Follow-up visit"
    session(followup, {"session_date": "2025-11-03", "subjectMetadata": {"ehr-id": "1002"},
                       "sessionMetadata": {"session-type": "Follow-up"},
                       "conditionDefinition": {"Barefoot": ["Run01"]}}, ["Run01"], seed=30)


if __name__ == "__main__":
    main()
