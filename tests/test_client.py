"""CachedClient over the real OpenAI SDK and the local simulator: hits, types, endpoints."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from conftest import MODEL, chat
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.responses import Response

from llmcache import AsyncCachedClient, CachedClient
from llmcache.tools.simulator import Simulator


def test_repeated_chat_is_a_hit_that_never_reaches_upstream(client: Any, sim: Simulator) -> None:
    first = client.chat.completions.create(**chat())
    second = client.chat.completions.create(**chat())
    assert sim.count("/v1/chat/completions") == 1
    assert isinstance(second, ChatCompletion)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.cache_tier == "L1:memory"
    assert second.cache_tokens_saved == first.usage.total_tokens > 0
    assert second.cache_age is not None
    assert second.cache_age >= 0
    assert first.cache_age is None
    assert first.cache_tokens_saved == 0
    assert second.cache_key == first.cache_key
    assert second.cache_key.startswith("v1-")


def test_cache_attributes_stay_out_of_the_model_dump(client: Any) -> None:
    client.chat.completions.create(**chat())
    hit = client.chat.completions.create(**chat())
    assert "cache_hit" not in hit.model_dump()
    assert "cache_hit" not in hit.to_json()


def test_different_requests_are_different_entries(client: Any, sim: Simulator) -> None:
    a = client.chat.completions.create(**chat("one"))
    b = client.chat.completions.create(**chat("two"))
    assert not a.cache_hit
    assert not b.cache_hit
    assert a.choices[0].message.content != b.choices[0].message.content
    assert sim.count() == 2


def test_wrapping_async_client_gives_awaitable_client(async_client: Any) -> None:
    assert isinstance(async_client, AsyncCachedClient)
    assert isinstance(async_client, CachedClient)


async def test_async_repeated_chat_is_a_hit(async_client: Any, sim: Simulator) -> None:
    first = await async_client.chat.completions.create(**chat())
    second = await async_client.chat.completions.create(**chat())
    assert isinstance(second, ChatCompletion)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert sim.count() == 1


def test_legacy_completions_are_cached(client: Any, sim: Simulator) -> None:
    args = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
    client.completions.create(**args)
    hit = client.completions.create(**args)
    assert isinstance(hit, Completion)
    assert hit.cache_hit
    assert sim.count("/v1/completions") == 1


def test_responses_are_cached(client: Any, sim: Simulator) -> None:
    args = {"model": MODEL, "input": "What is a cache?", "instructions": "Be brief."}
    first = client.responses.create(**args)
    hit = client.responses.create(**args)
    assert isinstance(hit, Response)
    assert hit.cache_hit
    assert hit.output_text == first.output_text
    assert sim.count("/v1/responses") == 1


async def test_async_responses_are_cached(async_client: Any, sim: Simulator) -> None:
    await async_client.responses.create(model=MODEL, input="hello")
    hit = await async_client.responses.create(model=MODEL, input="hello")
    assert hit.cache_hit
    assert sim.count() == 1


def test_other_attributes_pass_through_to_the_wrapped_client(
    client: Any, openai_client: Any
) -> None:
    assert client.api_key == openai_client.api_key
    assert client.base_url == openai_client.base_url
    assert client.chat.completions.with_raw_response is not None
    assert client.wrapped is openai_client
    assert client.models is openai_client.models


def test_pydantic_messages_share_the_key_of_equal_dicts(client: Any, sim: Simulator) -> None:
    message = ChatCompletionMessage(role="assistant", content="Hello")
    as_dict = [{"role": "user", "content": "hi"}, {"content": "Hello", "role": "assistant"}]
    as_model = [{"role": "user", "content": "hi"}, message]
    client.chat.completions.create(model=MODEL, messages=as_dict)
    hit = client.chat.completions.create(model=MODEL, messages=as_model)
    assert hit.cache_hit
    assert sim.count() == 1


def test_dict_key_order_does_not_matter_but_message_order_does(client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a"}])
    reordered = client.chat.completions.create(
        messages=[{"content": "a", "role": "user"}], model=MODEL
    )
    assert reordered.cache_hit
    two = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    client.chat.completions.create(model=MODEL, messages=two)
    swapped = client.chat.completions.create(model=MODEL, messages=two[::-1])
    assert not swapped.cache_hit


def test_denied_arguments_do_not_change_the_key(client: Any, sim: Simulator) -> None:
    client.chat.completions.create(**chat(), user="alice", metadata={"run": "1"}, timeout=30)
    hit = client.chat.completions.create(**chat(), user="bob", extra_headers={"X-Trace": "2"})
    assert hit.cache_hit
    assert sim.count() == 1


def test_any_other_argument_changes_the_key(client: Any) -> None:
    client.chat.completions.create(**chat())
    assert not client.chat.completions.create(**chat(), temperature=0.2).cache_hit
    assert not client.chat.completions.create(**chat(), extra_body={"new_param": 1}).cache_hit


def test_two_base_urls_never_share_entries(make_client: Any, sim: Simulator) -> None:
    from openai import OpenAI

    shared_tier = "memory://"
    one = make_client(tiers=[shared_tier])
    other_client = OpenAI(base_url=sim.base_url.replace("127.0.0.1", "localhost"), api_key="x")
    other = make_client(wrapped=other_client)
    a = one.chat.completions.create(**chat())
    b = other.chat.completions.create(**chat())
    assert a.cache_key != b.cache_key


def test_upstream_errors_are_not_cached(client: Any, sim: Simulator) -> None:
    import openai

    sim.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**chat())
    answer = client.chat.completions.create(**chat())
    assert not answer.cache_hit
    assert client.stats().errors == 0


def test_embeddings_list_sends_only_missing_inputs_upstream(client: Any, sim: Simulator) -> None:
    first = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    sim.reset()
    mixed = client.embeddings.create(
        model="text-embedding-3-small", input=["beta", "gamma", "alpha"]
    )
    assert isinstance(mixed, CreateEmbeddingResponse)
    assert sim.count("/v1/embeddings") == 1
    assert sim.requests[0].body["input"] == ["gamma"]
    assert [d.index for d in mixed.data] == [0, 1, 2]
    assert mixed.data[0].embedding == first.data[1].embedding
    assert mixed.data[2].embedding == first.data[0].embedding
    assert not mixed.cache_hit
    assert mixed.cache_tokens_saved > 0
    whole = client.embeddings.create(model="text-embedding-3-small", input=["gamma", "alpha"])
    assert whole.cache_hit
    assert sim.count() == 1


def test_single_embedding_shares_entries_with_list_items(client: Any, sim: Simulator) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    single = client.embeddings.create(model="text-embedding-3-small", input="beta")
    assert single.cache_hit
    assert len(single.data) == 1
    assert sim.count() == 1


async def test_async_embeddings_per_input(async_client: Any, sim: Simulator) -> None:
    await async_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    again = await async_client.embeddings.create(model="text-embedding-3-small", input=["b", "a"])
    assert again.cache_hit
    assert sim.count() == 1


def test_stats_add_up(client: Any) -> None:
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat())
    client.chat.completions.create(**chat(), cache_control="no-store")
    stats = client.stats()
    assert (stats.requests, stats.hits, stats.misses, stats.bypasses) == (3, 1, 1, 1)
    assert stats.hits + stats.misses + stats.bypasses == stats.requests
    assert stats.hit_rate == pytest.approx(1 / 3)
    assert stats.tier_hits == {"L1:memory": 1}
    assert stats.tokens_saved > 0
    assert stats.cost_saved_usd > 0
    assert stats.as_dict()["hit_rate"] == stats.hit_rate


def test_uncanonicalisable_argument_bypasses_with_one_warning(client: Any, sim: Simulator) -> None:
    with pytest.warns(UserWarning, match="logit_bias"):
        first = client.chat.completions.create(**chat(), logit_bias={50256: -100})
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        second = client.chat.completions.create(**chat(), logit_bias={50256: -100})
    assert [w for w in later if "logit_bias" in str(w.message)] == []
    assert not first.cache_hit
    assert not second.cache_hit
    assert sim.count() == 2
    assert client.stats().bypasses == 2
