"""Redis behind Sentinel (``redis+sentinel://host:26379,host:26380/mymaster/0``), sync and
asyncio twins.

The tier is the one-server backend on the primary the sentinels name: redis-py's
``Sentinel.master_for`` asks them on every new connection, so after a failover the next
connection goes to the promoted replica. While the primary cannot be reached the tier
behaves as a cluster does for a dead node (:mod:`llmcache_redis.nodes`): the failure is
raised once, then reads are misses and writes are skipped without waiting, and every
half second one call asks the sentinels again. Caching thus resumes within about half a
second of the promotion, instead of after the core breaker's ``recovery_time``.

A service name that no sentinel knows gives an error naming the service and the
sentinels asked, at first use (a tier never connects when it is built).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, TypeVar

from .backend import AsyncRedisBackend, RedisBackend
from .nodes import NodeDown, NodeHealth, node_errors
from .urls import RedisURL

__all__ = ["AsyncRedisSentinelBackend", "RedisSentinelBackend"]

PRIMARY: Final = "primary"
NO_LOCK: Final = "-"  # as on a cluster: no lock while the primary is away, and no wait
T = TypeVar("T")


class RedisSentinelBackend(RedisBackend):
    """A cache tier on the primary a group of Redis sentinels names, for sync clients.

    :param url: ``redis+sentinel://host[:port][,host[:port]...]/service[/db]``.
    :param timeout: seconds allowed for each connect, read and write (sentinels included).
    """

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._health = NodeHealth()
        self._errors = node_errors()

    def _guard(self, call: Callable[[], T], skipped: T) -> T:
        health = self._health
        if health.troubled and health.skip(PRIMARY):
            return skipped
        try:
            result = call()
        except self._errors as exc:
            health.failed(PRIMARY, exc)
            raise
        health.ok(PRIMARY)
        return result

    def get(self, key: str) -> bytes | None:
        return self._guard(lambda: RedisBackend.get(self, key), None)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._guard(lambda: RedisBackend.get_many(self, keys), [None] * len(keys))

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        self._guard(lambda: RedisBackend.set_many(self, items, ttl, created=created), None)

    def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        removed = self._guard(lambda: RedisBackend._remove(self, keys, unindex=unindex), None)
        if removed is None:
            raise NodeDown(f"the primary of {self.url.service!r} is down: nothing removed")
        return removed

    def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        removed = self._guard(lambda: RedisBackend.clear(self, pattern, older_than), None)
        if removed is None:
            raise NodeDown(f"the primary of {self.url.service!r} is down: nothing cleared")
        return removed

    def try_lock(self, name: str, ttl: float) -> str | None:
        no_lock: str | None = NO_LOCK
        return self._guard(lambda: RedisBackend.try_lock(self, name, ttl), no_lock)

    def unlock(self, name: str, token: str) -> None:
        if token != NO_LOCK:
            self._guard(lambda: RedisBackend.unlock(self, name, token), None)


class AsyncRedisSentinelBackend(AsyncRedisBackend):
    """A cache tier on the primary a group of Redis sentinels names, for asyncio clients.

    :param url: ``redis+sentinel://host[:port][,host[:port]...]/service[/db]``.
    :param timeout: seconds allowed for each connect, read and write (sentinels included).
    """

    awaits = "task"  # a new connection first asks the sentinels, one after another

    def __init__(self, url: str | RedisURL, *, timeout: float = 1.0) -> None:
        super().__init__(url, timeout=timeout)
        self._health = NodeHealth()
        self._errors = node_errors()

    async def _guard(self, call: Callable[[], Awaitable[T]], skipped: T) -> T:
        health = self._health
        if health.troubled and health.skip(PRIMARY):
            return skipped
        try:
            result = await call()
        except self._errors as exc:
            health.failed(PRIMARY, exc)
            raise
        health.ok(PRIMARY)
        return result

    async def get(self, key: str) -> bytes | None:
        return await self._guard(lambda: AsyncRedisBackend.get(self, key), None)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guard(lambda: AsyncRedisBackend.get_many(self, keys), [None] * len(keys))

    async def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, *, created: float | None = None
    ) -> None:
        await self._guard(
            lambda: AsyncRedisBackend.set_many(self, items, ttl, created=created), None
        )

    async def _remove(self, keys: Sequence[str | bytes], *, unindex: bool = True) -> int:
        removed = await self._guard(
            lambda: AsyncRedisBackend._remove(self, keys, unindex=unindex), None
        )
        if removed is None:
            raise NodeDown(f"the primary of {self.url.service!r} is down: nothing removed")
        return removed

    async def clear(self, pattern: str | None = None, older_than: float | None = None) -> int:
        removed = await self._guard(
            lambda: AsyncRedisBackend.clear(self, pattern, older_than), None
        )
        if removed is None:
            raise NodeDown(f"the primary of {self.url.service!r} is down: nothing cleared")
        return removed

    async def try_lock(self, name: str, ttl: float) -> str | None:
        no_lock: str | None = NO_LOCK
        return await self._guard(lambda: AsyncRedisBackend.try_lock(self, name, ttl), no_lock)

    async def unlock(self, name: str, token: str) -> None:
        if token != NO_LOCK:
            await self._guard(lambda: AsyncRedisBackend.unlock(self, name, token), None)
