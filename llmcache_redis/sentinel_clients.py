"""The Sentinel clients a ``redis+sentinel://`` tier connects through, sync and asyncio.

A service name that no sentinel knows gives an error naming the service and the sentinels
asked (:func:`service_not_found`).
"""

from __future__ import annotations

import functools
from typing import Any

from .urls import RedisURL

__all__ = ["async_sentinel", "service_not_found", "sync_sentinel"]


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
