"""Fixtures: a real emulator on loopback, and clients that talk to it over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from importer.emulator.server import EmulatorServer

PROJECT = "demo/gait-lab"


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
