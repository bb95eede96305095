"""Register the Redis tiers: ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
``rediss+cluster://`` and ``redis+sentinel://``.

Loaded through the ``llmcache`` entry-point group. Nothing here imports redis-py: a URL
used without it gives :class:`~llmcache.MissingExtraError` naming ``llmcache[redis]``.
"""

from __future__ import annotations

from typing import Any

from llmcache import hookimpl
from llmcache.backends.base import AsyncCacheBackend, CacheBackend, reject_unknown_options

from .backend import AsyncRedisBackend, RedisBackend
from .cluster import AsyncRedisClusterBackend, RedisClusterBackend
from .connections import require_redis
from .sentinel import AsyncRedisSentinelBackend, RedisSentinelBackend
from .urls import SCHEMES, parse_redis_url

__all__ = ["async_from_url", "from_url", "llmcache_register_backends"]


def _parse(url: str, options: dict[str, Any]) -> Any:
    parsed = parse_redis_url(url)
    reject_unknown_options(f"{parsed.scheme}:// tiers", options, ())
    require_redis(parsed.scheme)
    return parsed


def from_url(url: str, *, timeout: float = 1.0, **options: Any) -> CacheBackend:
    """Build a sync Redis, Redis Cluster or Redis Sentinel backend; nothing connects yet.

    :param url: the tier URL, without the core's ``max_ttl`` and ``timeout``.
    :param timeout: the per-call timeout in seconds.
    :raises ConfigError: the URL is malformed or has an unknown option.
    :raises MissingExtraError: redis-py is not installed.
    """
    parsed = _parse(url, options)
    if parsed.service is not None:
        return RedisSentinelBackend(parsed, timeout=timeout)
    cls = RedisClusterBackend if parsed.cluster else RedisBackend
    return cls(parsed, timeout=timeout)


def async_from_url(url: str, *, timeout: float = 1.0, **options: Any) -> AsyncCacheBackend:
    """Build an asyncio Redis, Redis Cluster or Redis Sentinel backend (``redis.asyncio``)."""
    parsed = _parse(url, options)
    if parsed.service is not None:
        return AsyncRedisSentinelBackend(parsed, timeout=timeout)
    cls = AsyncRedisClusterBackend if parsed.cluster else AsyncRedisBackend
    return cls(parsed, timeout=timeout)


@hookimpl
def llmcache_register_backends(register: Any) -> None:
    """Serve every Redis scheme, sync and asyncio."""
    for scheme in SCHEMES:
        register(scheme, from_url, async_factory=async_from_url)
