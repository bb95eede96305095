"""Tier composition: promotion, strategies, cache_tier, max_ttl, clear, namespaces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import chat
from plugins_for_tests import STORES, TestBackends

from llmcache import CachedClient
from llmcache.tools.simulator import Simulator


@pytest.fixture
def backends_plugin() -> Iterator[TestBackends]:
    STORES.clear()
    yield TestBackends()
    STORES.clear()


@pytest.fixture
def two_tier(make_client: Any, backends_plugin: TestBackends) -> Any:
    return make_client(tiers=["memory://", "sharedmem://l2"], plugins=[backends_plugin])


def test_tier_labels_follow_levels_and_kinds(two_tier: Any) -> None:
    assert two_tier.tiers == ["L1:memory", "L2:sharedmem"]


def test_hit_in_l2_is_promoted_to_l1(
    make_client: Any, backends_plugin: TestBackends, sim: Simulator
) -> None:
    writer = make_client(tiers=["memory://", "sharedmem://l2"], plugins=[backends_plugin])
    writer.chat.completions.create(**chat(), cache_ttl=100)
    reader = make_client(tiers=["memory://", "sharedmem://l2"], plugins=[backends_plugin])
    from_l2 = reader.chat.completions.create(**chat())
    from_l1 = reader.chat.completions.create(**chat())
    assert (from_l2.cache_tier, from_l1.cache_tier) == ("L2:sharedmem", "L1:memory")
    assert sim.count() == 1
    assert reader.stats().tier_hits == {"L2:sharedmem": 1, "L1:memory": 1}


def test_promotion_keeps_the_remaining_ttl(make_client: Any, backends_plugin: TestBackends) -> None:
    writer = make_client(tiers=["sharedmem://l2"], plugins=[backends_plugin])
    writer.chat.completions.create(**chat(), cache_ttl=2)
    time.sleep(1)
    reader = make_client(tiers=["memory://", "sharedmem://l2"], plugins=[backends_plugin])
    assert reader.chat.completions.create(**chat()).cache_tier == "L2:sharedmem"
    STORES["l2"].close()  # only the promoted copy is left
    assert reader.chat.completions.create(**chat()).cache_tier == "L1:memory"
    time.sleep(1.2)
    assert not reader.chat.completions.create(**chat()).cache_hit


def test_cache_tier_one_writes_l1_only(two_tier: Any) -> None:
    two_tier.chat.completions.create(**chat(), cache_tier=1)
    assert len(STORES["l2"]) == 0
    assert two_tier.chat.completions.create(**chat()).cache_tier == "L1:memory"


def test_strategy_local_uses_only_in_process_tiers(two_tier: Any) -> None:
    two_tier.chat.completions.create(**chat(), cache_strategy="local")
    assert len(STORES["l2"]) == 0


def test_strategy_distributed_uses_only_shared_tiers(two_tier: Any) -> None:
    two_tier.chat.completions.create(**chat(), cache_strategy="distributed")
    assert len(STORES["l2"]) == 1
    hit = two_tier.chat.completions.create(**chat(), cache_strategy="distributed")
    assert hit.cache_tier == "L2:sharedmem"


def test_max_ttl_caps_a_tier(make_client: Any, backends_plugin: TestBackends) -> None:
    client = make_client(tiers=["memory://?max_ttl=1", "sharedmem://l2"], plugins=[backends_plugin])
    client.chat.completions.create(**chat(), cache_ttl=100)
    assert client.chat.completions.create(**chat()).cache_tier == "L1:memory"
    time.sleep(1.2)
    assert client.chat.completions.create(**chat()).cache_tier == "L2:sharedmem"


def test_s_maxage_sets_the_ttl_of_shared_tiers(two_tier: Any) -> None:
    two_tier.chat.completions.create(**chat(), cache_control="s-maxage=1")
    time.sleep(1.2)
    assert (
        two_tier.chat.completions.create(**chat(), cache_strategy="distributed").cache_hit is False
    )
    assert two_tier.chat.completions.create(**chat(), cache_strategy="local").cache_hit


def test_memory_tier_limits_entries(make_client: Any) -> None:
    client = make_client(tiers=["memory://?max_entries=2"])
    for text in ("a", "b", "c"):
        client.chat.completions.create(**chat(text))
    assert not client.chat.completions.create(**chat("a")).cache_hit


def test_clear_cache_by_glob_over_logical_keys(client: Any) -> None:
    client.chat.completions.create(**chat("x"), cache_key="user_1")
    client.chat.completions.create(**chat("y"), cache_key="user_1")
    client.chat.completions.create(**chat("x"), cache_key="user_2")
    assert client.clear_cache(key="user_1:*") == 2
    assert not client.chat.completions.create(**chat("x"), cache_key="user_1").cache_hit
    assert client.chat.completions.create(**chat("x"), cache_key="user_2").cache_hit


def test_clear_cache_by_age_and_both(client: Any) -> None:
    client.chat.completions.create(**chat("old"), cache_key="a")
    time.sleep(1.1)
    client.chat.completions.create(**chat("new"), cache_key="a")
    client.chat.completions.create(**chat("new"), cache_key="b")
    assert client.clear_cache(key="a:*", older_than=1) == 1
    assert client.chat.completions.create(**chat("new"), cache_key="a").cache_hit
    assert client.clear_cache(older_than=0) == 2
    assert client.clear_cache() == 0


def test_clear_counts_every_tier_holding_the_entry(two_tier: Any) -> None:
    two_tier.chat.completions.create(**chat())
    assert two_tier.clear_cache() == 2


def test_clear_never_crosses_namespaces(make_client: Any, backends_plugin: TestBackends) -> None:
    a = make_client(tiers=["sharedmem://l2"], plugins=[backends_plugin], namespace="a")
    b = make_client(tiers=["sharedmem://l2"], plugins=[backends_plugin], namespace="b")
    a.chat.completions.create(**chat())
    b.chat.completions.create(**chat())
    assert a.clear_cache() == 1
    assert b.chat.completions.create(**chat()).cache_hit


def test_namespaces_never_read_each_other(make_client: Any, backends_plugin: TestBackends) -> None:
    a = make_client(tiers=["sharedmem://l2"], plugins=[backends_plugin], namespace="a")
    b = make_client(tiers=["sharedmem://l2"], plugins=[backends_plugin], namespace="b")
    a.chat.completions.create(**chat())
    assert not b.chat.completions.create(**chat()).cache_hit


def test_glob_characters_in_cache_key_cannot_widen_a_clear(client: Any) -> None:
    from llmcache.backends.globs import escape

    client.chat.completions.create(**chat(), cache_key="team*")
    client.chat.completions.create(**chat(), cache_key="team_b")
    assert client.clear_cache(key=escape("team*") + ":*") == 1
    assert client.chat.completions.create(**chat(), cache_key="team_b").cache_hit


async def test_async_clear_cache_is_awaitable(async_openai_client: Any) -> None:
    client = CachedClient(async_openai_client, tiers=["memory://"])
    await client.chat.completions.create(**chat())
    assert await client.clear_cache(key="*") == 1
    await client.close()
