"""Fixtures: a real emulator on loopback, and clients that talk to it over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from importer.cli import main
from importer.emulator.server import EmulatorServer

PROJECT = "demo/gait-lab"
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="moveshelf-import-tests-cache-")  # not the user's cache


class Gql:
    """Raw GraphQL over HTTP, for asserting on exactly what the service answers."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {server.api_key}"

    def post(self, query: str, **variables: Any) -> requests.Response:
        return self.http.post(self.server.graphql_url, json={"query": query, "variables": variables}, timeout=10)

    def __call__(self, query: str, **variables: Any) -> dict:
        response = self.post(query, **variables)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]

    def stats(self) -> dict:
        return requests.get(f"{self.server.url}/_emulator/stats", timeout=10).json()

    def faults(self, *rules: dict, seed: int = 1) -> None:
        answer = requests.post(f"{self.server.url}/_emulator/faults", json={"seed": seed, "rules": list(rules)},
                               timeout=10)
        assert answer.status_code == 200, answer.text

    def fault_log(self) -> list[dict]:
        return requests.get(f"{self.server.url}/_emulator/faults/log", timeout=10).json()

    def project_id(self, name: str = PROJECT) -> str:
        projects = self("{ viewer { projects { id name } } }")["viewer"]["projects"]
        return next(p["id"] for p in projects if p["name"] == name)


@pytest.fixture
def emulator(tmp_path: Path):
    server = EmulatorServer(data_dir=tmp_path / "emulator", projects=(PROJECT,)).start()
    server.write_config(tmp_path / "config")
    yield server
    server.stop()


@pytest.fixture
def gql(emulator: EmulatorServer) -> Gql:
    return Gql(emulator)


@pytest.fixture
def official_api(emulator: EmulatorServer, tmp_path: Path):
    """The unmodified official client, configured the way the seed guide configures it."""
    from moveshelf_api.api import MoveshelfApi

    config = json.loads((tmp_path / "config" / "mvshlf-config.json").read_text())
    return MoveshelfApi(api_key_file=str(tmp_path / "config" / config["apiKeyFileName"]), api_url=config["apiUrl"])


SAMPLES = Path(__file__).parent.parent / "sample_sessions"
TREE = """query($id: ID!) { node(id: $id) { ... on Project { patients { name metadata sessions { projectPath date
  metadata clips { title projectPath customOptions additionalData { id originalFileName uploadStatus
  originalDataDownloadUri } } } } } } }"""
CREATE_PATIENT = "mutation($p: String!, $n: String!) { createPatient(projectId: $p, name: $n) { patient { id } } }"
UPDATE_PATIENT = "mutation($id: ID!, $m: JSONString) { updatePatient(patientId: $id, metadata: $m) { updated } }"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    shutil.copytree(SAMPLES, tmp_path / "lab")
    return tmp_path / "lab"


@pytest.fixture
def cli(emulator, tmp_path: Path, capsys):
    def run(command: str, *args: str, state: str = "state") -> Result:
        common = ["--project", PROJECT, "--config", str(tmp_path / "config" / "mvshlf-config.json"),
                  "--state-dir", str(tmp_path / state)]
        code = main([command, *args, *([] if command == "validate" else common)])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


def mutations(stats: dict) -> int:
    return sum(n for name, n in stats["graphql"].items() if name.startswith(("create", "update", "delete")))


def server_tree(gql: Gql) -> list[dict]:
    return gql(TREE, id=gql.project_id())["node"]["patients"]


def inventory(gql: Gql) -> list[tuple]:
    """Every object on the server as a sorted list: duplicates show up as repeated rows."""
    rows = []
    for patient in server_tree(gql):
        rows.append(("subject", patient["name"]))
        for session in patient["sessions"]:
            rows.append(("session", session["projectPath"]))
            for clip in session["clips"]:
                names = {d["id"]: d["originalFileName"] for d in clip["additionalData"]}
                options = json.loads(clip["customOptions"] or "{}").get("trialTemplate", {})
                sides = {names.get(i, f"missing {i}"): s for i, s in options.get("sideAdditionalData", {}).items()}
                rows.append(("trial", clip["projectPath"], clip["title"],
                             json.dumps({**options, "sideAdditionalData": sides}, sort_keys=True)))
                rows += [("file", clip["projectPath"], clip["title"], d["originalFileName"], d["uploadStatus"])
                         for d in clip["additionalData"]]
    return sorted(rows)


@pytest.fixture
def expected(emulator, tmp_path: Path, lab: Path, cli, gql: Gql) -> list[tuple]:
    """The inventory of a clean import of the sample lab, made on a second emulator."""
    clean = EmulatorServer(data_dir=tmp_path / "clean", projects=(PROJECT,)).start()
    try:
        clean.write_config(tmp_path / "clean-config")
        assert main(["apply", str(lab), "--project", PROJECT, "--yes", "--quiet", "--config",
                     str(tmp_path / "clean-config" / "mvshlf-config.json"), "--state-dir", str(tmp_path / "s2")]) == 0
        return inventory(Gql(clean))
    finally:
        clean.stop()
