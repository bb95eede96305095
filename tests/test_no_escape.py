"""The wrapper lets no call escape: SDK helpers, raw forms and derived clients are cached."""

from __future__ import annotations

import inspect
from typing import Any

import anthropic
import pytest
from conftest import MODEL, chat
from openai import AsyncOpenAI, OpenAI

from llmcache import AsyncCachedClient, CachedClient
from llmcache.tools.simulator import Simulator


def test_raw_and_streaming_response_forms_are_cached(client: Any, sim: Simulator) -> None:
    live = client.chat.completions.create(**chat())
    raw = client.chat.completions.with_raw_response.create(**chat())
    assert raw.headers["llmcache-status"] == "hit"
    assert raw.parse().model_dump() == live.model_dump()
    top = client.with_raw_response.chat.completions.create(**chat())
    assert top.headers["llmcache-status"] == "hit"
    with client.chat.completions.with_streaming_response.create(**chat()) as streamed:
        assert streamed.headers["llmcache-status"] == "hit"
    assert sim.count() == 1
    assert client.stats().hits == 3


def test_parse_and_stream_helpers_are_cached_and_counted(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    assert client.chat.completions.parse(**chat()).choices[0].message.content
    assert client.beta.chat.completions.parse(**chat()).choices
    with client.chat.completions.stream(**chat()) as stream:
        assert stream.get_final_completion().choices[0].message.content
    client.responses.create(model=MODEL, input="hi")
    assert client.responses.parse(model=MODEL, input="hi").output_text
    with client.responses.stream(model=MODEL, input="hi") as events:
        assert events.get_final_response().output_text
    assert sim.count() == 2
    stats = client.stats()
    assert (stats.hits, stats.misses) == (5, 2)


def test_helpers_take_cache_options(client: Any, sim: Simulator) -> None:
    client.chat.completions.parse(**chat(), cache_key="user_1", cache_ttl=60)
    hit = client.chat.completions.with_raw_response.create(**chat(), cache_key="user_1")
    assert hit.headers["llmcache-key"].startswith("user_1:")
    with pytest.raises(TypeError, match="cache_tll"):
        client.chat.completions.parse(**chat(), cache_tll=60)
    with pytest.raises(ValueError, match="cache_ttl"):
        client.chat.completions.parse(**chat(), cache_ttl=-1)
    assert sim.count() == 1


def test_with_options_and_copy_share_tiers_and_stats(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat())
    derived = client.with_options(max_retries=5, timeout=20)
    copied = client.copy(max_retries=1)
    assert isinstance(derived, CachedClient)
    assert isinstance(copied, CachedClient)
    assert derived.wrapped.max_retries == 5
    assert derived.chat.completions.create(**chat()).cache_hit
    assert copied.chat.completions.create(**chat()).cache_hit
    assert sim.count() == 1
    assert client.stats().hits == 2  # one set of counters for the family


def test_the_wrapper_shadows_no_attribute_of_the_wrapped_client(
    client: Any, openai_client: OpenAI
) -> None:
    ours = set(vars(client)) | {n for n in dir(type(client)) if not n.startswith("__")}
    theirs = set(dir(openai_client))
    cached = {"chat", "completions", "embeddings", "responses", "close", "with_options", "copy"}
    assert (ours & theirs) - cached == set()
    assert client._client is openai_client._client
    assert client.base_url == openai_client.base_url
    assert client.api_key == openai_client.api_key


def test_with_options_given_the_clients_own_http_client_keeps_caching(
    client: Any, sim: Simulator
) -> None:
    # as pydantic-ai does when max_retries is set
    derived = client.with_options(http_client=client._client, max_retries=2)
    derived.chat.completions.create(**chat())
    assert derived.chat.completions.create(**chat()).cache_hit
    assert sim.count() == 1


async def test_async_cached_methods_are_coroutine_functions(
    async_openai_client: AsyncOpenAI, sim: Simulator
) -> None:
    async with CachedClient(async_openai_client) as client:
        assert isinstance(client, AsyncCachedClient)
        for method in (
            client.chat.completions.create,
            client.embeddings.create,
            client.responses.create,
            client.chat.completions.parse,
            client.chat.completions.with_raw_response.create,
        ):
            assert inspect.iscoroutinefunction(method), method
        await client.chat.completions.create(**chat())
        parsed = await client.chat.completions.parse(**chat())
        assert parsed.choices[0].message.content
        derived = client.with_options(max_retries=1)
        assert isinstance(derived, AsyncCachedClient)
        assert (await derived.chat.completions.create(**chat())).cache_hit
    assert sim.count() == 1


def test_anthropic_stream_helper_is_cached(sim: Simulator) -> None:
    sdk = anthropic.Anthropic(api_key="k", base_url=sim.anthropic_base_url, max_retries=0)
    ask = {"model": "claude-x", "max_tokens": 64, "messages": chat()["messages"]}
    with CachedClient(sdk) as client:
        first = client.messages.create(**ask)
        with client.messages.stream(**ask) as stream:
            assert stream.get_final_text() == first.content[0].text
        assert client.messages.with_raw_response.create(**ask).headers["llmcache-status"] == "hit"
        assert client.stats().hits == 2
    assert sim.count() == 1
