"""``CacheCore.with_namespace``: one set of tiers, entries kept apart by namespace."""

from __future__ import annotations

import httpx2
import pytest
from conftest import chat
from openai import AsyncOpenAI

from llmcache import AsyncCacheTransport, ConfigError
from llmcache._engine.core import CacheCore
from llmcache.tools.simulator import Simulator


async def test_derived_namespaces_share_tiers_and_stats_but_not_entries(sim: Simulator) -> None:
    core = CacheCore(is_async=True, tiers=["memory://"], namespace="base")
    derived = core.with_namespace("tenant-a")
    assert derived.tier_list is core.tier_list
    assert derived.stats is core.stats
    assert (core.namespace, derived.namespace) == ("base", "tenant-a")

    def client(c: CacheCore) -> AsyncOpenAI:
        transport = AsyncCacheTransport(library="httpx2", core=c)
        http = httpx2.AsyncClient(transport=transport)
        return AsyncOpenAI(api_key="k", base_url=sim.base_url, http_client=http, max_retries=0)

    base, tenant = client(core), client(derived)
    await base.chat.completions.create(**chat())
    await tenant.chat.completions.create(**chat())
    assert sim.count() == 2  # the tenant did not see the base namespace's entry
    raw = await tenant.chat.completions.with_raw_response.create(**chat())
    assert raw.headers["llmcache-status"] == "hit"
    assert core.stats_snapshot().hits == 1
    await base.close()
    await tenant.close()


def test_a_malformed_derived_namespace_is_refused() -> None:
    core = CacheCore(is_async=False, tiers=["memory://"])
    with pytest.raises(ConfigError, match="'a b'"):
        core.with_namespace("a b")
