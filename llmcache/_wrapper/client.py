"""``CachedClient``: wrap an SDK client so that repeated requests are served from a cache."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmcache._engine.core import CacheCore
from llmcache._observe.stats import CacheStats
from llmcache._plugins import get_registry
from llmcache._tiers.codec import COMPRESS_THRESHOLD
from llmcache._wrapper.resources import CachedResource, ResourceGroup, Routed
from llmcache.providers import Method, detect, identity, is_async_client

__all__ = ["AsyncCachedClient", "CachedClient"]

# the wrapped client's own attributes that go to its HTTP twin, to be cached
_ROUTED = frozenset({"with_raw_response", "with_streaming_response", "beta"})


def _http_library(client: Any) -> str | None:
    """Return the HTTP library (``httpx2`` or ``httpx``) of an SDK client's HTTP client."""
    for cls in type(getattr(client, "_client", None)).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in ("httpx2", "httpx"):
            return root
    return None


class CachedClient:
    """Wrap an OpenAI-compatible or Anthropic client with a tiered response cache.

    Wrapping an async client (``AsyncOpenAI``, ``AsyncAnthropic``) returns an
    :class:`AsyncCachedClient`, whose cached methods and ``clear_cache`` are awaitable.

    ``create`` of the cached endpoints is served by the wrapper itself; the SDK helpers built
    on it (``parse``, ``stream``), the ``with_raw_response`` / ``with_streaming_response``
    forms and ``beta`` go through the HTTP-level cache over the same tiers and statistics;
    ``with_options()`` and ``copy()`` return cached clients sharing them too. Every other
    attribute is the wrapped client's own.

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
    :param semantic: opt-in semantic matching after an exact miss:
        ``{"calibration": "calibration.json"}`` (written by ``llmcache calibrate``) or
        ``{"threshold": 0.93}``, with ``"embedder"`` and more (see the README's "Semantic
        matching").
    :param keep_requests: store each answer's canonical request in its entry, so that
        ``llmcache explain`` can name the nearest entries of a miss and the fields that
        differ (off by default: entries then hold answers only).
    """

    _async = False

    def __new__(cls, client: Any, *args: Any, **kwargs: Any) -> CachedClient:
        if cls is CachedClient:
            plugins = list(kwargs.get("plugins", ()))
            registry = get_registry().child(plugins) if plugins else get_registry()
            if is_async_client(client, detect(client, registry.providers())):
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
        semantic: Mapping[str, Any] | None = None,
        keep_requests: bool = False,
    ) -> None:
        core = CacheCore(
            is_async=self._async,
            tiers=tiers,
            namespace=namespace,
            default_ttl=default_ttl,
            key_strategy=key_strategy,
            ttl_policy=ttl_policy,
            plugins=plugins,
            signing_key=signing_key,
            fail_open=fail_open,
            backend_timeout=backend_timeout,
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            pricing=pricing,
            lock_ttl=lock_ttl,
            compress_threshold=compress_threshold,
            semantic=semantic,
            keep_requests=keep_requests,
        )
        self._attach(client, core)

    def _attach(self, client: Any, core: CacheCore) -> None:
        """Wrap ``client`` over ``core`` (a new one, or the core of the client derived from)."""
        self._wrapped = client
        self._core = core
        self._sdk = detect(client, core.registry.providers())
        self._tiers: Any = core.store
        self._stats = core.stats
        self._namespace = core.namespace
        planner = core.planner(
            (self._sdk.identify or identity)(client),
            sdk_cache_control=self._sdk.sdk_cache_control,
            provider_name=self._sdk.name,
        )
        self._engine = self._engine_type()(
            planner,
            self._sdk,
            core.store,
            core.stats,
            core.observers,
            core.prices,
            lock_ttl=core.lock_ttl,
        )
        if core.semantic is not None:
            core.semantic.attach(self._engine, self)
        self._twin = self._http_twin(client, core)
        by_path: dict[tuple[str, ...], list[Method]] = {}
        for method in self._sdk.methods:
            if method.endpoint in self._sdk.adapters:
                by_path.setdefault(method.path, []).append(method)
        for path, methods in by_path.items():
            resource = self._sdk.resource(client, methods[0])
            if resource is None:
                continue
            twin = self._sdk.resource(self._twin, methods[0]) if self._twin is not None else None
            self._mount(path, CachedResource(resource, self._engine, methods, twin))

    def _mount(self, path: tuple[str, ...], proxy: CachedResource) -> None:
        """Put a resource proxy where the SDK has the resource (``client.chat.completions``),
        through groups that pass every other attribute to the SDK's own."""
        *groups, name = path
        holder: Any = self
        sdk: Any = self._wrapped
        for part in groups:
            sdk = getattr(sdk, part)
            group = holder.__dict__.get(part)
            if group is None:
                group = ResourceGroup(sdk, {})
                setattr(holder, part, group)
            holder = group
        setattr(holder, name, proxy)

    def _http_twin(self, client: Any, core: CacheCore) -> Any:
        """Return ``client`` rebuilt over a cache transport sharing ``core``, or ``None``
        for a client that cannot take an HTTP client of ours."""
        library = _http_library(client)
        if library is None or not callable(getattr(client, "with_options", None)):
            return None
        from llmcache.http.transport import AsyncCacheTransport, CacheTransport

        own = getattr(client._client, "_transport", None)  # keep its proxies, limits, TLS
        if self._async:
            transport: Any = AsyncCacheTransport(own, library=library, core=core)
            http = transport.lib.AsyncClient(transport=transport, follow_redirects=True)
        else:
            transport = CacheTransport(own, library=library, core=core)
            http = transport.lib.Client(transport=transport, follow_redirects=True)
        return client.with_options(http_client=http)

    def _engine_type(self) -> Any:
        from llmcache._engine.engine import SyncEngine

        return SyncEngine

    # -- derived clients ----------------------------------------------------------------

    def with_options(self, **options: Any) -> CachedClient:
        """Return the wrapped client's ``with_options(**options)``, cached over the same
        tiers and statistics."""
        derived = object.__new__(type(self))
        derived._attach(self._wrapped.with_options(**options), self._core)
        return derived

    copy = with_options

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
        as ``coalesced``). See :mod:`llmcache._engine.batch`.

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
        from llmcache._engine.batch import run_batch

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
        if name in _ROUTED and self.__dict__.get("_twin") is not None:
            sdk = self._sdk
            return getattr(Routed(self._twin, sdk.sdk_cache_control, sdk.name), name)
        return getattr(self._wrapped, name)

    def __repr__(self) -> str:
        labels = ", ".join(t.label for t in self._tiers.tiers)
        wrapped = type(self._wrapped).__name__
        return f"<{type(self).__name__} of {wrapped} [{labels}] namespace={self._namespace!r}>"

    @property
    def wrapped(self) -> Any:
        """The SDK client this one wraps."""
        return self._wrapped

    @property
    def tiers(self) -> list[str]:
        """The tier labels, L1 first (``["L1:memory", "L2:redis"]``)."""
        return [t.label for t in self._tiers.tiers]

    # -- cache management ---------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Return a snapshot of this client's counters (shared with derived clients)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Set this client's counters back to zero."""
        self._stats.reset()

    def clear_cache(self, key: str | None = None, older_than: float | None = None) -> int:
        """Remove entries of this namespace from every tier.

        :param key: a glob over logical keys (``"user_123:*"``); ``*``, ``?`` and ``\\`` are
            special (see :func:`llmcache.backends.globs.escape`). ``None``: every key.
        :param older_than: only entries created at least this many seconds ago.
        :return: entries removed by the tiers that can count (an entry held in two tiers
            counts twice; memcached adds 0).
        """
        return self._tiers.run(self._core.clear_steps(key, older_than))  # type: ignore[no-any-return]

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
        from llmcache._engine.async_engine import AsyncEngine

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
        from llmcache._engine.batch import run_batch_async

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
        return await self._tiers.run(self._core.clear_steps(key, older_than))  # type: ignore[no-any-return]

    async def close(self) -> None:  # type: ignore[override]
        """Wait for background refreshes and close the tiers."""
        await self._engine.close()

    async def __aenter__(self) -> AsyncCachedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
