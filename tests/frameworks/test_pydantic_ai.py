"""pydantic-ai over ``AsyncOpenAI(http_client=llmcache.async_http_client(...))``: a repeated
agent run (a tool, structured output, retries set, streaming) makes no upstream request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmcache.tools.simulator import Simulator
from tests.recipes import API_KEY, require, run_recipe

require("pydantic_ai")

from openai import AsyncOpenAI  # noqa: E402
from pydantic_ai import Agent, NativeOutput  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402

MODEL = "gpt-4o-mini"
SETTINGS: Any = {"max_retries": 2}  # pydantic-ai rebuilds the client with with_options()


class City(BaseModel):
    name: str
    country: str


def model_over(sim: Simulator, ahttp: Any) -> OpenAIChatModel:
    client = AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=ahttp)
    return OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))


def tool_agent(model: OpenAIChatModel, calls: list[str]) -> Agent[None, City]:
    """An agent that looks a landmark up with a tool, then answers with a City."""
    agent = Agent(model, output_type=City, model_settings=SETTINGS)

    @agent.tool_plain
    def landmark(name: str) -> str:
        """Say where a landmark stands."""
        calls.append(name)
        return f"{name} stands in Paris, France."

    return agent


async def test_a_repeated_run_with_a_tool_and_structured_output_is_all_hits(
    sim: Simulator, ahttp: Any
) -> None:
    calls: list[str] = []
    agent = tool_agent(model_over(sim, ahttp), calls)
    first = await agent.run("Which city hosts the Louvre?")
    assert calls == ["name"]  # the model called the tool with the schema's arguments
    names = [r.body["tool_choice"] for r in sim.requests]
    assert names == ["required", "required"]  # the tool, then pydantic-ai's output tool
    assert first.output == City(name="name", country="country")
    sent = sim.count()

    again = await agent.run("Which city hosts the Louvre?")
    assert sim.count() == sent  # no upstream request: every model call was a hit
    assert calls == ["name", "name"]  # the tool itself still runs: its result is not an LLM call
    assert again.output == first.output
    stats = ahttp.cache.stats()
    assert (stats.hits, stats.misses) == (sent, sent)


async def test_native_structured_output_uses_response_format_and_is_cached(
    sim: Simulator, ahttp: Any
) -> None:
    agent = Agent(model_over(sim, ahttp), output_type=NativeOutput(City), model_settings=SETTINGS)
    first = await agent.run("Which city hosts the Louvre?")
    assert sim.requests[-1].body["response_format"]["type"] == "json_schema"
    again = await agent.run("Which city hosts the Louvre?")
    assert sim.count() == 1
    assert again.output == first.output == City(name="name", country="country")
    assert ahttp.cache.stats().hits == 1


async def test_a_streamed_text_run_replays_from_the_cache(sim: Simulator, ahttp: Any) -> None:
    agent = Agent(model_over(sim, ahttp), model_settings=SETTINGS)

    async def streamed() -> list[str]:
        async with agent.run_stream("What is a cache?") as result:
            return [text async for text in result.stream_text(delta=True, debounce_by=None)]

    first = await streamed()
    assert sim.requests[-1].body["stream"] is True
    assert len(first) > 1
    again = await streamed()
    assert sim.count() == 1
    assert "".join(again) == "".join(first)
    assert "".join(first).startswith("[")
    assert ahttp.cache.stats().hits == 1


def test_retries_go_through_the_cache_too(sim: Simulator, ahttp: Any) -> None:
    agent = Agent(model_over(sim, ahttp), model_settings=SETTINGS)
    sim.fail_next(1, status=500)  # the SDK's retry, on the client pydantic-ai rebuilt
    first = agent.run_sync("What is a cache?")
    assert sim.count() == 2
    assert ahttp.cache.stats().misses == 1  # an error is not an answer: only the retry stored
    again = agent.run_sync("What is a cache?")
    assert sim.count() == 2
    assert again.output == first.output
    assert ahttp.cache.stats().hits == 1


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_recipe("pydantic-ai", tmp_path, sim)
    assert out.strip() == "name='name' country='country' hits: 0"
    assert sim.count() == 1
    again = run_recipe("pydantic-ai", tmp_path, sim)
    assert again.strip() == "name='name' country='country' hits: 1"
    assert sim.count() == 1
