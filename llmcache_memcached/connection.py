"""Connections to one memcached server, blocking and asyncio, with a lean multi-get.

The blocking connection is pymemcache's ``Client``: every command but one is pymemcache's
own. Every key the backend sends is already plain ASCII of at most 250 bytes (see
:func:`llmcache_memcached.keys.entry_key`), so the per-key checks are skipped, and the hit
path's ``get k1 k2 ...`` reply is read by :class:`GetReply`: pymemcache's parser costs a
few microseconds per value, which is most of a hit's budget over its floor.

pymemcache has no asyncio client, and a worker thread per call costs several times a hit
on loopback, so async reads use :class:`AsyncConnection`: a non-blocking socket driven by
the event loop, speaking only ``get``. Async writes, clears and locks, which are rare and
follow an upstream call, run the blocking client in a worker thread.
"""

from __future__ import annotations

import asyncio
import socket
from functools import cache
from typing import Any

__all__ = ["RECV_SIZE", "AsyncConnection", "GetReply", "connection_class", "get_command"]

RECV_SIZE = 65536


def get_command(keys: list[str]) -> bytes:
    """Return the ``get`` command line for ``keys`` (already valid memcached keys)."""
    return ("get " + " ".join(keys) + "\r\n").encode("ascii")


def _whole(data: bytes) -> dict[str, bytes] | None:
    """Parse a reply that arrived in one read (the usual case), or return ``None``."""
    found: dict[str, bytes] = {}
    pos = 0
    size = len(data)
    while data.startswith(b"VALUE ", pos):
        eol = data.find(b"\r\n", pos)  # found: the caller saw the data end with END\r\n
        fields = data[pos:eol].split()
        start = eol + 2
        end = start + int(fields[3])
        if end + 2 > size:
            return None
        found[fields[1].decode("ascii")] = data[start:end]
        pos = end + 2
    return found if pos + 5 == size else None  # then only "END\r\n" is left


class GetReply:
    """Read a ``get`` reply chunk by chunk: ``VALUE <key> <flags> <bytes>`` blocks, ``END``."""

    __slots__ = ("_buf", "_found")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._found: dict[str, bytes] = {}

    def feed(self, data: bytes) -> dict[str, bytes] | None:
        """Add received bytes; return the values once the reply is complete.

        :raises MemcacheError: the server answered with an error line, or closed.
        """
        if not data:
            from pymemcache.exceptions import MemcacheUnexpectedCloseError

            raise MemcacheUnexpectedCloseError()
        if not self._buf and not self._found and data.endswith(b"END\r\n"):
            found = _whole(data)  # the whole reply in one read: no copies
            if found is not None:
                return found
        buf = self._buf
        buf += data
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            if buf.startswith(b"VALUE ", pos):
                fields = bytes(buf[pos:eol]).split()
                start = eol + 2
                end = start + int(fields[3])
                if len(buf) < end + 2:
                    break
                self._found[fields[1].decode("ascii")] = bytes(buf[start:end])
                pos = end + 2
            elif buf.startswith(b"END\r\n", pos):
                return self._found
            else:
                raise _error(bytes(buf[pos:eol]))
        del buf[:pos]  # keep only what is not parsed yet
        return None


def _error(line: bytes) -> Exception:
    from pymemcache.exceptions import (
        MemcacheClientError,
        MemcacheServerError,
        MemcacheUnknownCommandError,
        MemcacheUnknownError,
    )

    error: Exception
    if line.startswith(b"CLIENT_ERROR"):
        error = MemcacheClientError(line[13:])
    elif line.startswith(b"SERVER_ERROR"):
        error = MemcacheServerError(line[13:])
    elif line.startswith(b"ERROR"):
        error = MemcacheUnknownCommandError(b"get")
    else:
        error = MemcacheUnknownError(line[:32])
    return error


@cache
def connection_class() -> type[Any]:
    """Return the blocking connection class (pymemcache is imported on first use)."""
    from pymemcache.client.base import Client

    class Connection(Client):  # type: ignore[misc]
        def check_key(self, key: str, key_prefix: bytes) -> bytes:
            return key.encode("ascii")

        def fetch(self, keys: list[str]) -> dict[str, bytes]:
            """Run ``get`` for ``keys`` in one round trip; return the values found."""
            if self.sock is None:
                self._connect()
            sock = self.sock
            try:
                sock.sendall(get_command(keys))
                reply = GetReply()
                while True:
                    found = reply.feed(sock.recv(RECV_SIZE))
                    if found is not None:
                        return found
            except Exception:
                self.close()  # a half-read reply must never meet the next command
                raise

    return Connection


class AsyncConnection:
    """A non-blocking connection of one event loop to one server, for ``get`` only.

    Driven with the loop's ``sock_*`` calls, which measured faster here than a protocol
    and transport for this one-request-at-a-time exchange.

    :param address: ``(host, port)`` or a Unix socket path.
    :param timeout: seconds for connecting and for each ``get``.
    """

    __slots__ = ("address", "sock", "timeout")

    def __init__(self, address: tuple[str, int] | str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.sock: socket.socket | None = None

    @property
    def open(self) -> bool:
        """Whether the connection can take another request."""
        return self.sock is not None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        infos: list[Any]
        if isinstance(self.address, str):
            infos = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, "", self.address)]
        else:
            host, port = self.address
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                if family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error or OSError(f"cannot resolve {self.address!r}")

    async def fetch(self, keys: list[str]) -> dict[str, bytes]:
        """Run ``get`` for ``keys`` in one round trip; return the values found."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                sock = self.sock
                if sock is None:
                    sock = self.sock = await self._connect(loop)
                await loop.sock_sendall(sock, get_command(keys))
                reply = GetReply()
                while True:
                    found = reply.feed(await loop.sock_recv(sock, RECV_SIZE))
                    if found is not None:
                        return found
        except BaseException:  # cancelled too: a half-read reply must never be reused
            self.close()
            raise

    def close(self) -> None:
        """Close the socket; the next ``fetch`` connects again."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
