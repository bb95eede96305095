"""The request pipeline of async clients: :class:`~llmcache._engine.engine.Engine`, awaited."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llmcache._engine.call import Call, Fetch, Pause, Refresh, Semantic, Upstream
from llmcache._engine.embeddings import EmbeddingCall
from llmcache._engine.engine import Engine, Outcome, mark, unstreamed
from llmcache._engine.singleflight import AsyncSingleFlight
from llmcache._engine.streaming import AsyncRecordingStream, AsyncReplayStream
from llmcache._rules.keys import has_non_finite
from llmcache._rules.request import Endpoint
from llmcache._tiers.ops import Op
from llmcache._tiers.steps import UNREAD, Steps
from llmcache._tiers.tier import Found, Scope, Tier
from llmcache._tiers.tiers import AsyncTiers

__all__ = ["AsyncEngine"]

log = logging.getLogger("llmcache")

UpstreamMethod = Callable[..., Awaitable[Any]]


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
        upstream: UpstreamMethod,
        raw: UpstreamMethod | None,
        /,
        **kwargs: Any,
    ) -> Any:
        """Serve one call of ``endpoint`` whose upstream coroutine method is ``upstream``.

        :param raw: the same method returning the SDK's raw response, where the SDK has one.
        :param kwargs: the call's keywords, ``cache_*`` options included.
        """
        key = self.quick_key(endpoint, kwargs)
        read: Any = UNREAD
        if key is not None:
            tier: Tier = self.first  # type: ignore[assignment]
            try:
                read = await self.tiers.read(tier, self._prefix + key)
            except Exception as exc:  # counted by the planned path's lookup
                read = exc
            else:
                served = self.quick_hit(endpoint, key, tier, read, kwargs)
                if served is not None:
                    return served
            if has_non_finite(kwargs):  # the quick key is not this call's: plan it afresh
                key, read = None, UNREAD
        call = self.start(endpoint, upstream, raw, kwargs, key)
        if not isinstance(call, Call):
            params, adapter = call
            stream = bool(params.get("stream"))
            return self.fresh_response(await upstream(**params), adapter, "", stream=stream)
        return await self.serve(call, read)

    async def serve(self, call: Call, read: Any = UNREAD) -> Any:
        """Serve a planned call: a hit, or the upstream's answer (stored).

        :param read: what the quick path read of the first tier, if it did.
        """
        plan = call.plan
        found: Found | None = None
        if plan.read_tiers:
            check = self.checker(plan, call.adapter, call.stream)
            found, fresh = await self.tiers.lookup(
                plan.pkey, plan.read_tiers, plan.max_age, plan, check, read
            )
            if fresh:  # the hit path
                return self.hit(call, found.entry, found.tier, value=found.value)  # type: ignore[union-attr]
        return await self.run(self.decide(call, found), plan, call.upstream)

    async def run(self, steps: Steps, scope: Scope | None, upstream: UpstreamMethod) -> Any:
        """The asyncio twin of :meth:`SyncEngine.run <llmcache._engine.engine.SyncEngine.run>`."""
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value
            result, error = None, None
            if isinstance(step, Op):
                result = await self.tiers.call(step, scope)
                continue
            try:
                if isinstance(step, Upstream):
                    result = await upstream(**step.params)
                elif isinstance(step, Fetch):
                    fetch = step.call
                    result = await self.flight.do(
                        fetch.plan.pkey, functools.partial(self._fetch, fetch)
                    )
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Semantic):
                    c = step.call
                    result = await self.semantic.alookup(self, c.plan, c.adapter, c.stream)
                elif isinstance(step, Refresh):
                    self._refresh(step.call)
                else:
                    raise TypeError(f"unknown step {step!r}")
            except Exception as exc:
                error = exc

    def record_stream(self, call: Call, live: Any) -> Any:
        """Return a live stream that is stored once it ran to its end."""

        async def store(chunks: list[dict[str, Any]]) -> None:
            await self._store(call, chunks)

        recorder = AsyncRecordingStream(live, store, call.adapter.dump)
        return mark(recorder, hit=False, key=call.plan.key)

    async def embed(self, upstream: UpstreamMethod, /, **kwargs: Any) -> Any:
        """Serve ``embeddings.create``, caching each input on its own."""
        return await self.embed_prepared(EmbeddingCall.prepare(self.planner, kwargs), upstream)

    async def embed_prepared(
        self, prepared: tuple[dict[str, Any], EmbeddingCall | None], upstream: UpstreamMethod
    ) -> Any:
        """:meth:`embed` for a call planned already (:meth:`EmbeddingCall.prepare`)."""
        started = time.perf_counter()
        params, call = prepared
        adapter = self.adapter("embeddings")
        if call is None:
            self.stats.bypass()
            return self.fresh_response(await upstream(**params), adapter, "")
        result = await self.run(call.steps(self.tiers, adapter), call.plans[0].scope, upstream)
        return self.embedding_result(call, adapter, result, started)

    async def _fetch(self, call: Call, params: dict[str, Any] | None = None) -> Outcome:
        steps = self.fetch_steps(call, call.params if params is None else params)
        return await self.run(steps, call.plan.scope, call.raw or call.upstream)  # type: ignore[no-any-return]

    async def _store(self, call: Call, chunks: list[dict[str, Any]]) -> None:
        await self.tiers.run(self.stream_store_steps(call, chunks), call.plan.scope)

    def _refresh(self, call: Call) -> None:
        pkey = call.plan.pkey
        if pkey in self._refreshing:
            return

        async def refresh() -> None:
            try:
                await self.flight.do(pkey, lambda: self._fetch(call, unstreamed(call.params)))
            except Exception:
                log.warning(
                    "llmcache background refresh of %r failed", call.plan.key, exc_info=True
                )
            finally:
                self._refreshing.pop(pkey, None)

        self._refreshing[pkey] = asyncio.get_running_loop().create_task(refresh())

    async def close(self) -> None:
        """Wait for background refreshes, then close the tiers."""
        if self._refreshing:
            await asyncio.gather(*self._refreshing.values(), return_exceptions=True)
        await self.tiers.close()
