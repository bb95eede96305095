"""docs/plugins.md runs as written: its backends, strategy, policy and observer work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import chat
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache import CachedClient
from llmcache.tools.simulator import Simulator

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _run_doc() -> tuple[dict[str, Any], list[object]]:
    """Run every block of the page in one namespace; return it and the plugins it registered
    (taken back out, so that each test registers them for its own clients only)."""
    registered: list[object] = []
    real = llmcache.register_plugin
    llmcache.register_plugin = registered.append  # type: ignore[assignment]
    try:
        namespace: dict[str, Any] = {"__name__": "plugins_doc"}
        for block in _BLOCK.findall(DOC.read_text()):
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        llmcache.register_plugin = real
    return namespace, registered


DOCUMENTED, PLUGINS = _run_doc()
# the page's conformance suites, collected here
TestDictBackend = DOCUMENTED["TestDictBackend"]
TestListingBackend = DOCUMENTED["TestListingBackend"]


def test_the_page_registers_what_it_says() -> None:
    registered = [type(p).__name__ for p in PLUGINS]
    assert registered == ["DictPlugin", "KeysPlugin", "TTLPlugin", "EchoProvider"]


def test_the_documented_provider_caches_its_sdk() -> None:
    sdk = DOCUMENTED["EchoClient"]()
    with CachedClient(sdk, plugins=PLUGINS) as client:
        first = client.echoes.say(model="echo-1", prompt="hello there")
        hit = client.echoes.say(model="echo-1", prompt="hello there")
        assert client.stats().tokens_saved == 2
    assert (first.cache_hit, hit.cache_hit) == (False, True)
    assert type(hit) is DOCUMENTED["EchoAnswer"]
    assert hit.lines == ["HELLO THERE"]


def test_the_documented_objects_satisfy_the_protocols() -> None:
    assert isinstance(DOCUMENTED["DictBackend"]("dict://"), llmcache.CacheBackend)
    assert not isinstance(DOCUMENTED["DictBackend"]("dict://"), llmcache.BaseCacheBackend)
    assert isinstance(DOCUMENTED["ListingBackend"]("listing://"), llmcache.BaseCacheBackend)
    assert isinstance(DOCUMENTED["PerTenantKeys"](), llmcache.KeyStrategy)
    assert isinstance(DOCUMENTED["ModelTTL"](), llmcache.TTLPolicy)


def test_duck_typed_and_subclassed_backends_serve_a_sync_client(
    openai_client: OpenAI, sim: Simulator
) -> None:
    with CachedClient(openai_client, tiers=["dict://", "listing://"], plugins=PLUGINS) as client:
        client.chat.completions.create(**chat())
        client._tiers.tiers[0].backend.backend.entries.clear()  # L1 loses it: L2 serves
        hit = client.chat.completions.create(**chat())
        assert (hit.cache_hit, hit.cache_tier) == (True, "L2:listing")
        assert client.chat.completions.create(**chat()).cache_tier == "L1:dict"  # promoted
        assert client.stats().errors == 0
        assert client.clear_cache() == 2
    assert sim.count() == 1


async def test_duck_typed_and_subclassed_backends_serve_an_async_client(
    async_openai_client: AsyncOpenAI, sim: Simulator
) -> None:
    client: Any = CachedClient(
        async_openai_client, tiers=["dict://", "listing://"], plugins=PLUGINS
    )
    async with client:
        await client.chat.completions.create(**chat())
        hit = await client.chat.completions.create(**chat())
        assert hit.cache_hit
        assert client.stats().errors == 0
        assert await client.clear_cache() == 2
    assert sim.count() == 1


def test_the_documented_strategy_and_policy_apply(openai_client: OpenAI, sim: Simulator) -> None:
    with CachedClient(
        openai_client, key_strategy="per-tenant", ttl_policy="by-model", plugins=PLUGINS
    ) as client:
        first = client.chat.completions.create(**chat(), cache_key="acme")
        assert first.cache_key.startswith("acme:")
        assert client.chat.completions.create(**chat(), cache_key="acme").cache_hit
        assert not client.chat.completions.create(**chat(), cache_key="globex").cache_hit
        experimental = {**chat(), "model": "experimental"}
        client.chat.completions.create(**experimental)
        assert not client.chat.completions.create(**experimental).cache_hit
        assert client.stats().bypasses == 2
    assert sim.count() == 4


def test_the_documented_observer_sees_hits(openai_client: OpenAI) -> None:
    observer = DOCUMENTED["Counter"]()
    with CachedClient(openai_client, plugins=[observer]) as client:
        client.chat.completions.create(**chat())
        client.chat.completions.create(**chat())
    assert DOCUMENTED["seen"] == [("L1:memory", client.stats().tokens_saved)]


def test_a_backend_without_a_required_method_is_refused_by_name() -> None:
    class NoClear:
        def get(self, key: str) -> None: ...
        def set(self, key: str, value: bytes, ttl: float | None) -> None: ...
        def delete(self, keys: list[str]) -> None: ...

    class Plugin:
        @llmcache.hookimpl
        def llmcache_register_backends(self, register: Any) -> None:
            register("noclear", lambda url: NoClear())

    with pytest.raises(llmcache.ConfigError, match="lacks clear"):
        CachedClient(OpenAI(api_key="x"), tiers=["noclear://"], plugins=[Plugin()])
