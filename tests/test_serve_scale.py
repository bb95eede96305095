"""Scale out: ``llmcache serve`` processes and workers sharing one Redis tier."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import chat

from llmcache.tools.simulator import Simulator
from tests.redis_fixtures import RedisServer, private_redis_server
from tests.serve_fixtures import ServeProcess, start_serve

__all__ = ["private_redis_server"]


@pytest.fixture
def two_proxies(
    sim: Simulator, tmp_path: Path, private_redis_server: RedisServer
) -> Iterator[list[ServeProcess]]:
    tier = ("--tier", "memory://", "--tier", private_redis_server.url + "/0")
    started = []
    try:
        for _ in range(2):
            started.append(start_serve(sim, tmp_path, *tier))
        yield started
    finally:
        for process in started:
            process.stop()


def _ask(proxy: ServeProcess, content: str) -> Any:
    client = openai.OpenAI(api_key="sk-k", base_url=proxy.url + "/v1", max_retries=0)
    return client.chat.completions.with_raw_response.create(**chat(content))


def test_two_proxies_sharing_redis_answer_a_request_with_one_upstream_call(
    two_proxies: list[ServeProcess], sim: Simulator
) -> None:
    first, second = two_proxies
    a = _ask(first, "Shared one")
    b = _ask(second, "Shared one")
    assert a.headers["llmcache-status"] == "miss"
    assert b.headers["llmcache-status"] == "hit"
    assert b.headers["llmcache-tier"] == "L2:redis"
    assert b.parse().model_dump() == a.parse().model_dump()
    assert sim.count() == 1


def test_the_same_request_at_once_on_two_proxies_goes_upstream_once(
    two_proxies: list[ServeProcess], sim: Simulator
) -> None:
    sim.delay = 0.5  # both requests arrive while the first is still upstream
    answers: list[Any] = []
    barrier = threading.Barrier(2)

    def ask(proxy: ServeProcess) -> None:
        barrier.wait()
        answers.append(_ask(proxy, "Shared at once"))

    threads = [threading.Thread(target=ask, args=(p,)) for p in two_proxies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 2
    assert sorted(a.headers["llmcache-status"] for a in answers) == ["hit", "miss"]
    assert answers[0].parse().model_dump() == answers[1].parse().model_dump()
    assert sim.count() == 1


def test_workers_share_the_redis_tier(
    sim: Simulator, tmp_path: Path, private_redis_server: RedisServer
) -> None:
    proxy = start_serve(sim, tmp_path, "--workers", "2", "--tier", private_redis_server.url + "/0")
    try:
        statuses = [_ask(proxy, "Workers").headers["llmcache-status"] for _ in range(6)]
    finally:
        proxy.stop()
    assert statuses == ["miss"] + ["hit"] * 5
    assert sim.count() == 1
    assert proxy.output().count("Started server process") == 2
