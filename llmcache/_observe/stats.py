"""Counters of what the cache did and saved."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import islice
from types import MappingProxyType
from typing import Any, Protocol

__all__ = ["CacheStats", "StatsRecorder"]

FOLD_AT = 1024  # hits logged before they are added into the totals


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a client's counters, as returned by ``client.stats()``.

    ``hits + misses + bypasses == requests``. A call served by waiting on an identical
    in-flight call is a hit and is also counted in ``coalesced``. ``tokens_saved`` and
    ``cost_saved_usd`` are the response cache's savings; ``provider_cached_tokens`` and
    ``provider_cost_saved_usd`` are what the provider's own prompt cache reported, kept apart.
    """

    requests: int = 0
    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    coalesced: int = 0
    errors: int = 0
    tokens_saved: int = 0
    cost_saved_usd: float = 0.0
    provider_cached_tokens: int = 0
    provider_cost_saved_usd: float = 0.0
    tier_hits: MappingProxyType[str, int] = field(default_factory=lambda: MappingProxyType({}))
    semantic_hits: int = 0  # of the hits, those served by a semantic match
    semantic_errors: int = 0  # semantic steps skipped because something was wrong

    @property
    def hit_rate(self) -> float:
        """Hits as a fraction of requests (0 when there were none)."""
        return self.hits / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as plain data (``hit_rate`` included)."""
        return {
            "requests": self.requests,
            "hits": self.hits,
            "misses": self.misses,
            "bypasses": self.bypasses,
            "coalesced": self.coalesced,
            "errors": self.errors,
            "hit_rate": self.hit_rate,
            "tokens_saved": self.tokens_saved,
            "cost_saved_usd": self.cost_saved_usd,
            "provider_cached_tokens": self.provider_cached_tokens,
            "provider_cost_saved_usd": self.provider_cost_saved_usd,
            "tier_hits": dict(self.tier_hits),
            "semantic_hits": self.semantic_hits,
            "semantic_errors": self.semantic_errors,
        }


class Prices(Protocol):
    """What the recorder needs of a price table."""

    def cost(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached: int = 0,
        written: int = 0,
    ) -> float:
        """Dollars for a call with these token counts."""


class _NoPrices:
    def cost(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached: int = 0,
        written: int = 0,
    ) -> float:
        return 0.0


def _money(usd: float) -> float:
    """Round dollars to a billionth: sums of per-token prices carry float noise
    (``1.3499999999999998e-05``) that no price list has."""
    return round(usd, 9)


class StatsRecorder:
    """The thread-safe counters behind :class:`CacheStats`.

    Hits, the hot path, are appended to a log without taking the lock (a deque's append is
    atomic) and added into the totals in batches, under the lock, by the hit that fills the
    log or by a snapshot. Their tokens are kept per model; dollars are computed from
    ``prices`` when a snapshot is taken.
    """

    def __init__(self, prices: Prices | None = None) -> None:
        self._lock = threading.Lock()
        self._prices = prices if prices is not None else _NoPrices()
        self._log: deque[tuple[str | None, str | None, int, int, bool, int, int]] = deque()
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._log.clear()
            self._hits = self._misses = self._bypasses = self._coalesced = self._errors = 0
            self._provider_tokens = 0
            self._semantic_hits = self._semantic_errors = 0
            self._provider_cost = 0.0
            # model -> [prompt, completion, provider-cached, provider-written] tokens
            self._saved: dict[str | None, list[int]] = {}
            self._tier_hits: dict[str, int] = {}

    def hit(
        self,
        tier: str | None,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        coalesced: bool = False,
        cached: int = 0,
        written: int = 0,
    ) -> None:
        """Count a call served from the cache, with the tokens of the answer it reused.

        :param cached: of ``prompt_tokens``, those the original call read from the
            provider's prompt cache (what they cost is what the hit saved on them).
        :param written: of ``prompt_tokens``, those the original call wrote to it.
        """
        self._log.append(
            (tier, model, prompt_tokens, completion_tokens, coalesced, cached, written)
        )
        if len(self._log) >= FOLD_AT:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Add the logged hits into the totals (the caller holds the lock)."""
        log = self._log
        # Pop exactly the hits logged so far (others may append meanwhile), and count equal
        # records together: both loops run in C, the Python loop below over distinct ones.
        records = Counter(islice(iter(log.popleft, None), len(log)))
        for (tier, model, prompt, completion, coalesced, cached, written), count in records.items():
            self._hits += count
            saved = self._saved.get(model)
            if saved is None:
                saved = self._saved[model] = [0, 0, 0, 0]
            saved[0] += prompt * count
            saved[1] += completion * count
            saved[2] += cached * count
            saved[3] += written * count
            if coalesced:
                self._coalesced += count
            if tier is not None:
                self._tier_hits[tier] = self._tier_hits.get(tier, 0) + count

    def miss(self) -> None:
        """Count a call that went upstream after looking in the cache."""
        with self._lock:
            self._misses += 1

    def bypass(self) -> None:
        """Count a call that went upstream without touching the cache."""
        with self._lock:
            self._bypasses += 1

    def error(self) -> None:
        """Count a tier failure or a bad entry."""
        with self._lock:
            self._errors += 1

    def semantic_hit(self) -> None:
        """Count, on top of its hit, a call served by a semantic match."""
        with self._lock:
            self._semantic_hits += 1

    def semantic_error(self) -> None:
        """Count a semantic step skipped because something was wrong."""
        with self._lock:
            self._semantic_errors += 1

    def provider_cached(self, tokens: int, cost: float) -> None:
        """Count prompt tokens the provider served from its own prompt cache."""
        with self._lock:
            self._provider_tokens += tokens
            self._provider_cost += cost

    def snapshot(self) -> CacheStats:
        """Return the counters as they are now, with the dollars the saved tokens are worth."""
        with self._lock:
            self._fold()
            saved = [(model, p, c, r, w) for model, (p, c, r, w) in self._saved.items()]
            counts = (self._hits, self._misses, self._bypasses, self._coalesced, self._errors)
            provider = (self._provider_tokens, self._provider_cost)
            tier_hits = MappingProxyType(dict(self._tier_hits))
            semantic = (self._semantic_hits, self._semantic_errors)
        hits, misses, bypasses, coalesced, errors = counts
        return CacheStats(
            requests=hits + misses + bypasses,
            hits=hits,
            misses=misses,
            bypasses=bypasses,
            coalesced=coalesced,
            errors=errors,
            tokens_saved=sum(prompt + done for _, prompt, done, _, _ in saved),
            cost_saved_usd=_money(sum(self._prices.cost(m, p, c, r, w) for m, p, c, r, w in saved)),
            provider_cached_tokens=provider[0],
            provider_cost_saved_usd=_money(provider[1]),
            tier_hits=tier_hits,
            semantic_hits=semantic[0],
            semantic_errors=semantic[1],
        )
