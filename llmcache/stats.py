"""Counters of what the cache did and saved."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["CacheStats", "StatsRecorder"]


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
        }


class StatsRecorder:
    """The thread-safe counters behind :class:`CacheStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._hits = self._misses = self._bypasses = self._coalesced = self._errors = 0
            self._tokens = self._provider_tokens = 0
            self._cost = self._provider_cost = 0.0
            self._tier_hits: dict[str, int] = {}

    def hit(self, tier: str | None, tokens: int, cost: float, *, coalesced: bool = False) -> None:
        """Count a call served from the cache."""
        with self._lock:
            self._hits += 1
            self._tokens += tokens
            self._cost += cost
            if coalesced:
                self._coalesced += 1
            if tier is not None:
                self._tier_hits[tier] = self._tier_hits.get(tier, 0) + 1

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

    def provider_cached(self, tokens: int, cost: float) -> None:
        """Count prompt tokens the provider served from its own prompt cache."""
        with self._lock:
            self._provider_tokens += tokens
            self._provider_cost += cost

    def snapshot(self) -> CacheStats:
        """Return the counters as they are now."""
        with self._lock:
            return CacheStats(
                requests=self._hits + self._misses + self._bypasses,
                hits=self._hits,
                misses=self._misses,
                bypasses=self._bypasses,
                coalesced=self._coalesced,
                errors=self._errors,
                tokens_saved=self._tokens,
                cost_saved_usd=self._cost,
                provider_cached_tokens=self._provider_tokens,
                provider_cost_saved_usd=self._provider_cost,
                tier_hits=MappingProxyType(dict(self._tier_hits)),
            )
