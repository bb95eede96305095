"""llama-index's OpenAI LLM over ``llmcache.http_client()``: complete, chat, their streams,
structured prediction and tool calls are served from the cache the second time. The
package pins openai 2.x, which runs on ``httpx``: the cached client follows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from llmcache.tools.simulator import Simulator
from tests.recipes import API_KEY, require, run_recipe

require("llama_index.llms.openai")

from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.prompts import PromptTemplate  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402
from llama_index.llms.openai import OpenAI  # noqa: E402

MODEL = "gpt-4o-mini"


class Song(BaseModel):
    title: str
    year: int


def llm_over(sim: Simulator, http: Any = None, ahttp: Any = None) -> OpenAI:
    return OpenAI(
        model=MODEL,
        api_key=API_KEY,
        api_base=sim.base_url,
        max_retries=0,
        http_client=http,
        async_http_client=ahttp,
    )


def test_the_cached_client_is_the_http_library_of_the_installed_sdk(http: Any) -> None:
    assert isinstance(http, httpx.Client)  # openai 2.x: httpx, chosen without being asked


def test_complete_and_chat_are_hits_the_second_time(sim: Simulator, http: Any) -> None:
    llm = llm_over(sim, http)
    first = llm.complete("What is a cache?")
    assert first.text.startswith("[")
    assert llm.complete("What is a cache?").text == first.text
    messages = [ChatMessage(role="user", content="What is a cache?")]
    chat = llm.chat(messages)
    assert llm.chat(messages).message.content == chat.message.content
    assert sim.count() == 1  # complete() is a chat call: the same request as chat()
    stats = http.cache.stats()
    assert (stats.requests, stats.hits, stats.misses) == (4, 3, 1)


def test_streams_replay_from_the_cache(sim: Simulator, http: Any) -> None:
    llm = llm_over(sim, http)
    first = [r.delta for r in llm.stream_complete("Tell me about caches")]
    assert len(first) > 1
    again = [r.delta for r in llm.stream_complete("Tell me about caches")]
    assert again == first
    messages = [ChatMessage(role="user", content="Tell me about caches")]
    chat = [r.delta for r in llm.stream_chat(messages)]
    assert "".join(d or "" for d in chat) == "".join(d or "" for d in first)
    assert sim.count() == 1
    assert http.cache.stats().hits == 2


def test_structured_prediction_and_tool_calls_are_cached(sim: Simulator, http: Any) -> None:
    llm = llm_over(sim, http)
    prompt = PromptTemplate("Name a song about {topic}.")
    song = llm.structured_predict(Song, prompt, topic="caches")
    assert song == Song(title="title", year=1)
    assert sim.requests[-1].body["response_format"]["json_schema"]["name"] == "Song"
    assert llm.structured_predict(Song, prompt, topic="caches") == song

    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    tool = FunctionTool.from_defaults(fn=multiply)
    response = llm.chat_with_tools([tool], user_msg="What is 6 times 7?")
    [call] = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs) == ("multiply", {"a": 1, "b": 1})
    again = llm.chat_with_tools([tool], user_msg="What is 6 times 7?")
    assert llm.get_tool_calls_from_response(again)[0].tool_kwargs == call.tool_kwargs
    assert sim.count() == 2
    assert http.cache.stats().hits == 2


async def test_async_complete_and_stream_are_cached(sim: Simulator, ahttp: Any) -> None:
    llm = llm_over(sim, ahttp=ahttp)
    first = await llm.acomplete("What is an async cache?")
    again = await llm.acomplete("What is an async cache?")
    assert again.text == first.text
    stream = await llm.astream_complete("What is an async cache?")
    assert "".join([r.delta async for r in stream if r.delta]) == first.text
    assert sim.count() == 1
    assert ahttp.cache.stats().hits == 2


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_recipe("llama-index", tmp_path, sim)
    assert out.startswith("[")
    assert sim.count() == 1
    assert run_recipe("llama-index", tmp_path, sim) == out
    assert sim.count() == 1
