"""Streaming: live on a miss, stored on completion only, replayed as SDK chunks on a hit."""

from __future__ import annotations

from typing import Any

from conftest import MODEL, chat
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llmcache.tools.simulator import Simulator


def _text(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_stream_miss_is_live_and_stored_on_completion(client: Any, sim: Simulator) -> None:
    stream = client.chat.completions.create(**chat(), stream=True)
    assert stream.cache_hit is False
    live = _text(stream)
    replay = client.chat.completions.create(**chat(), stream=True)
    assert replay.cache_hit
    chunks = list(replay)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == live
    assert sim.count() == 1


def test_streamed_and_plain_calls_share_an_entry(client: Any, sim: Simulator) -> None:
    live = _text(client.chat.completions.create(**chat("stream first"), stream=True))
    plain = client.chat.completions.create(**chat("stream first"))
    assert isinstance(plain, ChatCompletion)
    assert plain.cache_hit
    assert plain.choices[0].message.content == live
    answer = client.chat.completions.create(**chat("plain first"))
    replay = client.chat.completions.create(**chat("plain first"), stream=True)
    assert replay.cache_hit
    assert _text(replay) == answer.choices[0].message.content
    assert sim.count() == 2


def test_abandoned_stream_is_never_stored(client: Any, sim: Simulator) -> None:
    stream = client.chat.completions.create(**chat("a long answer please"), stream=True)
    next(iter(stream))
    stream.close()
    assert not client.chat.completions.create(**chat("a long answer please")).cache_hit


def test_stream_as_context_manager(client: Any) -> None:
    with client.chat.completions.create(**chat(), stream=True) as stream:
        live = _text(stream)
    with client.chat.completions.create(**chat(), stream=True) as replay:
        assert replay.cache_hit
        assert _text(replay) == live


def test_usage_chunk_follows_this_requests_stream_options(client: Any) -> None:
    client.chat.completions.create(**chat())
    without = list(client.chat.completions.create(**chat(), stream=True))
    with_usage = list(
        client.chat.completions.create(
            **chat(), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.usage is None for c in without)
    assert with_usage[-1].usage is not None
    assert with_usage[-1].choices == []


def test_broken_stream_is_never_stored(client: Any, sim: Simulator) -> None:
    stream = client.chat.completions.create(**chat("break me"), stream=True)
    iterator = iter(stream)
    next(iterator)
    del iterator, stream  # dropped half-read
    assert not client.chat.completions.create(**chat("break me")).cache_hit


def test_streamed_completions_and_responses_are_cached(client: Any, sim: Simulator) -> None:
    text = "".join(
        c.choices[0].text for c in client.completions.create(model="m", prompt="hi", stream=True)
    )
    replay = client.completions.create(model="m", prompt="hi", stream=True)
    assert replay.cache_hit
    assert "".join(c.choices[0].text for c in replay) == text
    events = list(client.responses.create(model=MODEL, input="hi", stream=True))
    plain = client.responses.create(model=MODEL, input="hi")
    assert plain.cache_hit
    assert plain.output_text == events[-1].response.output_text
    replayed = list(client.responses.create(model=MODEL, input="hi", stream=True))
    assert replayed[-1].type == "response.completed"
    assert sim.count() == 2


async def test_async_stream_miss_then_replay(async_client: Any, sim: Simulator) -> None:
    stream = await async_client.chat.completions.create(**chat(), stream=True)
    live = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    replay = await async_client.chat.completions.create(**chat(), stream=True)
    assert replay.cache_hit
    async with replay:
        text = "".join([c.choices[0].delta.content or "" async for c in replay if c.choices])
    assert text == live
    plain = await async_client.chat.completions.create(**chat())
    assert plain.cache_hit
    assert sim.count() == 1
