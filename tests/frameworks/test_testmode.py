"""The test mode under frameworks: a LangChain chat model and a pydantic-ai agent, built by
the code under test from the environment, are recorded and then replayed with the
upstream gone, without a change to that code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmcache.tools.simulator import Simulator
from tests.recipes import require, simulator_env

require("langchain_openai", "langchain_anthropic", "pydantic_ai")

pytest_plugins = ["pytester"]

SUITE = """
import json, os
from pydantic import BaseModel
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent

OUT = {out!r}


def note(name, value):
    seen = json.load(open(OUT)) if os.path.exists(OUT) else {{}}
    seen[name] = value
    json.dump(seen, open(OUT, "w"))


def test_langchain_models():
    model = ChatOpenAI(model="gpt-4o-mini", max_retries=0)
    reply = model.invoke("What is a cache?").content
    chunks = [chunk.content for chunk in model.stream("Tell a story")]
    claude = ChatAnthropic(model="claude-haiku-4-5", max_retries=0)
    note("langchain", [reply, chunks, claude.invoke("Hi").content])


class City(BaseModel):
    name: str
    country: str


async def test_pydantic_ai_agent():
    agent = Agent("openai:gpt-4o-mini", output_type=City)

    @agent.tool_plain
    def landmark(name: str) -> str:
        '''Say where a landmark stands.'''
        return f"{{name}} stands in Paris, France."

    result = await agent.run("Which city hosts the Louvre?")
    note("pydantic_ai", result.output.model_dump())
"""


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """A simulator of this test's own, the SDKs' environment pointed at it."""
    with Simulator() as sim:
        for name, value in simulator_env(sim).items():
            monkeypatch.setenv(name, value)
        yield sim


def test_framework_clients_are_recorded_then_replayed_offline(
    pytester: pytest.Pytester, upstream: Simulator, tmp_path: Path
) -> None:
    out = tmp_path / "seen.json"
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_agents=SUITE.format(out=str(out)))

    pytester.runpytest("-p", "no:cacheprovider", "--llmcache=record").assert_outcomes(passed=2)
    recorded: dict[str, Any] = json.loads(out.read_text())
    calls = upstream.count()
    assert calls >= 5  # invoke, stream, Claude, and the agent's tool round trip
    assert len(recorded["langchain"][1]) > 2  # the stream came chunk by chunk
    assert recorded["pydantic_ai"] == {"name": "name", "country": "country"}
    out.unlink()

    upstream.stop()
    result = pytester.runpytest("-p", "no:cacheprovider", "--llmcache=strict")
    result.assert_outcomes(passed=2)
    assert json.loads(out.read_text()) == recorded
    lines = (pytester.path / "cassettes" / "test_agents.jsonl").read_text().splitlines()
    assert len(lines) == calls
    assert "sk-" not in "".join(lines)  # the framework's API key is never written
