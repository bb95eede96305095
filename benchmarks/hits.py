"""Hit latency per tier, sync and async, each beside its floors in the same run.

For every tier the client is primed with one request (a miss, or a hit in a shared store
the other mode primed), then ``client.chat.completions.create`` is timed against the two
floors of :mod:`benchmarks.floors`, in rotating blocks: the physical floor (canonical JSON,
BLAKE2b, the store's raw read of the response's JSON stored under that key, validation),
which the targets hold hits to, and the envelope floor (llmcache's own digest, the raw read
of the very bytes the tier holds, msgpack). Every row checks that the upstream saw no
request while it was measured.

``python -m benchmarks.hits --tiers memcached,postgresql --modes async`` measures only the
rows asked for (``--help`` lists the tiers) and prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from llmcache import CachedClient
from llmcache._rules.keys import physical_key
from llmcache.providers import identity

from .floors import (
    FLOOR_TABLE,
    ClusterStore,
    DictStore,
    MemcachedStore,
    PostgresStore,
    RawStore,
    RedisStore,
    SQLiteStore,
    async_envelope_floor,
    async_physical_floor,
    decode_payload,
    envelope_floor,
    floor_key,
    physical_digest,
    physical_floor,
)
from .servers import POSTGRES_DSN, POSTGRES_URL, Servers, postgres_available
from .timing import Paired, paired, paired_async
from .upstream import Upstream
from .workload import async_openai_client, chat_request, openai_client

__all__ = ["TIERS", "HitRow", "Settings", "TierCase", "main", "measure_hits", "tier_cases"]

#: Targets against the physical floor, sync and async alike.
TARGETS = {
    "memory": 1.3,
    "SQLite": 1.3,
    "PostgreSQL": None,
    "PostgreSQL async": 1.3,
    "Redis": 1.15,
    "Redis Cluster": 1.15,
    "memcached": 1.15,
    "memcached async": 1.2,
    "memory over Redis (L1 hit)": 1.3,
}
#: Every tier, in the order rows are measured.
TIERS = (
    "memory",
    "SQLite",
    "PostgreSQL",
    "Redis",
    "Redis Cluster",
    "memcached",
    "memory over Redis (L1 hit)",
)


@dataclass(frozen=True)
class TierCase:
    """One tier configuration to measure.

    :param name: what the row is called.
    :param urls: the client's tier URLs, L1 first.
    :param expect: the tier label a hit must report.
    :param raw: build a raw store: the envelope floor's (``False``: reading the tier's
        bytes where the tier keeps them) or the physical floor's (``True``).
    :param floor: what the floors read with, for the report.
    :param copies: the envelope floor reads a copy of the tier's bytes, stored by the
        benchmark under the physical key (in-process tiers, memcached).
    """

    name: str
    urls: tuple[str, ...]
    expect: str
    raw: Callable[[bool], RawStore]
    floor: str
    copies: bool = False

    def target(self, mode: str) -> float | None:
        """The most ratio against the physical floor the project accepts, if any."""
        return TARGETS.get(f"{self.name} {mode}", TARGETS.get(self.name))


@dataclass(frozen=True)
class HitRow:
    """One measured hit row (``result.ratio``: physical floor; ``second_ratio``: envelope)."""

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


class _Prefixed:
    """A memcached store whose keys carry a prefix (the envelope floor's copy)."""

    def __init__(self, store: MemcachedStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def put(self, key: str, value: bytes) -> None:
        self.store.put(self.prefix + key, value)

    def get(self, key: str) -> bytes | None:
        return self.store.get(self.prefix + key)

    async def aget(self, key: str) -> bytes | None:
        return await self.store.aget(self.prefix + key)

    def close(self) -> None:
        self.store.close()

    async def aclose(self) -> None:
        await self.store.aclose()


def _wanted(name: str, names: Sequence[str] | None) -> bool:
    return names is None or any(_slug(name) == _slug(n) for n in names)


def _slug(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def tier_cases(servers: Servers, names: Sequence[str] | None = None) -> list[TierCase]:
    """Start the servers the tiers need; return every case asked for that can run here.

    :param names: the tiers to measure (see :data:`TIERS`; case and spaces do not matter);
        ``None``: all.
    """
    host = "127.0.0.1"
    cases = []
    if _wanted("memory", names):
        cases.append(TierCase("memory", ("memory://",), "L1:memory", _dict, "dict", True))
    if _wanted("SQLite", names):
        path = str(servers.sqlite_path("hits"))
        cases.append(
            TierCase(
                "SQLite",
                (f"sqlite:///{path}",),
                "L1:sqlite",
                lambda own: SQLiteStore(path, FLOOR_TABLE if own else "llmcache_entries"),
                "sqlite3 SELECT (aiosqlite async)",
            )
        )
    if _wanted("PostgreSQL", names) and postgres_available():
        table, own_table = servers.postgres_table("bench_hits"), servers.postgres_table("floor")
        cases.append(
            TierCase(
                "PostgreSQL",
                (f"{POSTGRES_URL}?table={table}",),
                "L1:postgresql",
                lambda own: PostgresStore(POSTGRES_DSN, own_table if own else table),
                "psycopg SELECT (sync / AsyncConnection)",
            )
        )
    redis = None
    if _wanted("Redis", names) or _wanted("memory over Redis (L1 hit)", names):
        redis = servers.redis()
    if redis is not None and _wanted("Redis", names):
        port = redis.port
        cases.append(
            TierCase(
                "Redis",
                (redis.url,),
                "L1:redis",
                lambda own: RedisStore(host, port),
                "redis-py GET (redis.asyncio async)",
            )
        )
    if _wanted("Redis Cluster", names):
        cluster = servers.redis_cluster()
        first = cluster.nodes[0].port
        cases.append(
            TierCase(
                "Redis Cluster",
                (cluster.url,),
                "L1:redis-cluster",
                lambda own: ClusterStore(host, first),
                "RedisCluster GET (its asyncio twin async)",
            )
        )
    if _wanted("memcached", names):
        memcached = servers.memcached()
        memcached_port = memcached.port
        cases.append(
            TierCase(
                "memcached",
                (memcached.url,),
                "L1:memcached",
                lambda own: _memcached(host, memcached_port, own),
                "pymemcache get (async: a minimal asyncio-streams get on one socket)",
                True,
            )
        )
    if redis is not None and _wanted("memory over Redis (L1 hit)", names):
        cases.append(
            TierCase(
                "memory over Redis (L1 hit)",
                ("memory://", redis.url),
                "L1:memory",
                _dict,
                "dict",
                True,
            )
        )
    return cases


def _dict(own: bool) -> RawStore:
    return DictStore()


def _memcached(host: str, port: int, own: bool) -> RawStore:
    store = MemcachedStore(host, port)
    return store if own else _Prefixed(store, "envelope:")


async def _tier_bytes(client: Any, key: str) -> bytes:
    """Read the bytes the client's L1 holds for ``key`` (benchmark-only peek)."""
    backend = client._tiers.tiers[0].backend
    backend = getattr(backend, "backend", backend)  # a sync backend an async tier wraps
    data = backend.get(key)
    if inspect.isawaitable(data):
        data = await data
    assert isinstance(data, bytes), f"no bytes under {key!r}"
    return data


def _floor_stores(
    case: TierCase, key: str, data: bytes, params: dict[str, Any]
) -> tuple[RawStore, RawStore]:
    """Build the physical floor's store, holding the answer's JSON under its own key, and
    the envelope floor's, reading the tier's bytes (or a copy of them)."""
    payload = decode_payload(data)
    answer = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    own = case.raw(True)
    own.put(physical_digest(params), answer)
    envelope = case.raw(False)
    if case.copies:
        envelope.put(key, data)
    return own, envelope


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


def _sync_row(case: TierCase, upstream: Upstream, sync_openai: Any, settings: Settings) -> HitRow:
    params = chat_request()
    namespace = "hits-" + _slug(case.name)
    client = CachedClient(sync_openai, tiers=list(case.urls), namespace=namespace)
    stores: tuple[RawStore, ...] = ()
    try:
        first = client.chat.completions.create(**params)
        key = physical_key(namespace, first.cache_key)
        assert key == floor_key(params, namespace, identity(sync_openai)), "key mismatch"
        _check_hit(client.chat.completions.create(**params), case.expect)
        stores = own, envelope = _floor_stores(
            case, key, asyncio.run(_tier_bytes(client, key)), params
        )
        create = client.chat.completions.create
        before = upstream.count()
        result = paired(
            lambda: create(**params),
            physical_floor(params, own.get),
            second=envelope_floor(params, namespace, identity(sync_openai), envelope.get),
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
        _check_hit(create(**params), case.expect)
    finally:
        for store in stores:
            store.close()
        client.close()
    return HitRow(case.name, "sync", case.expect, case.floor, result, case.target("sync"), calls)


async def _async_row(case: TierCase, upstream: Upstream, settings: Settings) -> HitRow:
    params = chat_request()
    namespace = "hits-" + _slug(case.name)
    async_openai = async_openai_client(upstream.base_url)  # one per event loop
    client = CachedClient(async_openai, tiers=list(case.urls), namespace=namespace)
    stores: tuple[RawStore, ...] = ()
    try:
        first = await client.chat.completions.create(**params)
        key = physical_key(namespace, first.cache_key)
        _check_hit(await client.chat.completions.create(**params), case.expect)
        stores = own, envelope = _floor_stores(case, key, await _tier_bytes(client, key), params)
        provider = identity(async_openai)
        create = client.chat.completions.create
        before = upstream.count()
        result = await paired_async(
            lambda: create(**params),
            async_physical_floor(params, own.aget),
            second=async_envelope_floor(params, namespace, provider, envelope.aget),
            rounds=settings.async_rounds,
            block=settings.async_block,
            block_seconds=settings.block_seconds,
        )
        calls = upstream.count() - before
        _check_hit(await create(**params), case.expect)
    finally:
        for store in stores:
            await store.aclose()
            store.close()
        await client.close()
        await async_openai.close()
    target = case.target("async")
    return HitRow(case.name, "async", case.expect, case.floor, result, target, calls)


def _line(row: HitRow) -> str:
    r = row.result
    target = "" if row.target is None else f"  (target {row.target:.2f})"
    return (
        f"  hit {row.mode:<5} {row.tier:<27} {r.ours.median_us:8.1f} us  "
        f"floor {r.floor.median_us:8.1f} us  x{r.ratio:.3f}  envelope x{r.second_ratio:.3f}"
        f"{target}"
    )


def measure_hits(
    cases: list[TierCase],
    upstream: Upstream,
    settings: Settings,
    log: Callable[[str], None],
    modes: Sequence[str] = ("sync", "async"),
) -> list[HitRow]:
    """Measure every case, sync then async; return the rows in that order."""
    rows = []
    if "sync" in modes:
        sync_openai = openai_client(upstream.base_url)
        for case in cases:
            rows.append(_sync_row(case, upstream, sync_openai, settings))
            log(_line(rows[-1]))
        sync_openai.close()
    if "async" in modes:
        for case in cases:
            rows.append(asyncio.run(_async_row(case, upstream, settings)))
            log(_line(rows[-1]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the hit rows asked for, and print them."""
    from .pinning import place

    parser = argparse.ArgumentParser(prog="python -m benchmarks.hits", description=__doc__)
    parser.add_argument(
        "--tiers", default=None, help="comma-separated, of: " + ", ".join(TIERS) + " (all)"
    )
    parser.add_argument("--modes", default="sync,async", help="sync, async or both (default)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per row")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the rows as RESULTS.md's table"
    )
    args = parser.parse_args(argv)
    names = None if args.tiers is None else [n for n in args.tiers.split(",") if n.strip()]
    unknown = [n for n in names or () if not any(_slug(n) == _slug(t) for t in TIERS)]
    if unknown:
        parser.error(f"unknown tier(s) {', '.join(unknown)}; known: {', '.join(TIERS)}")
    modes = [m.strip() for m in args.modes.split(",")]
    settings = Settings()
    if args.rounds is not None:
        settings = Settings(rounds=args.rounds, async_rounds=args.rounds)
    placement = place()  # before any thread starts
    print(f"pinning: {placement.describe()}", flush=True)
    with Servers(placement.server_cpu) as servers, Upstream(placement.server_cpu) as upstream:
        rows = measure_hits(tier_cases(servers, names), upstream, settings, print, modes)
    if args.markdown:
        from .report import hit_table

        print("\n".join(["", *hit_table(rows)]))
    misses = [row for row in rows if row.passed is False]
    for row in misses:
        print(f"  MISS  {row.mode} {row.tier}: x{row.result.ratio:.3f} > {row.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
