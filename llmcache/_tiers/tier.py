"""One level of the cache: its backend, limits and breaker; how tiers are built from URLs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from llmcache._plugins import PluginRegistry
from llmcache._rules.request import CacheRequest
from llmcache._tiers.breaker import CircuitBreaker
from llmcache._tiers.codec import Entry
from llmcache.backends.base import SyncToAsync
from llmcache.backends.capabilities import Capabilities, conform, declared_options
from llmcache.backends.urls import TierURL, parse_tier_url
from llmcache.errors import ConfigError

__all__ = ["Found", "Scope", "Tier", "build_tiers", "fresh", "physical_ttl", "staleness"]


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


class Scope(Protocol):
    """One user call as the tiers see it (a :class:`~llmcache._engine.planning.Plan` is one): whom
    errors are reported for, and which tiers already failed during the call (they are not
    tried again within it)."""

    failed: set[Tier] | None

    @property
    def request(self) -> CacheRequest | None: ...

    @property
    def key(self) -> str: ...


class Found(NamedTuple):
    """An entry read from a tier."""

    entry: Entry
    tier: Tier
    data: bytes
    value: Any = None  # what the lookup's ``check`` made of the entry


def fresh(entry: Entry, now: float, max_age: float | None) -> bool:
    """Tell whether ``entry`` is unexpired and no older than ``max_age``."""
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
