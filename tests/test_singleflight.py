"""Identical in-flight misses reach the upstream once, across threads and asyncio tasks."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conftest import chat

from llmcache.tools.simulator import Simulator


def test_identical_concurrent_calls_in_threads_reach_upstream_once(
    client: Any, sim: Simulator
) -> None:
    sim.delay = 0.3
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.chat.completions.create(**chat()), range(8)))
    assert sim.count() == 1
    assert sum(not a.cache_hit for a in answers) == 1
    stats = client.stats()
    assert stats.coalesced == 7
    assert stats.hits == 7
    assert len({a.choices[0].message.content for a in answers}) == 1
    assert len({id(a) for a in answers}) == 8


async def test_identical_concurrent_tasks_reach_upstream_once(
    async_client: Any, sim: Simulator
) -> None:
    sim.delay = 0.3
    answers = await asyncio.gather(
        *(async_client.chat.completions.create(**chat()) for _ in range(20))
    )
    assert sim.count() == 1
    assert async_client.stats().coalesced == 19
    assert [a.cache_hit for a in answers].count(False) == 1


async def test_streaming_calls_are_not_coalesced(async_client: Any, sim: Simulator) -> None:
    sim.delay = 0.1

    async def consume() -> None:
        stream = await async_client.chat.completions.create(**chat(), stream=True)
        async for _ in stream:
            pass

    await asyncio.gather(consume(), consume())
    assert sim.count() == 2


def test_waiters_share_the_leaders_upstream_error(client: Any, sim: Simulator) -> None:
    import openai

    sim.delay = 0.3
    sim.fail_next(1)

    def call(_: int) -> Any:
        try:
            return client.chat.completions.create(**chat())
        except openai.InternalServerError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(4)))
    assert all(isinstance(r, openai.InternalServerError) for r in results)
    assert sim.count() == 1
    assert not client.chat.completions.create(**chat()).cache_hit
