"""Answers off the SDK's schema: stored, and served back exactly as the SDK built them.

OpenAI-compatible servers (vLLM, Ollama, gateways) leave out fields the SDK's types require or
add fields of their own; an SDK upgrade can require a field older entries lack. The SDK builds
such answers without validation; so does the cache, on every tier, sync and async, streamed
and not. Only what is not shaped as an answer of the endpoint is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import MODEL, chat
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from llmcache import CachedClient
from llmcache._rules.keys import physical_key
from llmcache.tools.simulator import Simulator


def _vllm(payload: dict[str, Any]) -> dict[str, Any]:
    """A vLLM-style chat answer: no ``created``, a vendor field, an unknown finish reason."""
    payload.pop("created", None)
    payload["kv_transfer_params"] = {"node": 3}
    for choice in payload.get("choices") or ():
        if choice.get("finish_reason"):
            choice["finish_reason"] = "eos"
    return payload


def _no_cache_write_tokens(payload: dict[str, Any]) -> dict[str, Any]:
    """A Responses answer whose usage lacks a field newer SDKs require."""
    response = payload.get("response", payload)  # a stream event carries it inside
    details = (response.get("usage") or {}).get("input_tokens_details")
    if isinstance(details, dict):
        details.pop("cache_write_tokens", None)
    return payload


@pytest.fixture(params=["memory", "sqlite"])
def tiers(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    if request.param == "memory":
        return ["memory://"]
    return [f"sqlite:///{tmp_path / 'cache.db'}"]


def test_a_chat_answer_without_created_is_stored_and_served_as_the_sdk_built_it(
    openai_client: OpenAI, sim: Simulator, tiers: list[str]
) -> None:
    plain = openai_client  # the SDK alone, for what it builds of the same answer
    sim.edit_next(_vllm, n=2)
    expected = plain.chat.completions.create(**chat())
    with CachedClient(openai_client, tiers=tiers) as client:
        live = client.chat.completions.create(**chat())
        hit = client.chat.completions.create(**chat())
    assert (live.cache_hit, hit.cache_hit) == (False, True)
    assert sim.count() == 2
    assert type(hit) is ChatCompletion
    assert hit.model_dump() == live.model_dump()
    assert hit.choices[0].finish_reason == "eos"
    assert hit.kv_transfer_params == {"node": 3}  # type: ignore[attr-defined]
    ours, theirs = hit.model_dump(), expected.model_dump()
    del ours["id"], theirs["id"]
    assert ours == theirs


async def test_async_off_schema_answers_are_stored(
    async_openai_client: AsyncOpenAI, sim: Simulator, tiers: list[str]
) -> None:
    sim.edit_next(_vllm)
    async with CachedClient(async_openai_client, tiers=tiers) as client:
        live = await client.chat.completions.create(**chat())
        hit = await client.chat.completions.create(**chat())
    assert (live.cache_hit, hit.cache_hit) == (False, True)
    assert hit.model_dump() == live.model_dump()
    assert "created" not in hit.model_fields_set
    assert sim.count() == 1


def test_a_streamed_off_schema_answer_is_stored_and_replayed(
    openai_client: OpenAI, sim: Simulator, tiers: list[str]
) -> None:
    sim.edit_next_stream(_vllm)
    with CachedClient(openai_client, tiers=tiers) as client:
        live = list(client.chat.completions.create(**chat(), stream=True))
        replayed = list(client.chat.completions.create(**chat(), stream=True))
        whole = client.chat.completions.create(**chat())
    assert sim.count() == 1
    assert whole.cache_hit
    text = "".join(c.choices[0].delta.content or "" for c in live if c.choices)
    assert "".join(c.choices[0].delta.content or "" for c in replayed if c.choices) == text
    assert whole.choices[0].message.content == text
    assert whole.choices[0].finish_reason == "eos"


async def test_an_async_streamed_off_schema_answer_is_stored(
    async_openai_client: AsyncOpenAI, sim: Simulator
) -> None:
    sim.edit_next_stream(_vllm)
    async with CachedClient(async_openai_client) as client:
        live = [c async for c in await client.chat.completions.create(**chat(), stream=True)]
        hit = await client.chat.completions.create(**chat())
    assert hit.cache_hit
    assert sim.count() == 1
    text = "".join(c.choices[0].delta.content or "" for c in live if c.choices)
    assert hit.choices[0].message.content == text


def test_a_responses_answer_missing_a_required_usage_field_is_cached(
    openai_client: OpenAI, sim: Simulator, tiers: list[str]
) -> None:
    sim.edit_next(_no_cache_write_tokens)
    with CachedClient(openai_client, tiers=tiers) as client:
        live = client.responses.create(model=MODEL, input="What is a cache?")
        hit = client.responses.create(model=MODEL, input="What is a cache?")
    assert (live.cache_hit, hit.cache_hit) == (False, True)
    assert type(hit) is Response
    assert hit.model_dump() == live.model_dump()
    assert hit.output_text == live.output_text
    assert hit.cache_tokens_saved == live.usage.input_tokens + live.usage.output_tokens  # type: ignore[union-attr]
    assert sim.count() == 1


def _rewrite(client: Any, key: str, change: Any) -> None:
    """Rewrite the stored answer under ``key`` in the client's first (memory) tier."""
    pkey = physical_key("default", key)
    backend = client._tiers.tiers[0].backend  # white-box: an entry written by another version
    magic, version, header, body, signature = msgpack.unpackb(backend.get(pkey))
    assert header[3] == "json"
    body = json.dumps(change(json.loads(body))).encode()
    backend.set(pkey, msgpack.packb([magic, version, header, body, signature]), None)


def test_an_entry_older_sdk_types_accepted_is_served_after_an_upgrade(
    client: Any, sim: Simulator
) -> None:
    live = client.chat.completions.create(**chat())

    def older(payload: dict[str, Any]) -> dict[str, Any]:
        del payload["created"]  # as if the SDK that stored it had not required it
        return payload

    _rewrite(client, live.cache_key, older)
    hit = client.chat.completions.create(**chat())
    assert hit.cache_hit
    assert hit.choices[0].message.content == live.choices[0].message.content
    assert sim.count() == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: {"object": "list", "data": []}, id="an-embeddings-answer"),
        pytest.param(lambda p: {"error": {"message": "boom"}}, id="an-error-body"),
        pytest.param(lambda p: {**p, "object": "text_completion"}, id="another-object"),
        pytest.param(lambda p: {**p, "choices": "none"}, id="choices-not-a-list"),
    ],
)
def test_an_entry_not_shaped_as_an_answer_of_the_endpoint_is_a_miss(
    client: Any, sim: Simulator, damage: Any
) -> None:
    live = client.chat.completions.create(**chat())
    _rewrite(client, live.cache_key, damage)
    again = client.chat.completions.create(**chat())
    assert not again.cache_hit
    assert sim.count() == 2
    assert client.stats().errors == 1


def test_an_error_shaped_answer_is_not_stored(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.edit_next(lambda payload: {"object": "chat.completion", "detail": "nothing"}, n=1)
    first = client.chat.completions.create(**chat())
    second = client.chat.completions.create(**chat())
    assert isinstance(first, ChatCompletion)
    assert (first.cache_hit, second.cache_hit) == (False, False)
    assert sim.count() == 2
    assert client.chat.completions.create(**chat()).cache_hit  # the valid answer was stored


def test_a_rejected_entry_is_logged_without_its_content(
    client: Any, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    live = client.chat.completions.create(**chat())
    pkey = physical_key("default", live.cache_key)
    backend = client._tiers.tiers[0].backend
    magic, version, header, _, signature = msgpack.unpackb(backend.get(pkey))
    header[3] = "chunks"  # chunks that no stream of this endpoint could have sent
    chunks = [{"choices": [{"index": "SECRET-PROMPT-TEXT", "delta": {"content": 7}}]}]
    backend.set(pkey, msgpack.packb([magic, version, header, chunks, signature]), None)
    with caplog.at_level("DEBUG"):
        again = client.chat.completions.create(**chat())
    assert not again.cache_hit
    assert client.stats().errors == 1
    assert "SECRET-PROMPT-TEXT" not in caplog.text


def test_a_validation_failure_is_described_without_the_values_it_rejected() -> None:
    from pydantic import ValidationError

    from llmcache._tiers.codec import describe_failure

    with pytest.raises(ValidationError) as caught:
        ChatCompletion.model_validate({"id": "SECRET-PROMPT-TEXT", "choices": "SECRET-ANSWER"})
    assert "SECRET" in str(caught.value)  # what pydantic says, and logs must not
    described = describe_failure(caught.value)
    assert "SECRET" not in described
    assert described.startswith("ValidationError (")
