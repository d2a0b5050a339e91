"""The HTTP client against small local servers: the bound on requests in flight, proxies from the environment, and
what an upload does when its file or its run gives out."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from importer.cancel import Cancellation
from importer.client import Client
from importer.errors import Interrupted, Unreachable

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


def _serve(httpd: ThreadingHTTPServer, scheme: str) -> Iterator[str]:
    _Counting.now = _Counting.peak = 0
    _Counting.lines = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"{scheme}://{httpd.server_address[0]}:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def server() -> Iterator[str]:
    """The base URL of a fresh counting server."""
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Counting), "http")


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(authority: trustme.CA) -> Iterator[str]:
    """The base URL of a fresh counting server over TLS, its certificate signed by `authority`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    yield from _serve(httpd, "https")


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


def test_uploads_take_the_proxy_the_environment_names_for_their_host_too(
        server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "f.c3d").write_bytes(b"x" * 100)
    monkeypatch.setenv("HTTP_PROXY", server)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = Client(f"{server}/graphql", KEY)
    for url in ("http://storage.invalid/bucket/f?sig=1", f"{server}/bucket/f?sig=2"):
        client.upload(url, tmp_path / "f.c3d", 100, "AAAAAA==", lambda n: None)
    assert [line.split()[:2] for line in _Counting.lines] == [["PUT", "http://storage.invalid/bucket/f?sig=1"],
                                                              ["PUT", "/bucket/f?sig=2"]]


def test_an_upload_whose_file_is_gone_raises_the_file_error_without_retrying(server: str, tmp_path: Path):
    sent: list[int] = []
    with pytest.raises(FileNotFoundError):
        Client(f"{server}/graphql", KEY).upload(f"{server}/bucket/f", tmp_path / "gone.c3d", 100, "AAAAAA==",
                                                sent.append)
    assert sum(sent) == 0 and len(_Counting.lines) <= 1


def test_an_upload_stops_when_its_run_is_cancelled_and_counts_back_what_it_sent(server: str, tmp_path: Path):
    size = 8 << 20  # several chunks: the run is cancelled after the first goes out
    (tmp_path / "big.c3d").write_bytes(b"x" * size)
    cancel = Cancellation()
    sent: list[int] = []

    def progress(count: int) -> None:
        sent.append(count)
        cancel.cancel()

    with pytest.raises(Interrupted):
        Client(f"{server}/graphql", KEY, cancel=cancel).upload(f"{server}/bucket/big", tmp_path / "big.c3d", size,
                                                               "AAAAAA==", progress)
    assert 0 < sent[0] < size and sum(sent) == 0  # the bytes sent were counted back: they are not stored


def test_graphql_and_storage_trust_a_server_only_through_the_ca_bundle_the_environment_names(
        tls_server: str, authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "f.c3d").write_bytes(b"x" * 100)

    def exchange() -> None:
        client = Client(f"{tls_server}/graphql", KEY, attempts=1)
        assert client.call("{ ok }") == {"ok": True}
        client.upload(f"{tls_server}/bucket/f", tmp_path / "f.c3d", 100, "AAAAAA==", lambda n: None)

    with pytest.raises(Unreachable, match="certificate|SSLError"):
        Client(f"{tls_server}/graphql", KEY, attempts=1).call("{ ok }")
    with pytest.raises(Unreachable, match="certificate not trusted"):
        Client(f"{tls_server}/graphql", KEY, attempts=1).upload(f"{tls_server}/bucket/f", tmp_path / "f.c3d", 100,
                                                               "AAAAAA==", lambda n: None)
    assert _Counting.lines == []
    with authority.cert_pem.tempfile() as bundle:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
        exchange()
    assert [line.split()[0] for line in _Counting.lines] == ["POST", "PUT"]
