"""The quick hit path: a call without options served from the first tier without a plan.

It must serve exactly what the planned path serves, and leave everything else (other key
strategies, options, streams, observers, bad or stale entries, failing tiers) to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import chat
from openai import AsyncOpenAI
from plugins_for_tests import BROKEN, STORES, TestBackends

from llmcache import CachedClient, CacheRequest, KeyStrategy, hookimpl
from llmcache._engine.planning import Planner


class _NoPlans:
    """Make planning fail: a call served while it is in place never built a plan."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the call was planned")

        monkeypatch.setattr(Planner, "plan", refuse)


@pytest.fixture
def plugin() -> Iterator[TestBackends]:
    BROKEN.clear()
    STORES.clear()
    yield TestBackends()
    BROKEN.clear()
    STORES.clear()


def _marks(response: Any) -> dict[str, Any]:
    return {name: value for name, value in vars(response).items() if name.startswith("cache_")}


def test_a_quick_hit_serves_what_a_planned_hit_serves(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat())
    # cache_ttl takes the planned path to the same entry (options are not in the key)
    planned = client.chat.completions.create(**chat(), cache_ttl=3600)
    _NoPlans(monkeypatch)
    quick = client.chat.completions.create(**chat())
    assert planned.cache_hit
    assert quick.cache_hit
    assert quick.model_dump() == planned.model_dump() == first.model_dump()
    assert type(quick) is type(first)
    assert {k: v for k, v in _marks(quick).items() if k != "cache_age"} == {
        k: v for k, v in _marks(planned).items() if k != "cache_age"
    }
    stats = client.stats()
    assert (stats.hits, stats.misses, stats.errors) == (2, 1, 0)
    assert stats.tokens_saved == 2 * quick.cache_tokens_saved > 0
    assert dict(stats.tier_hits) == {"L1:memory": 2}
    assert stats.cost_saved_usd > 0


def test_a_quick_hit_answers_a_second_level_hit_after_promotion(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'l2.db'}"
    writer = make_client(tiers=[url])
    writer.chat.completions.create(**chat())
    reader = make_client(tiers=["memory://", url])
    promoted = reader.chat.completions.create(**chat())  # L1 misses: planned, from L2
    assert promoted.cache_tier == "L2:sqlite"
    _NoPlans(monkeypatch)
    assert reader.chat.completions.create(**chat()).cache_tier == "L1:memory"


def test_a_miss_read_by_the_quick_path_is_not_read_again(
    make_client: Any, plugin: TestBackends
) -> None:
    client = make_client(tiers=["sharedmem://reads"], plugins=[plugin])
    store = STORES["reads"]
    reads: list[str] = []
    get = store.get

    def counted(key: str) -> Any:
        reads.append(key)
        return get(key)

    store.get = counted  # type: ignore[method-assign]
    assert not client.chat.completions.create(**chat("once")).cache_hit
    assert len(reads) == 1


def test_a_failed_quick_read_is_counted_once(make_client: Any, plugin: TestBackends) -> None:
    client = make_client(tiers=["broken://"], plugins=[plugin])
    answer = client.chat.completions.create(**chat())
    assert not answer.cache_hit
    assert BROKEN[0].calls == 1  # not read again, nor written: it failed in this call
    assert client.stats().errors == 1


def test_an_expired_entry_is_a_miss_on_the_quick_path(make_client: Any) -> None:
    client = make_client(tiers=["memory://"], default_ttl=0.2)
    first = client.chat.completions.create(**chat())
    time.sleep(0.3)
    again = client.chat.completions.create(**chat())
    assert not again.cache_hit
    assert again.cache_key == first.cache_key
    assert client.stats().misses == 2


def test_another_key_strategy_is_never_bypassed(make_client: Any) -> None:
    class OneKey(KeyStrategy):
        def key(self, request: CacheRequest) -> str:
            return "everything"

    client = make_client(tiers=["memory://"], key_strategy=OneKey())
    client.chat.completions.create(**chat("a"))
    other = client.chat.completions.create(**chat("b"))
    assert other.cache_hit
    assert other.cache_key == "everything"


def test_hit_observers_see_every_hit(make_client: Any) -> None:
    seen: list[str] = []

    class Observer:
        @hookimpl
        def llmcache_on_hit(self, event: Any) -> None:
            seen.append(event.key)

    client = make_client(tiers=["memory://"], plugins=[Observer()])
    first = client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    assert seen == [first.cache_key, first.cache_key]


def test_a_stream_is_replayed_by_the_planned_path(make_client: Any) -> None:
    client = make_client(tiers=["memory://"])
    first = client.chat.completions.create(**chat())
    chunks = list(client.chat.completions.create(**chat(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        first.choices[0].message.content
    )


async def test_an_async_quick_hit_serves_what_a_planned_hit_serves(
    async_openai_client: AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = CachedClient(async_openai_client, tiers=["memory://"])
    try:
        first = await client.chat.completions.create(**chat())
        planned = await client.chat.completions.create(**chat(), cache_ttl=3600)
        _NoPlans(monkeypatch)
        quick = await client.chat.completions.create(**chat())
        assert quick.cache_hit
        assert planned.cache_hit
        assert quick.model_dump() == first.model_dump()
        assert quick.cache_key == planned.cache_key == first.cache_key
        assert client.stats().hits == 2
    finally:
        await client.close()
