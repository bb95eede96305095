"""The README's SDK recipes (OpenAI, AsyncOpenAI, Anthropic over ``llmcache.http_client``)
run as written against the simulator, and a second run of each is served from its SQLite file.

The framework recipes run in their own virtualenvs: ``tests/frameworks``, through nox.
"""

from __future__ import annotations

from pathlib import Path

from llmcache.tools.simulator import Simulator
from tests.recipes import run_recipe


def test_the_openai_recipe_reports_a_miss_then_a_hit(tmp_path: Path, sim: Simulator) -> None:
    first = run_recipe("openai", tmp_path, sim).splitlines()
    assert first[0] == "miss"
    assert first[1].startswith("[")
    again = run_recipe("openai", tmp_path, sim).splitlines()
    assert again == ["hit", first[1]]
    assert sim.count() == 1


def test_the_async_openai_recipe_replays_the_stream(tmp_path: Path, sim: Simulator) -> None:
    first = run_recipe("async-openai", tmp_path, sim).splitlines()
    assert first[0].startswith("[")
    assert first[1] == "hits: 0"
    assert sim.requests[-1].body["stream"] is True
    assert run_recipe("async-openai", tmp_path, sim).splitlines() == [first[0], "hits: 1"]
    assert sim.count() == 1


def test_the_anthropic_recipe_caches_the_stream_helper(tmp_path: Path, sim: Simulator) -> None:
    first = run_recipe("anthropic", tmp_path, sim).splitlines()
    assert first[0].startswith("[")
    assert first[1] == "hits: 0"
    assert sim.requests[-1].path == "/v1/messages"
    assert run_recipe("anthropic", tmp_path, sim).splitlines() == [first[0], "hits: 1"]
    assert sim.count() == 1


def test_the_simulator_recipe_counts_requests_and_fails_on_demand(
    tmp_path: Path, sim: Simulator
) -> None:
    assert run_recipe("simulator", tmp_path, sim).splitlines() == ["True 1", "503"]
