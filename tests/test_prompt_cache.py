"""``cache_prompt=True``: the stable prefix marked for the provider's own prompt cache.

Asserts on what the simulator received (OpenAI's ``prompt_cache_key``, Anthropic's
``cache_control`` breakpoints) and on the cached-token counts it reported, which land in
``stats().provider_cached_tokens`` and ``provider_cost_saved_usd``, apart from the
response cache's savings.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from llmcache import CachedClient
from llmcache._rules.pricing import DEFAULT_PRICES
from llmcache.tools.simulator import Simulator

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
EPHEMERAL = {"type": "ephemeral"}


def chat(system: str, question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return {"model": GPT, "messages": messages, **extra}


def ask(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}]
    return {"model": CLAUDE, "max_tokens": 64, "messages": messages, **extra}


def discount(model: str, tokens: int) -> float:
    price = DEFAULT_PRICES[model]
    assert price.cached_input is not None
    return tokens * (price.input - price.cached_input) / 1e6


@pytest.fixture
def system() -> str:
    """A system prompt of its own: the simulator's prompt caches outlive each test."""
    return f"You are a careful assistant ({uuid.uuid4().hex}) who answers in one sentence. " * 3


@pytest.fixture
def claude(sim: Simulator) -> Iterator[Any]:
    client = CachedClient(
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    )
    yield client
    client.close()


# -- OpenAI -------------------------------------------------------------------------------


def test_openai_request_gets_a_prompt_cache_key_derived_from_its_prefix(
    client: Any, sim: Simulator, system: str
) -> None:
    client.chat.completions.create(**chat(system, "first question", cache_prompt=True))
    client.chat.completions.create(**chat(system, "second question", cache_prompt=True))

    keys = [r.body.get("prompt_cache_key") for r in sim.requests]
    assert keys[0] is not None
    assert keys[0].startswith("llmcache-")
    assert keys[0] == keys[1]  # same system prompt, same key


def test_a_different_prefix_gets_a_different_prompt_cache_key(
    client: Any, sim: Simulator, system: str
) -> None:
    client.chat.completions.create(**chat(system, "question", cache_prompt=True))
    other = chat(system, "question", cache_prompt=True)
    other["messages"][0]["content"] = "You answer in French."
    client.chat.completions.create(**other)

    first, second = (r.body["prompt_cache_key"] for r in sim.requests)
    assert first != second


def test_a_callers_prompt_cache_key_is_kept(client: Any, sim: Simulator, system: str) -> None:
    client.chat.completions.create(**chat(system, "q", cache_prompt=True, prompt_cache_key="mine"))

    assert sim.requests[0].body["prompt_cache_key"] == "mine"


def test_without_cache_prompt_no_prompt_cache_key_is_sent(
    client: Any, sim: Simulator, system: str
) -> None:
    client.chat.completions.create(**chat(system, "q"))

    assert "prompt_cache_key" not in sim.requests[0].body


def test_the_prompt_mark_is_not_part_of_the_response_cache_key(
    client: Any, sim: Simulator, system: str
) -> None:
    client.chat.completions.create(**chat(system, "q", cache_prompt=True))
    again = client.chat.completions.create(**chat(system, "q"))

    assert again.cache_hit is True
    assert sim.count() == 1


def test_openai_cached_prompt_tokens_are_counted_apart_from_response_cache_savings(
    client: Any, sim: Simulator, system: str
) -> None:
    first = client.chat.completions.create(**chat(system, "one", cache_prompt=True))
    second = client.chat.completions.create(**chat(system, "two", cache_prompt=True))

    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 0
    stats = client.stats()
    assert stats.provider_cached_tokens == cached
    assert stats.provider_cost_saved_usd == pytest.approx(discount(GPT, cached))
    assert (stats.hits, stats.tokens_saved, stats.cost_saved_usd) == (0, 0, 0.0)


def test_a_response_cache_hit_adds_no_provider_cached_tokens(client: Any, system: str) -> None:
    client.chat.completions.create(**chat(system, "one", cache_prompt=True))
    client.chat.completions.create(**chat(system, "two", cache_prompt=True))
    before = client.stats().provider_cached_tokens
    hit = client.chat.completions.create(**chat(system, "two", cache_prompt=True))

    assert hit.cache_hit is True
    assert client.stats().provider_cached_tokens == before
    assert client.stats().tokens_saved == hit.usage.total_tokens


def test_openai_cached_tokens_are_read_from_a_completed_stream(client: Any, system: str) -> None:
    options = {"stream_options": {"include_usage": True}, "cache_prompt": True}
    list(client.chat.completions.create(**chat(system, "one"), stream=True, **options))
    chunks = list(client.chat.completions.create(**chat(system, "two"), stream=True, **options))

    cached = chunks[-1].usage.prompt_tokens_details.cached_tokens
    assert cached > 0
    assert client.stats().provider_cached_tokens == cached


def test_responses_input_cached_tokens_are_counted(
    client: Any, sim: Simulator, system: str
) -> None:
    client.responses.create(model=GPT, instructions=system, input="one", cache_prompt=True)
    second = client.responses.create(model=GPT, instructions=system, input="two", cache_prompt=True)

    assert sim.requests[0].body["prompt_cache_key"] == sim.requests[1].body["prompt_cache_key"]
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached > 0
    assert client.stats().provider_cached_tokens == cached


def test_provider_cached_tokens_are_counted_without_cache_prompt_too(
    client: Any, sim: Simulator, system: str
) -> None:
    key = {"prompt_cache_key": f"shared-{uuid.uuid4().hex}"}
    client.chat.completions.create(**chat(system, "one", **key))
    second = client.chat.completions.create(**chat(system, "two", **key))

    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert client.stats().provider_cached_tokens == second.usage.prompt_tokens_details.cached_tokens


# -- Anthropic ----------------------------------------------------------------------------


def test_anthropic_system_string_becomes_a_block_with_a_breakpoint(
    claude: Any, sim: Simulator, system: str
) -> None:
    claude.messages.create(**ask("q", system=system, cache_prompt=True))

    assert sim.requests[0].body["system"] == [
        {"type": "text", "text": system, "cache_control": EPHEMERAL}
    ]


def test_anthropic_breakpoint_goes_on_the_last_system_block(
    claude: Any, sim: Simulator, system: str
) -> None:
    blocks = [{"type": "text", "text": "Rules."}, {"type": "text", "text": system}]
    claude.messages.create(**ask("q", system=blocks, cache_prompt=True))

    sent = sim.requests[0].body["system"]
    assert "cache_control" not in sent[0]
    assert sent[1]["cache_control"] == EPHEMERAL


def test_anthropic_breakpoint_goes_on_the_last_tool_without_a_system_prompt(
    claude: Any, sim: Simulator
) -> None:
    tools = [
        {"name": "a", "description": "A", "input_schema": {"type": "object"}},
        {"name": "b", "description": "B", "input_schema": {"type": "object"}},
    ]
    claude.messages.create(**ask("q", tools=tools, cache_prompt=True))

    sent = sim.requests[0].body["tools"]
    assert "cache_control" not in sent[0]
    assert sent[1]["cache_control"] == EPHEMERAL


def test_anthropic_request_with_four_breakpoints_gets_no_fifth(
    claude: Any, sim: Simulator, system: str
) -> None:
    marked = {"type": "text", "text": "part", "cache_control": EPHEMERAL}
    blocks = [dict(marked), dict(marked), dict(marked), dict(marked), {"type": "text", "text": "x"}]
    claude.messages.create(**ask("q", system=blocks, cache_prompt=True))

    sent = sim.requests[0].body["system"]
    assert sum("cache_control" in block for block in sent) == 4
    assert "cache_control" not in sent[-1]


def test_anthropic_without_cache_prompt_sends_no_breakpoint(
    claude: Any, sim: Simulator, system: str
) -> None:
    claude.messages.create(**ask("q", system=system))

    assert sim.requests[0].body["system"] == system


def test_anthropic_cache_reads_are_counted_and_cache_writes_are_not(
    claude: Any, sim: Simulator, system: str
) -> None:
    first = claude.messages.create(**ask("one", system=system, cache_prompt=True))
    assert first.usage.cache_creation_input_tokens > 0
    assert claude.stats().provider_cached_tokens == 0  # a cache write saves nothing

    second = claude.messages.create(**ask("two", system=system, cache_prompt=True))
    read = second.usage.cache_read_input_tokens
    assert read == first.usage.cache_creation_input_tokens
    stats = claude.stats()
    assert stats.provider_cached_tokens == read
    assert stats.provider_cost_saved_usd == pytest.approx(discount(CLAUDE, read))
    assert (stats.tokens_saved, stats.cost_saved_usd) == (0, 0.0)


def test_anthropic_cache_reads_are_counted_from_a_completed_stream(
    claude: Any, system: str
) -> None:
    list(claude.messages.create(**ask("one", system=system, cache_prompt=True), stream=True))
    events = list(
        claude.messages.create(**ask("two", system=system, cache_prompt=True), stream=True)
    )

    read = events[0].message.usage.cache_read_input_tokens
    assert read > 0
    assert claude.stats().provider_cached_tokens == read


def test_anthropic_marked_and_unmarked_requests_share_a_response_cache_entry(
    claude: Any, sim: Simulator, system: str
) -> None:
    claude.messages.create(**ask("q", system=system, cache_prompt=True))
    again = claude.messages.create(**ask("q", system=system))

    assert again.cache_hit is True
    assert sim.count() == 1
