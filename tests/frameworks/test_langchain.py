"""LangChain chat models: ``ChatOpenAI`` through its ``http_client`` / ``http_async_client``
options (invoke, stream, structured output, tools, the Responses API), and ``ChatAnthropic``
(which takes no HTTP client) through LangChain's model cache on llmcache tiers and through
``llmcache serve``. The second call makes no upstream request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from llmcache.tools.simulator import Simulator, instance_of
from tests.recipes import API_KEY, require, run_recipe
from tests.serve_fixtures import start_serve

require("langchain_openai", "langchain_anthropic")

from langchain_anthropic import ChatAnthropic  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from llmcache.integrations.langchain import LLMCache  # noqa: E402

MODEL = "gpt-4o-mini"
QUESTION = "What is the weather in Paris?"


class Weather(BaseModel):
    """Tell the weather of a city."""

    city: str
    unit: str


def chat_openai(sim: Simulator, http: Any = None, ahttp: Any = None, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        api_key=SecretStr(API_KEY),
        base_url=sim.base_url,
        max_retries=0,
        http_client=http,
        http_async_client=ahttp,
        **options,
    )


def test_invoke_twice_sends_one_request(sim: Simulator, http: Any) -> None:
    llm = chat_openai(sim, http)
    first = llm.invoke("What is a cache?")
    again = llm.invoke("What is a cache?")
    assert sim.count() == 1
    assert again.content == first.content
    assert str(first.content).startswith("[")
    stats = http.cache.stats()
    assert (stats.requests, stats.hits, stats.misses) == (2, 1, 1)


def test_a_stream_replays_its_chunks_and_shares_the_entry_with_invoke(
    sim: Simulator, http: Any
) -> None:
    llm = chat_openai(sim, http)
    first = [chunk.content for chunk in llm.stream("Tell me about caches")]
    assert len([text for text in first if text]) > 1
    again = [chunk.content for chunk in llm.stream("Tell me about caches")]
    assert again == first
    assert sim.count() == 1
    assert http.cache.stats().hits == 1


def test_structured_output_with_json_schema_is_cached(sim: Simulator, http: Any) -> None:
    structured = chat_openai(sim, http).with_structured_output(Weather, method="json_schema")
    first = structured.invoke(QUESTION)
    sent = sim.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert first == Weather.model_validate(instance_of(sent["json_schema"]["schema"]))
    assert structured.invoke(QUESTION) == first
    assert sim.count() == 1
    assert http.cache.stats().hits == 1


def test_bound_tools_come_back_as_tool_calls_and_the_loop_ends(sim: Simulator, http: Any) -> None:
    llm = chat_openai(sim, http).bind_tools([Weather])
    first = llm.invoke(QUESTION)
    assert isinstance(first, AIMessage)
    [call] = first.tool_calls
    assert (call["name"], call["args"]) == ("Weather", {"city": "city", "unit": "unit"})
    again = llm.invoke(QUESTION)
    assert again.tool_calls == first.tool_calls
    assert sim.count() == 1

    history = [HumanMessage(QUESTION), first, ToolMessage("18 degrees", tool_call_id=call["id"])]
    final = llm.invoke(history)
    assert not final.tool_calls
    assert str(final.content).startswith("[")
    assert llm.invoke(history).content == final.content
    assert sim.count() == 2
    assert http.cache.stats().hits == 2


def test_the_responses_api_is_cached_plain_and_streamed(sim: Simulator, http: Any) -> None:
    llm = chat_openai(sim, http, use_responses_api=True)
    first = llm.invoke("What is a cache?")
    assert sim.requests[-1].path == "/v1/responses"
    assert llm.invoke("What is a cache?").text == first.text
    chunks = [chunk.text for chunk in llm.stream("What is a stream?")]
    assert [chunk.text for chunk in llm.stream("What is a stream?")] == chunks
    assert "".join(chunks).startswith("[")
    tools = llm.bind_tools([Weather])
    [call] = tools.invoke(QUESTION).tool_calls
    assert tools.invoke(QUESTION).tool_calls == [call]
    assert sim.count() == 3
    assert http.cache.stats().hits == 3


async def test_async_invoke_and_stream_use_the_async_client(sim: Simulator, ahttp: Any) -> None:
    llm = chat_openai(sim, ahttp=ahttp)
    first = await llm.ainvoke("What is an async cache?")
    assert (await llm.ainvoke("What is an async cache?")).content == first.content
    chunks = [chunk.content async for chunk in llm.astream("What is an async cache?")]
    assert "".join(str(c) for c in chunks) == first.content
    assert sim.count() == 1
    assert ahttp.cache.stats().hits == 2


def test_chat_anthropic_through_langchains_model_cache(sim: Simulator) -> None:
    cache = LLMCache(tiers=["memory://"])
    llm = ChatAnthropic(  # type: ignore[call-arg]
        model="claude-sonnet-4-5",
        api_key=SecretStr(API_KEY),
        base_url=sim.anthropic_base_url,
        max_retries=0,
        cache=cache,
    )
    first = llm.invoke("What is a cache?")
    assert llm.invoke("What is a cache?").content == first.content
    assert sim.count("/v1/messages") == 1
    tools = llm.bind_tools([Weather])
    [call] = tools.invoke(QUESTION).tool_calls
    assert call["args"] == {"city": "city", "unit": "unit"}
    assert tools.invoke(QUESTION).tool_calls == [call]
    assert sim.count("/v1/messages") == 2
    assert (cache.stats().hits, cache.stats().misses) == (2, 2)
    cache.close()


def test_chat_anthropic_through_llmcache_serve_caches_invoke_and_stream(
    sim: Simulator, tmp_path: Path
) -> None:
    proxy = start_serve(sim, tmp_path, "--tier", "memory://")
    try:
        llm = ChatAnthropic(  # type: ignore[call-arg]
            model="claude-sonnet-4-5",
            api_key=SecretStr(API_KEY),
            base_url=proxy.url,
            max_retries=0,
        )
        first = llm.invoke("What is a cache?")
        assert llm.invoke("What is a cache?").content == first.content
        chunks = [chunk.content for chunk in llm.stream("What is a stream?")]
        assert [chunk.content for chunk in llm.stream("What is a stream?")] == chunks
        assert len([c for c in chunks if c]) > 1
        [call] = llm.bind_tools([Weather]).invoke(QUESTION).tool_calls
        assert llm.bind_tools([Weather]).invoke(QUESTION).tool_calls == [call]
        assert sim.count("/v1/messages") == 3  # each of the three asked once
    finally:
        proxy.stop()


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_recipe("langchain", tmp_path, sim)
    assert [line[:1] for line in out.splitlines()] == ["[", "["]
    assert (sim.count("/v1/chat/completions"), sim.count("/v1/messages")) == (1, 1)
    assert run_recipe("langchain", tmp_path, sim) == out
    assert sim.count() == 2
