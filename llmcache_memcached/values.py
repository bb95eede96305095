"""Stored values: the backend's small header, compression, size limits and expiry times.

Layout (little-endian, 50 bytes of header, then the core's bytes)::

    magic u8 | flags u8 | created f64 | expires f64 | gen u64 | seq u64 |
    16 bytes reserved (zero) | payload

``created`` and the tag (``gen`` and ``seq`` of the invalidation record that governs the
entry, as the writer saw it) let ``get`` apply invalidation rules without reading the
core's envelope; ``expires`` (0: never) makes expiry exact although memcached counts whole
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

# The reserved bytes held a second tag in the earlier layout (one record per namespace
# plus a global one); keeping the size keeps the header's length and magic stable. A value
# of that layout is a miss: its first tag never equals the generation of a current record.
HEADER = struct.Struct("<BBddQQ16x")
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
    tag: tuple[int, int],
    room: int,
) -> bytes | None:
    """Return the value to store, compressed if it would not fit in ``room`` bytes.

    :param tag: the governing record's ``gen`` and ``seq``.
    :param room: the largest value memcached accepts under this key.
    :return: the value, or ``None`` when even the compressed value does not fit.
    """
    flags = 0
    if HEADER.size + len(body) > room:
        body, flags = zlib.compress(body, 6), ZLIB
        if HEADER.size + len(body) > room:
            return None
    return HEADER.pack(MAGIC, flags, created, expires, *tag) + body


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
