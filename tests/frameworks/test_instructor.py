"""instructor over ``OpenAI(http_client=llmcache.http_client(...))``: a repeated extraction is
served from the cache, sync, async and streamed, and still yields the response model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llmcache.tools.simulator import Simulator, instance_of
from tests.recipes import API_KEY, require, run_recipe

require("instructor")

import instructor  # noqa: E402
from instructor.core.exceptions import InstructorRetryException  # noqa: E402
from openai import AsyncOpenAI, OpenAI  # noqa: E402

MODEL = "gpt-4o-mini"
MESSAGES: Any = [{"role": "user", "content": "Ada Lovelace was born in 1815."}]


class Person(BaseModel):
    """A person named in the text."""

    name: str
    born: int = Field(ge=1000)
    tags: list[str]


def expected(sim: Simulator) -> dict[str, Any]:
    """The person the simulator answers: the smallest instance of the tool schema sent."""
    [tool] = sim.requests[-1].body["tools"]
    return Person.model_validate(instance_of(tool["function"]["parameters"])).model_dump()


def test_a_repeated_extraction_is_a_hit_with_no_upstream_request(sim: Simulator, http: Any) -> None:
    client = instructor.from_openai(
        OpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=http)
    )
    first = client.chat.completions.create(model=MODEL, response_model=Person, messages=MESSAGES)
    assert sim.count() == 1
    assert sim.requests[-1].body["tool_choice"]["function"]["name"] == "Person"
    assert first.model_dump() == expected(sim)

    again = client.chat.completions.create(model=MODEL, response_model=Person, messages=MESSAGES)
    assert sim.count() == 1
    assert again.model_dump() == first.model_dump()
    stats = http.cache.stats()
    assert (stats.requests, stats.hits, stats.misses) == (2, 1, 1)


def test_json_schema_mode_uses_response_format_and_is_cached(sim: Simulator, http: Any) -> None:
    openai_client = OpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=http)
    client = instructor.from_openai(openai_client, mode=instructor.Mode.JSON_SCHEMA)
    first, completion = client.chat.completions.create_with_completion(
        model=MODEL, response_model=Person, messages=MESSAGES
    )
    sent = sim.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert first.model_dump() == instance_of(sent["json_schema"]["schema"])
    again, cached = client.chat.completions.create_with_completion(
        model=MODEL, response_model=Person, messages=MESSAGES
    )
    assert again.model_dump() == first.model_dump()
    assert cached.id == completion.id  # the stored answer, replayed
    assert sim.count() == 1
    assert http.cache.stats().hits == 1


def test_a_streamed_partial_extraction_replays_from_the_cache(sim: Simulator, http: Any) -> None:
    client = instructor.from_openai(
        OpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=http)
    )

    def partials() -> list[Any]:
        return list(
            client.chat.completions.create_partial(
                model=MODEL, response_model=Person, messages=MESSAGES
            )
        )

    first = partials()
    assert sim.requests[-1].body["stream"] is True
    assert len(first) > 1  # the tool arguments arrived in pieces
    again = partials()
    assert sim.count() == 1
    assert again[-1].model_dump() == first[-1].model_dump() == expected(sim)
    assert http.cache.stats().hits == 1


async def test_async_from_openai_is_cached(sim: Simulator, ahttp: Any) -> None:
    openai_client = AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=ahttp)
    client = instructor.from_openai(openai_client)
    first = await client.chat.completions.create(
        model=MODEL, response_model=Person, messages=MESSAGES
    )
    again = await client.chat.completions.create(
        model=MODEL, response_model=Person, messages=MESSAGES
    )
    assert sim.count() == 1
    assert again.model_dump() == first.model_dump() == expected(sim)
    assert (ahttp.cache.stats().hits, ahttp.cache.stats().misses) == (1, 1)


def test_a_validation_retry_is_a_new_request_and_is_cached_too(sim: Simulator, http: Any) -> None:
    class Strict(BaseModel):
        name: str = Field(pattern="^[A-Z]")  # the simulator's "name" fails it: instructor retries

    client = instructor.from_openai(
        OpenAI(api_key=API_KEY, base_url=sim.base_url, http_client=http)
    )
    ask: Any = {"model": MODEL, "response_model": Strict, "messages": MESSAGES, "max_retries": 2}
    with pytest.raises(InstructorRetryException):
        client.chat.completions.create(**ask)
    sent = sim.count()
    assert sent == 3  # the first try and two retries, each carrying the validation error
    with pytest.raises(InstructorRetryException):
        client.chat.completions.create(**ask)
    assert sim.count() == sent  # every try of the second run was a hit
    assert http.cache.stats().hits == 3


def test_the_readme_recipe_runs_as_written(tmp_path: Path, sim: Simulator) -> None:
    out = run_recipe("instructor", tmp_path, sim)
    assert sim.count() == 1
    assert "name='name'" in out
    assert out.strip().endswith("hits: 0")
    again = run_recipe("instructor", tmp_path, sim)  # a new process, the same SQLite file
    assert sim.count() == 1
    assert again.strip().endswith("hits: 1")
