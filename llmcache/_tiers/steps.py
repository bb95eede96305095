"""What the tiers do, written once as generators of operations (see :mod:`.ops`).

A lookup walks L1 → Ln and promotes what a lower tier had into the tiers above; a store
encodes an entry once per TTL and writes every tier; a clear asks every tier. A step
generator yields an :class:`~llmcache._tiers.ops.Op` and receives its result, or
:data:`FAILED` when the tier was skipped or failed; the drivers in
:mod:`llmcache._tiers.tiers` make the calls, blocking or awaited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

from llmcache._observe.events import CacheEvent
from llmcache._observe.logthrottle import ThrottledLog
from llmcache._observe.observers import Observers
from llmcache._observe.stats import StatsRecorder
from llmcache._tiers.codec import Codec, CorruptEntry, Entry
from llmcache._tiers.ops import Clear, Delete, Get, GetMany, Set, SetMany
from llmcache._tiers.tier import Found, Scope, Tier, fresh, physical_ttl
from llmcache.backends.urls import password
from llmcache.errors import BackendError

__all__ = ["BAD", "FAILED", "UNREAD", "Steps", "TierLogic", "describe"]

log = logging.getLogger("llmcache")

DECODE_MEMO_SIZE = 1024
FAILED: Any = object()  # what a generator receives for a skipped or failed operation
BAD: Any = object()  # an entry that does not decode, or is not an answer of the call
UNREAD: Any = object()

Steps = Generator[Any, Any, Any]


class TierLogic:
    """What the tiers do, independent of how the backend calls are made (the drivers
    subclass it)."""

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
        # decoded from it can be reused: id() is stable while the memo holds the bytes. It
        # spares the decode (~1.4 µs, 8% of a memory hit); shared tiers never use it.
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
        self.failure_log.failure(tier.label, what, describe(exc, tier))
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
            raise BackendError(f"cache tier {tier.label} failed: {describe(exc, tier)}") from exc

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
        try:
            entry = self.decoded(tier, data, pkey)
            return Found(entry, tier, data, None if check is None else check(entry))
        except CorruptEntry as exc:
            self._decoded.pop(id(data), None)
            self._report(tier, exc, scope, "dropped a bad entry in")
            return BAD

    def taken(self, tier: Tier, read: Any, scope: Scope | None) -> Any:
        """Return what a read made by a caller gave (its exception counted as a failure of
        ``tier``, and then :data:`FAILED`)."""
        if isinstance(read, Exception):
            self._failed(tier, read, scope)
            return FAILED
        return read

    def decoded(self, tier: Tier, data: bytes, pkey: str) -> Entry:
        """Return the entry ``data`` holds, decoded once per stored value of an in-process
        tier (which hands out the same bytes object on every read).

        :raises CorruptEntry: ``data`` is not an entry of ``pkey``.
        """
        memo = self._decoded.get(id(data))
        if memo is not None and memo[0] is data and memo[1].key == pkey:
            return memo[1]
        entry = self.codec.decode(data, pkey)
        if not tier.shared:
            if len(self._decoded) >= DECODE_MEMO_SIZE:
                self._decoded.clear()
            self._decoded[id(data)] = (data, entry)
        return entry

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
        :class:`~llmcache._tiers.codec.CorruptEntry` for one that cannot be served: such an entry
        is counted, deleted and skipped like bytes that do not decode. ``first`` is what a
        driver already made of the first tier's read (see :meth:`_accept`).

        Returns ``(found, fresh)`` or ``(None, False)``.
        """
        stale: Found | None = None
        for level, tier in enumerate(tiers):
            if level or first is UNREAD:
                found = self._accept(tier, (yield Get(tier, pkey)), pkey, scope, check)
            else:
                found = first
            if found is None:
                continue
            if found is BAD:
                yield Delete(tier, [pkey])
                continue
            now = time.time()
            if fresh(found.entry, now, max_age):
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
            values = yield GetMany(tier, [pkeys[i] for i in wanted])
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
                elif fresh(hit.entry, now, None):
                    found[i] = hit
                    if level:
                        yield from self._promote_steps(
                            pkeys[i], hit.entry, data, tiers[:level], now
                        )
            if bad:
                yield Delete(tier, bad)
        return found

    def _promote_steps(
        self, pkey: str, entry: Entry, data: bytes, above: Sequence[Tier], now: float
    ) -> Steps:
        remaining = entry.remaining(now)
        for tier in above:
            yield Set(tier, pkey, data, physical_ttl(tier, remaining, 0.0), entry.created)

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
                result = yield Set(tier, pkey, blob, seconds, created)
            else:
                result = yield SetMany(tier, blobs, seconds, created)
            if result is not FAILED:
                written.append(tier.label)
        return written

    def clear_steps(self, pattern: str, older_than: float | None) -> Steps:
        """Clear every tier; return the number of entries the countable tiers removed."""
        removed = 0
        for tier in self.tiers:
            count = yield Clear(tier, pattern, older_than)
            if count is not FAILED and count is not None:
                removed += int(count)
        return removed


def describe(exc: BaseException, tier: Tier) -> str:
    """Describe a backend failure for a log line, never with the tier's password."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # drivers sometimes echo the URL: never let a password through
    secret = password(tier.url.url)
    return text.replace(secret, "***") if secret else text
