"""The reads a one-server backend sends itself: ``GET`` and ``MGET`` on a pooled connection.

A hit is the backend's hottest call, and redis-py's command path does much that a ``GET``
never needs: argument encoding through its ``Encoder``, a retry object and two closures per
call (retries are off here anyway), a scan of the arguments for client-side commands,
response-callback lookup and metrics bookkeeping. On one server the backend therefore packs
the request itself and runs it on a connection from the client's own pool, with redis-py's
``send_packed_command`` and ``read_response``, which keep every guarantee that matters: a
connection is checked (and reconnected) when taken from the pool, each read is bounded by
the socket timeout, and a connection that fails or is interrupted mid-reply is dropped,
never handed out again. A Redis Cluster keeps redis-py's path (slot routing, redirections).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["SMALL_REQUEST", "pack_get", "pack_mget", "write_now"]

#: Largest request written without waiting: far below asyncio's write-buffer high-water
#: mark (64 KiB), so such a write is handed to the socket or buffered, never waited on.
SMALL_REQUEST: Final = 16 * 1024

_GET: Final = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n"
_MGET: Final = b"*%d\r\n$4\r\nMGET\r\n"
_BULK: Final = b"$%d\r\n%b\r\n"


def pack_get(key: str) -> bytes:
    """Return ``GET key`` in the Redis protocol (keys are UTF-8, as redis-py encodes them)."""
    raw = key.encode()
    return _GET % (len(raw), raw)


def pack_mget(keys: Sequence[str]) -> bytes:
    """Return ``MGET key...`` in the Redis protocol."""
    parts = [_MGET % (len(keys) + 1)]
    for key in keys:
        raw = key.encode()
        parts.append(_BULK % (len(raw), raw))
    return b"".join(parts)


def write_now(connection: Any, request: bytes) -> bool:
    """Write a small request on a ``redis.asyncio`` connection; ``False`` if not done.

    redis-py's ``send_packed_command`` runs every write in ``asyncio.wait_for``, which on
    Python 3.11 makes a task and a timer per command and costs the event loop one more turn.
    A request this small after a complete reply cannot wait on the socket (the server has
    read everything sent before), so there is nothing for that timeout to bound; the reply's
    read keeps its own. Without the stream writer this connection class normally has (or on
    a closing transport), the caller falls back to ``send_packed_command``.
    """
    writer = getattr(connection, "_writer", None)
    if writer is None or len(request) > SMALL_REQUEST or writer.transport.is_closing():
        return False
    writer.write(request)
    return True
