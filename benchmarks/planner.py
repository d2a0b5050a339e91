"""The pure planner at migration scale: diff of two large trees that already agree (every file compared)."""

from __future__ import annotations

import sys
import time

from importer.model import DataFile, Facts, LocalTree, Session, Subject, Tree, Trial
from importer.planner import diff


def trees(subjects: int) -> tuple[LocalTree, Tree, dict]:
    local, remote, facts = [], [], {}
    for s in range(subjects):
        local_sessions, remote_sessions = [], []
        for k in range(2):
            local_trials, remote_trials = [], []
            for t in range(6):
                names = [f"Walk{t:02d}.c3d", f"Walk{t:02d}.GCD"]
                ids = [f"D{s}-{k}-{t}-{i}" for i in range(2)]
                facts.update({i: ("crc", 10) for i in ids})
                local_trials.append(Trial(f"Walk{t:02d}", "Barefoot", tuple(
                    DataFile(n, "raw", source=f"/lab/{n}", size=10, crc32c="crc") for n in names)))
                remote_trials.append(Trial(f"Walk{t:02d}", "Barefoot", tuple(
                    DataFile(n, "raw", remote_id=i, upload_status="Complete") for n, i in zip(names, ids, strict=True)),
                    remote_id=f"T{s}-{k}-{t}"))
            local_sessions.append(Session(f"2025-01-{k + 1:02d}", metadata={"a": "1"}, trials=tuple(local_trials)))
            remote_sessions.append(Session(f"2025-01-{k + 1:02d}", metadata={"a": "1"}, trials=tuple(remote_trials),
                                           remote_id=f"SE{s}-{k}", remote_path=f"/S{s}/2025-01-{k + 1:02d}/"))
        local.append(Subject(f"S{s}", mrn=f"M{s}", metadata={"ehr-id": f"M{s}"}, sessions=tuple(local_sessions)))
        remote.append(Subject(f"S{s}", mrn=f"M{s}", metadata={"ehr-id": f"M{s}"}, sessions=tuple(remote_sessions),
                              remote_id=f"P{s}"))
    return LocalTree(Tree(tuple(local)), roots=("/lab",)), Tree(tuple(remote)), Facts(facts)


def measure(subjects: int = 5000) -> dict:
    local, actual, facts = trees(subjects)
    started = time.perf_counter()
    plan = diff(local, actual, facts, "org/p")
    seconds = time.perf_counter() - started
    assert not plan.steps
    return {"subjects": subjects, "files": subjects * 24, "seconds": round(seconds, 2)}


if __name__ == "__main__":
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
