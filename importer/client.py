"""The only module that speaks HTTP: GraphQL calls, streamed uploads, object hashes.

Each HTTP answer is classified here into the failures of `errors`: transient (connection
trouble, timeouts, 408, 429, 5xx, a cut-off answer) may be retried; a rejection (GraphQL
errors, redirects, other 4xx) may not; a refused key ends the run. Reads and idempotent writes are retried here with
exponential backoff and jitter, honouring Retry-After; creates are not (`retry=False`),
because a create that failed after it was sent may have committed: the executor
re-reads the parent before it tries again.

GraphQL goes through urllib3's pools, shared by every thread, which never send a request twice on
their own. Storage (a first import makes one upload per file) goes through libcurl, a handle per
thread: its HTTP exchange costs a quarter of the CPU of urllib3's, whose answers are parsed by the
`email` package. libcurl sends a request again on its own when a kept-alive connection turns out
closed before any answer: harmless for storage, where a PUT sends the same bytes to the same signed
URL, and the reason GraphQL creates stay on urllib3. Both take from the environment what requests
would: the proxy of each scheme and host (HTTPS_PROXY, NO_PROXY, with its credentials), and the CA
bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's); certificates are always verified.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import pycurl
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_auth_from_url, get_environ_proxies, select_proxy
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from urllib3.exceptions import HTTPError

from .cancel import Cancellation
from .config import unreachable
from .errors import FatalError, Interrupted, Rejected, TransientError, Unreachable
from .reading import CHUNK, chunks
from .secrets import remember, scrub

T = TypeVar("T")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
HEADERS = {"User-Agent": "moveshelf-import", "Accept-Encoding": "gzip, deflate"}


class _Answer(Protocol):
    """What the client reads of an HTTP answer, from urllib3 or libcurl alike."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...  # found by lower-case name; repeated headers joined by ", "
    @property
    def data(self) -> bytes: ...


def _retry_after(response: _Answer) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _messages(response: _Answer) -> str:
    text = response.data.decode("utf-8", "replace")
    try:
        return scrub("; ".join(e["message"] for e in json.loads(text)["errors"]))
    except (ValueError, KeyError, TypeError):
        return scrub(text)[:200].strip() or response.reason or ""  # scrubbed whole: a cut key is still a leak


def _ca_bundle() -> str:
    """Where the CA certificates are, as requests finds them: REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE (a file or a
    folder), else certifi's bundle."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH


def _proxy(url: str) -> str | None:
    """The proxy the environment names for the URL's scheme and host, as requests would choose it (HTTPS_PROXY,
    NO_PROXY, ALL_PROXY), with a scheme."""
    proxy = select_proxy(url, get_environ_proxies(url))
    return None if proxy is None else proxy if "://" in proxy else f"http://{proxy}"


class _Routes:
    """How each scheme and host is reached, decided once and shared by every thread: the proxy the environment
    names for it (HTTPS_PROXY, NO_PROXY, ALL_PROXY, as requests would choose it), else a pool of the host's own,
    asked for the URL's path so that a request parses no URL and looks up no pool. A pool keeps up to `size`
    connections, the bound on requests in flight."""

    def __init__(self, size: int, timeout: tuple[float, float]) -> None:
        self._options: dict[str, Any] = {"maxsize": size, "block": False,  # retries are ours (`Client.retrying`)
                                         "retries": urllib3.Retry(total=False, redirect=False),
                                         "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1])}
        bundle = _ca_bundle()
        self._trust = {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs": bundle}
        self._by_host: dict[tuple[str, str], Callable[..., urllib3.BaseHTTPResponse]] = {}
        self._by_proxy: dict[str, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def urlopen(self, method: str, url: str, **options: Any) -> urllib3.BaseHTTPResponse:
        parts = urlsplit(url)
        send = self._by_host.get((parts.scheme, parts.netloc))
        if send is None:
            with self._lock:
                send = self._by_host[(parts.scheme, parts.netloc)] = self._route(url)
        return send(method, parts, **options)

    def _route(self, url: str) -> Callable[..., urllib3.BaseHTTPResponse]:
        proxy = _proxy(url)
        if proxy is None:
            tls = self._trust if urlsplit(url).scheme.lower() == "https" else {}
            pool = urllib3.connection_from_url(url, **self._options, **tls)
            return lambda method, parts, **options: pool.urlopen(
                method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), assert_same_host=False,
                **options)
        manager = self._by_proxy.get(proxy) or self._by_proxy.setdefault(proxy, self._proxy(proxy))
        return lambda method, parts, **options: manager.urlopen(method, parts.geturl(), **options)

    def _proxy(self, proxy: str) -> urllib3.PoolManager:
        """A manager of connections through an HTTP(S) or SOCKS proxy, with the proxy's credentials."""
        username, password = get_auth_from_url(proxy)
        if proxy.lower().startswith("socks"):
            from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks, as requests' SOCKS support does

            return SOCKSProxyManager(proxy, username=username or None, password=password or None, **self._options,
                                     **self._trust)
        headers = urllib3.make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, **self._options, **self._trust)


class _Slots:
    """A count of slots handed to waiting threads in the order they came: each waiter is woken once, with its slot.
    With a plain semaphore a thread that gives a slot back and asks again at once can take it from under the waiter
    it woke, which then sleeps again (uploads keep every slot busy, so GraphQL requests wait for theirs)."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: deque[threading.Lock] = deque()
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            handed = threading.Lock()
            handed.acquire()
            self._waiting.append(handed)
        try:
            handed.acquire()  # released by `__exit__` of the thread that hands its slot over
        except BaseException:  # Ctrl-C in the main thread: leave the queue, or give back the slot handed meanwhile
            with self._lock:
                if handed in self._waiting:
                    self._waiting.remove(handed)
                    raise
            self.__exit__()
            raise

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1


class _Body:
    """A file streamed in large chunks (constant memory), counting bytes as they go out."""

    def __init__(self, path: str | Path, size: int, progress: Callable[[int], None], cancel: Cancellation) -> None:
        self._chunks = chunks(path, size)
        self._rest = memoryview(b"")
        self._size = size
        self._progress = progress
        self._cancel = cancel
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int) -> bytes:
        """At most `amount` bytes, the next ones of the file; b"" at its end."""
        if self._cancel.cancelled:
            raise Interrupted("interrupted during upload")
        if not self._rest:
            self._rest = memoryview(next(self._chunks, b""))
        piece, self._rest = self._rest[:amount], self._rest[amount:]
        if piece:
            self.sent += len(piece)
            self._progress(len(piece))
        return piece.obj if len(piece) == len(piece.obj) else bytes(piece)  # a whole chunk is sent without a copy

    def close(self) -> None:
        self._chunks.close()


@dataclass(frozen=True)
class _Reply:
    """An answer from storage, as libcurl gives it: its header lines are read only when asked for (an upload that
    succeeds needs its status alone)."""

    status: int
    lines: list[bytes]
    data: bytes

    @cached_property
    def _block(self) -> list[str]:
        """The last header block (a proxy's answer to CONNECT, and 1xx answers, come before it)."""
        starts = [i for i, line in enumerate(self.lines) if line.startswith(b"HTTP/")] or [0]
        return [line.decode("latin-1").strip() for line in self.lines[starts[-1]:]]

    @property
    def reason(self) -> str:
        words = self._block[0].split(" ", 2) if self._block else []
        return words[2] if len(words) > 2 else ""

    @cached_property
    def headers(self) -> dict[str, str]:
        """By lower-case name; repeated headers joined by ", "."""
        found: dict[str, str] = {}
        for line in self._block[1:]:
            name, colon, value = line.partition(":")
            if colon:
                name, value = name.strip().lower(), value.strip()
                found[name] = f"{found[name]}, {value}" if name in found else value
        return found


# libcurl's failures by their code, in words (its own messages may name hosts and paths).
_CURL_FAILURES = {6: "host not found", 7: "could not connect", 18: "answer cut off", 28: "timed out",
                  35: "TLS handshake failed", 52: "empty answer", 55: "sending failed", 56: "receiving failed",
                  60: "certificate not trusted"}


class _Storage:
    """Storage requests through libcurl: a handle per thread, each keeping its connections alive; the proxy of each
    scheme and host decided once. Certificates are verified against the CA bundle requests would use; a timeout
    ends a connect that takes `timeout[0]` seconds and an exchange silent for `timeout[1]`."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        bundle = _ca_bundle()
        trust = (pycurl.CAPATH, pycurl.PROXY_CAPATH) if os.path.isdir(bundle) else (pycurl.CAINFO, pycurl.PROXY_CAINFO)
        self._options = [*((option, bundle) for option in trust),
                         (pycurl.NOSIGNAL, 1), (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
                         (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1), (pycurl.NOPROXY, ""),
                         (pycurl.USERAGENT, HEADERS["User-Agent"]),
                         (pycurl.ACCEPT_ENCODING, HEADERS["Accept-Encoding"]),
                         (pycurl.UPLOAD_BUFFERSIZE, CHUNK), (pycurl.CONNECTTIMEOUT_MS, int(timeout[0] * 1000)),
                         (pycurl.LOW_SPEED_LIMIT, 1), (pycurl.LOW_SPEED_TIME, max(1, round(timeout[1])))]
        self._proxies: dict[str, str] = {}
        self._local = threading.local()

    def _handle(self) -> pycurl.Curl:
        """This thread's handle, with the options every request shares."""
        handle = getattr(self._local, "handle", None)
        if handle is None:
            handle = self._local.handle = pycurl.Curl()
            for option, value in self._options:
                handle.setopt(option, value)
        return handle

    def _proxy(self, url: str) -> str:
        """The proxy for the URL's scheme and host ("": none, whatever libcurl would find), decided once for each;
        they are told apart by the URL up to its path, which costs less than parsing every signed URL."""
        origin = url[:url.find("/", url.find("//") + 2) % (len(url) + 1)]
        found = self._proxies.get(origin)
        if found is None:
            found = self._proxies[origin] = _proxy(url) or ""
        return found

    def request(self, url: str, failure: str, headers: list[str], body: _Body | None = None) -> _Reply:
        """One exchange: a PUT of `body`, else a GET. Connection trouble, timeouts and a cut-off answer are
        transient; an error reading the file, or the run's cancellation, is raised as itself."""
        handle = self._handle()
        lines: list[bytes] = []
        data: list[bytes] = []
        problems: list[BaseException] = []
        try:
            handle.setopt(pycurl.URL, url)
            handle.setopt(pycurl.PROXY, self._proxy(url))
        except (ValueError, pycurl.error):
            raise Rejected(f"{failure}: not a URL that can be used") from None
        handle.setopt(pycurl.HTTPHEADER, [*headers, "Expect:"])  # no wait for "100 Continue"
        handle.setopt(pycurl.HEADERFUNCTION, lines.append)
        handle.setopt(pycurl.WRITEFUNCTION, data.append)
        if body is None:
            handle.setopt(pycurl.HTTPGET, 1)  # a GET, whatever the handle sent before
        else:
            handle.setopt(pycurl.UPLOAD, 1)  # a PUT
            handle.setopt(pycurl.INFILESIZE_LARGE, len(body))
            handle.setopt(pycurl.READFUNCTION, lambda amount: _read(body, amount, problems))
        try:
            handle.perform()
        except pycurl.error as exc:
            if problems:
                raise problems[0] from None
            code = exc.args[0]
            if code in (pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL):
                raise Rejected(f"{failure}: not a URL that can be used") from None
            raise TransientError(f"{failure}: {_CURL_FAILURES.get(code, f'libcurl error {code}')}") from None
        return _Reply(handle.getinfo(pycurl.RESPONSE_CODE), lines, b"".join(data))


def _read(body: _Body, amount: int, problems: list[BaseException]) -> bytes | int:
    """libcurl's read callback: an exception here would be printed and lost, so it is kept for after the exchange
    and the exchange is aborted."""
    try:
        return body.read(amount)
    except (OSError, Interrupted) as exc:
        problems.append(exc)
        return pycurl.READFUNC_ABORT


class Client:
    """A Moveshelf GraphQL client: connection pools shared by every thread, one backoff for all, and one bound
    (`jobs`) on the requests in flight, uploads included, whichever thread sends them."""

    def __init__(self, api_url: str, api_key: str, *, attempts: int = 6, max_wait: float = 60.0,
                 timeout: tuple[float, float] = (10.0, 300.0), cancel: Cancellation | None = None,
                 jobs: int = 8) -> None:
        self.api_url = api_url
        self._api_key = api_key
        remember(api_key)  # servers may echo it in error bodies
        self._attempts = attempts
        self._max_wait = max_wait
        self.cancel = cancel or Cancellation()
        self._in_flight = _Slots(max(1, jobs))
        self._routes = _Routes(max(1, jobs), timeout)
        self._storage = _Storage(timeout)
        self._graphql_headers = {**HEADERS, "Content-Type": "application/json",
                                 "Authorization": f"Bearer {api_key}"}
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    # -- plumbing ----------------------------------------------------------------------------------
    def _request(self, body: bytes) -> urllib3.BaseHTTPResponse:
        """One GraphQL exchange in one of the `jobs` slots, its answer read whole; no redirect is followed.
        Connection trouble, timeouts and a cut-off answer are transient."""
        try:
            with self._request_slot():
                return self._routes.urlopen("POST", self.api_url, redirect=False, body=body,
                                            headers=self._graphql_headers)
        except ValueError:  # urllib3's LocationValueError among them
            raise unreachable(self.api_url, "not a URL that can be used") from None
        except HTTPError as exc:
            raise TransientError(f"no answer from {self.api_url}: {type(exc).__name__}") from None

    def _storage_request(self, url: str, failure: str, headers: list[str], body: _Body | None = None) -> _Reply:
        """One storage exchange in one of the `jobs` slots (`failure` says what failed, never the URL: a signed
        storage URL is a secret)."""
        with self._request_slot():
            return self._storage.request(url, failure, headers, body)

    @contextmanager
    def _request_slot(self) -> Iterator[None]:
        """Wait while the server has asked everyone to slow down (429 with Retry-After), then take one of the
        `jobs` slots for the request's whole exchange."""
        self.cancel.check()
        if self._pause_until > time.monotonic():
            self.cancel.sleep(self._pause_until - time.monotonic())
        with self._in_flight:
            self.cancel.check()
            yield

    def _slow_down(self, seconds: float) -> None:
        with self._pause_lock:
            self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=0.5, max=self._max_wait)(state)
        error = state.outcome.exception() if state.outcome else None
        after = getattr(error, "retry_after", None)
        return backoff if after is None else max(after, 0.05)

    def retrying(self, action: Callable[[], T], where: str | None = None) -> T:
        """Run `action`, retrying transient failures with backoff; `Unreachable` once the attempts are spent.
        `where` names what could not be reached (signed storage URLs are secrets and never printed).
        The first attempt runs before any retry machinery is built: nearly every request succeeds at once, and
        building it cost a tenth of a first import's CPU. After a failure the machinery takes over from it."""
        try:
            return action()
        except TransientError as exc:
            failed: list[TransientError] = [exc]

        def again() -> T:
            if failed:
                raise failed.pop()  # the first attempt's failure, as if it had failed here
            return action()

        try:
            for attempt in Retrying(stop=stop_after_attempt(self._attempts), wait=self._wait,
                                    sleep=self.cancel.sleep, retry=retry_if_exception_type(TransientError),
                                    reraise=True):
                with attempt:
                    return again()
        except Unreachable:
            raise
        except TransientError as exc:
            raise Unreachable(where or self.api_url, self._attempts, exc) from None
        raise AssertionError("tenacity returns or raises")

    def _check(self, response: _Answer, what: str) -> None:
        status = response.status
        if status in (401, 403) and what == "GraphQL":
            raise FatalError(f"the server rejected the API key ({status}: {_messages(response)})",
                             "check the key file named by mvshlf-config.json, or MOVESHELF_API_KEY")
        if status in TRANSIENT_STATUS:
            after = _retry_after(response)
            if status == 429:
                self._slow_down(after if after is not None else 1.0)
            raise TransientError(f"{what} answered {status}: {_messages(response)}", after)
        if status >= 400:
            raise Rejected(f"{what} answered {status}: {_messages(response)}")
        if status >= 300:
            raise Rejected(f"{what} answered {status}, a redirect, which is not followed: check apiUrl")

    # -- GraphQL ---------------------------------------------------------------------------------------
    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The whole answer, `data` and `errors`, of one GraphQL request."""
        body = json.dumps({"query": query, "variables": variables}).encode()
        response = self._request(body)
        self._check(response, "GraphQL")
        try:
            return json.loads(response.data)
        except ValueError:
            raise TransientError("the server's answer was cut off") from None

    def _send(self, query: str, variables: dict[str, Any] | None, retry: bool) -> dict[str, Any]:
        variables = variables or {}
        return self.retrying(lambda: self._post(query, variables)) if retry else self._post(query, variables)

    def call(self, query: str, variables: dict[str, Any] | None = None, *, retry: bool = True) -> dict[str, Any]:
        """One GraphQL operation; with retry=False a transient failure is raised for the caller to reconcile."""
        body = self._send(query, variables, retry)
        if body.get("errors"):
            raise Rejected(scrub("; ".join(str(e.get("message")) for e in body["errors"])))
        return body["data"]

    def call_aliased(self, query: str, variables: dict[str, Any], *, retry: bool = True
                     ) -> tuple[dict[str, Any], dict[str, str]]:
        """Several aliased operations in one request: the data, and the error of each alias that failed."""
        body = self._send(query, variables, retry)
        errors: dict[str, str] = {}
        for error in body.get("errors") or []:
            alias = (error.get("path") or ["(request)"])[0]
            errors[str(alias)] = scrub("; ".join(filter(None, [errors.get(str(alias)), str(error.get("message"))])))
        if "(request)" in errors or body.get("data") is None:
            raise Rejected(errors.get("(request)") or "; ".join(errors.values()) or "no data in the answer")
        return body["data"], errors

    # -- storage -----------------------------------------------------------------------------------------
    def upload(self, url: str, path: str | Path, size: int, crc32c: str, progress: Callable[[int], None]) -> None:
        """PUT a file to a signed URL, streamed; repeated on transient failure (same URL, same bytes).

        `progress(n)` hears of every chunk as it goes out (n > 0); after an attempt that did not
        succeed it hears `-sent`: those bytes are not stored and must go again (or never will).
        The bytes sent stay sent: a listener that counts traffic ignores the negative calls.
        """

        headers = ["Content-Type: application/octet-stream", f"x-goog-hash: crc32c={crc32c}"]

        def put() -> None:
            body = _Body(path, size, progress, self.cancel)
            stored = False
            try:
                self._check(self._storage_request(url, "upload interrupted", headers, body), "storage")
                stored = True
            finally:
                body.close()
                if not stored:
                    progress(-body.sent)

        self.retrying(put, "storage")

    def object_hash(self, url: str) -> tuple[str, int] | None:
        """(crc32c, size) of a stored object from a one-byte ranged GET, or None if storage does not say."""

        def head() -> _Reply:
            response = self._storage_request(url, "no answer from storage", ["Range: bytes=0-0"])
            self._check(response, "storage")
            return response

        try:
            response = self.retrying(head, "storage")
        except Rejected:
            return None
        hashes = dict(part.strip().partition("=")[::2] for part in response.headers.get("x-goog-hash", "").split(","))
        size = response.headers.get("x-goog-stored-content-length")
        return (hashes["crc32c"], int(size)) if hashes.get("crc32c") and size and size.isdigit() else None
