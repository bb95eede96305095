"""Anthropic clients: ``messages.create`` cached like OpenAI calls, streaming included.

The real ``anthropic`` SDK talks to the local simulator's ``/v1/messages``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from llmcache import AsyncCachedClient, CachedClient
from llmcache._rules.keys import physical_key
from llmcache._tiers.codec import Codec
from llmcache.providers.anthropic import ANTHROPIC
from llmcache.providers.base import dump
from llmcache.tools.simulator import Simulator

MODEL = "claude-haiku-4-5"
PATH = "/v1/messages"


def ask(content: str = "What is a cache?", **extra: Any) -> dict[str, Any]:
    """Return ``messages.create`` arguments of a small request."""
    return {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


@pytest.fixture
def claude(sim: Simulator) -> Iterator[Any]:
    client = CachedClient(
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    )
    yield client
    client.close()


@pytest.fixture
async def async_claude(sim: Simulator) -> AsyncIterator[Any]:
    wrapped = anthropic.AsyncAnthropic(
        base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0
    )
    client = CachedClient(wrapped)
    yield client
    await client.close()


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


# -- plain calls --------------------------------------------------------------------------


def test_identical_messages_calls_reach_the_upstream_once(claude: Any, sim: Simulator) -> None:
    first = claude.messages.create(**ask())
    second = claude.messages.create(**ask())

    assert sim.count(PATH) == 1
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.cache_tier == "L1:memory"
    assert second.cache_key == first.cache_key
    assert text_of(second) == text_of(first)


def test_a_hit_is_the_sdks_message_with_its_usage(claude: Any) -> None:
    first = claude.messages.create(**ask())
    second = claude.messages.create(**ask())

    assert isinstance(second, Message)
    assert second.usage.input_tokens == first.usage.input_tokens
    assert second.usage.output_tokens == first.usage.output_tokens
    assert second.cache_tokens_saved == first.usage.input_tokens + first.usage.output_tokens
    assert claude.stats().tokens_saved == second.cache_tokens_saved


def test_a_different_prompt_is_a_different_entry(claude: Any, sim: Simulator) -> None:
    claude.messages.create(**ask("one"))
    other = claude.messages.create(**ask("two"))

    assert other.cache_hit is False
    assert sim.count(PATH) == 2


def test_sdk_cache_control_dict_goes_upstream_untouched(claude: Any, sim: Simulator) -> None:
    control = {"type": "ephemeral"}
    claude.messages.create(**ask(cache_control=control))
    again = claude.messages.create(**ask(cache_control=control))

    assert sim.requests[0].body["cache_control"] == control
    assert again.cache_hit is True
    assert sim.count(PATH) == 1


def test_cache_control_string_is_llmcache_directives(claude: Any, sim: Simulator) -> None:
    claude.messages.create(**ask(cache_control="no-store"))
    claude.messages.create(**ask(cache_control="no-store"))

    assert sim.count(PATH) == 2
    assert all("cache_control" not in r.body for r in sim.requests)
    assert claude.stats().bypasses == 2


def test_malformed_cache_control_string_fails_before_the_upstream(
    claude: Any, sim: Simulator
) -> None:
    with pytest.raises(ValueError, match="max-agee"):
        claude.messages.create(**ask(cache_control="max-agee=5"))
    assert sim.count() == 0


def test_unknown_cache_keyword_is_a_type_error(claude: Any, sim: Simulator) -> None:
    with pytest.raises(TypeError, match="cache_tll"):
        claude.messages.create(**ask(cache_tll=5))
    assert sim.count() == 0


def test_other_sdk_attributes_pass_through(claude: Any) -> None:
    assert claude.messages.count_tokens == claude.wrapped.messages.count_tokens
    assert claude.models is claude.wrapped.models


# -- streaming ----------------------------------------------------------------------------


def streamed_text(events: list[Any]) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def test_a_streamed_miss_streams_live_and_is_stored(claude: Any, sim: Simulator) -> None:
    stream = claude.messages.create(**ask(), stream=True)
    events = list(stream)

    assert stream.cache_hit is False
    assert events[0].type == "message_start"
    assert events[-1].type == "message_stop"
    again = claude.messages.create(**ask(), stream=True)
    replayed = list(again)
    assert again.cache_hit is True
    assert [e.type for e in replayed] == [e.type for e in events]
    assert streamed_text(replayed) == streamed_text(events)
    assert sim.count(PATH) == 1


def test_stream_then_plain_share_one_entry(claude: Any, sim: Simulator) -> None:
    events = list(claude.messages.create(**ask(), stream=True))
    plain = claude.messages.create(**ask())

    assert plain.cache_hit is True
    assert isinstance(plain, Message)
    assert text_of(plain) == streamed_text(events)
    assert plain.stop_reason == "end_turn"
    assert plain.usage.output_tokens == events[-2].usage.output_tokens
    assert sim.count(PATH) == 1


def test_plain_then_stream_replays_the_message_as_events(claude: Any, sim: Simulator) -> None:
    plain = claude.messages.create(**ask())
    stream = claude.messages.create(**ask(), stream=True)
    with stream:
        events = list(stream)

    assert stream.cache_hit is True
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert streamed_text(events) == text_of(plain)
    assert events[-2].delta.stop_reason == plain.stop_reason
    assert sim.count(PATH) == 1


def test_an_abandoned_stream_is_never_stored(claude: Any, sim: Simulator) -> None:
    stream = claude.messages.create(**ask(), stream=True)
    next(iter(stream))
    stream.close()

    again = claude.messages.create(**ask())
    assert again.cache_hit is False
    assert sim.count(PATH) == 2


def test_a_streamed_tool_call_is_assembled_into_a_tool_use_block(
    claude: Any, sim: Simulator
) -> None:
    tool = {"name": "lookup", "description": "Look up", "input_schema": {"type": "object"}}
    call = ask(tools=[tool], tool_choice={"type": "tool", "name": "lookup"})
    list(claude.messages.create(**call, stream=True))
    plain = claude.messages.create(**call)

    assert plain.cache_hit is True
    assert plain.stop_reason == "tool_use"
    [block] = plain.content
    assert isinstance(block, ToolUseBlock)
    assert (block.name, block.input) == ("lookup", {})
    assert sim.count(PATH) == 1


# -- async --------------------------------------------------------------------------------


async def test_async_anthropic_client_caches_messages_create(
    async_claude: Any, sim: Simulator
) -> None:
    assert isinstance(async_claude, AsyncCachedClient)
    first = await async_claude.messages.create(**ask())
    second = await async_claude.messages.create(**ask())

    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert isinstance(second, Message)
    assert sim.count(PATH) == 1


async def test_async_stream_then_plain_then_stream_share_one_entry(
    async_claude: Any, sim: Simulator
) -> None:
    stream = await async_claude.messages.create(**ask(), stream=True)
    events = [event async for event in stream]
    plain = await async_claude.messages.create(**ask())
    replay = await async_claude.messages.create(**ask(), stream=True)
    async with replay:
        replayed = [event async for event in replay]

    assert stream.cache_hit is False
    assert (plain.cache_hit, replay.cache_hit) == (True, True)
    assert text_of(plain) == streamed_text(events) == streamed_text(replayed)
    assert sim.count(PATH) == 1


# -- the adapter's conversions -------------------------------------------------------------

RICH = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "thinking", "thinking": "Let me see.", "signature": "sig-1"},
        {
            "type": "text",
            "text": "Paris is the capital.",
            "citations": [
                {
                    "type": "char_location",
                    "cited_text": "Paris",
                    "document_index": 0,
                    "document_title": "Atlas",
                    "start_char_index": 0,
                    "end_char_index": 5,
                }
            ],
        },
        {"type": "tool_use", "id": "toolu_1", "name": "map", "input": {"city": "Paris", "z": [1]}},
        {"type": "redacted_thinking", "data": "opaque"},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
    },
}


def test_a_message_survives_a_round_trip_through_stream_events() -> None:
    adapter = ANTHROPIC.adapters["messages"]
    events = [adapter.build_chunk(e) for e in adapter.synthesize(RICH, {})]
    assembled = adapter.assemble([dump(e) for e in events])

    assert adapter.build(assembled) == adapter.build(RICH)


def test_assembling_keeps_message_start_usage_that_the_delta_omits() -> None:
    adapter = ANTHROPIC.adapters["messages"]
    start = {**RICH, "content": [], "stop_reason": None, "usage": RICH["usage"]}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    message = adapter.assemble(events)

    assert message["content"] == [{"type": "text", "text": "Hi"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 3
    assert message["usage"]["cache_read_input_tokens"] == 100


def test_a_stream_without_message_start_cannot_be_assembled() -> None:
    with pytest.raises(ValueError, match="message_start"):
        ANTHROPIC.adapters["messages"].assemble([{"type": "message_stop"}])


def test_usage_counts_cache_reads_as_provider_cached_and_every_input_token_as_prompt() -> None:
    usage = ANTHROPIC.adapters["messages"].usage(RICH)

    assert usage.prompt == 12 + 5 + 100
    assert usage.completion == 34
    assert usage.provider_cached == 100  # cache writes (5) are a cost, not a saving


def test_a_miss_stores_the_messages_json_text_and_the_sdk_request_id(
    claude: Any, sim: Simulator
) -> None:
    live = claude.messages.create(**ask())
    assert isinstance(live, Message)
    assert live._request_id.startswith("req_")
    pkey = physical_key("default", live.cache_key)
    entry = Codec().decode(claude._tiers.tiers[0].backend.get(pkey), pkey)
    assert entry.kind == "json"
    assert entry.prompt_tokens == live.usage.input_tokens > 0
    hit = claude.messages.create(**ask())
    assert hit.cache_hit
    assert hit.model_dump() == live.model_dump()
    assert sim.count(PATH) == 1
