"""Signed, expiring storage URLs, in the manner of V4 signed GCS URLs."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit


class UrlExpired(Exception):
    """The URL's lifetime is over (GCS answers 400 ExpiredToken)."""


class BadSignature(Exception):
    """The URL was not signed by this server (GCS answers 403 SignatureDoesNotMatch)."""


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a verified URL grants: one operation on one blob."""

    op: str  # "put" or "get"
    kind: str  # "clip" or "data"
    pk: int


class Signer:
    def __init__(self, secret: str, base_url: str, ttl_seconds: int) -> None:
        self._secret = secret.encode()
        self.base_url = base_url
        self.ttl_seconds = ttl_seconds

    def _mac(self, op: str, kind: str, pk: int, expires: int) -> str:
        message = f"{op}:{kind}:{pk}:{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, op: str, kind: str, pk: int) -> str:
        expires = int(time.time()) + self.ttl_seconds
        query = urlencode({"op": op, "expires": expires, "sig": self._mac(op, kind, pk, expires)})
        return f"{self.base_url}/_storage/{kind}/{pk}?{query}"

    def verify(self, path_and_query: str, op: str) -> BlobRef:
        """The blob a request may touch; raises BadSignature or UrlExpired."""
        parts = urlsplit(path_and_query)
        try:
            _, _, kind, pk_text = parts.path.split("/")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            pk, expires = int(pk_text), int(query["expires"])
            signature = query["sig"]
        except (ValueError, KeyError) as exc:
            raise BadSignature("malformed signed URL") from exc
        if query.get("op") != op or not hmac.compare_digest(signature, self._mac(op, kind, pk, expires)):
            raise BadSignature("signature does not match")
        if expires < time.time():
            raise UrlExpired("the signed URL has expired")
        return BlobRef(op, kind, pk)
