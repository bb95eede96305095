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

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from .backend import AsyncRedisBackend, RedisBackend
from .nodes import NodeDown, NodeHealth, node_errors
from .urls import RedisURL

__all__ = [
    "AsyncRedisSentinelBackend",
    "RedisSentinelBackend",
    "async_sentinel",
    "service_not_found",
    "sync_sentinel",
]

PRIMARY: Final = "primary"
NO_LOCK: Final = "-"  # as on a cluster: no lock while the primary is away, and no wait
T = TypeVar("T")


def _asked(url: RedisURL) -> str:
    return ", ".join(f"{host}:{port}" for host, port in url.nodes)


def service_not_found(url: RedisURL, detail: str) -> str:
    """The message for a service that no sentinel named a primary for.

    :param detail: redis-py's ``MasterNotFoundError`` text, which lists the sentinels that
        could not be asked.
    """
    if " : " not in detail:  # every sentinel answered
        return (
            f"no sentinel knows a primary for service {url.service!r} (asked {_asked(url)}); "
            f"check the service name in {url.redacted!r} (/<service>/<db>) against the "
            "sentinels' 'sentinel monitor' lines"
        )
    return (
        f"no sentinel named a primary for service {url.service!r} (asked {_asked(url)}; "
        f"some did not answer: {detail.split(' : ', 1)[1]})"
    )


@functools.cache
def _sync_class() -> Any:
    from redis.sentinel import MasterNotFoundError, Sentinel

    class NamingSentinel(Sentinel):
        """redis-py's ``Sentinel`` with an error that says which service and sentinels."""

        llmcache_url: RedisURL

        def discover_master(self, service_name: str) -> Any:
            try:
                return super().discover_master(service_name)
            except MasterNotFoundError as exc:
                raise MasterNotFoundError(service_not_found(self.llmcache_url, str(exc))) from None

    return NamingSentinel


@functools.cache
def _async_class() -> Any:
    from redis.asyncio.sentinel import MasterNotFoundError, Sentinel

    class NamingSentinel(Sentinel):
        llmcache_url: RedisURL

        async def discover_master(self, service_name: str) -> Any:
            try:
                return await super().discover_master(service_name)
            except MasterNotFoundError as exc:
                raise MasterNotFoundError(service_not_found(self.llmcache_url, str(exc))) from None

    return NamingSentinel


def _sentinel_options(timeout: float, retry: Any) -> dict[str, Any]:
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}


def sync_sentinel(url: RedisURL, timeout: float) -> Any:
    """Return a ``redis.sentinel.Sentinel`` over the URL's sentinels (connects lazily)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    sentinel = _sync_class()(
        list(url.nodes), sentinel_kwargs=_sentinel_options(timeout, Retry(NoBackoff(), 0))
    )
    sentinel.llmcache_url = url
    return sentinel


def async_sentinel(url: RedisURL, timeout: float) -> Any:
    """Return a ``redis.asyncio.sentinel.Sentinel`` over the URL's sentinels."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    sentinel = _async_class()(
        list(url.nodes), sentinel_kwargs=_sentinel_options(timeout, Retry(NoBackoff(), 0))
    )
    sentinel.llmcache_url = url
    return sentinel


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
