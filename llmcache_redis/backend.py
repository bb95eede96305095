"""The Redis backend for one server (TCP, TLS or a Unix socket), sync and asyncio twins.

Values are plain Redis strings under the core's physical keys, with ``PX`` TTLs; a hit is
one ``GET``, a multi-get one ``MGET``. Writes also maintain a per-namespace age index (see
:mod:`llmcache_redis.layout`) in the same round trip, which ``clear(older_than=...)`` reads
instead of the values. Construction never connects; the first call does.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from llmcache.backends import globs
from llmcache.backends.base import BaseAsyncCacheBackend, BaseCacheBackend, StoredEntry
from llmcache.errors import ConfigError

from .clearing import IndexScan, Members, Plan, Prune, Remove, Scan, Step, Unlink, clear_plan
from .commands import NO_ROUTER, Router, milliseconds, queue_set, queue_unindex, queue_unlink
from .connections import async_client, require_redis, sync_client
from .layout import (
    ALL_KEYS_GLOB,
    PRUNE_SCRIPT,
    UNLOCK_SCRIPT,
    group_by_bucket,
    index_of,
    is_internal,
    lock_key,
)
from .scrub import aexecute, execute
from .urls import RedisURL, parse_redis_url
from .wire import pack_get, pack_mget, write_now

__all__ = ["AsyncRedisBackend", "RedisBackend"]


def _checked(url: str | RedisURL, timeout: float, *, cluster: bool) -> RedisURL:
    parsed = parse_redis_url(url) if isinstance(url, str) else url
    if parsed.cluster != cluster:
        want = "redis+cluster://host:port,..." if cluster else "redis://host:port/db"
        raise ConfigError(f"{parsed.redacted!r} is not a URL for this backend; use {want}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
    require_redis(parsed.scheme)
    return parsed


class _Layout:
    """What the sync and async twins share: configuration and the standalone specifics."""

    cluster: ClassVar[bool] = False

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        self.url = _checked(url, timeout, cluster=self.cluster)
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url.redacted!r})"

    def _pipeline(self, client: Any) -> Any:
        # one server: MULTI/EXEC, so a value and its index entries come and go together
        return client.pipeline(transaction=True)

    def _router(self, client: Any) -> Router:
        """Where the commands of a pipeline go (on one server: nowhere in particular)."""
        return NO_ROUTER

    @staticmethod
    def _scan_args(step: Scan) -> dict[str, Any]:
        return {"cursor": step.state or 0, "match": step.match, "count": step.count}

    @staticmethod
    def _scan_result(reply: tuple[int, list[bytes]]) -> tuple[Any, list[bytes]]:
        cursor, keys = reply
        return (cursor or None), keys


class RedisBackend(_Layout, BaseCacheBackend):
    """A cache tier on one Redis server, for sync clients.

    :param url: ``redis://``, ``rediss://`` or ``unix://`` (see :mod:`llmcache_redis.urls`).
    :param timeout: seconds allowed for each connect, read and write, and for a free pooled
        connection.
    :raises ConfigError: the URL or an option is malformed.
    :raises MissingExtraError: redis-py is not installed.
    """

    shared = True
    supports_locks = True

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._redis: Any = None  # redis.Redis or redis.cluster.RedisCluster, built on first use
        self._pool: Any = None  # on one server, the client's pool, for reads (see .wire)
        self._connecting = threading.Lock()

    @property
    def client(self) -> Any:
        """The redis-py client, built (not connected) on first use."""
        client = self._redis
        if client is None:
            with self._connecting:
                if self._redis is None:
                    self._redis = sync_client(self.url, self.timeout)
                    self._pool = getattr(self._redis, "connection_pool", None)
                client = self._redis
        return client

    def get(self, key: str) -> bytes | None:
        return self._request(pack_get(key))  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return self._request(pack_mget(keys))  # type: ignore[no-any-return]

    def _request(self, request: bytes) -> Any:
        """Send one packed command on a pooled connection and return its reply."""
        pool = self._pool
        if pool is None:
            pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command((request,))
            return connection.read_response()
        finally:
            pool.release(connection)

    def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        self.set_many({key: value}, ttl, created=created)

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        if not items:
            return
        if ttl is not None and ttl <= 0:
            self.delete(list(items))
            return
        client = self.client
        pipe = self._pipeline(client)
        queue_set(pipe, items, ttl, created, time.time(), self._router(client))
        execute(pipe)

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            self._remove(list(keys))

    def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        client = self.client
        router = self._router(client)
        pipe = self._pipeline(client)
        counted = queue_unlink(pipe, keys, router)
        if unindex:
            queue_unindex(pipe, keys, router)
        return sum(execute(pipe)[:counted])

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        return self._run(clear_plan(pattern, older_than, self.url.batch_size))

    def _run(self, plan: Plan) -> int:
        try:
            step = next(plan)
            while True:
                step = plan.send(self._step(step))
        except StopIteration as done:
            return int(done.value)

    def _step(self, step: Step) -> Any:
        client = self.client
        match step:
            case Scan():
                return self._scan(client, step)
            case Remove(keys, unindex):
                return self._remove(keys, unindex=unindex)
            case Members(index, None, count):
                return client.zrange(index.created, 0, count - 1)
            case Members(index, max_score, count):
                return client.zrangebyscore(index.created, "-inf", max_score, start=0, num=count)
            case IndexScan(index, match, state, count):
                cursor, pairs = client.zscan(
                    index.created, cursor=state or 0, match=match, count=count
                )
                return (cursor or None), pairs
            case Prune(index, cutoff, limit):
                return client.eval(PRUNE_SCRIPT, 2, index.created, index.expires, cutoff, limit)
            case Unlink(keys):
                return client.unlink(*keys)
        raise TypeError(step)  # pragma: no cover

    def _scan(self, client: Any, step: Scan) -> tuple[Any, list[bytes]]:
        return self._scan_result(client.scan(**self._scan_args(step)))

    supports_scan = True

    def scan(self, pattern: str | None = None) -> Iterator[StoredEntry]:
        """Yield size, creation and expiry of the entries matching ``pattern``.

        ``None`` lists every ``llmcache:*`` key. Costs one ``SCAN`` page and one pipelined
        round trip (``STRLEN``, ``PTTL``, ``ZMSCORE`` on the index) per batch.
        """
        client = self.client
        match = globs.to_redis(ALL_KEYS_GLOB if pattern is None else pattern)
        state = None
        while True:
            state, keys = self._scan(client, Scan(match, state, self.url.batch_size))
            keys = [key for key in keys if not is_internal(key)]
            if keys:
                yield from self._describe(client, keys)
            if state is None:
                return

    def _describe(self, client: Any, keys: list[bytes]) -> Iterator[StoredEntry]:
        pipe = self._pipeline(client)
        for key in keys:
            pipe.strlen(key)
            pipe.pttl(key)
        groups = group_by_bucket(keys)
        for bucket, members in groups.items():
            pipe.zmscore(index_of(bucket).created, members)
        replies = execute(pipe)
        now = time.time()
        created: dict[bytes, float | None] = {}
        for members, scores in zip(groups.values(), replies[2 * len(keys) :], strict=True):
            created.update(zip(members, scores, strict=True))
        for i, key in enumerate(keys):
            size, pttl = replies[2 * i], replies[2 * i + 1]
            if pttl == -2:  # gone since the scan saw it
                continue
            expires = None if pttl < 0 else now + pttl / 1000
            name = key.decode("utf-8", "surrogateescape")
            yield StoredEntry(name, size, created.get(key), expires)

    def try_lock(self, name: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = self.client.set(lock_key(name), token, nx=True, px=milliseconds(ttl))
        return token if taken else None

    def unlock(self, name: str, token: str) -> None:
        self.client.eval(UNLOCK_SCRIPT, 1, lock_key(name), token)

    def close(self) -> None:
        with self._connecting:
            client, self._redis, self._pool = self._redis, None, None
        if client is not None:
            client.close()


class AsyncRedisBackend(_Layout, BaseAsyncCacheBackend):
    """A cache tier on one Redis server, for asyncio clients (``redis.asyncio``).

    The client belongs to the event loop that first used it; used from another loop, the
    backend builds a client for that loop.

    :param url: ``redis://``, ``rediss://`` or ``unix://``.
    :param timeout: seconds allowed for each connect, read and write.
    """

    shared = True
    supports_locks = True
    awaits = "bounded-reads"  # the pool wait, connect, write and read keep to the timeout

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._redis: Any = None
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> Any:
        """The redis.asyncio client of the running event loop, built on first use."""
        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            self._redis, self._loop = async_client(self.url, self.timeout), loop
            self._pool = getattr(self._redis, "connection_pool", None)
        return self._redis

    async def get(self, key: str) -> bytes | None:
        return await self._request(pack_get(key))  # type: ignore[no-any-return]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        return await self._request(pack_mget(keys))  # type: ignore[no-any-return]

    async def _request(self, request: bytes) -> Any:
        """Send one packed command on a pooled connection and return its reply."""
        pool = self._pool
        if pool is None or self._loop is not asyncio.get_running_loop():
            pool = self.client.connection_pool
        connection = await pool.get_connection()
        try:
            if not write_now(connection, request):
                await connection.send_packed_command((request,))
            return await connection.read_response()
        finally:
            await pool.release(connection)

    async def set(
        self, key: str, value: bytes, ttl: float | None, *, created: float | None = None
    ) -> None:
        await self.set_many({key: value}, ttl, created=created)

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        if not items:
            return
        if ttl is not None and ttl <= 0:
            await self.delete(list(items))
            return
        client = self.client
        pipe = self._pipeline(client)
        queue_set(pipe, items, ttl, created, time.time(), self._router(client))
        await aexecute(pipe)

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._remove(list(keys))

    async def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        client = self.client
        router = self._router(client)
        pipe = self._pipeline(client)
        counted = queue_unlink(pipe, keys, router)
        if unindex:
            queue_unindex(pipe, keys, router)
        return sum((await aexecute(pipe))[:counted])

    async def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        plan = clear_plan(pattern, older_than, self.url.batch_size)
        try:
            step = next(plan)
            while True:
                step = plan.send(await self._step(step))
        except StopIteration as done:
            return int(done.value)

    async def _step(self, step: Step) -> Any:
        client = self.client
        match step:
            case Scan():
                return await self._scan(client, step)
            case Remove(keys, unindex):
                return await self._remove(keys, unindex=unindex)
            case Members(index, None, count):
                return await client.zrange(index.created, 0, count - 1)
            case Members(index, max_score, count):
                return await client.zrangebyscore(
                    index.created, "-inf", max_score, start=0, num=count
                )
            case IndexScan(index, match, state, count):
                cursor, pairs = await client.zscan(
                    index.created, cursor=state or 0, match=match, count=count
                )
                return (cursor or None), pairs
            case Prune(index, cutoff, limit):
                return await client.eval(
                    PRUNE_SCRIPT, 2, index.created, index.expires, cutoff, limit
                )
            case Unlink(keys):
                return await client.unlink(*keys)
        raise TypeError(step)  # pragma: no cover

    async def _scan(self, client: Any, step: Scan) -> tuple[Any, list[bytes]]:
        return self._scan_result(await client.scan(**self._scan_args(step)))

    async def try_lock(self, name: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self.client.set(lock_key(name), token, nx=True, px=milliseconds(ttl))
        return token if taken else None

    async def unlock(self, name: str, token: str) -> None:
        await self.client.eval(UNLOCK_SCRIPT, 1, lock_key(name), token)

    async def close(self) -> None:
        client, self._redis, self._pool = self._redis, None, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
