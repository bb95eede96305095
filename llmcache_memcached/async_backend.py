"""The memcached tier for asyncio clients.

Reads (the hit path) run on the event loop over non-blocking sockets, one multi-get per
server as in the blocking tier, and decide exactly as it does (same records, same views,
same failure tracking: the two share one :class:`~llmcache_memcached.MemcachedBackend`).
Writes, clears and locks run the blocking tier in a worker thread: they are rare, and on
the miss path an upstream call dwarfs a thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from llmcache.backends.base import BaseAsyncCacheBackend

from .backend import MemcachedBackend, Undecided, fast_hit, from_url

__all__ = ["AsyncMemcachedBackend", "async_from_url"]


class AsyncMemcachedBackend(BaseAsyncCacheBackend):
    """Serve a :class:`~llmcache_memcached.MemcachedBackend` to asyncio clients.

    :param backend: the blocking tier whose servers, records and counters this one shares.
    """

    shared = True
    supports_locks = True
    # Nothing here blocks the event loop, and every call bounds its own time (reads with
    # asyncio.timeout, the rest with socket timeouts in the worker thread): the core needs
    # no timeout task of its own around each call.
    awaits = "bounded"

    def __init__(self, backend: MemcachedBackend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"Async{self.backend!r}"

    async def get(self, key: str) -> bytes | None:
        backend = self.backend
        route = backend.routes.get(key) or backend.route_of(key)
        server = route[4]
        pool = backend.pool
        if server.down_until:  # rare: the placement may try the server, which blocks
            placed = await asyncio.to_thread(backend.placed, key)
            if placed is None:
                raise pool.unavailable()
            route, server = placed, placed[4]
        loop = asyncio.get_running_loop()
        connection = server.acquire_async(loop)
        try:
            if connection.sock is None:
                reply: bytes | dict[bytes, bytes] = await connection.fetch(route[6])
            else:
                reply = await connection.request(route[6])
            now = time.time()
            try:
                value = fast_hit(key, route, reply, now)
            except Undecided:
                if isinstance(reply, bytes):
                    reply = await connection.complete(reply)
                value = backend.open_reply(key, route, reply, now)
        except BaseException as exc:  # cancelled too: never reuse a half-read reply
            connection.close()
            if isinstance(exc, pool.errors):
                pool.failed(server, exc)
            raise
        finally:
            server.release_async(loop, connection)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys``: one multi-get per server, as the blocking tier."""
        if not keys:
            return []
        backend = self.backend
        pool = backend.pool
        loop = asyncio.get_running_loop()
        values: dict[str, bytes | None] = {}
        error: BaseException | None = None
        answered = False
        if any(server.down_until for server in pool.servers):
            groups = await asyncio.to_thread(backend.by_server, keys)
        else:
            groups = backend.by_server(keys)
        for server, items in groups.items():
            connection = server.acquire_async(loop)
            try:
                found = await connection.fetch(backend.multi_get(items))
            except pool.errors as exc:
                pool.failed(server, exc)
                error = error or exc
                continue
            finally:
                server.release_async(loop, connection)
            answered = True
            now = time.time()
            for key, route in items:
                values[key] = backend.open_reply(key, route, found, now)
        if not answered:
            if error is not None:
                raise error
            if pool.all_down():
                raise pool.unavailable()
        return [values.get(key) for key in keys]

    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        await asyncio.to_thread(self.backend.set, key, value, ttl, created=created)

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        await asyncio.to_thread(self.backend.set_many, items, ttl, created=created)

    async def delete(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self.backend.delete, keys)

    async def clear(self, pattern: str | None = None, older_than: float | None = None) -> None:
        await asyncio.to_thread(self.backend.clear, pattern, older_than)

    async def try_lock(self, name: str, ttl: float) -> str | None:
        return await asyncio.to_thread(self.backend.try_lock, name, ttl)

    async def unlock(self, name: str, token: str) -> None:
        await asyncio.to_thread(self.backend.unlock, name, token)

    async def server_stats(self) -> dict[str, dict[str, int | float | str]]:
        """Return each server's own counters (see :meth:`MemcachedBackend.server_stats`)."""
        return await asyncio.to_thread(self.backend.server_stats)

    async def close(self) -> None:
        self.backend.close()  # closing sockets does not block


def async_from_url(url: str, *, timeout: float = 1.0, **options: Any) -> AsyncMemcachedBackend:
    """Build a memcached tier for an async client: reads on the event loop, the rest in
    worker threads (see :class:`AsyncMemcachedBackend`).
    """
    return AsyncMemcachedBackend(from_url(url, timeout=timeout, **options))
