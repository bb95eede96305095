"""Provider plugins: the built-in SDK families register like any plugin; a fourth is added
from outside the package; google-genai is served by a plugin alone."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from google import genai
from google.genai.types import GenerateContentResponse
from pydantic import BaseModel

import llmcache
from llmcache import CachedClient, hookimpl
from llmcache._plugins import get_registry
from llmcache._rules.keys import physical_key
from llmcache.providers import EndpointAdapter, Method, Provider
from llmcache.providers.base import Usage
from llmcache.tools.simulator import Simulator

MODEL = "gemini-2.5-flash"


def test_the_built_in_families_register_through_the_hook() -> None:
    names = [provider.name for provider in get_registry().providers()]
    assert {"openai", "anthropic", "genai"} <= set(names)


@pytest.fixture
def gemini(sim: Simulator) -> genai.Client:
    return genai.Client(api_key="x", http_options={"base_url": sim.base_url.rsplit("/v1", 1)[0]})


def test_generate_content_is_cached_with_its_usage(gemini: genai.Client, sim: Simulator) -> None:
    with CachedClient(gemini, pricing={MODEL: {"input": 0.3, "output": 2.5}}) as client:
        first = client.models.generate_content(model=MODEL, contents="What is a cache?")
        hit = client.models.generate_content(model=MODEL, contents="What is a cache?")
        other = client.models.generate_content(model=MODEL, contents="What is a tier?")
        stats = client.stats()
    assert type(hit) is GenerateContentResponse
    assert (first.cache_hit, hit.cache_hit, other.cache_hit) == (False, True, False)
    assert hit.text == first.text
    usage = first.usage_metadata
    assert hit.cache_tokens_saved == usage.prompt_token_count + usage.candidates_token_count
    assert stats.tokens_saved == hit.cache_tokens_saved
    saved = (usage.prompt_token_count * 0.3 + usage.candidates_token_count * 2.5) / 1e6
    assert stats.cost_saved_usd == pytest.approx(saved)
    assert sim.count() == 2


def test_a_stream_and_a_plain_call_share_one_entry(gemini: genai.Client, sim: Simulator) -> None:
    with CachedClient(gemini) as client:
        live = list(client.models.generate_content_stream(model=MODEL, contents="Tell me"))
        whole = client.models.generate_content(model=MODEL, contents="Tell me")
        replayed = list(client.models.generate_content_stream(model=MODEL, contents="Tell me"))
        assert client.stats().hits == 2
    assert len(live) > 1  # the simulator streams word by word
    text = "".join(chunk.text for chunk in live)
    assert whole.cache_hit
    assert whole.text == text
    assert "".join(chunk.text for chunk in replayed) == text
    assert sim.count() == 1


def test_no_http_headers_are_stored(gemini: genai.Client) -> None:
    with CachedClient(gemini) as client:
        answer = client.models.generate_content(model=MODEL, contents="What is a cache?")
        data = client._tiers.tiers[0].backend.get(physical_key("default", answer.cache_key))
    stored = msgpack.unpackb(data)[3]
    assert "sdkHttpResponse" not in stored
    assert "candidates" in stored


async def test_the_async_client_is_cached(gemini: genai.Client, sim: Simulator) -> None:
    client: Any = CachedClient(gemini.aio)
    async with client:
        await client.models.generate_content(model=MODEL, contents="async question")
        hit = await client.models.generate_content(model=MODEL, contents="async question")
        stream = await client.models.generate_content_stream(model=MODEL, contents="async question")
        chunks = [chunk async for chunk in stream]
    assert hit.cache_hit
    assert "".join(c.text for c in chunks) == hit.text
    assert sim.count() == 1


# -- a fourth SDK family, added from outside the package ---------------------------------------


class EchoAnswer(BaseModel):
    """The answer type of a tiny SDK that echoes prompts."""

    lines: list[str]
    model: str
    used: int


class _Echoes:
    def __init__(self) -> None:
        self.calls = 0

    def say(self, *, model: str, prompt: str) -> EchoAnswer:
        self.calls += 1
        return EchoAnswer(lines=[prompt.upper()], model=model, used=len(prompt.split()))


class EchoClient:
    """A client of an SDK llmcache knows nothing about."""

    def __init__(self) -> None:
        self.echoes = _Echoes()


class SayAdapter(EndpointAdapter):
    endpoint = "echo.say"
    response_type = EchoAnswer
    chunk_type = EchoAnswer
    items = "lines"

    def usage(self, payload: Any) -> Usage:
        used = payload["used"] if isinstance(payload, dict) else payload.used
        return Usage(used, len(payload["lines"] if isinstance(payload, dict) else payload.lines))


class EchoPlugin:
    @hookimpl
    def llmcache_register_providers(self, register: Any) -> None:
        register(
            Provider(
                "echo",
                {"echo.say": SayAdapter()},
                methods=(Method(("echoes",), "say", "echo.say"),),
                modules=(EchoClient.__module__,),
                identify=lambda client: "echo://local",
            )
        )


def test_a_fourth_sdk_family_is_added_by_a_plugin_alone() -> None:
    sdk = EchoClient()
    plugin = EchoPlugin()
    with CachedClient(sdk, plugins=[plugin], pricing={"echo-1": {"input": 1, "output": 2}}) as c:
        first = c.echoes.say(model="echo-1", prompt="hello there")
        hit = c.echoes.say(model="echo-1", prompt="hello there")
        c.echoes.say(model="echo-1", prompt="something else")
        stats = c.stats()
    assert type(hit) is EchoAnswer
    assert (first.cache_hit, hit.cache_hit) == (False, True)
    assert hit.lines == ["HELLO THERE"]
    assert sdk.echoes.calls == 2
    assert stats.tokens_saved == 3
    assert stats.cost_saved_usd == pytest.approx((2 * 1 + 1 * 2) / 1e6)


def test_a_client_no_provider_knows_is_refused_by_name() -> None:
    with pytest.raises(llmcache.ConfigError, match=r"known providers: .*openai"):
        CachedClient(EchoClient())
