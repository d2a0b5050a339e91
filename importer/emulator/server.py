"""The emulator's HTTP face: GraphQL, signed storage URLs and control endpoints.

A threaded server with Nagle disabled (else every small answer waits ~40 ms for an ACK)
and HTTP/1.1 keep-alive, so a client's connection pool is used as against the real service.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import google_crc32c

from .api import MoveshelfApi
from .faults import Fault, FaultConfigError, Faults
from .signing import BadSignature, Signer, UrlExpired
from .store import Store

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
DEFAULT_PROJECT = "demo/gait-lab"


@dataclass
class Stats:
    """Requests by GraphQL root field, and storage traffic, since start or reset."""

    graphql: Counter = field(default_factory=Counter)
    graphql_requests: int = 0  # HTTP requests; one request may carry several root fields (aliases)
    uploads: int = 0
    downloads: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def count_graphql(self, names: list[str]) -> None:
        with self.lock:
            self.graphql.update(names)
            self.graphql_requests += 1

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"graphql": dict(self.graphql), "graphql_requests": self.graphql_requests,
                    "uploads": self.uploads, "downloads": self.downloads,
                    "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                    "cpu_seconds": time.process_time()}  # for benchmarks: the emulator shares their machine


class EmulatorServer(ThreadingHTTPServer):
    """A Moveshelf-compatible server on this machine."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str = "127.0.0.1", port: int = 0, data_dir: Path | None = None,
                 projects: tuple[str, ...] = (), api_key: str | None = None, latency_ms: int = 0,
                 url_ttl_seconds: int = 3600, *, clip_path_slash: bool = False, complete_after: float = 0.0,
                 strict_checksum: bool = False) -> None:
        """`clip_path_slash`, `complete_after` and `strict_checksum` select variants of behaviour the public
        sources leave open (docs/emulator-fidelity.md); all are off by default."""
        super().__init__((host, port), _Handler)
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="moveshelf-emulator-")) if data_dir is None else data_dir
        self.store = Store(self.data_dir)
        self.api_key = api_key or self.store.setting("api_key", secrets.token_urlsafe(24))
        self.signer = Signer(self.store.setting("url_secret", secrets.token_hex(32)), self.url, url_ttl_seconds)
        self.api = MoveshelfApi(self.store, self.signer, clip_path_slash=clip_path_slash)
        # GraphQL requests are executed one at a time: each is Python work under the one interpreter lock, and
        # sixteen at once only made each wait for the others' thread switches (a batch of 50 session creates takes
        # 5 ms alone; among fifteen others at the start of a first import, up to 600 ms).
        self.executing = threading.Lock()
        self.complete_after = complete_after
        self.strict_checksum = strict_checksum
        self.faults = Faults()
        self.stats = Stats()
        self.latency = latency_ms / 1000
        for name in projects or (() if self.store.projects() else (DEFAULT_PROJECT,)):
            self.store.ensure_project(name)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    def write_config(self, folder: Path) -> Path:
        """Write `mvshlf-config.json` and `mvshlf-api-key.json` that point at this server."""
        folder.mkdir(parents=True, exist_ok=True)
        key_file = folder / "mvshlf-api-key.json"
        descriptor = os.open(key_file, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps({"secretKey": self.api_key}) + "\n")
        key_file.chmod(0o600)  # also when the file existed with wider permissions
        config = folder / "mvshlf-config.json"
        config.write_text(json.dumps({"apiKeyFileName": key_file.name, "apiUrl": self.graphql_url,
                                      "application": "None"}, indent=2) + "\n")
        return config

    def start(self) -> EmulatorServer:
        """Serve from a background thread (for tests and benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.store.close()
        if self._own_dir:
            import shutil

            shutil.rmtree(self.data_dir, ignore_errors=True)

    def reset(self) -> None:
        self.store.reset()
        self.faults.configure({"rules": []})
        with self.stats.lock:
            self.stats.graphql.clear()
            self.stats.graphql_requests = 0
            self.stats.uploads = self.stats.downloads = self.stats.bytes_in = self.stats.bytes_out = 0


class _Abort(Exception):
    """The connection was reset on purpose; nothing more is sent."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer
    server_version = "moveshelf-emulator"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: a migration makes thousands of requests."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _Abort:
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    # -- routing -----------------------------------------------------------------------------------
    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/graphql":
            return self._graphql()
        if path == "/_emulator/faults":
            return self._control(self._configure_faults)
        if path == "/_emulator/reset":
            return self._control(lambda: (self.server.reset(), {"ok": True})[1])
        self._json(404, {"errors": [{"message": f"No such endpoint: {path}"}]})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_storage/"):
            return self._download()
        if path == "/_emulator/stats":
            return self._control(self.server.stats.as_dict)
        if path == "/_emulator/faults/log":
            return self._control(self.server.faults.fired)
        if path in ("/", "/graphql"):
            return self._json(200, {"service": "moveshelf-emulator", "graphql": self.server.graphql_url})
        self._json(404, {"errors": [{"message": f"No such endpoint: {path}"}]})

    def do_PUT(self) -> None:
        if urlsplit(self.path).path.startswith("/_storage/"):
            return self._upload()
        self._json(404, {"errors": [{"message": "No such endpoint"}]})

    # -- answers -------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
              truncate_to: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body if truncate_to is None else body[:truncate_to])
        if truncate_to is not None:
            self._reset()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              truncate_to: int | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers, truncate_to)

    def _xml(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        """A storage error in the shape GCS answers."""
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        self._send(status, body.encode(), "application/xml", headers)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST, as a failing load balancer does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Abort()

    def _read_body(self) -> Iterator[bytes]:
        """The request body in chunks, whether sized or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def _fault_before(self, fault: Fault | None, error: Any) -> bool:
        """Inflict a fault that strikes before any state changes; True when the request is answered."""
        if fault is None:
            return False
        if fault.kind == "delay":
            time.sleep(fault.amount / 1000)
        elif fault.kind == "reset":
            self._reset()
        elif fault.kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            self.close_connection = True
            error(fault.status, f"Injected fault: status {fault.status}", headers)
            return True
        return False

    def _fault_after(self, fault: Fault | None, answer: Any) -> None:
        """Answer a request whose work is done, or inflict a fault that strikes after it."""
        if fault and fault.kind == "commit-then-reset":
            self._reset()
        if fault and fault.kind == "commit-then-status":
            return answer(fault.status, None)
        answer(None, fault.amount if fault and fault.kind == "truncate" else None)

    # -- GraphQL ---------------------------------------------------------------------------------------
    def _graphql(self) -> None:
        if self.server.latency:
            time.sleep(self.server.latency)
        raw = b"".join(self._read_body())
        if self.headers.get("Authorization", "") != f"Bearer {self.server.api_key}":
            return self._json(401, {"errors": [{"message": "Invalid or missing API key"}]})
        try:
            payload = json.loads(raw)
            query, variables = payload["query"], payload.get("variables") or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError("'query' must be a string and 'variables' an object")
        except (ValueError, KeyError, TypeError) as exc:
            return self._json(400, {"errors": [{"message": f"Malformed GraphQL request body: {exc}"}]})
        document, errors = self.server.api.document(query)
        if errors:
            return self._json(400, {"errors": [e.formatted for e in errors]})
        names = self.server.api.root_fields(document)
        self.server.stats.count_graphql(names)
        fault = self.server.faults.pick(names)
        if self._fault_before(fault, lambda s, m, h: self._json(s, {"errors": [{"message": m}]}, h)):
            return
        try:
            with self.server.executing:
                body = self.server.api.execute(document, variables, payload.get("operationName"))
        except Exception:  # noqa: BLE001 - the service answers, it never shows its insides
            return self._json(500, {"errors": [{"message": "Internal server error"}]})
        status = 200 if body.get("data") is not None else 400
        self._fault_after(fault, lambda s, cut: self._json(
            s or status, body if s is None else {"errors": [{"message": f"Injected fault: status {s}"}]},
            truncate_to=cut))

    # -- storage -----------------------------------------------------------------------------------------
    def _blob(self, op: str) -> tuple[str, int, dict] | None:
        """The record behind a signed URL, or None once an error has been answered."""
        if self.server.latency:
            time.sleep(self.server.latency)
        try:
            ref = self.server.signer.verify(self.path, op)
        except UrlExpired as exc:
            self.close_connection = True
            return self._xml(400, "ExpiredToken", str(exc))
        except BadSignature as exc:
            self.close_connection = True
            return self._xml(403, "SignatureDoesNotMatch", str(exc))
        record = self.server.store.blob_record(ref.kind, ref.pk)
        if record is None:
            self.close_connection = True
            return self._xml(404, "NoSuchKey", "The specified key does not exist.")
        return ref.kind, ref.pk, record

    def _upload(self) -> None:
        found = self._blob("put")
        if found is None:
            return
        kind, pk, record = found
        self.server.stats.add(uploads=1)
        fault = self.server.faults.pick(["upload"])
        if self._fault_before(fault, lambda s, m, h: self._xml(s, "InjectedFault", m, h)):
            return
        blob = self.server.store.blob_path(kind, pk)
        crc, md5, size = self._receive(blob.with_suffix(".part"))
        if not self._checksum_accepted(crc, record["crc32c"]):
            blob.with_suffix(".part").unlink(missing_ok=True)
            return self._xml(400, "BadDigest", "The CRC32C you specified did not match the calculated checksum.")
        os.replace(blob.with_suffix(".part"), blob)
        self.server.store.complete_blob(kind, pk, size, md5, crc, time.time() + self.server.complete_after)
        self.server.stats.add(bytes_in=size)
        self._fault_after(fault, lambda s, cut: self._xml(s, "InjectedFault", f"Injected fault: status {s}")
                          if s else self._send(200, b"", "text/plain", {"ETag": f'"{md5}"'}))

    def _checksum_accepted(self, crc: str, declared: str | None) -> bool:
        """Storage checks only the checksum a PUT carries (`x-goog-hash`); a signed URL made without one
        accepts any bytes. With that header, or under `--strict-checksum`, the bytes must also match the
        crc32c of the create mutation."""
        sent = _goog_hashes(self.headers.get_all("x-goog-hash") or [])
        if "crc32c" in sent and sent["crc32c"] != crc:
            return False
        if "crc32c" in sent or self.server.strict_checksum:
            return declared is None or declared == crc
        return True

    def _receive(self, part: Path) -> tuple[str, str, int]:
        """Stream the body to disk; its CRC32C (base64, big-endian), MD5 (hex) and size."""
        crc, md5, size = google_crc32c.Checksum(), hashlib.md5(), 0
        with part.open("wb") as out:
            for chunk in self._read_body():
                crc.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return base64.b64encode(crc.digest()).decode(), md5.hexdigest(), size

    def _download(self) -> None:
        found = self._blob("get")
        if found is None:
            return
        kind, pk, record = found
        blob = self.server.store.blob_path(kind, pk)
        if record["md5"] is None or not blob.exists():  # bytes arrived, whether or not processing is done
            return self._xml(404, "NoSuchKey", "The specified key does not exist.")
        self.server.stats.add(downloads=1)
        fault = self.server.faults.pick(["download"])
        if self._fault_before(fault, lambda s, m, h: self._xml(s, "InjectedFault", m, h)):
            return
        size = blob.stat().st_size
        span = _byte_range(self.headers.get("Range"), size)
        if span is None:
            return self._xml(416, "InvalidRange", "The requested range is not satisfiable.")
        start, end = span
        md5_b64 = base64.b64encode(bytes.fromhex(record["md5"])).decode()
        partial = self.headers.get("Range") is not None and size > 0
        self.send_response(206 if partial else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("x-goog-hash", f"crc32c={record['crc32c']}")
        self.send_header("x-goog-hash", f"md5={md5_b64}")
        self.send_header("x-goog-stored-content-length", str(size))
        self.send_header("ETag", f'"{record["md5"]}"')
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        limit = fault.amount if fault and fault.kind == "truncate" else None
        self.server.stats.add(bytes_out=end - start if limit is None else min(limit, end - start))
        _copy(blob, self.wfile, start, end, limit)
        if limit is not None:
            self._reset()

    # -- control ---------------------------------------------------------------------------------------------
    def _control(self, action: Any) -> None:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            return self._json(403, {"errors": [{"message": "control endpoints answer on loopback only"}]})
        try:
            self._json(200, action())
        except FaultConfigError as exc:
            self._json(400, {"errors": [{"message": str(exc)}]})

    def _configure_faults(self) -> dict:
        try:
            config = json.loads(b"".join(self._read_body()) or b"{}")
        except ValueError as exc:
            raise FaultConfigError(f"body is not JSON: {exc}") from exc
        self.server.faults.configure(config)
        return {"ok": True}


def _goog_hashes(values: list[str]) -> dict[str, str]:
    hashes = {}
    for value in values:
        for part in value.split(","):
            name, _, digest = part.strip().partition("=")
            hashes[name] = digest
    return hashes


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a `Range: bytes=a-b` request; the whole object without one."""
    if header is None or size == 0:  # an empty object is answered whole, as GCS does
        return 0, size
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        return max(0, size - int(last)), size
    start, end = int(first), min(size, int(last) + 1 if last else size)
    return (start, end) if start < size and start < end else None


def _copy(blob: Path, out: BinaryIO, start: int, end: int, limit: int | None) -> None:
    sent, stop = 0, end if limit is None else min(end, start + limit)
    with blob.open("rb") as source:
        source.seek(start)
        while start + sent < stop:
            chunk = source.read(min(CHUNK, stop - start - sent))
            if not chunk:
                break
            out.write(chunk)
            sent += len(chunk)
