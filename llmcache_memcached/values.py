"""Stored values: the backend's small header, compression, size limits and expiry times.

Layout (little-endian, 50 bytes of header, then the core's bytes)::

    magic u8 | flags u8 | created f64 | expires f64 |
    global gen u64 | global seq u64 | namespace gen u64 | namespace seq u64 | payload

``created`` and the tags let ``get`` apply invalidation rules without reading the core's
envelope; ``expires`` (0: never) makes expiry exact although memcached counts whole
seconds. Flag bit 0 means the payload is zlib-compressed.
"""

from __future__ import annotations

import math
import struct
import zlib

__all__ = [
    "DEFAULT_MAX_ITEM_SIZE",
    "HEADER",
    "ITEM_OVERHEAD",
    "MAGIC",
    "THIRTY_DAYS",
    "ZLIB",
    "expire_time",
    "pack",
    "payload",
]

HEADER = struct.Struct("<BBddQQQQ")
MAGIC = 0xA7
ZLIB = 1
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024  # memcached's default -I
ITEM_OVERHEAD = 64  # memcached's item header and line ends; measured 59 bytes + the key
THIRTY_DAYS = 30 * 24 * 3600  # memcached reads a larger exptime as a Unix timestamp


def pack(
    body: bytes,
    *,
    created: float,
    expires: float,
    tags: tuple[int, int, int, int],
    room: int,
) -> bytes | None:
    """Return the value to store, compressed if it would not fit in ``room`` bytes.

    :param tags: global gen and seq, namespace gen and seq (zeros outside a namespace).
    :param room: the largest value memcached accepts under this key.
    :return: the value, or ``None`` when even the compressed value does not fit.
    """
    flags = 0
    if HEADER.size + len(body) > room:
        body, flags = zlib.compress(body, 6), ZLIB
        if HEADER.size + len(body) > room:
            return None
    return HEADER.pack(MAGIC, flags, created, expires, *tags) + body


def payload(value: bytes, flags: int) -> bytes:
    """Return the core's bytes from a stored value whose header was read."""
    body = value[HEADER.size :]
    return zlib.decompress(body) if flags & ZLIB else body


def expire_time(ttl: float | None, now: float) -> int:
    """Return memcached's ``exptime`` for a TTL in seconds (``None``: never expires).

    memcached's clock ticks in whole seconds, so an item may die up to a second early: one
    second is added, and the exact expiry is enforced on read from the header. Up to 30
    days the time is relative; beyond it memcached wants an absolute Unix time.
    """
    if ttl is None:
        return 0
    seconds = math.ceil(ttl) + 1
    if seconds > THIRTY_DAYS:
        return math.ceil(now + ttl) + 1
    return seconds
