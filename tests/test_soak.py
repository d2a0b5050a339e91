"""Soak: apply killed with SIGKILL at seeded-random moments under injected faults, then one clean apply.

The rule under test (DESIGN.md, "Idempotency and safety rules"): after any sequence of kills and
faults followed by one clean apply, the server holds exactly one `Complete` record per local file
and nothing else this tool created, and a further apply writes nothing.

`apply` runs as its own process, as cron runs it; the emulator runs in the test process, so the
test can see when the server has finished every request a killed process had already sent (a
request sent in full still completes on the server after its sender died). Between a kill and
the next run the test waits for that, except where a reproduction needs the race.

`SOAK_SEED` (default 1) chooses the lab, the faults and the kill moments; `SOAK_KILLS` (default
10) how many kills must land. `benchmarks/soak.py` runs the same soak for several seeds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from importer.emulator.server import EmulatorServer

from .conftest import PROJECT, Gql, mutations, server_tree

SEED = int(os.environ.get("SOAK_SEED", "1"))
KILLS = int(os.environ.get("SOAK_KILLS", "10"))
BOUND = 60.0  # seconds: the whole soak, clean apply and checks included
KILL_PHASE = 38.0  # seconds the kills may take, so the clean apply and the checks fit in BOUND
CONDITION = "Barefoot"
CREATES = ("createPatient", "createSession", "createClips", "createAdditionalData")


# -- the server ------------------------------------------------------------------------------------------
class SoakEmulator(EmulatorServer):
    """The emulator, counting the connections it is still serving.

    After a client is killed its connections close; once none is open, every request it sent
    has finished on the server (a delayed create has committed, a buffered PUT has landed).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._open = 0
        self._open_lock = threading.Lock()

    def process_request_thread(self, request, client_address) -> None:
        with self._open_lock:
            self._open += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return self._open

    def wait_quiet(self, seconds: float = 10.0) -> float:
        """Wait until no connection is open; the seconds it took."""
        started = time.monotonic()
        while self.open_connections:
            if time.monotonic() - started > seconds:
                raise AssertionError(f"the server still serves {self.open_connections} connection(s) "
                                     f"{seconds:.0f} s after the client went away")
            time.sleep(0.01)
        return time.monotonic() - started

    def set_faults(self, *rules: dict, seed: int = 1) -> None:
        self.faults.configure({"seed": seed, "rules": list(rules)})

    def writes(self) -> int:
        """Mutations and storage PUTs received so far."""
        stats = self.stats.as_dict()
        return mutations(stats) + stats["uploads"]


def start_server(folder: Path, latency_ms: int = 0) -> SoakEmulator:
    server = SoakEmulator(data_dir=folder / "emulator", projects=(PROJECT,), latency_ms=latency_ms).start()
    server.write_config(folder / "config")
    return server


@pytest.fixture
def emulator(tmp_path: Path):
    """Overrides conftest's: the same server, able to tell when it has gone quiet."""
    server = start_server(tmp_path)
    yield server
    server.stop()


# -- apply in its own process -----------------------------------------------------------------------------
@dataclass
class Runner:
    """`moveshelf-import apply` as a subprocess; its output goes to files, so a full pipe never blocks it."""

    folder: Path
    lab: Path
    count: int = 0

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "importer", "apply", str(self.lab), "--project", PROJECT, "--yes",
                "--config", str(self.folder / "config" / "mvshlf-config.json"),
                "--state-dir", str(self.folder / "state"), *extra]

    def spawn(self, *extra: str) -> subprocess.Popen:
        self.count += 1
        logs = self.folder / "runs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{self.count:02d}.out").open("w") as out, (logs / f"{self.count:02d}.err").open("w") as err:
            return subprocess.Popen(self.command(*extra), stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def run(self, *extra: str, timeout: float = 30) -> tuple[int, str]:
        """Run to the end: exit code and what it printed."""
        process = self.spawn(*extra)
        code = process.wait(timeout=timeout)
        return code, self.output(self.count)

    def output(self, number: int) -> str:
        logs = self.folder / "runs"
        return (logs / f"{number:02d}.out").read_text() + (logs / f"{number:02d}.err").read_text()


def kill_9(process: subprocess.Popen) -> bool:
    """SIGKILL; True when the process was still running (the kill landed)."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return True


# -- the lab ------------------------------------------------------------------------------------------------
def make_session(folder: Path, rng: random.Random, subject: int, trials: int, sizes: tuple[int, int]) -> None:
    """One session folder: a config naming its trials, a C3D-sized and a GCD-sized file per trial."""
    folder.mkdir(parents=True)
    names = [f"Walk{t + 1:02d}" for t in range(trials)]
    config = {"subjectMetadata": {"ehr-id": f"MRN{subject:05d}", "subject-first-name": f"First{subject}"},
              "sessionMetadata": {"session-type": "Gait"}, "conditionDefinition": {CONDITION: names},
              "trialSideSelection": {names[0]: "left"}}
    (folder / "moveshelf_config_import.json").write_text(json.dumps(config, indent=2))
    for name in names:
        (folder / f"{name}.c3d").write_bytes(rng.randbytes(rng.randint(*sizes)))
        (folder / f"{name}.GCD").write_bytes(rng.randbytes(rng.randint(2_000, 20_000)).hex().encode())


def make_lab(root: Path, rng: random.Random, subjects: int = 4, sessions: int = 2, trials: int = 4,
             sizes: tuple[int, int] = (50_000, 1_500_000)) -> Path:
    """subjects × sessions × trials × (C3D, GCD), seeded: the same seed writes the same bytes."""
    for s in range(subjects):
        for k in range(sessions):
            make_session(root / f"Subject{s:02d}" / f"2025-{k + 1:02d}-{s + 1:02d}", rng, s, trials, sizes)
    return root


def add_session(root: Path, rng: random.Random) -> None:
    """New data arrives: one more session for one of the subjects (so later kills still find work)."""
    subjects = sorted(p.name for p in root.iterdir())
    subject = rng.choice(subjects)
    sessions = len(list((root / subject).iterdir()))
    make_session(root / subject / f"2025-11-{sessions + 1:02d}", rng, int(subject[-2:]), 3, (50_000, 1_500_000))


def local_files(root: Path) -> dict[tuple[str, str, str], Path]:
    """(trial projectPath, trial title, file name) → local file, for a lab whose sessions define conditions."""
    files = {}
    for config in root.glob("*/*/moveshelf_config_import.json"):
        session = config.parent
        definition = json.loads(config.read_text())["conditionDefinition"]
        for condition, trials in definition.items():
            for trial in trials:
                for path in session.iterdir():
                    if path.stem == trial:
                        files[(f"/{session.parent.name}/{session.name}/{condition}", trial, path.name)] = path
    return files


def expected_files(expected: list[tuple], lab: Path) -> dict[tuple[str, str, str], Path]:
    """The same mapping for any lab, from the inventory of a clean import (conftest's `expected`)."""
    files = {}
    for row in expected:
        if row[0] == "file":
            subject, session = row[1].strip("/").split("/")[:2]
            files[(row[1], row[2], row[3])] = next((lab / subject / session).rglob(row[3]))
    return files


# -- what the server holds ------------------------------------------------------------------------------------
@dataclass
class Audit:
    """The server's records against the local files: everything that is not exactly one Complete copy."""

    records: int = 0
    wanted: int = 0
    duplicates: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_bytes: list[str] = field(default_factory=list)
    extra_by_kind: Counter = field(default_factory=Counter)

    @property
    def extra(self) -> int:
        """Records beyond one per local object."""
        return sum(self.extra_by_kind.values())

    @property
    def problems(self) -> list[str]:
        return [*self.duplicates, *self.unfinished, *self.missing, *self.unexpected, *self.wrong_bytes]

    def describe(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.extra_by_kind.items()) if n) or "none"
        return (f"{self.records} records for {self.wanted} local objects; extra: {kinds}\n  "
                + "\n  ".join(self.problems[:60]) + ("\n  ..." if len(self.problems) > 60 else ""))


def audit(gql: Gql, files: dict[tuple[str, str, str], Path]) -> Audit:
    """Subjects by name, sessions by projectPath, trials by (projectPath, title), files by
    (trial, originalFileName): each once, each file Complete with the local bytes."""
    wanted = {
        "subject": {(k[0].strip("/").split("/")[0],) for k in files},
        "session": {("/" + "/".join(k[0].strip("/").split("/")[:2]) + "/",) for k in files},
        "trial": {k[:2] for k in files},
        "file": set(files),
    }
    seen: dict[str, Counter] = {kind: Counter() for kind in wanted}
    result = Audit(wanted=sum(len(v) for v in wanted.values()))
    downloads: dict[tuple, list[dict]] = {}
    for patient in server_tree(gql):
        seen["subject"][(patient["name"],)] += 1
        for session in patient["sessions"]:
            seen["session"][(session["projectPath"],)] += 1
            for clip in session["clips"]:
                seen["trial"][(clip["projectPath"], clip["title"])] += 1
                for data in clip["additionalData"]:
                    name = (clip["projectPath"], clip["title"], data["originalFileName"])
                    seen["file"][name] += 1
                    downloads.setdefault(name, []).append(data)
    for kind, counts in seen.items():
        result.records += sum(counts.values())
        for name, n in sorted(counts.items()):
            if name not in wanted[kind]:
                result.unexpected.append(f"{kind} {'/'.join(name)}: not in the local folders ({n} record(s))")
                result.extra_by_kind[kind] += n
            elif n > 1 and kind != "file":  # files are listed and counted below, by status
                result.duplicates.append(f"{kind} {'/'.join(name)}: {n} records")
                result.extra_by_kind[kind] += n - 1
        for name in sorted(wanted[kind] - set(counts)):
            result.missing.append(f"{kind} {'/'.join(name)}: not on the server")
    for name, records in sorted(downloads.items()):
        label = "/".join(name)
        statuses = Counter(r["uploadStatus"] for r in records)
        if statuses != Counter({"Complete": 1}):
            (result.duplicates if len(records) > 1 else result.unfinished).append(
                f"file {label}: {len(records)} record(s), {dict(statuses)}")
        if name not in files:
            continue
        complete, other = statuses["Complete"], len(records) - statuses["Complete"]
        result.extra_by_kind["file (copies Complete)"] += max(0, complete - 1)
        result.extra_by_kind["file (not Complete)"] += other if complete else other - 1
        local = hashlib.md5(files[name].read_bytes()).hexdigest()
        for record in records:
            if record["uploadStatus"] == "Complete" and record["originalDataDownloadUri"]:
                answer = requests.get(record["originalDataDownloadUri"], timeout=30)
                hashes = dict(h.partition("=")[::2] for h in answer.headers.get("x-goog-hash", "").split(", "))
                stored = base64.b64decode(hashes.get("md5", "")).hex()
                got = hashlib.md5(answer.content).hexdigest() if answer.status_code == 200 else answer.status_code
                if got != local or stored != local:
                    result.wrong_bytes.append(f"file {label} ({record['id']}): downloaded {got}, "
                                              f"x-goog-hash {stored}, local {local}")
    return result


# -- the two minimal reproductions ----------------------------------------------------------------------------
def converge(server: SoakEmulator, runner: Runner, gql: Gql, files: dict) -> None:
    """Faults off, nothing in flight: one clean apply leaves exactly the local files; another writes nothing."""
    server.set_faults()
    server.wait_quiet()
    code, output = runner.run()
    assert code == 0, output
    found = audit(gql, files)
    assert not found.problems, "after one clean apply: " + found.describe()
    writes = server.writes()
    code, output = runner.run()
    assert code == 0, output
    assert server.writes() - writes == 0, f"a further apply wrote to the server:\n{output}"
    assert not audit(gql, files).problems


def test_a_processing_record_left_by_an_ambiguous_create_is_removed(emulator: SoakEmulator, tmp_path, lab, gql,
                                                                     expected):
    """createAdditionalData commits, then answers 502: the retry creates new records, and the first
    ones (Processing, never uploaded) cannot be deleted while deletes fail. A clean apply removes them."""
    runner = Runner(tmp_path, lab)
    emulator.set_faults({"match": "createAdditionalData", "fault": "commit-then-status:502", "times": 1},
                        {"match": "deleteAdditionalData", "fault": "status:503"})
    code, output = runner.run("--attempts", "2")
    assert code in (0, 3), output
    assert any(f["match"] == "createAdditionalData" for f in emulator.faults.fired())
    converge(emulator, runner, gql, expected_files(expected, lab))


def test_an_upload_landing_after_its_sender_died_leaves_one_complete_record(emulator: SoakEmulator, tmp_path, lab,
                                                                             gql, expected):
    """A PUT held up on the server outlives the killed apply and lands while the next apply, which
    saw the record Processing, uploads a second copy (and cannot delete the first). A clean apply
    keeps one Complete record."""
    runner = Runner(tmp_path, lab)
    emulator.set_faults({"match": "upload", "fault": "delay:4000", "times": 1})
    started = time.monotonic()
    process = runner.spawn()
    while not emulator.faults.fired():
        assert process.poll() is None and time.monotonic() - started < 20, runner.output(runner.count)
        time.sleep(0.01)
    time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    assert kill_9(process)
    emulator.set_faults({"match": "deleteAdditionalData", "fault": "status:503"})
    code, output = runner.run("--attempts", "2")  # runs while the held-up PUT is still on its way
    assert code in (0, 3), output
    converge(emulator, runner, gql, expected_files(expected, lab))


# -- the soak ---------------------------------------------------------------------------------------------------
def random_faults(rng: random.Random) -> list[dict]:
    """Faults on creates, uploads and deletes, and slow storage so that kills land mid-upload."""
    rules = []
    for _ in range(rng.randint(2, 4)):
        rules.append({"match": rng.choice(CREATES),
                      "fault": rng.choice(["commit-then-status:502", "commit-then-reset",
                                           f"delay:{rng.randint(200, 1200)}"]),
                      "times": rng.randint(1, 3), "probability": round(rng.uniform(0.3, 0.8), 2)})
    for _ in range(rng.randint(1, 3)):
        rules.append({"match": "upload", "fault": rng.choice(["reset", "status:503", "status:429:retry-after=1"]),
                      "times": rng.randint(1, 3), "probability": round(rng.uniform(0.1, 0.4), 2)})
    rules.append({"match": "deleteAdditionalData",
                  "fault": rng.choice(["status:503", "reset", "commit-then-status:502", "commit-then-reset"]),
                  "probability": round(rng.uniform(0.3, 1.0), 2)})
    rng.shuffle(rules)
    rules.append({"match": "upload", "fault": f"delay:{rng.randint(300, 1500)}",
                  "probability": round(rng.uniform(0.2, 0.5), 2)})  # slow storage
    return rules


@dataclass
class Kill:
    """One run of the kill phase: when it was killed (or how it ended) and what it managed to write."""

    moment: str
    landed: bool
    code: int | None
    writes: int
    seconds: float


@dataclass
class SoakResult:
    seed: int
    kills: int
    runs: list[Kill]
    clean_code: int
    clean_output: str
    audit: Audit
    further_code: int
    further_writes: int
    further_output: str
    seconds: float
    fired: Counter

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {self.kills} kills in {len(self.runs)} runs, {self.seconds:.1f} s; "
                 f"faults fired: {dict(self.fired)}"]
        lines += [f"  run {i + 1}: {r.moment}, {'killed' if r.landed else f'exit {r.code}'} after "
                  f"{r.seconds:.2f} s, {r.writes} writes" for i, r in enumerate(self.runs)]
        lines.append(f"clean apply: exit {self.clean_code}; {self.audit.describe()}")
        lines.append(f"further apply: exit {self.further_code}, {self.further_writes} writes")
        return "\n".join(lines)


def wait_and_kill(server: SoakEmulator, process: subprocess.Popen, rng: random.Random, deadline: float
                  ) -> tuple[str, bool]:
    """Kill at a seeded-random moment: a time after the start, or just after the run's k-th write."""
    started, base = time.monotonic(), server.writes()
    if rng.random() < 0.4:
        at = rng.uniform(0.2, 3.0)
        moment = f"at {at:.2f} s"
        while time.monotonic() - started < at and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        k, jitter = rng.randint(1, 12), rng.uniform(0.0, 0.3)
        moment = f"{jitter:.2f} s after write {k}"
        while server.writes() - base < k and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        end = time.monotonic() + jitter
        while time.monotonic() < end and process.poll() is None:
            time.sleep(0.002)
    return moment, kill_9(process)


def run_soak(folder: Path, seed: int = SEED, kills: int = KILLS, latency_ms: int = 10,
             faults: Callable[[random.Random], list[dict]] = random_faults) -> SoakResult:
    """Kill apply `kills` times under faults, then apply once with none; what the server then holds."""
    started = time.monotonic()
    rng = random.Random(seed)
    lab = make_lab(folder / "lab", rng)
    server = start_server(folder, latency_ms)
    fired: Counter = Counter()
    try:
        runner = Runner(folder, lab)
        runs: list[Kill] = []
        landed = 0
        while landed < kills and time.monotonic() - started < KILL_PHASE:
            server.set_faults(*faults(rng), seed=rng.randrange(1 << 30))
            writes, began = server.writes(), time.monotonic()
            process = runner.spawn("--jobs", str(rng.choice([2, 4, 8])), "--attempts", str(rng.choice([2, 3])))
            moment, hit = wait_and_kill(server, process, rng, started + KILL_PHASE)
            if not hit and process.poll() is None:
                kill_9(process)  # out of time; not counted
            runs.append(Kill(moment, hit, None if hit else process.returncode, server.writes() - writes,
                             time.monotonic() - began))
            landed += hit
            fired.update(f"{f['target']} {f['fault'].split(':')[0]}" for f in server.faults.fired())
            server.wait_quiet()
            if not hit and process.returncode == 0:
                add_session(lab, rng)
        server.set_faults()
        server.wait_quiet()
        clean_code, clean_output = runner.run(timeout=30)
        found = audit(Gql(server), local_files(lab))
        writes = server.writes()
        further_code, further_output = runner.run(timeout=20)
        return SoakResult(seed, landed, runs, clean_code, clean_output, found, further_code,
                          server.writes() - writes, further_output, time.monotonic() - started, fired)
    finally:
        server.stop()


def test_soak_kill_9_under_faults_then_one_clean_apply_converges(tmp_path: Path):
    result = run_soak(tmp_path)
    report = result.describe()
    print(report)
    assert result.kills >= KILLS, f"only {result.kills} kills landed within {KILL_PHASE:.0f} s\n{report}"
    assert result.seconds <= BOUND, f"the soak took {result.seconds:.1f} s\n{report}"
    assert result.clean_code == 0, f"{report}\n{result.clean_output}"
    assert not result.audit.problems, report
    assert result.further_writes == 0 and result.further_code == 0, f"{report}\n{result.further_output}"
