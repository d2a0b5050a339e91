"""The HTTP client against small local servers: the bound on requests in flight, and proxies from the environment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from importer.client import Client

KEY = "sk-client-test-5f0c1d2e3b4a"  # remembered for scrubbing by every Client: a word like "key" would be masked


class _Counting(BaseHTTPRequestHandler):
    """Answers every request with GraphQL data, after a pause; counts the requests it serves at once and the
    request lines it saw (a proxy sees absolute URLs)."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    now = peak = 0
    lines: list[str] = []

    def _answer(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.peak = max(cls.peak, cls.now)
            cls.lines.append(self.requestline)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(0.02)
        with cls.lock:
            cls.now -= 1
        body = json.dumps({"data": {"ok": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """The base URL of a fresh counting server."""
    _Counting.now = _Counting.peak = 0
    _Counting.lines = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_requests_and_uploads_from_many_threads_stay_within_jobs(server: str, tmp_path: Path):
    (tmp_path / "f.c3d").write_bytes(b"x" * 100)
    client = Client(f"{server}/graphql", KEY, jobs=3)

    def one(i: int) -> None:
        if i % 2:
            client.call("{ ok }")
        else:
            client.upload(f"{server}/storage/{i}", tmp_path / "f.c3d", 100, "AAAAAA==", lambda n: None)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(one, range(48)))
    assert len(_Counting.lines) == 48 and _Counting.peak == 3


def test_a_proxy_named_by_the_environment_carries_requests_unless_no_proxy_covers_the_host(
        server: str, monkeypatch: pytest.MonkeyPatch):
    target = "http://example.invalid/graphql"  # reached only through the proxy: the name does not resolve
    monkeypatch.setenv("HTTP_PROXY", server)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert Client(target, KEY).call("{ ok }") == {"ok": True}
    assert Client(f"{server}/graphql", KEY).call("{ ok }") == {"ok": True}
    assert [line.split()[1] for line in _Counting.lines] == [target, "/graphql"]
