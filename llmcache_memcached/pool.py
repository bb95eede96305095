"""The servers of a memcached tier: consistent hashing and per-server failure tracking.

Keys are placed on a consistent-hash ring (ketama's idea: each server owns 160 points of a
64-bit ring; a key belongs to the first point at or after its hash), so adding a server
to ``n`` moves about ``1/(n+1)`` of the keys, all onto the new server, and removing one
moves only that server's keys. A lookup is one BLAKE2b hash and one binary search, whatever
the number of servers.

A server that fails is marked down for ``dead_timeout`` seconds: its keys move to the next
live server of the ring (:meth:`ServerPool.fallback`) without waiting on it, while the
other servers keep serving their own; then one caller tries it again. What a returning
server held before it failed is never served again (the backend starts a new generation
of its invalidation records before it serves: a clear it missed, or a newer answer
written elsewhere meanwhile, cannot be undone by its old entries).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from .connection import AsyncConnection, connection_class

__all__ = ["Server", "ServerDown", "ServerPool", "server_name"]

log = logging.getLogger("llmcache.memcached")

DEFAULT_IDLE = 16
POINTS_PER_SERVER = 160


_SERVERS: weakref.WeakSet[Server] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # a forked child must not share its parent's sockets: both would read each other's replies
    for server in list(_SERVERS):
        server.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ServerDown(ConnectionError):
    """Every server of the tier failed recently; none was tried this time."""


def _hash64(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def server_name(spec: tuple[str, int] | str) -> str:
    """Return ``host:port`` (``[v6]:port``) or a socket path: a server's stable name."""
    if isinstance(spec, str):
        return spec
    host, port = spec
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    """One memcached server: its idle connections and its health.

    Connections are plain pymemcache clients taken from and put back on a stack of idle
    ones: cheaper than pymemcache's ``PooledClient`` on every call, and each thread holds
    one client at a time. At most ``max_idle`` idle connections are kept.
    """

    __slots__ = (
        "__weakref__",
        "_idle",
        "_last",
        "_loops",
        "_make",
        "address",
        "down_until",
        "failures",
        "max_idle",
        "name",
        "timeout",
    )

    def __init__(
        self, address: tuple[str, int] | str, make: Callable[[], Any], max_idle: int, timeout: float
    ) -> None:
        self.address = address
        self.name = server_name(address)
        self.timeout = timeout
        self.down_until = 0.0  # 0: healthy; else skipped until this monotonic time
        self.failures = 0
        self.max_idle = max_idle
        self._make = make
        self._idle: list[Any] = []
        # idle asyncio connections, per event loop (a socket belongs to one loop)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[AsyncConnection]]
        self._loops = weakref.WeakKeyDictionary()
        # the last loop's idle list, weakly: a WeakKeyDictionary lookup per call costs more
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], list[AsyncConnection]] | None
        self._last = None
        _SERVERS.add(self)

    def acquire(self) -> Any:
        """Take an idle connection, or make one (it connects on first use)."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._make()

    def release(self, client: Any) -> None:
        """Give back a connection taken with :meth:`acquire`."""
        if len(self._idle) < self.max_idle:
            self._idle.append(client)
        else:
            client.close()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run one pymemcache client method on a connection of this server."""
        client = self.acquire()
        try:
            return getattr(client, method)(*args, **kwargs)
        finally:
            self.release(client)

    def _idle_of(self, loop: asyncio.AbstractEventLoop) -> list[AsyncConnection]:
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        idle = self._loops.get(loop)
        if idle is None:
            idle = self._loops[loop] = []
        self._last = (weakref.ref(loop), idle)
        return idle

    def acquire_async(self, loop: asyncio.AbstractEventLoop) -> AsyncConnection:
        """Take an idle asyncio connection of ``loop``, or make one."""
        last = self._last
        idle = last[1] if last is not None and last[0]() is loop else self._idle_of(loop)
        if idle:
            return idle.pop()
        return AsyncConnection(self.address, self.timeout, loop)

    def release_async(self, loop: asyncio.AbstractEventLoop, connection: AsyncConnection) -> None:
        """Give back a connection taken with :meth:`acquire_async`."""
        last = self._last
        idle = last[1] if last is not None and last[0]() is loop else self._idle_of(loop)
        if len(idle) < self.max_idle and connection.sock is not None:
            idle.append(connection)
        else:
            connection.close()

    def forget(self) -> None:
        """Drop the idle connections without closing them (they belong to another process)."""
        self._idle = []
        self._loops = weakref.WeakKeyDictionary()
        self._last = None

    def close(self) -> None:
        """Close the idle connections (connections in use close when given back)."""
        while self._idle:
            self._idle.pop().close()
        for idle in list(self._loops.values()):
            while idle:
                idle.pop().close()

    def __repr__(self) -> str:
        return f"Server({self.name!r}, down={self.down_until > time.monotonic()})"


class ServerPool:
    """A list of memcached servers behind one tier URL.

    :param servers: ``(host, port)`` tuples or Unix socket paths.
    :param timeout: seconds for connecting and for each socket read or write.
    :param pool_size: idle connections kept per server (``None``: 16); more are opened
        when more threads call at once.
    :param dead_timeout: seconds a failed server is skipped before it is tried again.
    """

    def __init__(
        self,
        servers: Sequence[tuple[str, int] | str],
        *,
        timeout: float,
        pool_size: int | None = None,
        dead_timeout: float = 5.0,
    ) -> None:
        from pymemcache.exceptions import MemcacheError

        self.errors: tuple[type[BaseException], ...] = (OSError, MemcacheError)
        self.dead_timeout = dead_timeout
        self._lock = threading.Lock()
        client_class = connection_class()

        def maker(spec: tuple[str, int] | str) -> Callable[[], Any]:
            return lambda: client_class(
                spec,
                connect_timeout=timeout,
                timeout=timeout,
                no_delay=True,
                default_noreply=False,  # a write has reached the store when it returns
            )

        idle = DEFAULT_IDLE if pool_size is None else pool_size
        self.servers = [Server(spec, maker(spec), idle, timeout) for spec in servers]
        self._single = self.servers[0] if len(self.servers) == 1 else None
        ring = sorted(
            (_hash64(f"{server.name}#{point}"), index)
            for index, server in enumerate(self.servers)
            for point in range(POINTS_PER_SERVER)
        )
        self._points = [point for point, _ in ring]
        self._owners = [self.servers[index] for _, index in ring]

    def route(self, key: str) -> Server:
        """Return the server that holds ``key`` (a memcached key)."""
        if self._single is not None:
            return self._single
        at = bisect_left(self._points, _hash64(key))
        return self._owners[at if at < len(self._owners) else 0]

    def fallback(self, key: str) -> Server | None:
        """Return where ``key`` lives while its own server is down: the next server of the
        ring that is not being skipped, or ``None`` when every other one is."""
        now = time.monotonic()
        at = bisect_left(self._points, _hash64(key))
        owners = self._owners
        home = owners[at % len(owners)]
        for step in range(len(owners)):
            server = owners[(at + step) % len(owners)]
            if server is not home and not (server.down_until and now < server.down_until):
                return server
        return None

    # -- health --------------------------------------------------------------------------

    def usable(self, server: Server) -> bool:
        """Tell whether to call ``server`` now; claims the retry of a down server."""
        if not server.down_until:
            return True
        now = time.monotonic()
        with self._lock:
            if now < server.down_until:
                return False
            # one caller tries it again; the others keep skipping it meanwhile
            server.down_until = now + self.dead_timeout
            return True

    def succeeded(self, server: Server) -> None:
        """Record that ``server`` is back (the backend has made its past unreadable)."""
        if server.down_until:
            with self._lock:
                server.down_until = 0.0
            log.info("memcached server %s is back", server.name)

    def failed(self, server: Server, error: BaseException) -> None:
        """Record that ``server`` failed: skip it for ``dead_timeout`` seconds."""
        with self._lock:
            was_up = not server.down_until
            server.down_until = time.monotonic() + self.dead_timeout
            server.failures += 1
        if was_up:
            log.warning(
                "memcached server %s failed (%s: %s); skipping it for %g s",
                server.name,
                type(error).__name__,
                error,
                self.dead_timeout,
            )

    def all_down(self) -> bool:
        """Tell whether every server is being skipped right now."""
        now = time.monotonic()
        return all(now < server.down_until for server in self.servers)

    def unavailable(self) -> ServerDown:
        """Return the error for a call that found every server down."""
        names = ", ".join(server.name for server in self.servers)
        return ServerDown(f"every memcached server failed recently ({names})")

    @property
    def failures(self) -> int:
        """Server failures seen by this process."""
        return sum(server.failures for server in self.servers)

    def close(self) -> None:
        """Close every connection."""
        for server in self.servers:
            server.close()
