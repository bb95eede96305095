"""Scale: a million entries per backend, and what they cost.

For each backend a *big* store is filled through its backend's ``set_many`` (in batches,
within a time budget: the count reached is reported) beside a *small* store of 1,000
entries of the same kind. Then:

- storage per entry: the store's own figure before and after the fill (process RSS for the
  memory tier, ``used_memory`` for Redis, the file for SQLite, ``pg_total_relation_size``
  for PostgreSQL, ``bytes`` for memcached), divided by the entries written;
- hit latency of the typical request in the big store against the small one, measured in
  alternating blocks (ratio: big over small);
- on Redis, a 100-key ``get_many`` counted in ``INFO commandstats`` (one ``MGET``);
- on SQL stores, a purge of expired rows among the live ones;
- clears: by glob (one scope, 1% of the keys), by age (the 1% created two hours ago), then,
  with those refilled, the whole namespace (every entry of the fill), each timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from llmcache import CachedClient

from .fill import OLD_SCOPE, Filler, FillResult, tier_backend
from .servers import (
    POSTGRES_DSN,
    POSTGRES_URL,
    Servers,
    binary,
    drop_tables,
    postgres_available,
)
from .timing import paired
from .upstream import Upstream
from .workload import chat_request, openai_client

__all__ = ["ScaleRow", "Settings", "measure_scale"]

SQLITE_TARGET = 1.2
SMALL = 1000
RESERVE = 25.0  # seconds kept for each backend still to measure
BULK_TIMEOUT = 120.0  # seconds per backend call: clears of a million entries take a while


@dataclass(frozen=True)
class Settings:
    """How big and how long."""

    entries: int = 1_000_000
    fill_budget: float = 75.0  # seconds of writing per backend at most
    rounds: int = 15
    block: int = 200
    purge_rows: int = 100_000
    # Redis first: its million-key clear is the figure most worth the time
    backends: tuple[str, ...] = ("memory", "Redis", "SQLite", "memcached", "PostgreSQL")


@dataclass
class Clear:
    """One timed clear."""

    what: str
    removed: int | None
    seconds: float


@dataclass
class ScaleRow:
    """What one backend did at scale."""

    backend: str
    requested: int
    fill: FillResult
    entry_bytes: int
    stored_bytes_per_entry: float | None
    storage_measure: str
    hit_small_us: float = 0.0
    hit_big_us: float = 0.0
    hit_ratio: float = 0.0
    upstream_calls: int = 0
    clears: list[Clear] = field(default_factory=list)
    purge: tuple[int, float, int] | None = None  # rows, seconds, purge calls
    get_many: tuple[int, int, int] | None = None  # keys, MGET calls, commands in all
    cleared_check: bool = True
    note: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def target(self) -> float | None:
        """The ratio target of the big store's hits (SQLite only)."""
        return SQLITE_TARGET if self.backend == "SQLite" else None


@dataclass
class Store:
    """A big and a small store of one backend, and how to read the big one's size."""

    name: str
    big_url: str
    small_url: str
    label: str
    used_bytes: Callable[[], int | None]
    measure: str
    sql: bool = False
    redis_port: int | None = None


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _redis_info(port: int, section: str) -> dict[str, Any]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        return dict(client.info(section))
    finally:
        client.close()


def _memcached_bytes(port: int) -> int:
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", port), connect_timeout=2, timeout=5)
    try:
        return int(client.stats()[b"bytes"])
    finally:
        client.close()


def _pg_size(table: str) -> int:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _file_size(path: Path) -> int:
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


@contextlib.contextmanager
def _store(name: str, servers: Servers, entries: int) -> Iterator[Store]:
    """Start what ``name`` needs; stop it and delete its data afterwards."""
    if name == "memory":
        yield Store(name, "memory://", "memory://", "L1:memory", _rss, "process RSS")
    elif name == "SQLite":
        big, small = servers.sqlite_path("scale-big"), servers.sqlite_path("scale-small")
        try:
            yield Store(
                name,
                f"sqlite:///{big}",
                f"sqlite:///{small}",
                "L1:sqlite",
                lambda: _file_size(big),
                "database file",
                sql=True,
            )
        finally:
            for path in (big, small):
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{path}{suffix}")
    elif name == "PostgreSQL":
        big_table, small_table = (
            servers.postgres_table("bench_big"),
            servers.postgres_table("bench_small"),
        )
        try:
            yield Store(
                name,
                f"{POSTGRES_URL}?table={big_table}",
                f"{POSTGRES_URL}?table={small_table}",
                "L1:postgresql",
                lambda: _pg_size(big_table),
                "pg_total_relation_size",
                sql=True,
            )
        finally:
            for table in (big_table, small_table):
                with contextlib.suppress(Exception):
                    drop_tables(table)
    elif name == "Redis":
        redis = servers.redis()
        try:
            yield Store(
                name,
                f"redis://127.0.0.1:{redis.port}/0",
                f"redis://127.0.0.1:{redis.port}/1",
                "L1:redis",
                lambda: int(_redis_info(redis.port, "memory")["used_memory"]),
                "INFO used_memory",
                redis_port=redis.port,
            )
        finally:
            servers.stop(redis)
    elif name == "memcached":
        megabytes = max(64, entries * 2600 // 1_000_000 + 64)
        big, small = servers.memcached(megabytes), servers.memcached()
        try:
            yield Store(
                name,
                big.url,
                small.url,
                "L1:memcached",
                lambda: _memcached_bytes(big.port),
                "stats bytes",
            )
        finally:
            servers.stop(big)
            servers.stop(small)
    else:
        raise ValueError(f"unknown backend {name!r}")


def _get_many_round_trips(backend: Any, filler: Filler, port: int) -> tuple[int, int, int]:
    """Return (keys, MGET calls, commands in all) of one 100-key ``get_many``."""
    import redis

    keys = [filler.key(n) for n in range(2, 2 + 100 * 7, 7)]
    observer = redis.Redis(host="127.0.0.1", port=port)
    try:
        observer.ping()  # connected before counting: its handshake is not counted

        def calls() -> dict[str, int]:
            stats = observer.info("commandstats")
            return {name: int(value["calls"]) for name, value in stats.items()}

        before = calls()
        values = backend.get_many(keys)
        after = calls()
    finally:
        observer.close()
    assert all(v is not None for v in values), "get_many missed keys that were written"
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta["cmdstat_info"] = delta.get("cmdstat_info", 0) - 1  # the first INFO itself
    total = sum(v for v in delta.values() if v > 0)
    return len(keys), delta.get("cmdstat_mget", 0), total


def _purge(
    backend: Any, filler_payload: dict[str, Any], model: str, rows: int
) -> tuple[int, float, int]:
    expired = Filler("purged", filler_payload, model)
    for items, _ in expired.batches(0, rows, 5000):
        backend.set_many(items, 0.001)
    time.sleep(0.05)
    calls = removed = 0
    start = time.perf_counter()
    while True:
        calls += 1
        done = backend.purge()
        removed += done
        if done == 0:
            break
    return removed, time.perf_counter() - start, calls


def _timed_clear(client: Any, what: str, **kwargs: Any) -> Clear:
    start = time.perf_counter()
    removed = client.clear_cache(**kwargs)
    return Clear(what, removed, time.perf_counter() - start)


T = TypeVar("T")


def _guard(row: ScaleRow, what: str, step: Callable[[], T]) -> T | None:
    """Run one step; a failure is reported in the row, and the section goes on."""
    try:
        return step()
    except Exception as exc:
        row.errors.append(f"{what} failed: {type(exc).__name__}: {exc}"[:300])
        return None


def _measure(
    store: Store,
    settings: Settings,
    upstream: Upstream,
    sync_openai: Any,
    log: Callable[[str], None],
) -> ScaleRow:
    params = chat_request()
    # a bulk clear of many SQL rows outlasts the default 1 s per call; a failure must show
    options: dict[str, Any] = {
        "namespace": "scale",
        "fail_open": False,
        "backend_timeout": BULK_TIMEOUT,
    }
    big = CachedClient(sync_openai, tiers=[store.big_url], **options)
    small = CachedClient(sync_openai, tiers=[store.small_url], **options)
    try:
        first = big.chat.completions.create(**params)
        small.chat.completions.create(**params)
        payload = first.to_dict()
        filler = Filler("scale", payload, first.model)
        big_backend, small_backend = tier_backend(big), tier_backend(small)
        filler.fill(small_backend.set_many, SMALL - 1, start=1)
        gc.collect()
        used_before = store.used_bytes()
        fill = filler.fill(
            big_backend.set_many, settings.entries, start=1, budget=settings.fill_budget
        )
        gc.collect()
        used_after = store.used_bytes()
        per_entry = None
        if used_before is not None and used_after is not None and fill.entries:
            per_entry = (used_after - used_before) / fill.entries
        log(f"  scale {store.name:<10} {fill.entries:>9,} entries in {fill.seconds:.1f} s")
        row = ScaleRow(
            store.name, settings.entries, fill, filler.entry_size, per_entry, store.measure
        )
        if not fill.complete:
            row.note = (
                f"{fill.entries:,} of {settings.entries:,} entries fit the "
                f"{settings.fill_budget:.0f} s write budget ({fill.rate:,.0f} entries/s)"
            )
        for client in (big, small):
            hit = client.chat.completions.create(**params)
            if not hit.cache_hit or hit.cache_tier != store.label:
                raise RuntimeError(f"expected a hit in {store.label}, got {hit.cache_tier!r}")
        create_big, create_small = big.chat.completions.create, small.chat.completions.create
        before = upstream.count()
        result = paired(
            lambda: create_big(**params),
            lambda: create_small(**params),
            rounds=settings.rounds,
            block=settings.block,
            block_seconds=0.03,
        )
        row.upstream_calls = upstream.count() - before
        row.hit_big_us, row.hit_small_us = result.ours.median_us, result.floor.median_us
        row.hit_ratio = result.ratio
        if store.redis_port is not None:
            port = store.redis_port
            row.get_many = _guard(
                row, "get_many", lambda: _get_many_round_trips(big_backend, filler, port)
            )
        if store.sql:
            rows = min(settings.purge_rows, max(1000, fill.entries // 10))
            row.purge = _guard(
                row, "purge", lambda: _purge(big_backend, payload, first.model, rows)
            )
        clears = [
            ("by glob (key='s00:*', 1% of the keys)", {"key": "s00:*"}),
            ("by age (older_than=3600 s, 1% of the keys)", {"older_than": 3600}),
        ]
        for what, kwargs in clears:
            done = _guard(
                row, f"clear {what}", functools.partial(_timed_clear, big, what, **kwargs)
            )
            if done is not None:
                row.clears.append(done)

        def rewrite() -> None:
            for items, created in filler.scoped(1, fill.entries + 1, {0, OLD_SCOPE}):
                big_backend.set_many(items, None, created=created)

        _guard(row, "rewriting the cleared scopes", rewrite)
        what = "whole namespace (clear_cache())"
        done = _guard(row, f"clear {what}", lambda: _timed_clear(big, what))
        if done is not None:
            row.clears.append(done)
        sample = [filler.key(n) for n in range(1, fill.entries, max(1, fill.entries // 200))]
        row.cleared_check = all(v is None for v in big_backend.get_many(sample))
        return row
    finally:
        big.close()
        small.close()


def measure_scale(
    servers: Servers,
    upstream: Upstream,
    settings: Settings,
    log: Callable[[str], None],
    deadline: float | None = None,
) -> list[ScaleRow]:
    """Fill and measure every backend of ``settings.backends`` that runs here, one at a time.

    :param deadline: a ``time.monotonic()`` by which the section should end. A backend may
        write for at most half the time left once :data:`RESERVE` seconds are kept for each
        backend after it (its hits, purge and clears take about as long as its writes).
    """
    sync_openai = openai_client(upstream.base_url)
    rows = []
    for number, name in enumerate(settings.backends):
        if deadline is not None:
            after = len(settings.backends) - number - 1
            left = deadline - time.monotonic() - RESERVE * after
            budget = max(5.0, min(settings.fill_budget, 0.5 * left))
            settings = dataclasses.replace(settings, fill_budget=budget)
        if name == "PostgreSQL" and not postgres_available():
            log("  scale PostgreSQL skipped: no server at 127.0.0.1:5432")
            continue
        if name == "memcached" and binary("memcached") is None:
            log("  scale memcached skipped: no memcached binary")
            continue
        with _store(name, servers, settings.entries) as store:
            rows.append(_measure(store, settings, upstream, sync_openai, log))
        gc.collect()
    sync_openai.close()
    return rows
