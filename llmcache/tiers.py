"""Tiered storage: L1 → Ln lookups with promotion, writes, clears, fail-open.

The tier logic is written once, as generators that yield the backend operations they need
(:class:`Op`) and receive each result; :class:`Tiers` drives them with blocking calls and
:class:`AsyncTiers` with awaits. Every operation goes through the tier's circuit breaker:
a failing tier is skipped (fail-open) and counted, or raises
:class:`~llmcache.BackendError` when ``fail_open=False``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .backends.base import SyncToAsync
from .backends.capabilities import Capabilities, conform, declared_options
from .breaker import CircuitBreaker
from .codec import Codec, CorruptEntry, Entry
from .errors import BackendError, ConfigError
from .events import CacheEvent
from .logthrottle import ThrottledLog
from .observers import Observers
from .plugins import PluginRegistry
from .request import CacheRequest
from .stats import StatsRecorder
from .urls import TierURL, parse_tier_url, password

__all__ = [
    "AsyncTiers",
    "Found",
    "Op",
    "Pause",
    "Scope",
    "Tier",
    "Tiers",
    "Upstream",
    "build_tiers",
]

log = logging.getLogger("llmcache")


@dataclass(eq=False)
class Tier:
    """One level of the cache: a backend with its label, limits and breaker."""

    label: str
    url: TierURL
    backend: Any  # the backend, its optional methods filled in (see backends.capabilities)
    shared: bool
    timeout: float
    breaker: CircuitBreaker
    caps: Capabilities = field(default_factory=Capabilities)
    # How an async tier is awaited, from caps.awaits, read on the hot path as plain flags:
    inline: bool = False  # every call keeps to the timeout by itself: no timeout task
    bounded_get: bool = False  # get keeps to the timeout by itself
    direct: Any = None  # an in-process store that never blocks: the sync store, called as is

    @property
    def max_ttl(self) -> float | None:
        """The cap on TTLs written here, from ``?max_ttl=``."""
        return self.url.max_ttl


def build_tiers(
    urls: Sequence[str],
    registry: PluginRegistry,
    *,
    is_async: bool,
    timeout: float,
    failure_threshold: int,
    recovery_time: float,
) -> list[Tier]:
    """Build the tiers of a client from its URLs (no connection is made).

    :raises ConfigError: a URL is malformed or its scheme unknown.
    """
    if isinstance(urls, str):
        raise ConfigError(f"tiers must be a list of URLs, not the string {urls!r}")
    if not urls:
        raise ConfigError("tiers must name at least one tier URL")
    tiers = []
    for level, raw in enumerate(urls, start=1):
        url = parse_tier_url(raw)
        spec = registry.backend(url.scheme) if url.scheme in registry.schemes() else None
        if spec is None:
            spec = registry.backend(url.scheme.split("+", 1)[0])
        options = {"timeout": url.timeout or timeout}
        direct = None
        if is_async and spec.async_factory is not None:
            made = spec.async_factory(url.url, **declared_options(spec.async_factory, options))
            backend, caps = conform(made, is_async=True)
            if isinstance(made, SyncToAsync) and caps.awaits == "inline":
                direct, _ = conform(made.backend, is_async=False)
        else:
            made = spec.factory(url.url, **declared_options(spec.factory, options))
            backend, caps = conform(made, is_async=False)
            if is_async:  # a sync backend serves async clients from a worker thread
                backend = SyncToAsync(backend)
        tiers.append(
            Tier(
                label=f"L{level}:{url.kind}",
                url=url,
                backend=backend,
                shared=caps.shared,
                timeout=options["timeout"],
                breaker=CircuitBreaker(failure_threshold, recovery_time),
                caps=caps,
                inline=caps.awaits in ("bounded", "inline"),
                bounded_get=caps.awaits == "bounded-reads",
                direct=direct,
            )
        )
    return tiers


_NO_KWARGS: dict[str, Any] = {}


class Scope(Protocol):
    """One user call as the tiers see it (a :class:`~llmcache.planning.Plan` is one): whom
    errors are reported for, and which tiers already failed during the call (they are not
    tried again within it)."""

    failed: set[Tier] | None

    @property
    def request(self) -> CacheRequest | None: ...

    @property
    def key(self) -> str: ...


class Upstream(NamedTuple):
    """A step asking the driver to call the upstream with these arguments."""

    params: dict[str, Any]


class Pause(NamedTuple):
    """A step asking the driver to wait (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


class Op(NamedTuple):
    """A backend call a tier generator needs: ``tier.backend.<method>(*args, **kwargs)``."""

    tier: Tier
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = _NO_KWARGS


DECODE_MEMO_SIZE = 1024
FAILED: Any = object()  # what a generator receives for a skipped or failed operation
BAD: Any = object()  # an entry that does not decode, or is not an answer of the call
UNREAD: Any = object()


class Found(NamedTuple):
    """An entry read from a tier."""

    entry: Entry
    tier: Tier
    data: bytes
    value: Any = None  # what the lookup's ``check`` made of the entry


def _fresh(entry: Entry, now: float, max_age: float | None) -> bool:
    if entry.expires is not None and now >= entry.expires:
        return False
    return max_age is None or now - entry.created <= max_age


def staleness(entry: Entry, now: float, max_age: float | None) -> float:
    """Seconds since ``entry`` stopped being fresh (negative while fresh)."""
    ends = math.inf if entry.expires is None else entry.expires
    if max_age is not None:
        ends = min(ends, entry.created + max_age)
    return now - ends


def physical_ttl(tier: Tier, ttl: float | None, grace: float) -> float | None:
    """The TTL to give a backend: the entry's TTL plus the stale grace, capped by max_ttl."""
    seconds = None if ttl is None else ttl + grace
    if tier.max_ttl is not None:
        seconds = tier.max_ttl if seconds is None else min(seconds, tier.max_ttl)
    return seconds


Steps = Generator[Any, Any, Any]


class _TierLogic:
    """What the tiers do, independent of how the backend calls are made."""

    def __init__(
        self,
        tiers: list[Tier],
        codec: Codec,
        stats: StatsRecorder,
        observers: Observers,
        *,
        fail_open: bool = True,
    ) -> None:
        self.tiers = tiers
        self.codec = codec
        self.stats = stats
        self.observers = observers
        self.fail_open = fail_open
        # In-process tiers hand back the very bytes object they were given, so the entry
        # decoded from it can be reused: id() is stable while the memo holds the bytes.
        self._decoded: dict[int, tuple[bytes, Entry]] = {}
        self.failure_log = ThrottledLog(log)  # one line per cause per interval, counted

    # -- failure handling ------------------------------------------------------------------

    def _skip(self, tier: Tier, scope: Scope | None) -> bool:
        """Tell whether to leave a tier out: its circuit is open, or it failed this call."""
        if scope is not None and scope.failed and tier in scope.failed:
            return True
        if tier.breaker.opened_at is None or tier.breaker.allow():
            return False
        if not self.fail_open:
            raise BackendError(
                f"cache tier {tier.label} is unavailable (circuit open after repeated failures)"
            )
        return True

    def _report(self, tier: Tier, exc: BaseException, scope: Scope | None, what: str) -> None:
        """Count an error, log it (without secrets) and tell ``llmcache_on_error`` observers."""
        self.stats.error()
        self.failure_log.failure(tier.label, what, _describe(exc, tier))
        if scope is None or scope.request is None:
            return
        if self.observers.wanted("llmcache_on_error"):
            event = CacheEvent(scope.request, scope.key, tier.label, 0.0, exc)
            self.observers.emit("llmcache_on_error", event)

    def _failed(self, tier: Tier, exc: BaseException, scope: Scope | None) -> None:
        tier.breaker.failure()
        if scope is not None:  # one timeout per tier per call, not one per operation
            if scope.failed is None:
                scope.failed = set()
            scope.failed.add(tier)
        self._report(tier, exc, scope, "failed in")
        if not self.fail_open:
            raise BackendError(f"cache tier {tier.label} failed: {_describe(exc, tier)}") from exc

    def _accept(
        self,
        tier: Tier,
        data: Any,
        pkey: str,
        scope: Scope | None,
        check: Callable[[Entry], Any] | None = None,
    ) -> Any:
        """Judge what a tier's ``get`` returned: ``None`` for nothing (no entry, or a failed
        read), :data:`BAD` for an entry that does not decode or check (counted), else
        :class:`Found`."""
        if data is None or data is FAILED:
            return None
        memo = self._decoded.get(id(data))
        try:
            if memo is not None and memo[0] is data and memo[1].key == pkey:
                entry = memo[1]
            else:
                entry = self.codec.decode(data, pkey)
                if not tier.shared:
                    if len(self._decoded) >= DECODE_MEMO_SIZE:
                        self._decoded.clear()
                    self._decoded[id(data)] = (data, entry)
            return Found(entry, tier, data, None if check is None else check(entry))
        except CorruptEntry as exc:
            self._decoded.pop(id(data), None)
            self._report(tier, exc, scope, "dropped a bad entry in")
            return BAD

    # -- the steps -------------------------------------------------------------------------

    def lookup_steps(
        self,
        pkey: str,
        tiers: Sequence[Tier],
        max_age: float | None,
        scope: Scope | None = None,
        check: Callable[[Entry], Any] | None = None,
        *,
        first: Any = UNREAD,
    ) -> Steps:
        """Find the first fresh entry, promoting it into the tiers above; else the first stale.

        ``check`` turns an entry into what the caller serves (``Found.value``) and raises
        :class:`~llmcache.codec.CorruptEntry` for one that cannot be served: such an entry
        is counted, deleted and skipped like bytes that do not decode. ``first`` is what a
        driver already made of the first tier's read (see :meth:`_accept`).

        Returns ``(found, fresh)`` or ``(None, False)``.
        """
        stale: Found | None = None
        for level, tier in enumerate(tiers):
            if level or first is UNREAD:
                found = self._accept(tier, (yield Op(tier, "get", (pkey,))), pkey, scope, check)
            else:
                found = first
            if found is None:
                continue
            if found is BAD:
                yield Op(tier, "delete", ([pkey],))
                continue
            now = time.time()
            if _fresh(found.entry, now, max_age):
                if level:
                    yield from self._promote_steps(
                        pkey, found.entry, found.data, tiers[:level], now
                    )
                return found, True
            if stale is None:
                stale = found
        return stale, False

    def lookup_many_steps(
        self,
        pkeys: Sequence[str],
        tiers: Sequence[Tier],
        check: Callable[[Entry], Any] | None = None,
    ) -> Steps:
        """Find fresh entries for many keys, a multi-get per tier; promote what lower tiers had.

        Returns a list aligned with ``pkeys`` of :class:`Found` or ``None``.
        """
        found: list[Found | None] = [None] * len(pkeys)
        for level, tier in enumerate(tiers):
            wanted = [i for i, f in enumerate(found) if f is None]
            if not wanted:
                break
            values = yield Op(tier, "get_many", ([pkeys[i] for i in wanted],))
            if values is FAILED:
                continue
            bad = []
            now = time.time()
            for i, data in zip(wanted, values, strict=True):
                hit = self._accept(tier, data, pkeys[i], None, check)
                if hit is None:
                    continue
                if hit is BAD:
                    bad.append(pkeys[i])
                elif _fresh(hit.entry, now, None):
                    found[i] = hit
                    if level:
                        yield from self._promote_steps(
                            pkeys[i], hit.entry, data, tiers[:level], now
                        )
            if bad:
                yield Op(tier, "delete", (bad,))
        return found

    def _promote_steps(
        self, pkey: str, entry: Entry, data: bytes, above: Sequence[Tier], now: float
    ) -> Steps:
        remaining = entry.remaining(now)
        for tier in above:
            yield Op(
                tier,
                "set",
                (pkey, data, physical_ttl(tier, remaining, 0.0)),
                {"created": entry.created},
            )

    def store_steps(
        self,
        items: dict[str, Entry],
        tiers: Sequence[Tier],
        ttl: float | None,
        shared_ttl: float | None,
        grace: float,
    ) -> Steps:
        """Write entries (one TTL for all) into ``tiers``; return the labels written."""
        written = []
        encoded: dict[float | None, dict[str, bytes]] = {}
        for tier in tiers:
            tier_ttl = shared_ttl if tier.shared and shared_ttl is not None else ttl
            if tier_ttl not in encoded:
                encoded[tier_ttl] = {
                    pkey: self.codec.encode(
                        entry, None if tier_ttl is None else entry.created + tier_ttl
                    )
                    for pkey, entry in items.items()
                }
            blobs = encoded[tier_ttl]
            created = next(iter(items.values())).created
            seconds = physical_ttl(tier, tier_ttl, grace)
            if len(blobs) == 1:
                [(pkey, blob)] = blobs.items()
                result = yield Op(tier, "set", (pkey, blob, seconds), {"created": created})
            else:
                result = yield Op(tier, "set_many", (blobs, seconds), {"created": created})
            if result is not FAILED:
                written.append(tier.label)
        return written

    def clear_steps(self, pattern: str, older_than: float | None) -> Steps:
        """Clear every tier; return the number of entries the countable tiers removed."""
        removed = 0
        for tier in self.tiers:
            count = yield Op(tier, "clear", (pattern, older_than))
            if count is not FAILED and count is not None:
                removed += int(count)
        return removed


def _describe(exc: BaseException, tier: Tier) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # drivers sometimes echo the URL: never let a password through
    secret = password(tier.url.url)
    return text.replace(secret, "***") if secret else text


class Tiers(_TierLogic):
    """The tiers of a sync client."""

    def run(
        self,
        steps: Steps,
        scope: Scope | None = None,
        upstream: Callable[..., Any] | None = None,
    ) -> Any:
        """Drive a step generator to its result, making each backend call.

        An :class:`Upstream` step goes to ``upstream`` (its error is thrown back into the
        generator); a :class:`Pause` sleeps.
        """
        try:
            op = next(steps)
            while True:
                if isinstance(op, Op):
                    op = steps.send(self.call(op, scope))
                elif isinstance(op, Pause):
                    time.sleep(op.seconds)
                    op = steps.send(None)
                else:
                    try:
                        result = upstream(**op.params)  # type: ignore[misc]
                    except Exception as exc:
                        op = steps.throw(exc)
                    else:
                        op = steps.send(result)
        except StopIteration as done:
            return done.value

    def call(self, op: Op, scope: Scope | None = None) -> Any:
        """Make one guarded backend call; :data:`FAILED` when skipped or failed."""
        tier = op.tier
        if self._skip(tier, scope):
            return FAILED
        try:
            result = getattr(tier.backend, op.method)(*op.args, **op.kwargs)
        except Exception as exc:
            self._failed(tier, exc, scope)
            return FAILED
        tier.breaker.success()
        return result

    def lookup(
        self,
        pkey: str,
        tiers: Sequence[Tier],
        max_age: float | None,
        scope: Scope,
        check: Callable[[Entry], Any],
    ) -> tuple[Found | None, bool]:
        """Run :meth:`lookup_steps`; a fresh entry in the first tier, the hit path, is
        returned straight from one guarded read."""
        tier = tiers[0]
        data = FAILED
        breaker = tier.breaker
        # Op, call() and a closed circuit's _skip() inlined: this is the hit path
        if (breaker.opened_at is None and not scope.failed) or not self._skip(tier, scope):
            try:
                data = tier.backend.get(pkey)
            except Exception as exc:
                self._failed(tier, exc, scope)
            else:
                if breaker.failures or breaker.opened_at is not None:
                    breaker.success()
        found = self._accept(tier, data, pkey, scope, check)
        if found is not None and found is not BAD and _fresh(found.entry, time.time(), max_age):
            return found, True
        return self.run(self.lookup_steps(pkey, tiers, max_age, scope, check, first=found), scope)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every backend."""
        for tier in self.tiers:
            try:
                tier.backend.close()
            except Exception:
                log.warning("llmcache tier %s failed to close", tier.label, exc_info=True)


async def _bounded(call: Awaitable[Any], timeout: float) -> Any:
    """Await ``call`` for at most ``timeout`` seconds.

    Unlike ``asyncio.wait_for``, do not wait for the cancelled operation to clean up: a
    driver cancelling on a dead network can take longer than the timeout itself.
    """
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait((task,), timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise TimeoutError(f"no answer within {timeout} s")
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a late failure of an abandoned call is not news


class AsyncTiers(_TierLogic):
    """The tiers of an async client; each call is bounded by the tier's timeout."""

    async def run(
        self,
        steps: Steps,
        scope: Scope | None = None,
        upstream: Callable[..., Awaitable[Any]] | None = None,
    ) -> Any:
        """Drive a step generator to its result, awaiting each backend call."""
        try:
            op = next(steps)
            while True:
                if isinstance(op, Op):
                    op = steps.send(await self.call(op, scope))
                elif isinstance(op, Pause):
                    await asyncio.sleep(op.seconds)
                    op = steps.send(None)
                else:
                    try:
                        result = await upstream(**op.params)  # type: ignore[misc]
                    except Exception as exc:
                        op = steps.throw(exc)
                    else:
                        op = steps.send(result)
        except StopIteration as done:
            return done.value

    async def call(self, op: Op, scope: Scope | None = None) -> Any:
        """Make one guarded backend call; :data:`FAILED` when skipped or failed."""
        tier = op.tier
        if self._skip(tier, scope):
            return FAILED
        try:
            if tier.direct is not None:
                result = getattr(tier.direct, op.method)(*op.args, **op.kwargs)
            else:
                call = getattr(tier.backend, op.method)(*op.args, **op.kwargs)
                result = await (call if tier.inline else _bounded(call, tier.timeout))
        except Exception as exc:
            self._failed(tier, exc, scope)
            return FAILED
        tier.breaker.success()
        return result

    async def lookup(
        self,
        pkey: str,
        tiers: Sequence[Tier],
        max_age: float | None,
        scope: Scope,
        check: Callable[[Entry], Any],
    ) -> tuple[Found | None, bool]:
        """The asyncio twin of :meth:`Tiers.lookup`."""
        tier = tiers[0]
        data = FAILED
        breaker = tier.breaker
        if (breaker.opened_at is None and not scope.failed) or not self._skip(tier, scope):
            try:
                if tier.direct is not None:
                    data = tier.direct.get(pkey)
                else:
                    call = tier.backend.get(pkey)
                    direct = tier.inline or tier.bounded_get
                    data = await (call if direct else _bounded(call, tier.timeout))
            except Exception as exc:
                self._failed(tier, exc, scope)
            else:
                if breaker.failures or breaker.opened_at is not None:
                    breaker.success()
        found = self._accept(tier, data, pkey, scope, check)
        if found is not None and found is not BAD and _fresh(found.entry, time.time(), max_age):
            return found, True
        steps = self.lookup_steps(pkey, tiers, max_age, scope, check, first=found)
        return await self.run(steps, scope)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close every backend."""
        for tier in self.tiers:
            try:
                await tier.backend.close()
            except Exception:
                log.warning("llmcache tier %s failed to close", tier.label, exc_info=True)
