"""openai-agents over ``AsyncOpenAI(http_client=llmcache.async_http_client(...))``: repeated
runs, streamed runs and runs with retry settings make no upstream request the second time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llmcache.tools.simulator import Simulator
from tests.recipes import API_KEY, require, run_recipe

require("agents")

from agents import (  # noqa: E402
    Agent,
    ModelRetryBackoffSettings,
    ModelRetrySettings,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    retry_policies,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI  # noqa: E402

MODEL = "gpt-4o-mini"
QUESTION = "What is the weather in Paris?"
# Runner-managed retries: the SDK's own are switched off through with_options(max_retries=0).
RETRY = ModelSettings(
    retry=ModelRetrySettings(
        max_retries=2,
        backoff=ModelRetryBackoffSettings(initial_delay=0.01, max_delay=0.01, jitter=False),
        policy=retry_policies.http_status([500]),
    )
)


class Forecast(BaseModel):
    city: str
    degrees: int


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    """Traces would be sent to OpenAI's tracing API: keep the tests on loopback."""
    set_tracing_disabled(True)


def weather_agent(model: Any, calls: list[str], **options: Any) -> Agent[Any]:
    @function_tool
    def weather(city: str) -> str:
        """Tell the weather of a city."""
        calls.append(city)
        return f"18 degrees in {city}"

    return Agent(name="Forecaster", model=model, tools=[weather], **options)


def client_over(sim: Simulator, ahttp: Any) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=ahttp)


async def test_a_repeated_run_with_a_tool_and_an_output_type_is_all_hits(
    sim: Simulator, ahttp: Any
) -> None:
    calls: list[str] = []
    model = OpenAIResponsesModel(MODEL, openai_client=client_over(sim, ahttp))
    agent = weather_agent(model, calls, output_type=Forecast, model_settings=RETRY)
    first = await Runner.run(agent, QUESTION)
    assert calls == ["city"]
    assert [r.path for r in sim.requests] == ["/v1/responses", "/v1/responses"]
    assert sim.requests[-1].body["text"]["format"]["type"] == "json_schema"
    assert first.final_output == Forecast(city="city", degrees=1)

    again = await Runner.run(agent, QUESTION)
    assert sim.count() == 2  # both model calls were hits
    assert again.final_output == first.final_output
    assert calls == ["city", "city"]
    assert (ahttp.cache.stats().hits, ahttp.cache.stats().misses) == (2, 2)


async def test_a_streamed_run_replays_its_events_from_the_cache(sim: Simulator, ahttp: Any) -> None:
    calls: list[str] = []
    model = OpenAIResponsesModel(MODEL, openai_client=client_over(sim, ahttp))
    agent = weather_agent(model, calls, model_settings=RETRY)

    async def run() -> tuple[str, list[str]]:
        result = Runner.run_streamed(agent, QUESTION)
        kinds = [event.type async for event in result.stream_events()]
        return str(result.final_output), kinds

    text, kinds = await run()
    assert all(r.body.get("stream") for r in sim.requests)
    assert "raw_response_event" in kinds
    assert text.startswith("[")
    again, replayed = await run()
    assert sim.count() == 2
    assert (again, replayed) == (text, kinds)
    assert ahttp.cache.stats().hits == 2


async def test_runner_retries_of_a_failed_call_are_cached_once_answered(
    sim: Simulator, ahttp: Any
) -> None:
    model = OpenAIResponsesModel(MODEL, openai_client=client_over(sim, ahttp))
    agent = Agent(name="Plain", model=model, model_settings=RETRY)
    sim.fail_next(1, status=500)
    first = await Runner.run(agent, "What is a cache?")
    assert sim.count() == 2  # the failure, then the runner's retry
    again = await Runner.run(agent, "What is a cache?")
    assert sim.count() == 2
    assert again.final_output == first.final_output
    assert ahttp.cache.stats().hits == 1


async def test_the_default_client_and_chat_completions_model_are_cached(
    sim: Simulator, ahttp: Any
) -> None:
    set_default_openai_client(client_over(sim, ahttp), use_for_tracing=False)
    calls: list[str] = []
    agent = weather_agent(MODEL, calls)  # a model name: the default client serves it
    first = await Runner.run(agent, QUESTION)
    again = await Runner.run(agent, QUESTION)
    assert sim.count() == 2
    assert again.final_output == first.final_output

    chat = OpenAIChatCompletionsModel(MODEL, openai_client=client_over(sim, ahttp))
    streamed = Runner.run_streamed(weather_agent(chat, calls, model_settings=RETRY), QUESTION)
    [event async for event in streamed.stream_events()]
    assert {r.path for r in sim.requests[2:]} == {"/v1/chat/completions"}
    count = sim.count()
    replay = Runner.run_streamed(weather_agent(chat, calls, model_settings=RETRY), QUESTION)
    [event async for event in replay.stream_events()]
    assert sim.count() == count
    assert replay.final_output == streamed.final_output


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_recipe("openai-agents", tmp_path, sim)
    assert sim.count() == 1
    assert out.strip().endswith("hits: 0")
    again = run_recipe("openai-agents", tmp_path, sim)
    assert sim.count() == 1
    assert again.strip() == out.strip().replace("hits: 0", "hits: 1")
