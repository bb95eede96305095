"""Hit latency per tier, sync and async, each beside its floor in the same run.

For every tier the client is primed with one request (a miss, or a hit in a shared store
the other mode primed), then ``client.chat.completions.create`` is timed against the floor
of :mod:`benchmarks.floors` reading the very bytes the tier holds, in alternating blocks.
Every row checks that the upstream saw no request while it was measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmcache import CachedClient
from llmcache._rules.keys import physical_key
from llmcache.providers import identity

from .floors import (
    ClusterStore,
    DictStore,
    MemcachedStore,
    PostgresStore,
    RawStore,
    RedisStore,
    SQLiteStore,
    async_floor,
    floor_key,
    sync_floor,
)
from .servers import POSTGRES_DSN, POSTGRES_URL, Servers, postgres_available
from .timing import Paired, paired, paired_async
from .upstream import Upstream
from .workload import async_openai_client, chat_request, openai_client

__all__ = ["HitRow", "TierCase", "measure_hits", "tier_cases"]

TARGETS = {"memory": 1.3, "redis": 1.15, "sqlite": 1.3, "memcached": 1.2}


@dataclass(frozen=True)
class TierCase:
    """One tier configuration to measure.

    :param name: what the row is called.
    :param urls: the client's tier URLs, L1 first.
    :param expect: the tier label a hit must report.
    :param raw: build the floor's store from the physical key and the tier's bytes.
    :param floor: what the floor reads with, for the report.
    :param target: the most ratio against the floor the project accepts, if any.
    """

    name: str
    urls: tuple[str, ...]
    expect: str
    raw: Callable[[str, bytes], RawStore]
    floor: str
    target: float | None


@dataclass(frozen=True)
class HitRow:
    """One measured hit row."""

    tier: str
    mode: str
    label: str
    floor: str
    result: Paired
    target: float | None
    upstream_calls: int

    @property
    def passed(self) -> bool | None:
        """Whether the ratio meets the target (``None`` without one), with no upstream call."""
        if self.target is None:
            return None
        return self.result.ratio <= self.target and self.upstream_calls == 0


def _memory(key: str, data: bytes) -> RawStore:
    return DictStore({key: data})


def _memcached(host: str, port: int) -> Callable[[str, bytes], RawStore]:
    def build(key: str, data: bytes) -> RawStore:
        store = MemcachedStore(host, port)
        store.put(key, data)
        return store

    return build


def tier_cases(servers: Servers) -> list[TierCase]:
    """Start the servers and return every tier case that can run on this machine."""
    redis = servers.redis()
    cluster = servers.redis_cluster()
    memcached = servers.memcached()
    sqlite_path = str(servers.sqlite_path("hits"))
    host, port = "127.0.0.1", redis.port
    first = cluster.nodes[0].port
    cases = [
        TierCase("memory", ("memory://",), "L1:memory", _memory, "dict lookup", 1.3),
        TierCase(
            "SQLite",
            (f"sqlite:///{sqlite_path}",),
            "L1:sqlite",
            lambda k, d: SQLiteStore(sqlite_path),
            "sqlite3 SELECT (aiosqlite async)",
            TARGETS["sqlite"],
        ),
    ]
    if postgres_available():
        table = servers.postgres_table("bench_hits")
        cases.append(
            TierCase(
                "PostgreSQL",
                (f"{POSTGRES_URL}?table={table}",),
                "L1:postgresql",
                lambda k, d: PostgresStore(POSTGRES_DSN, table),
                "psycopg SELECT (sync / AsyncConnection)",
                None,
            )
        )
    cases += [
        TierCase(
            "Redis",
            (redis.url,),
            "L1:redis",
            lambda k, d: RedisStore(host, port),
            "redis-py GET (redis.asyncio async)",
            TARGETS["redis"],
        ),
        TierCase(
            "Redis Cluster",
            (cluster.url,),
            "L1:redis-cluster",
            lambda k, d: ClusterStore(host, first),
            "RedisCluster GET (asyncio twin async)",
            None,
        ),
        TierCase(
            "memcached",
            (memcached.url,),
            "L1:memcached",
            _memcached(host, memcached.port),
            "pymemcache get (sync client in async)",
            TARGETS["memcached"],
        ),
        TierCase(
            "memory over Redis (L1 hit)",
            ("memory://", redis.url),
            "L1:memory",
            _memory,
            "dict lookup",
            TARGETS["memory"],
        ),
    ]
    return cases


def _tier_bytes(client: Any, key: str) -> bytes:
    """Read the bytes the client's L1 holds for ``key`` (sync backend, or the one wrapped)."""
    backend = client._tiers.tiers[0].backend  # benchmark-only peek at the stored bytes
    backend = getattr(backend, "backend", backend)
    data = backend.get(key)
    assert isinstance(data, bytes), f"no bytes under {key!r}"
    return data


def _check_hit(response: Any, expect: str) -> None:
    if not response.cache_hit or response.cache_tier != expect:
        raise RuntimeError(f"expected a hit in {expect}, got {response.cache_tier!r}")


@dataclass(frozen=True)
class Settings:
    """How long each row is measured."""

    rounds: int = 21
    block: int = 100  # calls per block at least; more when a call is fast
    async_rounds: int = 15
    async_block: int = 100
    block_seconds: float = 0.04


def _sync_row(
    case: TierCase,
    upstream: Upstream,
    sync_openai: Any,
    settings: Settings,
    stored: dict[str, bytes],
) -> HitRow:
    params = chat_request()
    namespace = "hits-" + "".join(c for c in case.name.lower() if c.isalnum())
    client = CachedClient(sync_openai, tiers=list(case.urls), namespace=namespace)
    store = None
    try:
        first = client.chat.completions.create(**params)
        key = physical_key(namespace, first.cache_key)
        assert key == floor_key(params, namespace, identity(sync_openai)), "key mismatch"
        _check_hit(client.chat.completions.create(**params), case.expect)
        stored[case.name] = _tier_bytes(client, key)
        store = case.raw(key, stored[case.name])
        floor = sync_floor(params, namespace, identity(sync_openai), store.get)
        create = client.chat.completions.create
        before = upstream.count()
        result = paired(
            lambda: create(**params),
            floor,
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
        _check_hit(create(**params), case.expect)
    finally:
        if store is not None:
            store.close()
        client.close()
    return HitRow(case.name, "sync", case.expect, case.floor, result, case.target, calls)


async def _async_row(
    case: TierCase,
    upstream: Upstream,
    settings: Settings,
    stored: dict[str, bytes],
) -> HitRow:
    params = chat_request()
    namespace = "hits-" + "".join(c for c in case.name.lower() if c.isalnum())
    async_openai = async_openai_client(upstream.base_url)  # one per event loop
    client = CachedClient(async_openai, tiers=list(case.urls), namespace=namespace)
    store = None
    try:
        first = await client.chat.completions.create(**params)
        key = physical_key(namespace, first.cache_key)
        _check_hit(await client.chat.completions.create(**params), case.expect)
        # an async memory tier is a store of its own; shared stores hold the sync row's bytes
        local = case.urls[0].startswith("memory:")
        store = case.raw(key, _tier_bytes(client, key) if local else stored[case.name])
        floor = async_floor(params, namespace, identity(async_openai), store.aget)
        create = client.chat.completions.create
        before = upstream.count()
        result = await paired_async(
            lambda: create(**params),
            floor,
            rounds=settings.async_rounds,
            block=settings.async_block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
        _check_hit(await create(**params), case.expect)
    finally:
        if store is not None:
            await store.aclose()
            store.close()
        await client.close()
        await async_openai.close()
    return HitRow(case.name, "async", case.expect, case.floor, result, case.target, calls)


def _line(row: HitRow) -> str:
    ours = row.result.ours.median_us
    return f"  hit {row.mode:<5} {row.tier:<27} {ours:8.1f} us  x{row.result.ratio:.3f}"


def measure_hits(
    cases: list[TierCase],
    upstream: Upstream,
    settings: Settings,
    log: Callable[[str], None],
) -> list[HitRow]:
    """Measure every case, sync then async; return the rows in that order."""
    sync_openai = openai_client(upstream.base_url)
    rows = []
    stored: dict[str, bytes] = {}
    for case in cases:
        rows.append(_sync_row(case, upstream, sync_openai, settings, stored))
        log(_line(rows[-1]))
    for case in cases:
        rows.append(asyncio.run(_async_row(case, upstream, settings, stored)))
        log(_line(rows[-1]))
    sync_openai.close()
    return rows
