"""Redis behind Sentinel: a real primary, its replica and three sentinels, started here.

Each test that kills the primary starts its own group (:mod:`tests.distributed_fixtures`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from llmcache import BackendError, CachedClient
from llmcache.tools.simulator import Simulator
from llmcache_redis.plugin import async_from_url, from_url
from llmcache_redis.sentinel import AsyncRedisSentinelBackend, RedisSentinelBackend
from tests.distributed_fixtures import SentinelGroup, sentinel_group
from tests.distributed_runs import fault_run, questions

pytestmark = pytest.mark.slow

RECOVERY_LIMIT = 2.0


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A group for one test alone (it kills the primary)."""
    with sentinel_group() as started:
        yield started


@pytest.fixture(scope="module")
def steady() -> Iterator[SentinelGroup]:
    """A group that nothing kills, for the module."""
    with sentinel_group() as started:
        yield started


def _client(sim: Simulator, url: str, **options: Any) -> Any:
    wrapped = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    return CachedClient(wrapped, tiers=[url], **options)


def test_sentinel_url_builds_the_sentinel_backends_and_labels_the_tier(
    steady: SentinelGroup, sim: Simulator
) -> None:
    group = steady
    assert isinstance(from_url(group.url), RedisSentinelBackend)
    assert isinstance(async_from_url(group.url), AsyncRedisSentinelBackend)
    client = _client(sim, group.url)
    try:
        asked = questions(3, "label")[0]
        assert client.chat.completions.create(**asked).cache_tier is None
        hit = client.chat.completions.create(**asked)
        assert hit.cache_hit
        assert hit.cache_tier == "L1:redis-sentinel"
    finally:
        client.close()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_sentinel_failover_serves_the_promoted_replica_within_two_seconds(
    group: SentinelGroup, sim: Simulator, is_async: bool
) -> None:
    old = group.primary()
    marker = f"PROMPT-{uuid.uuid4().hex}"
    figures = fault_run(
        sim,
        group.url,
        fault=old.stop,
        healthy=lambda: group.promoted(old.port),
        settle=group.wait_replicated,
        is_async=is_async,
        marker=marker,
    )
    assert figures.failed_calls == 0
    assert figures.wrong_answers == 0
    first = figures.first_hit_after
    assert first is not None, figures.summary()
    assert first <= RECOVERY_LIMIT, figures.summary()
    settled = [c for c in figures.after if c.at > figures.healthy_at + RECOVERY_LIMIT]
    assert settled
    assert all(c.hit for c in settled), figures.summary()  # replicated before the kill
    assert not [line for line in figures.logs if marker in line]
    assert len([line for line in figures.logs if "WARNING" in line]) <= 5, figures.logs


def test_unknown_service_name_is_reported_with_the_sentinels_asked(
    steady: SentinelGroup, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    group = steady
    url = group.url.replace("/mymaster/", "/no-such-service/")
    asked = ", ".join(f"127.0.0.1:{s.port}" for s in group.sentinels)
    client = _client(sim, url)
    strict = _client(sim, url, fail_open=False)
    try:
        with caplog.at_level(logging.WARNING, logger="llmcache"):
            assert not client.chat.completions.create(**questions(1, "svc")[0]).cache_hit
        assert "no sentinel knows a primary for service 'no-such-service'" in caplog.text
        assert f"(asked {asked})" in caplog.text
        with pytest.raises(BackendError, match="no-such-service"):
            strict.chat.completions.create(**questions(1, "svc")[0])
    finally:
        client.close()
        strict.close()
