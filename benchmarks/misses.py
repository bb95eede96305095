"""Miss overhead: a cached client's miss against the plain SDK call it wraps.

Both sides send a request never sent before (a counter in the user message), to the same
simulator at zero delay, in alternating blocks. Ours goes through the whole miss path
(options, key, an L1 memory lookup, the upstream call, the entry's encoding and write);
the floor is the same SDK call without llmcache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmcache import CachedClient

from .timing import Paired, paired, paired_async
from .upstream import Upstream
from .workload import async_openai_client, chat_request, openai_client

__all__ = ["MissRow", "measure_misses"]

TARGET = 1.03


@dataclass(frozen=True)
class MissRow:
    """One miss-overhead row."""

    mode: str
    result: Paired
    calls: int
    upstream_calls: int
    misses: int

    @property
    def passed(self) -> bool:
        """Whether the ratio meets the target and every call reached the upstream once."""
        return self.result.ratio <= TARGET and self.upstream_calls == self.calls


@dataclass(frozen=True)
class Settings:
    """How long each row is measured."""

    rounds: int = 25
    block: int = 30
    warmup: int = 30


def _fresh(prefix: str, settings: Settings) -> Callable[[], dict[str, Any]]:
    """Return a function giving a request never sent before at each call (built in advance)."""
    total = settings.warmup + settings.rounds * settings.block
    requests = iter([chat_request(f"{prefix}{n}") for n in range(total)])
    return lambda: next(requests)


def _sync(upstream: Upstream, settings: Settings) -> MissRow:
    plain = openai_client(upstream.base_url)
    client = CachedClient(plain, tiers=["memory://"], namespace="misses")
    ours_request, plain_request = _fresh("m", settings), _fresh("p", settings)
    create, raw_create = client.chat.completions.create, plain.chat.completions.create
    before = upstream.count()
    result = paired(
        lambda: create(**ours_request()),
        lambda: raw_create(**plain_request()),
        rounds=settings.rounds,
        block=settings.block,
        warmup=settings.warmup,
    )
    calls = 2 * (settings.warmup + settings.rounds * settings.block)
    row = MissRow("sync", result, calls, upstream.count() - before, client.stats().misses)
    client.close()
    plain.close()
    return row


async def _async(upstream: Upstream, settings: Settings) -> MissRow:
    plain = async_openai_client(upstream.base_url)
    client = CachedClient(plain, tiers=["memory://"], namespace="misses-async")
    ours_request, plain_request = _fresh("am", settings), _fresh("ap", settings)
    create, raw_create = client.chat.completions.create, plain.chat.completions.create
    before = upstream.count()
    result = await paired_async(
        lambda: create(**ours_request()),
        lambda: raw_create(**plain_request()),
        rounds=settings.rounds,
        block=settings.block,
        warmup=settings.warmup,
    )
    calls = 2 * (settings.warmup + settings.rounds * settings.block)
    row = MissRow("async", result, calls, upstream.count() - before, client.stats().misses)
    await client.close()
    await plain.close()
    return row


def measure_misses(
    upstream: Upstream, settings: Settings, log: Callable[[str], None]
) -> list[MissRow]:
    """Measure the sync and async miss overhead."""
    upstream.set_delay(0.0)
    rows = [_sync(upstream, settings), asyncio.run(_async(upstream, settings))]
    for row in rows:
        log(f"  miss {row.mode:<5} x{row.result.ratio:.3f} ({row.result.ours.median_us:.0f} us)")
    return rows
