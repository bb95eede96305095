"""``llmcache explain`` and ``llmcache.testmode.explain``: why a request misses a store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import MODEL
from openai import OpenAI

import llmcache
from llmcache.testmode import RecordingError, explain
from llmcache.testmode.lines import key_of
from llmcache.testmode.session import Recording, install, uninstall
from llmcache.testmode.store import open_recording
from llmcache.tools.cli import main
from llmcache.tools.simulator import Simulator
from tests.memcached_fixtures import MemcachedServer, memcached_servers

__all__ = ["memcached_servers"]  # a fixture, used by name


def ask(client: OpenAI, content: str) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])


@pytest.fixture
def recording(sim: Simulator, tmp_path: Path) -> Path:
    """A recording of two chat calls, made through the plugin's machinery."""
    path = tmp_path / "cassettes" / "test_bot.jsonl"
    install(Recording(open_recording(path), "record", "test_bot.py::test_a"))
    try:
        client = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
        ask(client, "Hello")
        ask(client, "Tell me about databases")
    finally:
        uninstall()
    open_recording(path).flush()
    return path


def bare(content: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


def test_a_recorded_request_is_held_under_the_key_it_was_recorded_with(
    recording: Path, sim: Simulator
) -> None:
    first = json.loads(recording.read_text().splitlines()[0])
    assert key_of(first["request"]) == first["key"]
    found = explain(f"recording://{recording}", first["request"])
    assert found.held
    assert found.key == first["key"]
    assert "held: yes" in found.text()


def test_a_miss_shows_the_nearest_recording_and_the_differing_field(
    recording: Path, sim: Simulator
) -> None:
    found = explain(f"recording://{recording}", bare("Hello!"), upstream=sim.base_url)
    assert not found.held
    nearest = found.nearest[0]
    assert nearest.test == "test_bot.py::test_a"
    assert [d.text() for d in nearest.differences] == ["messages[0].content: 'Hello!' != 'Hello'"]
    assert "nearest #1: chat.completions gpt-4o-mini" in found.text()


def test_explain_is_exported_at_the_top(recording: Path) -> None:
    assert llmcache.explain is explain
    first = json.loads(recording.read_text().splitlines()[0])
    assert llmcache.explain(f"recording://{recording}", first["request"]).held


def test_another_upstream_is_a_differing_field(recording: Path) -> None:
    found = explain(f"recording://{recording}", bare("Hello"))  # api.openai.com by default
    assert not found.held
    assert found.nearest[0].differences[0].path == "upstream"
    assert "https://api.openai.com/v1" in found.nearest[0].differences[0].text()


def test_the_command_prints_the_explanation(
    recording: Path, sim: Simulator, tmp_path: Path
) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(bare("Hello!")))
    url = f"recording://{recording}"
    args = ["explain", url, "--request", str(request), "--base-url", sim.base_url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "held: no" in result.output
    assert "messages[0].content: 'Hello!' != 'Hello'" in result.output
    request.write_text(json.dumps(bare("Hello")))
    result = CliRunner().invoke(main, args)
    assert "held: yes" in result.output


def test_the_command_rejects_a_request_that_is_not_json(tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text("{not json")
    result = CliRunner().invoke(main, ["explain", "memory://", "--request", str(request)])
    assert result.exit_code == 2
    assert "not JSON" in result.output


def test_a_damaged_recording_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "test_bad.jsonl"
    path.write_text("garbage\n")
    with pytest.raises(RecordingError, match=r"test_bad.jsonl:1: not valid JSON"):
        explain(f"recording://{path}", bare("Hello"))


def test_a_store_of_answers_says_it_cannot_compare_fields(sim: Simulator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    http = llmcache.http_client(tiers=[url], namespace="app")
    try:
        ask(OpenAI(base_url=sim.base_url, api_key="sk-x", http_client=http), "Hello")
    finally:
        http.close()
        http.cache.close()
    held = explain(url, bare("Hello"), upstream=sim.base_url, namespace="app")
    assert held.held
    missed = explain(url, bare("Hello!"), upstream=sim.base_url, namespace="app")
    assert not missed.held
    assert "the namespace holds 1 entries" in missed.text()
    assert "cannot say which fields differ" in missed.text()


def test_memcached_says_it_cannot_list_its_keys(
    memcached_servers: Callable[[int], list[MemcachedServer]],
) -> None:
    (server,) = memcached_servers(1)
    found = explain(f"memcached://{server.address}", bare("Hello"))
    assert not found.held
    assert "a memcached store cannot list its keys" in found.text()
