"""The request pipeline: look up, serve a hit, or call upstream once and store the answer.

:class:`Engine` holds what sync and async clients share: the decisions of a call after its
first lookup (:meth:`Engine.decide`), the fetch of an answer (:meth:`Engine.fetch_steps`),
and how hits and entries are built, counted and told to observers. :class:`SyncEngine`
drives those flows with blocking calls, :class:`~llmcache._engine.async_engine.AsyncEngine`
with awaits; each keeps only its entry points, its hit path and its ``run``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmcache._engine.call import Call, Fetch, Pause, Refresh, Semantic, Upstream
from llmcache._engine.embeddings import EmbeddingCall
from llmcache._engine.planning import Plan, Planner
from llmcache._engine.singleflight import SingleFlight
from llmcache._engine.streaming import RecordingStream, ReplayStream
from llmcache._observe.events import CacheEvent
from llmcache._observe.observers import EventName, Observers
from llmcache._observe.stats import StatsRecorder
from llmcache._rules.canonical import keep_request
from llmcache._rules.keys import (
    RequestKeyStrategy,
    UncacheableRequest,
    has_non_finite,
    null_free,
    params_digest,
    physical_key,
)
from llmcache._rules.pricing import PriceTable
from llmcache._rules.request import Endpoint, Never
from llmcache._rules.ttl import FixedPolicy
from llmcache._tiers.codec import CorruptEntry, Entry, describe_failure
from llmcache._tiers.ops import Op, TryLock, Unlock
from llmcache._tiers.steps import FAILED, UNREAD, Steps
from llmcache._tiers.tier import Found, Scope, Tier, staleness
from llmcache._tiers.tiers import Tiers
from llmcache.errors import CacheMiss
from llmcache.providers.base import EndpointAdapter, Provider

__all__ = ["Engine", "Outcome", "SyncEngine", "mark", "marked_hit"]

log = logging.getLogger("llmcache")

LOCK_POLL = 0.05


def unstreamed(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the arguments of the same request without streaming."""
    return {k: v for k, v in params.items() if k not in ("stream", "stream_options")}


def mark(
    obj: Any,
    *,
    hit: bool,
    key: str,
    age: float | None = None,
    tokens: int = 0,
    tier: str | None = None,
) -> Any:
    """Attach the ``cache_*`` attributes to an SDK object without touching its fields."""
    # Straight into the instance dict: pydantic's __setattr__ would make them extra fields,
    # which model_dump() would then serialise.
    attrs = vars(obj)
    attrs["cache_hit"] = hit
    attrs["cache_age"] = age
    attrs["cache_tokens_saved"] = tokens
    attrs["cache_tier"] = tier
    attrs["cache_key"] = key
    attrs["cache_match"] = "exact" if hit else None
    attrs["cache_similarity"] = None
    return obj


def marked_hit(served: Any, key: str, entry: Entry, tier: str | None) -> Any:
    """Return the answer of a hit on ``entry``, marked with ``cache_*``."""
    return mark(
        served,
        hit=True,
        key=key,
        age=max(0.0, time.time() - entry.created),
        tokens=entry.prompt_tokens + entry.completion_tokens,
        tier=tier,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a leader's upstream call produced: the live response and its entry."""

    response: Any
    entry: Entry
    found: Found | None = None  # served by another process that held the lock


class Engine:
    """What sync and async pipelines share."""

    semantic: Any = None  # a SemanticMatcher, plugged in by the door with semantic=

    def __init__(
        self,
        planner: Planner,
        provider: Provider,
        tiers: Any,
        stats: StatsRecorder,
        observers: Observers,
        prices: PriceTable,
        *,
        lock_ttl: float,
    ) -> None:
        self.planner = planner
        self.provider = provider
        self.tiers = tiers
        self.stats = stats
        self.observers = observers
        self.prices = prices
        self.lock_ttl = lock_ttl
        self._unstorable: set[str] = set()
        self._loaders = {
            endpoint: functools.partial(self.load, adapter)
            for endpoint, adapter in provider.adapters.items()
        }
        self._lock_tier = next(
            (t for t in tiers.tiers if t.shared and t.caps.locks),
            None,
        )
        # The quick hit path serves calls keyed by the default strategy under a fixed TTL
        # policy (neither reads the request otherwise), from the first tier.
        policy = planner.ttl_policy
        self._digest_keys = type(planner.key_strategy) is RequestKeyStrategy
        self.first: Tier | None = (
            planner.tiers[0]
            if planner.tiers
            and self._digest_keys
            and type(policy) is FixedPolicy
            and not isinstance(policy.seconds, Never)
            else None
        )
        self._prefix = physical_key(planner.namespace, "")

    def adapter(self, endpoint: Endpoint) -> EndpointAdapter:
        """Return the response handling of an endpoint."""
        return self.provider.adapters[endpoint]

    def start(
        self,
        endpoint: Endpoint,
        upstream: Callable[..., Any],
        raw: Callable[..., Any] | None,
        kwargs: dict[str, Any],
        key: str | None = None,
    ) -> Call | tuple[dict[str, Any], EndpointAdapter]:
        """Plan a call: its :class:`Call`, or ``(params, adapter)`` for one that bypasses
        the cache (counted).

        :param key: the call's logical key, when the quick hit path computed it already.
        """
        started = time.perf_counter()
        params, plan = self.planner.plan(endpoint, kwargs, key)
        adapter = self.provider.adapters[endpoint]
        if plan is None:
            self.stats.bypass()
            return params, adapter
        return Call(plan, adapter, params, bool(params.get("stream")), started, upstream, raw)

    # -- the quick hit path ----------------------------------------------------------------
    # The common hit (no ``cache_*`` option, no stream, a fresh entry in the first tier)
    # served without building a request, a plan or a call: a quarter of a memory hit's
    # instructions (benchmarks/README.md). What it cannot serve goes the planned way with
    # what it read.

    def quick_key(self, endpoint: Endpoint, kwargs: Mapping[str, Any]) -> str | None:
        """Return the logical key of a call the quick path may serve, else ``None``."""
        first = self.first
        if (
            first is None
            or first.breaker.opened_at is not None
            or kwargs.get("stream")
            or self.observers.wanted("llmcache_on_hit")
        ):
            return None
        for name in kwargs:
            if name.startswith("cache_"):
                return None
        # NaN and infinities are told from null (orjson writes them so) only where that can
        # matter: on a hit of an entry that is not null-free, and before the key is handed to
        # the planned path (see Entry.null_free). The walk costs 5-8% of a memory hit.
        try:
            return params_digest(endpoint, self.planner.provider, kwargs, nan_check=False)
        except UncacheableRequest:
            return None  # the planned path warns, once

    def quick_hit(
        self, endpoint: Endpoint, key: str, tier: Tier, data: bytes | None, kwargs: Any
    ) -> Any:
        """Take the quick path's successful read of ``tier``: return the marked answer of a
        fresh, sound entry of this call, else ``None`` (a miss, a stale or bad entry, which
        the planned path judges and counts, or a call whose key is not the quick one)."""
        tier.breaker.success()
        if data is None:
            return None
        try:
            entry = self.tiers.decoded(tier, data, self._prefix + key)
            if entry.expires is not None and time.time() >= entry.expires:
                return None
            if not entry.null_free and has_non_finite(kwargs):
                return None
            if entry.kind == "json":  # the SDK's validator itself, no frame of ours between
                served = self.provider.adapters[endpoint].build_json(entry.payload)
            else:
                served = self._loaders[endpoint](entry)
        except Exception:  # the planned path judges the entry again, and says what it is
            return None
        label = tier.label
        self.stats.hit(
            label,
            entry.model,
            entry.prompt_tokens,
            entry.completion_tokens,
            False,
            entry.cached_tokens,
            entry.written_tokens,
        )
        return marked_hit(served, key, entry, label)

    # -- entries and what a hit serves ---------------------------------------------------

    def entry_from_payload(
        self, plan: Plan, adapter: EndpointAdapter, payload: Any, kind: str = "response"
    ) -> Entry:
        """Return the entry for an upstream answer (a response payload or a chunk list)."""
        whole = adapter.assemble(payload) if kind == "chunks" else payload
        return self._entry(plan, adapter, whole, kind, payload)

    def entry_from_response(
        self, plan: Plan, adapter: EndpointAdapter, response: Any, body: bytes
    ) -> Entry:
        """Return the entry for an upstream answer validated from its JSON text ``body``."""
        return self._entry(plan, adapter, response, "json", body)

    def _entry(
        self, plan: Plan, adapter: EndpointAdapter, answer: Any, kind: str, payload: Any
    ) -> Entry:
        usage = adapter.usage(answer)
        request = plan.request
        return Entry(
            plan.pkey,
            time.time(),
            None,
            kind,
            payload,
            adapter.model(answer),
            usage.prompt,
            usage.completion,
            usage.provider_cached,
            usage.provider_written,
            # keyed by the request's digest alone, from JSON without null: see quick_key
            null_free=self._digest_keys
            and request.options.key is None
            and null_free(request.params),
        )

    def load(self, adapter: EndpointAdapter, entry: Entry) -> Any:
        """Build the SDK object of an entry, validated as a whole.

        :raises CorruptEntry: the entry is not an answer of this endpoint.
        """
        try:
            if entry.kind == "json":
                return adapter.load_json(entry.payload)
            if entry.kind == "response":
                return adapter.load(entry.payload)
            if entry.kind == "chunks":
                return adapter.load(adapter.assemble(entry.payload))
            raise ValueError(f"a {entry.kind!r} entry is not a {adapter.endpoint} answer")
        except Exception as exc:
            raise CorruptEntry(
                f"entry is not a {adapter.endpoint} answer: {describe_failure(exc)}"
            ) from exc

    def render(self, plan: Plan, adapter: EndpointAdapter, entry: Entry, stream: bool) -> Any:
        """Return what a hit on ``entry`` hands the caller: the SDK object, or a replay
        stream of it.

        :raises CorruptEntry: the entry is not an answer of this endpoint.
        """
        whole = self.load(adapter, entry)
        if not stream:
            return whole
        # The answer validated as a whole; its chunks are built as the SDK builds live ones.
        try:
            payload = entry.data()
            chunks = (
                adapter.replay(payload, plan.request.params)
                if entry.kind == "chunks"
                else adapter.synthesize(payload, plan.request.params)
            )
            return self.replay_stream([adapter.build_chunk(c) for c in chunks])
        except Exception as exc:
            raise CorruptEntry(
                f"entry is not a {adapter.endpoint} stream: {describe_failure(exc)}"
            ) from exc

    def checker(self, plan: Plan, adapter: EndpointAdapter, stream: bool) -> Callable[[Entry], Any]:
        """Return the lookup check that builds what a hit serves (and rejects junk)."""
        if not stream:
            return self._loaders[adapter.endpoint]
        return lambda entry: self.render(plan, adapter, entry, stream)

    def storable(self, adapter: EndpointAdapter, payload: Any) -> bool:
        """Tell whether an upstream answer can be served back (an answer the SDK's types
        reject is, built leniently, if it is shaped as one); log it once if not."""
        if adapter.shaped(payload):
            return True
        if adapter.endpoint not in self._unstorable:
            self._unstorable.add(adapter.endpoint)
            log.warning(
                "llmcache does not store %s answers that are not shaped as one (no %r list)",
                adapter.endpoint,
                adapter.items,
            )
        return False

    replay_stream: Callable[[list[Any]], Any] = ReplayStream

    if TYPE_CHECKING:  # each engine's own: a live stream, stored once it ran to its end

        def record_stream(self, call: Call, live: Any) -> Any: ...

    # -- hits, misses, and what callers are told ---------------------------------------------

    def hit(
        self,
        call: Call,
        entry: Entry,
        tier: Tier | None,
        *,
        value: Any = None,
        coalesced: bool = False,
    ) -> Any:
        """Count a hit, tell observers, and return the marked answer.

        :param value: what the lookup's check already built of ``entry``, if it did.
        """
        label = self.count_hit(call, entry, tier, coalesced)
        plan = call.plan
        served = self.render(plan, call.adapter, entry, call.stream) if value is None else value
        return self.hand_over(call, served, entry, label)

    def hand_over(self, call: Call, served: Any, entry: Entry, tier: str | None) -> Any:
        """Return what the caller of a hit gets: the answer, marked with ``cache_*``."""
        return marked_hit(served, call.plan.key, entry, tier)

    def stale_hit(self, call: Call, found: Found) -> Any:
        """Count and return a hit on an expired entry a ``stale-*`` directive lets serve."""
        return self.hit(call, found.entry, found.tier, value=found.value)

    def semantic_hit(self, call: Call, near: Any) -> Any:
        """Count and return a hit on a semantic match (a :class:`~llmcache.semantic.Near`)."""
        found = near.found
        served = self.hit(call, found.entry, found.tier, value=found.value)
        self.stats.semantic_hit()
        attrs = vars(served)
        attrs["cache_match"] = "semantic"
        attrs["cache_similarity"] = near.similarity
        attrs["cache_key"] = near.key
        return served

    def count_hit(self, call: Call, entry: Entry, tier: Tier | None, coalesced: bool) -> str | None:
        """Count a hit and tell observers; return the tier's label."""
        label = tier.label if tier is not None else None
        prompt, completion = entry.prompt_tokens, entry.completion_tokens
        cached, written = entry.cached_tokens, entry.written_tokens
        self.stats.hit(label, entry.model, prompt, completion, coalesced, cached, written)
        if self.observers.wanted("llmcache_on_hit"):
            cost = self.prices.cost(entry.model, prompt, completion, cached, written)
            tokens = prompt + completion
            self.emit("llmcache_on_hit", call.plan, label, call.started, tokens=tokens, cost=cost)
        return label

    def fresh_response(
        self,
        response: Any,
        adapter: EndpointAdapter,
        key: str,
        *,
        stream: bool = False,
        payload: Any = None,
    ) -> Any:
        """Count what the provider's prompt cache reported and mark a live response.

        :param payload: what usage is read from when not the response itself: its plain
            data, which a response the SDK constructed without validation reads reliably.
        """
        if not stream:
            data = adapter.dump(response) if payload is None else payload
            self.count_provider_cache(adapter, data)
        return mark(response, hit=False, key=key)

    def count_provider_cache(self, adapter: EndpointAdapter, payload: Any) -> None:
        """Add provider-cached prompt tokens (and their discount) to the statistics."""
        usage = adapter.usage(payload)
        if usage.provider_cached:
            price = self.prices.get(adapter.model(payload))
            discount = price.cache_discount(usage.provider_cached) if price else 0.0
            self.stats.provider_cached(usage.provider_cached, discount)

    def emit(
        self,
        name: EventName,
        plan: Plan,
        tier: str | None,
        started: float,
        *,
        tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """Tell observers, if any, building the event only then."""
        if self.observers.wanted(name):
            event = CacheEvent(
                plan.request, plan.key, tier, time.perf_counter() - started, None, tokens, cost
            )
            self.observers.emit(name, event)

    def fetched(self, call: Call, outcome: Outcome, coalesced: bool) -> Any:
        """Count and return what a (possibly shared) fetch produced for this caller: a miss
        for the leader, a hit for those who waited on it or on another process."""
        other = outcome.found
        plan = call.plan
        if not coalesced and other is None:
            self.stats.miss()
            self.emit("llmcache_on_miss", plan, None, call.started)
            entry = outcome.entry
            # usage from the stored data, or from the response when it was validated
            payload = {"response": entry.payload, "json": outcome.response}.get(entry.kind)
            return self.fresh_response(outcome.response, call.adapter, plan.key, payload=payload)
        tier = other.tier if other is not None and not coalesced else None
        value = other.value if other is not None and not call.stream else None
        return self.hit(call, outcome.entry, tier, value=value, coalesced=True)

    def stale_within(self, plan: Plan, found: Found | None, window: int | None) -> Found | None:
        """Return ``found`` if it is within a ``stale-*`` directive's window, else ``None``."""
        if found is None or window is None:
            return None
        return found if staleness(found.entry, time.time(), plan.max_age) <= window else None

    def only_if_cached(self, plan: Plan) -> CacheMiss:
        """Count the miss and return the error ``only-if-cached`` raises."""
        self.stats.miss()
        return CacheMiss(f"no fresh entry for key {plan.key!r} and only-if-cached was given")

    def embedding_result(
        self,
        call: EmbeddingCall,
        adapter: EndpointAdapter,
        result: tuple[dict[str, Any], list[Found | None], Any],
        started: float,
    ) -> Any:
        """Count and mark the answer of a per-input embeddings call."""
        payload, outcome = self.count_embeddings(call, result, started)
        return mark(adapter.load(payload), **outcome)

    def count_embeddings(
        self,
        call: EmbeddingCall,
        result: tuple[dict[str, Any], list[Found | None], Any],
        started: float,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Count a per-input embeddings call; return its answer and what to mark it with
        (the keywords of :func:`mark`)."""
        payload, found, response = result
        plan = call.plans[0]
        key = ",".join(dict.fromkeys(p.key for p in call.plans))
        if not payload:
            raise self.only_if_cached(plan)
        hits = [f for f in found if f is not None]
        tokens = sum(f.entry.total_tokens for f in hits)
        if response is None:
            label = hits[0].tier.label
            model = hits[0].entry.model
            self.stats.hit(label, model, tokens, 0)
            cost = self.prices.cost(model, tokens, 0)
            self.emit("llmcache_on_hit", plan, label, started, tokens=tokens, cost=cost)
            age = max(0.0, time.time() - min(f.entry.created for f in hits))
            return payload, {"hit": True, "key": key, "age": age, "tokens": tokens, "tier": label}
        self.stats.miss()
        self.emit("llmcache_on_miss", plan, None, started)
        return payload, {"hit": False, "key": key, "tokens": tokens}

    # -- the flows, shared by both engines -----------------------------------------------

    def decide(self, call: Call, found: Found | None) -> Steps:
        """Serve a call whose first lookup found no fresh entry (``found``: a stale one,
        or ``None``): serve it stale while refreshing, a semantic match, or the upstream's
        answer, fetched once for every caller and stored."""
        plan = call.plan
        window = plan.directives.stale_while_revalidate
        if self.stale_within(plan, found, window) is not None:
            yield Refresh(call)
            return self.stale_hit(call, found)  # type: ignore[arg-type]
        if self.semantic is not None:  # only after an exact miss
            near = yield Semantic(call)
            if near is not None:
                return self.semantic_hit(call, near)
        if plan.directives.only_if_cached:
            raise self.only_if_cached(plan)
        if call.stream:
            self.stats.miss()
            return self.record_stream(call, (yield Upstream(call.params)))
        try:
            outcome, coalesced = yield Fetch(call)
        except Exception:
            stale = self.stale_within(plan, found, plan.directives.stale_if_error)
            if stale is None:
                raise
            log.warning("llmcache served a stale entry for %r: the upstream failed", plan.key)
            return self.stale_hit(call, stale)
        return self.fetched(call, outcome, coalesced)

    def fetch_steps(self, call: Call, params: dict[str, Any]) -> Steps:
        """Call the upstream once and store the answer; return an :class:`Outcome`.

        With a shared tier that has locks, only the process holding the request's lock
        calls the upstream; the others wait for its entry (see :meth:`wait_steps`).
        """
        plan = call.plan
        lock = self._lock_tier if self._lock_tier in plan.write_tiers else None
        name = plan.pkey + ":lock"
        token = None
        if lock is not None:
            token = yield TryLock(lock, name, self.lock_ttl)
            if token is None:  # another process is fetching
                found, token = yield from self.wait_steps(call, lock, name)
                if found is not None:
                    return Outcome(None, found.entry, found)
        try:
            reply = yield Upstream(params)
            response, entry, store = self.entry_of_reply(call, reply)
            if store:
                yield from self.write_steps(plan, entry)
        except GeneratorExit:
            raise
        except BaseException:
            if lock is not None and token not in (None, FAILED):
                yield Unlock(lock, name, token)
            raise
        if lock is not None and token not in (None, FAILED):
            yield Unlock(lock, name, token)
        return Outcome(response, entry)

    def entry_of_reply(self, call: Call, reply: Any) -> tuple[Any, Entry, bool]:
        """Return what the caller gets of an upstream reply, its entry, and whether to
        store that entry (a reply of ``call.raw`` is the SDK's raw response, whose JSON
        text is stored as it came)."""
        adapter = call.adapter
        response, body = adapter.from_raw(reply) if call.raw is not None else (reply, None)
        if body is not None:
            return response, self.entry_from_response(call.plan, adapter, response, body), True
        payload = adapter.dump(response)
        entry = self.entry_from_payload(call.plan, adapter, payload)
        return response, entry, self.storable(adapter, payload)

    def write_steps(self, plan: Plan, entry: Entry) -> Steps:
        """Write an entry into the plan's tiers and tell observers."""
        if not plan.write_tiers:
            return
        if self.planner.keep_requests:
            keep_request(entry, plan.request)
        started = time.perf_counter()
        written = yield from self.tiers.store_steps(
            {plan.pkey: entry}, plan.write_tiers, plan.ttl, plan.shared_ttl, plan.grace
        )
        for label in written:
            self.emit("llmcache_on_store", plan, label, started)
        if self.semantic is not None:  # its vector beside it, when the lookup embedded one
            yield from self.semantic.store_steps(plan, entry, self.tiers.store_steps)

    def stream_store_steps(self, call: Call, chunks: list[dict[str, Any]]) -> Steps:
        """Store a stream that ran to its end (one that cannot be read back is not stored)."""
        adapter = call.adapter
        try:
            entry = self.entry_from_payload(call.plan, adapter, chunks, "chunks")
            whole = adapter.assemble(chunks)
        except Exception:
            log.warning("llmcache could not store a stream for %r", call.plan.key, exc_info=True)
            return
        self.count_provider_cache(adapter, whole)
        if self.storable(adapter, whole):
            yield from self.write_steps(call.plan, entry)

    def wait_steps(self, call: Call, tier: Tier, name: str) -> Steps:
        """Wait for another process's entry, or for its lock; return ``(found, token)``.

        The waiter polls the tier and retries the lock, so a holder that died releases
        everyone as soon as its lock expires; after ``lock_ttl`` it gives up waiting.
        """
        plan = call.plan
        deadline = time.monotonic() + self.lock_ttl
        delay = LOCK_POLL
        check = self.checker(plan, call.adapter, False)
        while time.monotonic() < deadline:
            yield Pause(delay)
            delay = min(delay * 1.5, 0.5)
            found, fresh = yield from self.tiers.lookup_steps(
                plan.pkey, [tier], plan.max_age, plan.scope, check
            )
            if fresh:
                return found, None
            token = yield TryLock(tier, name, self.lock_ttl)
            if token is not None:
                return None, token
        return None, None


class SyncEngine(Engine):
    """The pipeline of a sync client."""

    tiers: Tiers

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flight: SingleFlight[Outcome] = SingleFlight()
        self._refreshing: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def call(
        self,
        endpoint: Endpoint,
        upstream: Callable[..., Any],
        raw: Callable[..., Any] | None,
        /,
        **kwargs: Any,
    ) -> Any:
        """Serve one call of ``endpoint`` whose upstream method is ``upstream``.

        :param raw: the same method returning the SDK's raw response, where the SDK has one.
        :param kwargs: the call's keywords, ``cache_*`` options included.
        """
        key = self.quick_key(endpoint, kwargs)
        read: Any = UNREAD
        if key is not None:
            tier: Tier = self.first  # type: ignore[assignment]
            try:
                read = tier.backend.get(self._prefix + key)
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
            return self.fresh_response(upstream(**params), adapter, "", stream=stream)
        return self.serve(call, read)

    def serve(self, call: Call, read: Any = UNREAD) -> Any:
        """Serve a planned call: a hit, or the upstream's answer (stored).

        :param read: what the quick path read of the first tier, if it did.
        """
        plan = call.plan
        found: Found | None = None
        if plan.read_tiers:
            check = self.checker(plan, call.adapter, call.stream)
            found, fresh = self.tiers.lookup(
                plan.pkey, plan.read_tiers, plan.max_age, plan, check, read
            )
            if fresh:  # the hit path
                return self.hit(call, found.entry, found.tier, value=found.value)  # type: ignore[union-attr]
        return self.run(self.decide(call, found), plan, call.upstream)

    def run(self, steps: Steps, scope: Scope | None, upstream: Callable[..., Any]) -> Any:
        """Drive a flow to its result: tier operations through the tiers, upstream calls,
        pauses and the engine's own steps here (an error is thrown back into the flow)."""
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value
            result, error = None, None
            if isinstance(step, Op):
                result = self.tiers.call(step, scope)
                continue
            try:
                if isinstance(step, Upstream):
                    result = upstream(**step.params)
                elif isinstance(step, Fetch):
                    fetch = step.call
                    result = self.flight.do(fetch.plan.pkey, functools.partial(self._fetch, fetch))
                elif isinstance(step, Pause):
                    time.sleep(step.seconds)
                elif isinstance(step, Semantic):
                    c = step.call
                    result = self.semantic.lookup(self, c.plan, c.adapter, c.stream)
                elif isinstance(step, Refresh):
                    self._refresh(step.call)
                else:
                    raise TypeError(f"unknown step {step!r}")
            except Exception as exc:
                error = exc

    def record_stream(self, call: Call, live: Any) -> Any:
        """Return a live stream that is stored once it ran to its end."""
        recorder = RecordingStream(
            live, lambda chunks: self._store(call, chunks), call.adapter.dump
        )
        return mark(recorder, hit=False, key=call.plan.key)

    def embed(self, upstream: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Serve ``embeddings.create``, caching each input on its own."""
        return self.embed_prepared(EmbeddingCall.prepare(self.planner, kwargs), upstream)

    def embed_prepared(
        self, prepared: tuple[dict[str, Any], EmbeddingCall | None], upstream: Callable[..., Any]
    ) -> Any:
        """:meth:`embed` for a call planned already (:meth:`EmbeddingCall.prepare`)."""
        started = time.perf_counter()
        params, call = prepared
        adapter = self.adapter("embeddings")
        if call is None:
            self.stats.bypass()
            return self.fresh_response(upstream(**params), adapter, "")
        result = self.run(call.steps(self.tiers, adapter), call.plans[0].scope, upstream)
        return self.embedding_result(call, adapter, result, started)

    def _fetch(self, call: Call, params: dict[str, Any] | None = None) -> Outcome:
        steps = self.fetch_steps(call, call.params if params is None else params)
        return self.run(steps, call.plan.scope, call.raw or call.upstream)  # type: ignore[no-any-return]

    def _store(self, call: Call, chunks: list[dict[str, Any]]) -> None:
        self.tiers.run(self.stream_store_steps(call, chunks), call.plan.scope)

    def _refresh(self, call: Call) -> None:
        pkey = call.plan.pkey
        if pkey in self._refreshing:
            return
        self._refreshing.add(pkey)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="llmcache-refresh")

        def refresh() -> None:
            try:
                self.flight.do(pkey, lambda: self._fetch(call, unstreamed(call.params)))
            except Exception:
                log.warning(
                    "llmcache background refresh of %r failed", call.plan.key, exc_info=True
                )
            finally:
                self._refreshing.discard(pkey)

        self._pool.submit(refresh)

    def close(self) -> None:
        """Wait for background refreshes, then close the tiers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.tiers.close()
