"""Batches and coalescing against a slow upstream (the simulator answering in 50 ms).

- ``batch_completions``: 1,000 requests, each of 500 distinct requests twice (shuffled),
  ``max_concurrency=16``, on a fresh namespace: exactly the 500 unique misses must reach the
  upstream, and the wall time is compared with the ideal (unique misses / 16) x 50 ms.
- Coalescing: 64 identical requests at once (64 threads released by a barrier; 64 asyncio
  tasks gathered) must reach the upstream once; the wall time is reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llmcache import CachedClient

from .upstream import Upstream
from .workload import async_openai_client, chat_request, openai_client

__all__ = ["BatchRow", "CoalesceRow", "measure_batches", "measure_coalescing"]

DELAY = 0.05
BATCH = 1000
UNIQUE = 500
CONCURRENCY = 16
PARALLEL = 64
TARGET = 1.2
REPEATS = 2


@dataclass(frozen=True)
class BatchRow:
    """One ``batch_completions`` run."""

    mode: str
    requests: int
    unique: int
    upstream_calls: int
    wall_s: float
    ideal_s: float
    coalesced: int
    in_order: bool
    runs: int = 1

    @property
    def ratio(self) -> float:
        """Wall time over the ideal."""
        return self.wall_s / self.ideal_s

    @property
    def plain(self) -> bool:
        """Whether this row is the bare SDK's reference, not llmcache."""
        return self.mode.startswith("plain")

    @property
    def passed(self) -> bool:
        """Exactly the unique misses went upstream, in order, within the target."""
        return self.upstream_calls == self.unique and self.in_order and self.ratio <= TARGET


@dataclass(frozen=True)
class CoalesceRow:
    """One burst of identical requests."""

    mode: str
    callers: int
    upstream_calls: int
    wall_s: float
    coalesced: int

    @property
    def passed(self) -> bool:
        """One upstream call for the whole burst."""
        return self.upstream_calls == 1


def _requests(tag: str) -> tuple[list[dict[str, Any]], list[str]]:
    unique = [chat_request(f"{tag}{i}") for i in range(UNIQUE)]
    order = list(range(UNIQUE)) * (BATCH // UNIQUE)
    random.Random(8).shuffle(order)
    items = [unique[i] for i in order]
    return items, [item["messages"][-1]["content"] for item in items]


def _in_order(results: list[Any], questions: list[str]) -> bool:
    """Tell whether each answer echoes its own request's question (the simulator's echo)."""
    for result, question in zip(results, questions, strict=True):
        answer = result.choices[0].message.content or ""
        if question.split()[0] not in answer:
            return False
    return True


def _sync_batch(upstream: Upstream, sync_openai: Any, tag: str, ideal: float) -> BatchRow:
    items, questions = _requests(tag)
    client = CachedClient(sync_openai, namespace=f"batch-{tag}")
    before = upstream.count()
    start = time.perf_counter()
    results = client.batch_completions(items, max_concurrency=CONCURRENCY)
    wall = time.perf_counter() - start
    calls = upstream.count() - before
    coalesced = client.stats().coalesced
    client.close()
    in_order = _in_order(results, questions)
    return BatchRow("sync", BATCH, UNIQUE, calls, wall, ideal, coalesced, in_order)


async def _async_batch(upstream: Upstream, tag: str, ideal: float) -> BatchRow:
    items, questions = _requests(tag)
    client = CachedClient(async_openai_client(upstream.base_url), namespace=f"batch-{tag}")
    before = upstream.count()
    start = time.perf_counter()
    results = await client.batch_completions(items, max_concurrency=CONCURRENCY)
    wall = time.perf_counter() - start
    calls = upstream.count() - before
    coalesced = client.stats().coalesced
    await client.close()
    await client.wrapped.close()
    in_order = _in_order(results, questions)
    return BatchRow("async", BATCH, UNIQUE, calls, wall, ideal, coalesced, in_order)


def _plain_threads(upstream: Upstream, sync_openai: Any, tag: str, ideal: float) -> BatchRow:
    unique = [chat_request(f"{tag}{i}") for i in range(UNIQUE)]
    before = upstream.count()
    start = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda params: sync_openai.chat.completions.create(**params), unique))
    wall = time.perf_counter() - start
    calls = upstream.count() - before
    return BatchRow("plain threads", UNIQUE, UNIQUE, calls, wall, ideal, 0, True)


async def _plain_asyncio(upstream: Upstream, tag: str, ideal: float) -> BatchRow:
    gate = asyncio.Semaphore(CONCURRENCY)
    async_openai = async_openai_client(upstream.base_url)
    unique = [chat_request(f"{tag}{i}") for i in range(UNIQUE)]

    async def one(params: dict[str, Any]) -> Any:
        async with gate:
            return await async_openai.chat.completions.create(**params)

    before = upstream.count()
    start = time.perf_counter()
    await asyncio.gather(*(one(params) for params in unique))
    wall = time.perf_counter() - start
    await async_openai.close()
    calls = upstream.count() - before
    return BatchRow("plain asyncio", UNIQUE, UNIQUE, calls, wall, ideal, 0, True)


def _best(runs: list[BatchRow]) -> BatchRow:
    """The fastest run, carrying every run's checks (a wrong count or order in any shows)."""
    best = min(runs, key=lambda row: row.wall_s)
    wrong = [row for row in runs if row.upstream_calls != row.unique]
    calls = wrong[0].upstream_calls if wrong else best.upstream_calls
    in_order = all(row.in_order for row in runs)
    return dataclasses.replace(best, upstream_calls=calls, in_order=in_order, runs=len(runs))


def measure_batches(upstream: Upstream, log: Callable[[str], None]) -> list[BatchRow]:
    """Run sync and async batches, and the bare SDK's, alternating; keep each one's best.

    Each run uses requests never sent before, so its unique requests are all misses. The
    wall time of a bounded job is best read as its minimum over repetitions: noise only
    ever adds to it.
    """
    upstream.set_delay(DELAY)
    sync_openai = openai_client(upstream.base_url)
    ideal = UNIQUE / CONCURRENCY * DELAY
    runs: dict[str, list[BatchRow]] = {}
    try:
        for rep in range(REPEATS):
            for row in (
                _sync_batch(upstream, sync_openai, f"s{rep}-", ideal),
                _plain_threads(upstream, sync_openai, f"pt{rep}-", ideal),
                asyncio.run(_async_batch(upstream, f"a{rep}-", ideal)),
                asyncio.run(_plain_asyncio(upstream, f"pa{rep}-", ideal)),
            ):
                runs.setdefault(row.mode, []).append(row)
    finally:
        upstream.set_delay(0.0)
        sync_openai.close()
    rows = [_best(runs[mode]) for mode in ("sync", "async", "plain threads", "plain asyncio")]
    for row in rows:
        calls, wall = row.upstream_calls, row.wall_s
        log(f"  batch {row.mode:<13} {calls} calls, {wall:.3f} s, x{row.ratio:.3f}")
    return rows


def _threads(client: Any, params: dict[str, Any]) -> float:
    barrier = threading.Barrier(PARALLEL + 1)
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            client.chat.completions.create(**params)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(PARALLEL)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return wall


def measure_coalescing(upstream: Upstream, log: Callable[[str], None]) -> list[CoalesceRow]:
    """Send 64 identical requests at once, from threads and from asyncio tasks."""
    upstream.set_delay(DELAY)
    sync_openai = openai_client(upstream.base_url)
    rows = []
    try:
        client = CachedClient(sync_openai, namespace="coalesce-threads")
        before = upstream.count()
        wall = _threads(client, chat_request("coalesce-threads"))
        calls = upstream.count() - before
        rows.append(CoalesceRow("threads", PARALLEL, calls, wall, client.stats().coalesced))
        client.close()

        async def run_async() -> CoalesceRow:
            client = CachedClient(
                async_openai_client(upstream.base_url), namespace="coalesce-asyncio"
            )
            params = chat_request("coalesce-asyncio")
            before = upstream.count()
            start = time.perf_counter()
            await asyncio.gather(
                *(client.chat.completions.create(**params) for _ in range(PARALLEL))
            )
            wall = time.perf_counter() - start
            calls = upstream.count() - before
            coalesced = client.stats().coalesced
            await client.close()
            return CoalesceRow("asyncio", PARALLEL, calls, wall, coalesced)

        rows.append(asyncio.run(run_async()))
    finally:
        upstream.set_delay(0.0)
        sync_openai.close()
    for row in rows:
        log(f"  burst {row.mode:<7} {row.upstream_calls} call(s), {row.wall_s * 1000:.1f} ms")
    return rows
