"""``llmcache.http_client()`` and ``llmcache.async_http_client()``: HTTP clients for the SDKs'
``http_client=`` option, whose transport answers LLM API calls from the cache."""

from __future__ import annotations

from typing import Any

from llmcache._observe.stats import CacheStats
from llmcache.http.transport import AsyncCacheTransport, CacheTransport

__all__ = ["AsyncHttpCache", "HttpCache", "async_http_client", "http_client"]


class HttpCache:
    """The cache behind an HTTP client (its ``cache`` attribute): statistics, clears, close."""

    def __init__(self, transport: CacheTransport | AsyncCacheTransport) -> None:
        self.transport = transport
        self._core = transport.core

    @property
    def tiers(self) -> list[str]:
        """The tier labels, L1 first."""
        return self._core.labels

    def stats(self) -> CacheStats:
        """Return a snapshot of the cache's counters."""
        return self._core.stats_snapshot()

    def reset_stats(self) -> None:
        """Set the counters back to zero."""
        self._core.stats.reset()

    def clear_cache(self, key: str | None = None, older_than: float | None = None) -> int:
        """Remove entries of this namespace from every tier (see ``CachedClient.clear_cache``)."""
        return self._core.store.run(self._core.clear_steps(key, older_than))  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the transport and the tiers."""
        self.transport.close()  # type: ignore[union-attr]


class AsyncHttpCache(HttpCache):
    """:class:`HttpCache` of an async client: ``clear_cache`` and ``close`` are awaitable."""

    async def clear_cache(  # type: ignore[override]
        self, key: str | None = None, older_than: float | None = None
    ) -> int:
        """Remove entries of this namespace from every tier."""
        return await self._core.store.run(self._core.clear_steps(key, older_than))  # type: ignore[no-any-return]

    async def close(self) -> None:  # type: ignore[override]
        """Close the transport and the tiers."""
        await self.transport.aclose()  # type: ignore[union-attr]


def http_client(*, library: str | None = None, transport: Any = None, **options: Any) -> Any:
    """Return an HTTP client whose transport answers LLM API calls from the cache.

    Pass it as an SDK's ``http_client``::

        client = OpenAI(http_client=llmcache.http_client(tiers=["memory://"], namespace="app"))

    :param library: ``"httpx2"`` (openai 3.x, anthropic 2.x) or ``"httpx"`` (older SDKs);
        default: the one the installed OpenAI SDK uses.
    :param transport: a transport to send upstream through (default: the library's own).
    :param options: ``CachedClient``'s storage options: ``tiers``, ``namespace``,
        ``default_ttl``, ``key_strategy``, ``ttl_policy``, ``plugins``, ``pricing``,
        ``fail_open``, ``signing_key``, ``backend_timeout``...
    :return: an ``httpx2.Client`` (or ``httpx.Client``) with a ``cache`` attribute
        (:class:`HttpCache`: ``stats()``, ``clear_cache()``, ``close()``).
    :raises ConfigError: an option is malformed, or the library is not installed.
    """
    cache_transport = CacheTransport(transport, library=library, **options)
    client = cache_transport.lib.Client(transport=cache_transport, follow_redirects=True)
    client.cache = HttpCache(cache_transport)
    return client


def async_http_client(*, library: str | None = None, transport: Any = None, **options: Any) -> Any:
    """Return an asyncio HTTP client whose transport answers LLM API calls from the cache.

    The twin of :func:`http_client`, for ``AsyncOpenAI(http_client=...)`` and kin; its
    ``cache`` attribute is an :class:`AsyncHttpCache`.
    """
    cache_transport = AsyncCacheTransport(transport, library=library, **options)
    client = cache_transport.lib.AsyncClient(transport=cache_transport, follow_redirects=True)
    client.cache = AsyncHttpCache(cache_transport)
    return client
