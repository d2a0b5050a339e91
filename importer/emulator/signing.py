"""Signed, expiring storage URLs, in the manner of V4 signed GCS URLs.

Upload URLs carry the signature in the query, as GCS's do. Download URLs carry it in the
path and end with the original file name, because Moveshelf's guide selects files with
`originalDataDownloadUri.endswith('.json')`, which only works when the URI ends with the name.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlencode, urlsplit


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
        """An upload URL: `/_storage/<kind>/<pk>?op=&expires=&sig=`."""
        expires = int(time.time()) + self.ttl_seconds
        query = urlencode({"op": op, "expires": expires, "sig": self._mac(op, kind, pk, expires)})
        return f"{self.base_url}/_storage/{kind}/{pk}?{query}"

    def download_url(self, kind: str, pk: int, filename: str | None) -> str:
        """A download URL whose last path segment is the file name: `/_storage/<kind>/<pk>/<expires>/<sig>/<name>`."""
        expires = int(time.time()) + self.ttl_seconds
        name = quote(filename or "blob", safe="")
        return f"{self.base_url}/_storage/{kind}/{pk}/{expires}/{self._mac('get', kind, pk, expires)}/{name}"

    def verify(self, path_and_query: str, op: str) -> BlobRef:
        """The blob a request may touch; raises BadSignature or UrlExpired."""
        parts = urlsplit(path_and_query)
        try:
            segments = parts.path.split("/")[2:]
            if len(segments) == 5:  # path-signed download URL
                kind, pk_text, expires_text, signature, _name = segments
                signed_op = "get"
            else:
                kind, pk_text = segments
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                expires_text, signature, signed_op = query["expires"], query["sig"], query.get("op")
            pk, expires = int(pk_text), int(expires_text)
        except (ValueError, KeyError) as exc:
            raise BadSignature("malformed signed URL") from exc
        if signed_op != op or not hmac.compare_digest(signature, self._mac(op, kind, pk, expires)):
            raise BadSignature("signature does not match")
        if expires < time.time():
            raise UrlExpired("the signed URL has expired")
        return BlobRef(op, kind, pk)
