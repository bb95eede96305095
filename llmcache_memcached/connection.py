"""Connections to one memcached server, blocking and asyncio, with a lean multi-get.

The blocking connection is pymemcache's ``Client``: every command but two is pymemcache's
own. Every key the backend sends is already plain ASCII of at most 250 bytes (see
:func:`llmcache_memcached.keys.entry_key`), so the per-key checks are skipped, and the hit
path's ``get k1 k2 ...`` reply is read by a parser of its own (:class:`GetReply`):
pymemcache's costs a few microseconds per value, which is most of a hit's budget over its
floor. A clear's compare-and-sets are pipelined (:meth:`cas_many`), one round trip for
any number of records.

pymemcache has no asyncio client, and a worker thread per call costs several times a hit
on loopback, so async reads use :class:`AsyncConnection`: a non-blocking socket that stays
registered with its event loop, speaking only ``get``. Async writes, clears and locks,
which are rare and follow an upstream call, run the blocking client in a worker thread.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from functools import cache
from time import monotonic
from typing import Any

__all__ = [
    "RECV_SIZE",
    "AsyncConnection",
    "GetReply",
    "connection_class",
    "get_command",
]

RECV_SIZE = 65536


def get_command(keys: list[str]) -> bytes:
    """Return the ``get`` command line for ``keys`` (already valid memcached keys)."""
    return ("get " + " ".join(keys) + "\r\n").encode("ascii")


def _whole(data: bytes) -> dict[bytes, bytes] | None:
    """Parse a reply that arrived in one read (the usual case), or return ``None``."""
    found: dict[bytes, bytes] = {}
    pos = 0
    size = len(data)
    while data.startswith(b"VALUE ", pos):
        eol = data.find(b"\r\n", pos)  # found: the caller saw the data end with END\r\n
        fields = data[pos:eol].split()
        start = eol + 2
        end = start + int(fields[3])
        if end + 2 > size:
            return None
        found[fields[1]] = data[start:end]
        pos = end + 2
    return found if pos + 5 == size else None  # then only "END\r\n" is left


class GetReply:
    """Read a ``get`` reply chunk by chunk: ``VALUE <key> <flags> <bytes>`` blocks, ``END``."""

    __slots__ = ("_buf", "_found")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._found: dict[bytes, bytes] = {}

    def feed(self, data: bytes) -> dict[bytes, bytes] | None:
        """Add received bytes; return the values, by key, once the reply is complete.

        :raises MemcacheError: the server answered with an error line, or closed.
        """
        if not data:
            from pymemcache.exceptions import MemcacheUnexpectedCloseError

            raise MemcacheUnexpectedCloseError()
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
                self._found[fields[1]] = bytes(buf[start:end])
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


def _cas_command(key: str, value: bytes, cas: Any) -> bytes:
    unique = cas if isinstance(cas, bytes) else str(cas).encode("ascii")
    return b"cas %s 0 0 %d %s\r\n%s\r\n" % (key.encode("ascii"), len(value), unique, value)


@cache
def connection_class() -> type[Any]:
    """Return the blocking connection class (pymemcache is imported on first use)."""
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheUnexpectedCloseError

    class Connection(Client):  # type: ignore[misc]
        def check_key(self, key: str, key_prefix: bytes) -> bytes:
            return key.encode("ascii")

        def exchange(self, command: bytes) -> bytes | dict[bytes, bytes]:
            """Send a ``get`` command line (:func:`get_command`); return the reply.

            The reply is the bytes received when they end like a whole reply (the usual
            case: one read), for the caller to parse or to :meth:`complete`; otherwise the
            values found, by key.
            """
            sock = self.sock
            if sock is None:
                self._connect()
                sock = self.sock
            try:
                sock.sendall(command)
                data: bytes = sock.recv(RECV_SIZE)
                if data.endswith(b"END\r\n"):
                    return data
                return self._rest(GetReply(), data)
            except Exception:
                self.close()  # a half-read reply must never meet the next command
                raise

        def _rest(self, reply: GetReply, data: bytes) -> dict[bytes, bytes]:
            found = reply.feed(data)
            while found is None:
                found = reply.feed(self.sock.recv(RECV_SIZE))
            return found

        def complete(self, data: bytes) -> dict[bytes, bytes]:
            """Return the values of a reply that :meth:`exchange` returned as bytes."""
            found = _whole(data)
            if found is not None:
                return found
            try:  # the last value happened to end like a reply: read on
                return self._rest(GetReply(), data)
            except Exception:
                self.close()
                raise

        def fetch(self, command: bytes) -> dict[bytes, bytes]:
            """Send a ``get`` command line (:func:`get_command`); return the values found."""
            reply = self.exchange(command)
            return self.complete(reply) if isinstance(reply, bytes) else reply

        def cas_many(self, items: Sequence[tuple[str, bytes, Any]]) -> list[bool | None]:
            """Run ``cas`` for ``(key, value, cas)`` items in one round trip, never expiring.

            :return: per item, ``True`` stored, ``False`` changed since its ``gets``,
                ``None`` no longer there.
            """
            if not items:
                return []
            if self.sock is None:
                self._connect()
            sock = self.sock
            try:
                sock.sendall(b"".join(_cas_command(*item) for item in items))
                lines: list[bytes] = []
                rest = b""
                while len(lines) < len(items):
                    data = sock.recv(RECV_SIZE)
                    if not data:
                        raise MemcacheUnexpectedCloseError()
                    *done, rest = (rest + data).split(b"\r\n")
                    lines += done
            except Exception:
                self.close()
                raise
            outcome = {b"STORED": True, b"EXISTS": False, b"NOT_FOUND": None}
            for line in lines:
                if line not in outcome:
                    self.close()
                    raise _error(line)
            return [outcome[line] for line in lines]

    return Connection


class AsyncConnection:
    """A non-blocking connection of one event loop to one server, for ``get`` only.

    The socket stays registered with the loop for reading while it is open, and the
    reader callback parses replies as they arrive: a read costs one future, not the
    registration and removal that each ``loop.sock_recv`` makes, nor a timer of its own.

    :param address: ``(host, port)`` or a Unix socket path.
    :param timeout: seconds for connecting and for each ``get``.
    :param loop: the event loop this connection belongs to.
    """

    __slots__ = (
        "_after",
        "_deadline",
        "_handed",
        "_reply",
        "_waiter",
        "_watch",
        "address",
        "loop",
        "sock",
        "timeout",
    )

    def __init__(
        self, address: tuple[str, int] | str, timeout: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.loop = loop
        self.sock: socket.socket | None = None
        self._waiter: asyncio.Future[bytes | dict[bytes, bytes]] | None = None
        self._reply: GetReply | None = None
        self._deadline = 0.0  # time.monotonic() by which the current request must be answered
        self._watch: asyncio.TimerHandle | None = None
        # what arrived after a reply handed over as bytes, until the caller says whether
        # that reply was whole (it almost always is); None: no such reply pending
        self._after: list[bytes] | None = None
        self._handed = False

    @property
    def open(self) -> bool:
        """Whether the connection can take another request."""
        return self.sock is not None

    async def _connect(self) -> socket.socket:
        loop = self.loop
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
            loop.add_reader(sock.fileno(), self._readable)
            return sock
        raise error or OSError(f"cannot resolve {self.address!r}")

    async def fetch(self, command: bytes) -> dict[bytes, bytes]:
        """Send a ``get`` command line (:func:`get_command`); return the values found."""
        try:
            if self.sock is None:
                async with asyncio.timeout(self.timeout):
                    self.sock = await self._connect()
            reply = await self.request(command)
            return await self.complete(reply) if isinstance(reply, bytes) else reply
        except BaseException:  # cancelled too: a half-read reply must never be reused
            self.close()
            raise

    def request(self, command: bytes) -> asyncio.Future[bytes | dict[bytes, bytes]]:
        """Send a ``get`` command line on an open connection; return the future reply.

        The reply is as :meth:`Connection.exchange` returns it. This is the hit path's
        :meth:`fetch` without a coroutine of its own: whoever awaits the future must
        :meth:`close` the connection if that fails or is cancelled.
        """
        sock = self.sock
        if sock is None:
            raise RuntimeError("request() on a connection that is not open")
        waiter: asyncio.Future[bytes | dict[bytes, bytes]] = self.loop.create_future()
        self._waiter = waiter
        self._handed = False
        self._deadline = monotonic() + self.timeout
        if self._watch is None:
            self._watch = self.loop.call_later(self.timeout, self._check)
        sent = sock.send(command)
        if sent < len(command):  # a full socket buffer: rare for a get line
            self.loop.create_task(self._send(sock, command[sent:], waiter))
        return waiter

    async def complete(self, data: bytes) -> dict[bytes, bytes]:
        """Return the values of a reply that :meth:`request` returned as bytes."""
        found = _whole(data)
        if found is not None:
            return found
        reply = GetReply()  # the last value happened to end like a reply: read on
        found = reply.feed(data)
        after, self._after = self._after or [], None
        for chunk in after:
            if found is None:
                found = reply.feed(chunk)
        if found is not None:
            return found
        if self.sock is None:
            from pymemcache.exceptions import MemcacheUnexpectedCloseError

            raise MemcacheUnexpectedCloseError()
        rest = await self._wait(reply)
        assert isinstance(rest, dict)
        return rest

    def _wait(self, reply: GetReply | None) -> asyncio.Future[bytes | dict[bytes, bytes]]:
        waiter: asyncio.Future[bytes | dict[bytes, bytes]] = self.loop.create_future()
        self._waiter = waiter
        self._reply = reply
        self._handed = False
        self._deadline = monotonic() + self.timeout
        if self._watch is None:
            self._watch = self.loop.call_later(self.timeout, self._check)
        return waiter

    async def _send(self, sock: socket.socket, rest: bytes, waiter: asyncio.Future[Any]) -> None:
        try:
            await self.loop.sock_sendall(sock, rest)
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)

    def _check(self) -> None:
        """Fail a request that outlived its deadline; keep watching while one is due.

        One timer per connection, set again only when it fires, instead of one timer
        set and cancelled per call (which cost about as much as the read itself).
        """
        self._watch = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # idle: stop watching until the next request
        left = self._deadline - monotonic()
        if left <= 0:
            waiter.set_exception(TimeoutError())
        else:
            self._watch = self.loop.call_later(left, self._check)

    def _readable(self) -> None:
        """Read what arrived and hand a complete reply to the waiting ``fetch``."""
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            error: BaseException | None = exc
        else:
            error = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            if data and self._handed:  # the reply handed over was not whole, after all
                if self._after is None:
                    self._after = []
                self._after.append(data)
            else:
                self.close()  # the server closed an idle connection, or spoke out of turn
            return
        try:
            if error is not None:
                raise error
            reply = self._reply
            if reply is None:
                if data.endswith(b"END\r\n"):  # the usual case: the caller parses it
                    self._waiter = None
                    self._handed = True
                    waiter.set_result(data)
                    return
                reply = self._reply = GetReply()
            found = reply.feed(data)
        except Exception as exc:
            self._waiter = None
            waiter.set_exception(exc)
            self.close()
            return
        if found is not None:
            self._waiter = self._reply = None
            waiter.set_result(found)

    def close(self) -> None:
        """Close the socket; the next ``fetch`` connects again."""
        sock, self.sock = self.sock, None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if sock is not None:
            if not self.loop.is_closed():
                self.loop.remove_reader(sock.fileno())
            sock.close()
