"""The request pipeline of async clients: :class:`~llmcache.engine.Engine` driven by awaits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .embeddings import EmbeddingCall
from .engine import Engine, Outcome, mark, unstreamed
from .planning import Plan
from .providers.base import EndpointAdapter
from .request import Endpoint
from .singleflight import AsyncSingleFlight
from .streaming import AsyncRecordingStream, AsyncReplayStream
from .tiers import AsyncTiers, Found

__all__ = ["AsyncEngine"]

log = logging.getLogger("llmcache")

Upstream = Callable[..., Awaitable[Any]]


class AsyncEngine(Engine):
    """The pipeline of an async client."""

    tiers: AsyncTiers
    replay_stream = AsyncReplayStream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flight: AsyncSingleFlight[Outcome] = AsyncSingleFlight()
        self._refreshing: dict[str, asyncio.Task[Any]] = {}

    async def call(
        self,
        endpoint: Endpoint,
        upstream: Upstream,
        raw: Upstream | None,
        /,
        **kwargs: Any,
    ) -> Any:
        """Serve one call of ``endpoint`` whose upstream coroutine method is ``upstream``.

        :param raw: the same method returning the SDK's raw response, where the SDK has one.
        :param kwargs: the call's keywords, ``cache_*`` options included.
        """
        started = time.perf_counter()
        params, plan = self.planner.plan(endpoint, kwargs)
        adapter = self.adapter(endpoint)
        stream = bool(params.get("stream"))
        if plan is None:
            self.stats.bypass()
            return self.fresh_response(await upstream(**params), adapter, "", stream=stream)
        return await self.serve_plan(plan, adapter, params, stream, started, upstream, raw)

    async def serve_plan(
        self,
        plan: Plan,
        adapter: EndpointAdapter,
        params: dict[str, Any],
        stream: bool,
        started: float,
        upstream: Upstream,
        raw: Upstream | None,
    ) -> Any:
        """Serve a planned call: a hit, or the upstream's answer (stored)."""
        found: Found | None = None
        if plan.read_tiers:
            check = self.checker(plan, adapter, stream)
            found, fresh = await self.tiers.lookup(
                plan.pkey, plan.read_tiers, plan.max_age, plan, check
            )
            if fresh:
                return self.served(plan, adapter, found, stream, started)  # type: ignore[arg-type]
            if self.revalidating(plan, found):
                self._refresh(plan, adapter, params, upstream, raw)
                return self.served(plan, adapter, found, stream, started)  # type: ignore[arg-type]
        if self.semantic is not None:  # only after an exact miss
            near = await self.semantic.alookup(self, plan, adapter, stream)
            if near is not None:
                return self.semantic_hit(plan, adapter, near, stream, started)
        if plan.directives.only_if_cached:
            raise self.only_if_cached(plan)
        if stream:
            self.stats.miss()
            return self.record_stream(plan, adapter, await upstream(**params))
        try:
            outcome, coalesced = await self.flight.do(
                plan.pkey, lambda: self._fetch(plan, adapter, params, upstream, raw)
            )
        except Exception:
            stale = self.stale_within(plan, found, plan.directives.stale_if_error)
            if stale is None:
                raise
            log.warning("llmcache served a stale entry for %r: the upstream failed", plan.key)
            return self.served(plan, adapter, stale, stream, started)
        return self.settle(plan, adapter, outcome, coalesced, stream, started)

    def record_stream(self, plan: Plan, adapter: EndpointAdapter, live: Any) -> Any:
        """Return a live stream that is stored once it ran to its end."""

        async def store(chunks: list[dict[str, Any]]) -> None:
            await self._store(plan, adapter, chunks)

        return mark(AsyncRecordingStream(live, store, adapter.dump), hit=False, key=plan.key)

    async def embed(self, upstream: Upstream, /, **kwargs: Any) -> Any:
        """Serve ``embeddings.create``, caching each input on its own."""
        return await self.embed_prepared(EmbeddingCall.prepare(self.planner, kwargs), upstream)

    async def embed_prepared(  # type: ignore[override]
        self, prepared: tuple[dict[str, Any], EmbeddingCall | None], upstream: Upstream
    ) -> Any:
        """:meth:`embed` for a call planned already (:meth:`EmbeddingCall.prepare`)."""
        started = time.perf_counter()
        params, call = prepared
        adapter = self.adapter("embeddings")
        if call is None:
            self.stats.bypass()
            return self.fresh_response(await upstream(**params), adapter, "")
        first = call.plans[0]
        result = await self.tiers.run(call.steps(self.tiers, adapter), first.scope, upstream)
        return self.embedding_result(call, adapter, result, started)

    async def _fetch(
        self,
        plan: Plan,
        adapter: EndpointAdapter,
        params: dict[str, Any],
        upstream: Upstream,
        raw: Upstream | None,
    ) -> Outcome:
        steps = self.fetch_steps(plan, adapter, params, raw is not None)
        return await self.tiers.run(steps, plan.scope, raw or upstream)  # type: ignore[no-any-return]

    async def _store(
        self, plan: Plan, adapter: EndpointAdapter, chunks: list[dict[str, Any]]
    ) -> None:
        await self.tiers.run(self.stream_store_steps(plan, adapter, chunks), plan.scope)

    def _refresh(
        self,
        plan: Plan,
        adapter: EndpointAdapter,
        params: dict[str, Any],
        upstream: Upstream,
        raw: Upstream | None,
    ) -> None:
        if plan.pkey in self._refreshing:
            return

        async def refresh() -> None:
            try:
                await self.flight.do(
                    plan.pkey,
                    lambda: self._fetch(plan, adapter, unstreamed(params), upstream, raw),
                )
            except Exception:
                log.warning("llmcache background refresh of %r failed", plan.key, exc_info=True)
            finally:
                self._refreshing.pop(plan.pkey, None)

        self._refreshing[plan.pkey] = asyncio.get_running_loop().create_task(refresh())

    async def close(self) -> None:
        """Wait for background refreshes, then close the tiers."""
        if self._refreshing:
            await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
        await self.tiers.close()
