"""The key stays out of every message, travels only over TLS (or to loopback), and patient data stays private."""

from __future__ import annotations

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from importer import private
from importer.cli import main
from importer.client import Client, Rejected
from importer.config import load_connection
from importer.errors import InputError
from importer.secrets import scrub

from .conftest import PROJECT

KEY = "sk-live-0123456789abcdef"


def test_scrub_replaces_the_key_and_every_authorization_value():
    text = (f'echo: {{"headers": {{"Authorization": "Bearer {KEY}", "X": "1"}}}} key={KEY} '
            "authorization: Basic dXNlcjpwYXNz; Authorization=Token abc")
    clean = scrub(text, [KEY])
    assert KEY not in clean and "dXNlcjpwYXNz" not in clean and "abc" not in clean
    assert '"Authorization": "Bearer ***"' in clean and "key=***" in clean and '"X": "1"' in clean


class _Echo(BaseHTTPRequestHandler):
    """A server that answers every request with its headers, as some proxies' error pages do."""

    status = 400

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = "bad request; you sent:\n" + "".join(f"{k}: {v}\n" for k, v in self.headers.items())
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/graphql"
    server.shutdown()


@pytest.mark.parametrize("status", [400, 401])
def test_server_bodies_that_echo_the_key_are_scrubbed_everywhere(echo: str, tmp_path: Path, capsys, status: int):
    _Echo.status = status
    with pytest.raises(Exception) as raised:
        Client(echo, KEY, attempts=1).call("{ viewer { id } }")
    assert KEY not in str(raised.value) and "Authorization: Bearer ***" in str(raised.value)
    if status == 400:
        assert isinstance(raised.value, Rejected)
    (tmp_path / "key.json").write_text(json.dumps({"secretKey": KEY}))
    (tmp_path / "config.json").write_text(json.dumps({"apiUrl": echo, "apiKeyFileName": "key.json"}))
    lab = tmp_path / "lab" / "Ann" / "2025-01-02"
    lab.mkdir(parents=True)
    (lab / "Walk01.c3d").write_bytes(b"x")
    code = main(["plan", str(tmp_path / "lab"), "--project", PROJECT, "--config", str(tmp_path / "config.json"),
                 "--state-dir", str(tmp_path / "state"), "--attempts", "1"])
    err = capsys.readouterr().err
    assert code == 1 and KEY not in err and "***" in err and "Traceback" not in err, err


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://api.moveshelf.com/graphql", True), ("http://127.0.0.1:8765/graphql", True),
    ("http://localhost/graphql", True), ("http://[::1]:80/graphql", True), ("http://127.8.9.10/graphql", True),
    ("http://api.moveshelf.com/graphql", False), ("http://10.0.0.5/graphql", False),
    ("http://localhost.example.org/graphql", False), ("HTTP://example.org/graphql", False), ("HTTPS://api.moveshelf.com/graphql", True),
])
def test_the_key_goes_in_clear_only_to_loopback(tmp_path: Path, url: str, allowed: bool):
    (tmp_path / "mvshlf-api-key.json").write_text(json.dumps({"secretKey": KEY}))
    (tmp_path / "c.json").write_text(json.dumps({"apiUrl": url}))
    if allowed:
        assert load_connection(tmp_path / "c.json").api_url == url
    else:
        with pytest.raises(InputError, match=r"\$\.apiUrl: (.* is plain http|expected the GraphQL URL)"):
            load_connection(tmp_path / "c.json")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name == "nt", reason="Windows has no POSIX modes; the helpers only try there")
def test_files_that_can_hold_patient_names_are_private(lab: Path, tmp_path: Path, cli):
    old = os.umask(0o022)
    try:
        (tmp_path / "report.json").write_text("{}")  # an existing file is narrowed as well
        (tmp_path / "report.json").chmod(0o644)
        assert cli("plan", str(lab), "--out", str(tmp_path / "plan.json")).code == 0
        result = cli("apply", str(lab), "--yes", "--quiet", "--report", str(tmp_path / "report.json"),
                     "--log-file", str(tmp_path / "run.log"))
        assert result.code == 0, result
    finally:
        os.umask(old)
    [folder] = (tmp_path / "state").iterdir()
    assert _mode(tmp_path / "state") == 0o700 and _mode(folder) == 0o700
    inside = {p.name: _mode(p) for p in folder.iterdir()}
    assert inside and all(mode == 0o600 for mode in inside.values()), inside
    assert {"journal.sqlite3"} <= set(inside) and any(n.endswith(".pid") for n in inside)
    for name in ("plan.json", "report.json", "run.log"):
        assert _mode(tmp_path / name) == 0o600, name
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["failed"] == 0


def test_private_helpers(tmp_path: Path):
    folder = private.private_folder(tmp_path / "a" / "b")
    assert _mode(tmp_path / "a") == 0o700 and _mode(folder) == 0o700
    private.write_private(folder / "f.txt", "one")
    private.write_private(folder / "f.txt", "two")
    assert (folder / "f.txt").read_text() == "two" and _mode(folder / "f.txt") == 0o600
    assert [p.name for p in folder.iterdir()] == ["f.txt"]  # no temporary file left behind
    with private.open_private_append(folder / "log") as log:
        log.write("x\n")
    assert _mode(folder / "log") == 0o600
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot create the folder"):
        private.private_folder(tmp_path / "file")
