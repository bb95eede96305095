"""``--isolate-by-key``: each caller's API key has a namespace of its own.

The namespace is ``<base>.k<HMAC-SHA256(secret, key)>`` (first 24 hex digits, 96 bits):
the same key always lands in the same namespace, on every proxy that shares the secret;
two keys never share one; and neither a namespace nor a stored key gives the API key
back. The API key itself is never kept: only the digest is, in a small bounded map.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["Tenants", "caller_key"]

_MAX_TENANTS = 4096  # transports kept; an evicted tenant's next call builds it again


def caller_key(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Return the caller's API key: ``Authorization`` or else ``x-api-key`` (``b""``: none)."""
    found = b""
    for name, value in headers:
        lower = name.lower()
        if lower == b"authorization":
            return value
        if lower == b"x-api-key":
            found = value
    return found


class Tenants:
    """The transport of each tenant, made on first use from ``make(namespace)``.

    :param base: the namespace tenants' namespaces start with.
    :param secret: the HMAC key.
    :param make: builds the transport of a namespace.
    """

    def __init__(self, base: str, secret: str, make: Callable[[str], Any]) -> None:
        self._base = base
        self._secret = secret.encode()
        self._make = make
        self._by_digest: OrderedDict[bytes, Any] = OrderedDict()

    def namespace(self, api_key: bytes) -> str:
        """Return the namespace of an API key."""
        digest = hmac.new(self._secret, api_key, hashlib.sha256).hexdigest()[:24]
        return f"{self._base}.k{digest}"

    def transport(self, api_key: bytes) -> Any:
        """Return the transport of an API key's namespace."""
        digest = hmac.digest(self._secret, api_key, "sha256")
        found = self._by_digest.get(digest)
        if found is None:
            found = self._by_digest[digest] = self._make(self.namespace(api_key))
            if len(self._by_digest) > _MAX_TENANTS:
                self._by_digest.popitem(last=False)
        else:
            self._by_digest.move_to_end(digest)
        return found
