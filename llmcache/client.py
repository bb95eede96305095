"""``CachedClient``: wrap an SDK client so that repeated requests are served from a cache."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import globs
from .codec import COMPRESS_THRESHOLD, Codec
from .errors import ConfigError
from .keys import physical_key
from .observers import Observers
from .planning import Planner
from .plugins import get_registry
from .pricing import PriceTable
from .providers import detect, endpoint_method, identity, is_async_client
from .resources import CachedResource, ResourceGroup
from .stats import CacheStats, StatsRecorder
from .tiers import AsyncTiers, Tiers, build_tiers

__all__ = ["AsyncCachedClient", "CachedClient"]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")
_GROUPS = {
    "chat": {"completions": "chat.completions"},
}
_TOP = {
    "completions": "completions",
    "embeddings": "embeddings",
    "responses": "responses",
    "messages": "messages",
}


def _resolve(kind: str, value: Any, lookup: Any, method: str) -> Any:
    if isinstance(value, str):
        return lookup(value)
    if not callable(getattr(value, method, None)):
        raise ConfigError(f"{kind} must be a registered name or an object with .{method}(request)")
    return value


class CachedClient:
    """Wrap an OpenAI-compatible or Anthropic client with a tiered response cache.

    Wrapping an async client (``AsyncOpenAI``, ``AsyncAnthropic``) returns an
    :class:`AsyncCachedClient`, whose cached methods and ``clear_cache`` are awaitable.

    :param client: the SDK client to wrap; every attribute llmcache does not cache passes
        through to it.
    :param tiers: tier URLs, L1 first (default: one in-process ``memory://`` tier).
    :param namespace: isolation prefix (letters, digits, ``_``, ``.``, ``-``); clears never
        cross it.
    :param default_ttl: seconds an answer is kept when nothing else says; ``None``: forever.
    :param key_strategy: a registered name (``"request"``, ``"explicit"``) or an object with
        ``key(request)``.
    :param ttl_policy: a registered name (``"fixed"``, ``"intent"``) or an object with
        ``ttl(request)``.
    :param plugins: plugins for this client only, on top of the process-wide ones.
    :param signing_key: sign entries with HMAC-SHA256; unsigned or badly signed entries are
        misses.
    :param fail_open: skip a failing tier (counted in ``errors``) instead of raising
        :class:`~llmcache.BackendError`.
    :param backend_timeout: seconds a tier call may take (a tier URL's ``?timeout=`` wins).
    :param failure_threshold: consecutive failures that open a tier's circuit breaker.
    :param recovery_time: seconds before a broken tier is tried again.
    :param pricing: ``{"model": {"input": ..., "output": ..., "cached_input": ...}}`` in USD per
        million tokens, on top of the built-in price table.
    :param lock_ttl: seconds a cross-process fetch lock lives (shared tiers that support locks).
    :param compress_threshold: compress entries larger than this many bytes.
    """

    _async = False

    def __new__(cls, client: Any, *args: Any, **kwargs: Any) -> CachedClient:
        if cls is CachedClient and is_async_client(client):
            cls = AsyncCachedClient
        return super().__new__(cls)

    def __init__(
        self,
        client: Any,
        *,
        tiers: Sequence[str] | None = None,
        namespace: str = "default",
        default_ttl: float | None = 86400,
        key_strategy: Any = "request",
        ttl_policy: Any = "fixed",
        plugins: Iterable[object] = (),
        signing_key: str | bytes | None = None,
        fail_open: bool = True,
        backend_timeout: float = 1.0,
        failure_threshold: int = 3,
        recovery_time: float = 5.0,
        pricing: Mapping[str, Any] | None = None,
        lock_ttl: float = 10.0,
        compress_threshold: int = COMPRESS_THRESHOLD,
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ConfigError(
                f"namespace {namespace!r} must be letters, digits, '_', '.' or '-' only"
            )
        if default_ttl is not None and not default_ttl > 0:
            raise ConfigError(
                f"default_ttl must be a positive number of seconds or None, not {default_ttl!r}"
            )
        plugin_list = list(plugins)
        registry = get_registry().child(plugin_list) if plugin_list else get_registry()
        self._client = client
        self._provider = detect(client)
        self._namespace = namespace
        prices = PriceTable(pricing)
        self._stats = StatsRecorder(prices)
        tier_list = build_tiers(
            tiers if tiers is not None else ["memory://"],
            registry,
            is_async=self._async,
            timeout=backend_timeout,
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
        )
        observers = Observers(registry)
        store = (AsyncTiers if self._async else Tiers)(
            tier_list,
            Codec(signing_key, compress_threshold),
            self._stats,
            observers,
            fail_open=fail_open,
        )
        planner = Planner(
            tier_list,
            namespace=namespace,
            provider=identity(client),
            default_ttl=default_ttl,
            key_strategy=_resolve("key_strategy", key_strategy, registry.key_strategy, "key"),
            ttl_policy=_resolve("ttl_policy", ttl_policy, registry.ttl_policy, "ttl"),
            sdk_cache_control=self._provider.sdk_cache_control,
            provider_name=self._provider.name,
        )
        engine_type = self._engine_type()
        self._engine = engine_type(
            planner,
            self._provider,
            store,
            self._stats,
            observers,
            prices,
            lock_ttl=lock_ttl,
        )
        self._tiers: Any = store
        for name, endpoints in _GROUPS.items():
            group = getattr(client, name, None)
            children = {
                child: CachedResource(getattr(group, child), self._engine, endpoint)  # type: ignore[arg-type]
                for child, endpoint in endpoints.items()
                if group is not None
                and endpoint in self._provider.adapters
                and hasattr(group, child)
            }
            if children:
                setattr(self, name, ResourceGroup(group, children))
        for name, endpoint in _TOP.items():
            if (
                endpoint in self._provider.adapters
                and endpoint_method(client, endpoint) is not None
            ):
                setattr(self, name, CachedResource(getattr(client, name), self._engine, endpoint))  # type: ignore[arg-type]

    def _engine_type(self) -> Any:
        from .engine import SyncEngine

        return SyncEngine

    # -- batches ------------------------------------------------------------------------

    def batch_completions(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        enable_cache: bool = True,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
        progress: bool = False,
        **common: Any,
    ) -> list[Any]:
        """Serve many chat requests through the cache, concurrently; results in order.

        Identical requests reach the upstream once: the first position gets the call's
        answer, every other one its own copy marked as a hit (``cache_tier=None``, counted
        as ``coalesced``). See :mod:`llmcache.batch`.

        :param requests: message dicts (``{"role": "user", "content": ...}``, sent as
            ``messages=[that dict]``) or dicts of ``create`` arguments.
        :param model: the model of items that name none.
        :param enable_cache: ``False`` sends every request upstream uncached (``no-store``).
        :param max_concurrency: calls in flight at once (worker threads).
        :param return_exceptions: put a failed call's exception in its places instead of
            raising the first error (which is raised once the calls in flight finished).
        :param progress: show a tqdm progress bar (``pip install 'llmcache[progress]'``).
        :param common: arguments for every request (an item's own win), ``cache_*`` included.
        :return: the responses (or exceptions), in the order of ``requests``.
        :raises ValueError: an item is malformed (the message names its index), or
            ``max_concurrency < 1``; raised before any upstream call.
        """
        from .batch import run_batch

        return run_batch(
            self,
            requests,
            model=model,
            enable_cache=enable_cache,
            max_concurrency=max_concurrency,
            return_exceptions=return_exceptions,
            progress=progress,
            common=common,
        )

    # -- pass-through ------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __repr__(self) -> str:
        labels = ", ".join(t.label for t in self._tiers.tiers)
        wrapped = type(self._client).__name__
        return f"<{type(self).__name__} of {wrapped} [{labels}] namespace={self._namespace!r}>"

    @property
    def wrapped(self) -> Any:
        """The SDK client this one wraps."""
        return self._client

    @property
    def tiers(self) -> list[str]:
        """The tier labels, L1 first (``["L1:memory", "L2:redis"]``)."""
        return [t.label for t in self._tiers.tiers]

    # -- cache management ---------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Return a snapshot of this client's counters."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Set this client's counters back to zero."""
        self._stats.reset()

    def _clear_args(self, key: str | None, older_than: float | None) -> tuple[str, float | None]:
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"key must be a non-empty glob over logical keys, not {key!r}")
        if older_than is not None and (isinstance(older_than, bool) or not older_than >= 0):
            raise ValueError(f"older_than must be a number of seconds >= 0, not {older_than!r}")
        prefix = globs.escape(physical_key(self._namespace, ""))
        return prefix + (key if key is not None else "*"), older_than

    def clear_cache(self, key: str | None = None, older_than: float | None = None) -> int:
        """Remove entries of this namespace from every tier.

        :param key: a glob over logical keys (``"user_123:*"``); ``*``, ``?`` and ``\\`` are
            special (see :func:`llmcache.globs.escape`). ``None``: every key.
        :param older_than: only entries created at least this many seconds ago.
        :return: entries removed by the tiers that can count (an entry held in two tiers
            counts twice; memcached adds 0).
        """
        pattern, age = self._clear_args(key, older_than)
        return self._tiers.run(self._tiers.clear_steps(pattern, age))  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the tiers (the wrapped client stays open)."""
        self._engine.close()

    def __enter__(self) -> CachedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCachedClient(CachedClient):
    """:class:`CachedClient` over an async SDK client: cached methods are awaitable.

    Build it as ``CachedClient(AsyncOpenAI(), ...)`` or ``AsyncCachedClient(...)``.
    """

    _async = True

    def _engine_type(self) -> Any:
        from .async_engine import AsyncEngine

        return AsyncEngine

    async def batch_completions(  # type: ignore[override]
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        enable_cache: bool = True,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
        progress: bool = False,
        **common: Any,
    ) -> list[Any]:
        """Serve many chat requests through the cache (see ``CachedClient.batch_completions``).

        At most ``max_concurrency`` calls are awaited at once.
        """
        from .batch import run_batch_async

        return await run_batch_async(
            self,
            requests,
            model=model,
            enable_cache=enable_cache,
            max_concurrency=max_concurrency,
            return_exceptions=return_exceptions,
            progress=progress,
            common=common,
        )

    async def clear_cache(self, key: str | None = None, older_than: float | None = None) -> int:  # type: ignore[override]
        """Remove entries of this namespace from every tier (see ``CachedClient.clear_cache``)."""
        pattern, age = self._clear_args(key, older_than)
        return await self._tiers.run(self._tiers.clear_steps(pattern, age))  # type: ignore[no-any-return]

    async def close(self) -> None:  # type: ignore[override]
        """Wait for background refreshes and close the tiers."""
        await self._engine.close()

    async def __aenter__(self) -> AsyncCachedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
