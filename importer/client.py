"""The only module that speaks HTTP: GraphQL calls, streamed uploads, object hashes.

Each HTTP answer is classified here into the failures of `errors`: transient (connection
trouble, timeouts, 408, 429, 5xx, a cut-off answer) may be retried; a rejection (GraphQL
errors, redirects, other 4xx) may not; a refused key ends the run. Reads and idempotent writes are retried here with
exponential backoff and jitter, honouring Retry-After; creates are not (`retry=False`),
because a create that failed after it was sent may have committed: the executor
re-reads the parent before it tries again.

Requests go through urllib3's pools, shared by every thread, not through `requests.Session`: a
session prepares, merges settings and runs hooks on every call, which cost more CPU than the rest of
a request to a near server (a first import makes one request per file). What a session would take
from the environment is taken once, as requests takes it: the proxy of each scheme and host
(HTTPS_PROXY, NO_PROXY, with its credentials), and the CA bundle (REQUESTS_CA_BUNDLE,
CURL_CA_BUNDLE, else certifi's); certificates are always verified.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_auth_from_url, get_environ_proxies, select_proxy
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from urllib3.exceptions import HTTPError

from .cancel import Cancellation
from .config import unreachable
from .errors import FatalError, Interrupted, Rejected, TransientError, Unreachable
from .reading import chunks
from .secrets import remember, scrub

T = TypeVar("T")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
HEADERS = {"User-Agent": "moveshelf-import", "Accept-Encoding": "gzip, deflate"}


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _messages(response: urllib3.BaseHTTPResponse) -> str:
    text = response.data.decode("utf-8", "replace")
    try:
        return scrub("; ".join(e["message"] for e in json.loads(text)["errors"]))
    except (ValueError, KeyError, TypeError):
        return scrub(text)[:200].strip() or response.reason or ""  # scrubbed whole: a cut key is still a leak


def _trust() -> dict[str, str]:
    """Where the CA certificates are, as requests finds them: REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE (a file or a
    folder), else certifi's bundle."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
    return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir" if os.path.isdir(bundle) else "ca_certs": bundle}


class _Routes:
    """How each scheme and host is reached, decided once and shared by every thread: the proxy the environment
    names for it (HTTPS_PROXY, NO_PROXY, ALL_PROXY, as requests would choose it), else a pool of the host's own,
    asked for the URL's path so that a request parses no URL and looks up no pool. A pool keeps up to `size`
    connections, the bound on requests in flight."""

    def __init__(self, size: int, timeout: tuple[float, float]) -> None:
        self._options: dict[str, Any] = {"maxsize": size, "block": False,  # retries are ours (`Client.retrying`)
                                         "retries": urllib3.Retry(total=False, redirect=False),
                                         "timeout": urllib3.Timeout(connect=timeout[0], read=timeout[1])}
        self._trust = _trust()
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
        proxy = select_proxy(url, get_environ_proxies(url))
        if proxy is None:
            tls = self._trust if urlsplit(url).scheme.lower() == "https" else {}
            pool = urllib3.connection_from_url(url, **self._options, **tls)
            return lambda method, parts, **options: pool.urlopen(
                method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), assert_same_host=False,
                **options)
        proxy = proxy if "://" in proxy else f"http://{proxy}"
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
        self._size = size
        self._progress = progress
        self._cancel = cancel
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, _amount: int = -1) -> bytes:
        if self._cancel.cancelled:
            raise Interrupted("interrupted during upload")
        chunk = next(self._chunks, b"")
        if chunk:
            self.sent += len(chunk)
            self._progress(len(chunk))
        return chunk

    def close(self) -> None:
        self._chunks.close()


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
        self._graphql_headers = {**HEADERS, "Content-Type": "application/json",
                                 "Authorization": f"Bearer {api_key}"}
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    # -- plumbing ----------------------------------------------------------------------------------
    def _request(self, method: str, url: str, failure: str, **options: Any) -> urllib3.BaseHTTPResponse:
        """One exchange in one of the `jobs` slots, its answer read whole; no redirect is followed. Connection
        trouble, timeouts and a cut-off answer are transient (`failure` says what failed, never the URL: a signed
        storage URL is a secret)."""
        try:
            with self._request_slot():
                return self._routes.urlopen(method, url, redirect=False, **options)
        except ValueError:  # urllib3's LocationValueError among them
            if url == self.api_url:
                raise unreachable(url, "not a URL that can be used") from None
            raise Rejected(f"{failure}: not a URL that can be used") from None
        except HTTPError as exc:
            raise TransientError(f"{failure}: {type(exc).__name__}") from None

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
        `where` names what could not be reached (signed storage URLs are secrets and never printed)."""
        try:
            for attempt in Retrying(stop=stop_after_attempt(self._attempts), wait=self._wait,
                                    sleep=self.cancel.sleep, retry=retry_if_exception_type(TransientError),
                                    reraise=True):
                with attempt:
                    return action()
        except Unreachable:
            raise
        except TransientError as exc:
            raise Unreachable(where or self.api_url, self._attempts, exc) from None
        raise AssertionError("tenacity returns or raises")

    def _check(self, response: urllib3.BaseHTTPResponse, what: str) -> None:
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
        response = self._request("POST", self.api_url, f"no answer from {self.api_url}", body=body,
                                 headers=self._graphql_headers)
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

        headers = {**HEADERS, "Content-Type": "application/octet-stream", "Content-Length": str(size),
                   "x-goog-hash": f"crc32c={crc32c}"}

        def put() -> None:
            body = _Body(path, size, progress, self.cancel)
            stored = False
            try:
                self._check(self._request("PUT", url, "upload interrupted", body=body, headers=headers), "storage")
                stored = True
            finally:
                body.close()
                if not stored:
                    progress(-body.sent)

        self.retrying(put, "storage")

    def object_hash(self, url: str) -> tuple[str, int] | None:
        """(crc32c, size) of a stored object from a one-byte ranged GET, or None if storage does not say."""

        def head() -> urllib3.BaseHTTPResponse:
            response = self._request("GET", url, "no answer from storage", headers={**HEADERS, "Range": "bytes=0-0"})
            self._check(response, "storage")
            return response

        try:
            response = self.retrying(head, "storage")
        except Rejected:
            return None
        hashes = dict(part.strip().partition("=")[::2] for part in response.headers.get("x-goog-hash", "").split(","))
        size = response.headers.get("x-goog-stored-content-length")
        return (hashes["crc32c"], int(size)) if hashes.get("crc32c") and size and size.isdigit() else None
