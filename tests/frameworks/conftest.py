"""Fixtures of the framework tests: the simulator as the LLM, cached HTTP clients over it.

Each framework's tests run in a virtualenv of their own (``nox -s <framework>``); a test
module whose framework is missing skips locally and fails in CI
(:func:`tests.recipes.require`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import llmcache
from llmcache.tools.simulator import Simulator
from tests.recipes import simulator_env


@pytest.fixture
def llm_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """Point the SDKs' environment variables at the simulator for one test."""
    for name, value in simulator_env(sim).items():
        monkeypatch.setenv(name, value)
    return sim


@pytest.fixture
def http(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A cached sync HTTP client over a fresh memory tier (``library`` by indirect param)."""
    library = getattr(request, "param", None)
    client = llmcache.http_client(tiers=["memory://"], library=library)
    yield client
    client.close()
    client.cache.close()


@pytest.fixture
async def ahttp(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A cached async HTTP client over a fresh memory tier."""
    library = getattr(request, "param", None)
    client = llmcache.async_http_client(tiers=["memory://"], library=library)
    yield client
    await client.aclose()
    await client.cache.close()
