"""Fixtures shared by the whole suite: the local LLM simulator and cached clients over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from llmcache import CachedClient
from llmcache.tools.simulator import Simulator

MODEL = "gpt-4o-mini"


@pytest.fixture(scope="session")
def sim_server() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def sim(sim_server: Simulator) -> Iterator[Simulator]:
    """The simulator, with no recorded requests and no delay."""
    sim_server.reset()
    sim_server.delay = 0.0
    yield sim_server
    sim_server.delay = 0.0


@pytest.fixture
def openai_client(sim: Simulator) -> OpenAI:
    return OpenAI(base_url=sim.base_url, api_key="sk-test-secret-key", max_retries=0)


@pytest.fixture
def async_openai_client(sim: Simulator) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=sim.base_url, api_key="sk-test-secret-key", max_retries=0)


@pytest.fixture
def make_client(openai_client: OpenAI) -> Iterator[Callable[..., Any]]:
    """Build CachedClients over the sync OpenAI client; closed after the test."""
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        client = CachedClient(kwargs.pop("wrapped", openai_client), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


@pytest.fixture
async def async_client(async_openai_client: AsyncOpenAI) -> Any:
    client = CachedClient(async_openai_client)
    yield client
    await client.close()


def chat(content: str = "What is a cache?", system: str | None = None) -> dict[str, Any]:
    """Return ``create`` arguments of a small chat request."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    return {"model": MODEL, "messages": messages}
