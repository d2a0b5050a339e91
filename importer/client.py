"""The only module that speaks HTTP: GraphQL calls, streamed uploads, object hashes.

Each HTTP answer is classified here into the failures of `errors`: transient (connection
trouble, timeouts, 408, 429, 5xx, a cut-off answer) may be retried; a rejection (GraphQL
errors, other 4xx) may not; a refused key ends the run. Reads and idempotent writes are retried here with
exponential backoff and jitter, honouring Retry-After; creates are not (`retry=False`),
because a create that failed after it was sent may have committed: the executor
re-reads the parent before it tries again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .cancel import Cancellation
from .errors import FatalError, Interrupted, Rejected, TransientError, Unreachable
from .reading import chunks
from .secrets import remember, scrub

T = TypeVar("T")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _messages(response: requests.Response) -> str:
    try:
        return scrub("; ".join(e["message"] for e in response.json()["errors"]))
    except (ValueError, KeyError, TypeError):
        return scrub(response.text)[:200].strip() or response.reason  # scrubbed whole: a cut key is still a leak


class _Body:
    """A file streamed in large chunks (constant memory), counting bytes as they go out."""

    def __init__(self, path: Path, size: int, progress: Callable[[int], None], cancel: Cancellation) -> None:
        self._chunks = chunks(path)
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
        self.sent += len(chunk)
        self._progress(len(chunk))
        return chunk

    def close(self) -> None:
        self._chunks.close()


class Client:
    """A Moveshelf GraphQL client: one `requests.Session` per thread, one backoff for all, and one bound
    (`jobs`) on the requests in flight, uploads included, whichever thread sends them."""

    def __init__(self, api_url: str, api_key: str, *, attempts: int = 6, max_wait: float = 60.0,
                 timeout: tuple[float, float] = (10.0, 300.0), cancel: Cancellation | None = None,
                 jobs: int = 8) -> None:
        self.api_url = api_url
        self._api_key = api_key
        remember(api_key)  # servers may echo it in error bodies
        self._attempts = attempts
        self._max_wait = max_wait
        self._timeout = timeout
        self.cancel = cancel or Cancellation()
        self._in_flight = threading.BoundedSemaphore(max(1, jobs))
        self._local = threading.local()
        self._proxy_cache: dict[tuple[str, str], dict[str, str]] = {}
        self._pause_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    # -- plumbing ----------------------------------------------------------------------------------
    def _http(self) -> requests.Session:
        """This thread's session. The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read once per host
        and run (`_proxies`), not on every request as requests' `trust_env` does, which costs more than the rest of
        a request to a near server."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        return session

    def _proxies(self, url: str) -> dict[str, str]:
        """The proxies the environment names for a URL's scheme and host (none when NO_PROXY covers it), cached."""
        scheme, host = urlsplit(url)[:2]
        found = self._proxy_cache.get((scheme, host))
        if found is None:
            found = self._proxy_cache[(scheme, host)] = requests.utils.get_environ_proxies(url)
        return found

    @contextmanager
    def _request_slot(self) -> Iterator[None]:
        """Wait while the server has asked everyone to slow down (429 with Retry-After), then take one of the
        `jobs` slots for the request's whole exchange."""
        self.cancel.check()
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

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403) and what == "GraphQL":
            raise FatalError(f"the server rejected the API key ({response.status_code}: {_messages(response)})",
                             "check the key file named by mvshlf-config.json, or MOVESHELF_API_KEY")
        if response.status_code in TRANSIENT_STATUS:
            after = _retry_after(response)
            if response.status_code == 429:
                self._slow_down(after if after is not None else 1.0)
            raise TransientError(f"{what} answered {response.status_code}: {_messages(response)}", after)
        if response.status_code >= 400:
            raise Rejected(f"{what} answered {response.status_code}: {_messages(response)}")

    # -- GraphQL ---------------------------------------------------------------------------------------
    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The whole answer, `data` and `errors`, of one GraphQL request."""
        try:
            with self._request_slot():
                response = self._http().post(self.api_url, json={"query": query, "variables": variables},
                                             headers={"Authorization": f"Bearer {self._api_key}"},
                                             timeout=self._timeout, proxies=self._proxies(self.api_url))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"no answer from {self.api_url}: {type(exc).__name__}") from None
        self._check(response, "GraphQL")
        try:
            return response.json()
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
    def upload(self, url: str, path: Path, size: int, crc32c: str, progress: Callable[[int], None]) -> None:
        """PUT a file to a signed URL, streamed; repeated on transient failure (same URL, same bytes).

        `progress(n)` hears of every chunk as it goes out (n > 0); after an attempt that did not
        succeed it hears `-sent`: those bytes are not stored and must go again (or never will).
        The bytes sent stay sent: a listener that counts traffic ignores the negative calls.
        """

        def put() -> None:
            body = _Body(path, size, progress, self.cancel)
            stored = False
            try:
                with self._request_slot():
                    response = self._http().put(url, data=body, timeout=self._timeout, proxies=self._proxies(url),
                                                headers={"Content-Type": "application/octet-stream",
                                                         "x-goog-hash": f"crc32c={crc32c}"})
                self._check(response, "storage")
                stored = True
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"upload interrupted: {type(exc).__name__}") from None
            finally:
                body.close()
                if not stored:
                    progress(-body.sent)

        self.retrying(put, "storage")

    def object_hash(self, url: str) -> tuple[str, int] | None:
        """(crc32c, size) of a stored object from a one-byte ranged GET, or None if storage does not say."""

        def head() -> requests.Response:
            try:
                with self._request_slot():
                    response = self._http().get(url, headers={"Range": "bytes=0-0"}, timeout=self._timeout,
                                                proxies=self._proxies(url))
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"no answer from storage: {type(exc).__name__}") from None
            self._check(response, "storage")
            return response

        try:
            response = self.retrying(head, "storage")
        except Rejected:
            return None
        hashes = dict(part.strip().partition("=")[::2] for part in response.headers.get("x-goog-hash", "").split(","))
        size = response.headers.get("x-goog-stored-content-length")
        return (hashes["crc32c"], int(size)) if hashes.get("crc32c") and size and size.isdigit() else None
