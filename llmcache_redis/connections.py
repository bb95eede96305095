"""Build redis-py clients (sync and asyncio, one server or a cluster) from a :class:`RedisURL`.

redis-py is imported here, inside the functions, so that ``import llmcache_redis`` and
loading the plugin work without it. Every client:

- bounds each socket operation and each connect by the tier's timeout;
- never retries on its own (the core's circuit breaker decides when to try again, so a dead
  server costs one timeout per call, not four with backoff in between);
- keeps at most ``pool_size`` connections per server, waiting up to the timeout for a free
  one rather than failing at once under a burst.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from typing import Any

from llmcache.errors import MissingExtraError

from .urls import RedisURL

__all__ = ["IdleStack", "async_client", "require_redis", "sync_client"]


def require_redis(scheme: str = "redis") -> None:
    """Raise :class:`~llmcache.MissingExtraError` unless redis-py is installed."""
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"{scheme}:// tiers", "redis", "redis") from exc


def _socket_options(url: RedisURL, timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **url.connection,
    }


def _pool_options(url: RedisURL, timeout: float, *, aio: bool) -> dict[str, Any]:
    if aio:
        from redis.asyncio import connection
        from redis.asyncio.retry import Retry
    else:
        from redis import connection  # type: ignore[no-redef]
        from redis.retry import Retry  # type: ignore[assignment]
    from redis.backoff import NoBackoff

    options = _socket_options(url, timeout)
    ssl = options.pop("ssl", False)
    options.update(
        max_connections=url.pool_size,
        timeout=timeout,  # how long to wait for a free connection of the pool
        retry=Retry(NoBackoff(), 0),
        db=url.db,
    )
    if url.socket_path is not None:
        options.update(connection_class=connection.UnixDomainSocketConnection, path=url.socket_path)
    else:
        ((host, port),) = url.nodes
        options.update(
            connection_class=connection.SSLConnection if ssl else connection.Connection,
            host=host,
            port=port,
        )
    return options


def _sentinel_client_options(url: RedisURL, timeout: float, *, aio: bool = False) -> dict[str, Any]:
    """Options of the client of a Sentinel service's primary (found again on each connect)."""
    if aio:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry  # type: ignore[assignment]
    from redis.backoff import NoBackoff

    return {
        **_socket_options(url, timeout),
        "db": url.db,
        "max_connections": url.pool_size,
        "retry": Retry(NoBackoff(), 0),
    }


class IdleStack:
    """The idle connections of a sync pool: ``queue.LifoQueue``'s part that redis-py uses.

    ``redis.BlockingConnectionPool`` takes and returns every connection through its queue,
    and ``LifoQueue`` enters a lock and a condition on both, for each command. Under the
    GIL a list's ``pop`` and ``append`` are atomic, so here a connection is taken and
    returned without either; only a caller that finds the stack empty waits (up to the
    pool's timeout) on a condition, which a return signals when someone waits.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: list[Any] = []  # the pool reads it to list its idle connections
        self._returned = threading.Condition(threading.Lock())
        self._waiting = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the most recently returned item, waiting up to ``timeout`` seconds."""
        try:
            return self.queue.pop()
        except IndexError:
            if not block:
                raise queue.Empty from None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._returned:
            self._waiting += 1  # before looking again: a return after this notifies
            try:
                while True:
                    try:
                        return self.queue.pop()
                    except IndexError:  # empty, or a caller outside the lock was first
                        pass
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise queue.Empty
                    self._returned.wait(left)
            finally:
                self._waiting -= 1

    def put_nowait(self, item: Any) -> None:
        """Return an item (a connection, or ``None``: a slot for a new one)."""
        if len(self.queue) >= self.maxsize:
            raise queue.Full
        self.queue.append(item)
        if self._waiting:
            with self._returned:
                self._returned.notify()


def sync_client(url: RedisURL, timeout: float) -> Any:
    """Return a ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    A ``RedisCluster`` reads the topology when it is built, so call this on first use only.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if url.service is not None:
        from .sentinel_clients import sync_sentinel

        return sync_sentinel(url, timeout).master_for(
            url.service, **_sentinel_client_options(url, timeout)
        )
    if not url.cluster:
        pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            queue_class=IdleStack, **_pool_options(url, timeout, aio=False)
        )
        return redis.Redis(connection_pool=pool)
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.nodes],  # type: ignore[no-untyped-call]
        retry=Retry(NoBackoff(), 0),
        max_connections=url.pool_size,
        # wait at most the timeout for a free connection, as on one server
        connection_pool_class=functools.partial(
            redis.BlockingConnectionPool, timeout=timeout, queue_class=IdleStack
        ),
        **_socket_options(url, timeout),
    )


def async_client(url: RedisURL, timeout: float) -> Any:
    """Return a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.

    Neither connects before its first command; both belong to the running event loop.
    """
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if url.service is not None:
        from .sentinel_clients import async_sentinel

        return async_sentinel(url, timeout).master_for(
            url.service, **_sentinel_client_options(url, timeout, aio=True)
        )
    if not url.cluster:
        pool = _fast_blocking_pool_class()(**_pool_options(url, timeout, aio=True))
        return redis.asyncio.Redis(connection_pool=pool)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.nodes],
        retry=Retry(NoBackoff(), 0),
        max_connections=url.pool_size,
        **_socket_options(url, timeout),
    )


@functools.cache
def _fast_blocking_pool_class() -> Any:
    """redis.asyncio's blocking pool, without its waiting machinery when nobody waits.

    ``BlockingConnectionPool`` enters a condition and a timeout scope to take a connection
    and the condition again to return it, on every command: an asyncio hit cost about 20 %
    more than with the plain pool. The plain pool, though, fails at once when all
    connections are busy, and a burst of tasks would then trip the circuit breaker. This
    pool takes an idle connection the plain way and waits (up to the timeout) only when
    there is none; a connection goes back the plain way unless a task is waiting for one.
    """
    from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool
    from redis.exceptions import MaxConnectionsError

    class FastBlockingConnectionPool(BlockingConnectionPool):
        _waiting = 0  # tasks in the blocking path; asyncio runs one task at a time

        async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            if self._available_connections:
                try:
                    return await ConnectionPool.get_connection(self, *args, **kwargs)  # type: ignore[no-untyped-call]
                except MaxConnectionsError:  # another task took the idle one meanwhile
                    pass
            self._waiting += 1
            try:
                return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            finally:
                self._waiting -= 1

        async def release(self, connection: Any) -> None:
            if self._waiting:
                await super().release(connection)  # and wake a waiting task
            else:
                await ConnectionPool.release(self, connection)

    return FastBlockingConnectionPool
