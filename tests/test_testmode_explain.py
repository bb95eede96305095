"""``llmcache explain`` and ``llmcache.testmode.explain``: why a request misses a store."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import MODEL
from openai import AsyncOpenAI, OpenAI

import llmcache
from llmcache import ConfigError
from llmcache.testmode import RecordingError, explain
from llmcache.testmode.lines import key_of
from llmcache.testmode.session import Recording, install, uninstall
from llmcache.testmode.store import open_recording
from llmcache.tools.cli import main
from llmcache.tools.simulator import Simulator
from tests.memcached_fixtures import MemcachedServer, memcached_servers
from tests.redis_fixtures import RedisServer, redis_server
from tests.sql_fixtures import Database, drop_tables, postgres_db, table_url

__all__ = ["memcached_servers", "postgres_db", "redis_server"]  # fixtures, used by name


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


def test_entries_without_their_request_are_counted_with_the_option_to_keep_them(
    sim: Simulator, tmp_path: Path
) -> None:
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
    assert (missed.scanned, missed.recorded, missed.nearest) == (1, 0, [])
    text = missed.text()
    assert "read 1 entry of the namespace (all of them; at most 1000 are read)" in text
    assert "1 entry was stored without its request and is not compared" in text
    assert "keep_requests=True (llmcache serve --keep-requests)" in text


def fill(url: str, sim: Simulator, namespace: str, *contents: str, keep: bool = True) -> None:
    """Cache one chat answer per content in the store at ``url``."""
    openai = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    client = llmcache.CachedClient(openai, tiers=[url], namespace=namespace, keep_requests=keep)
    for content in contents:
        ask(client, content)  # type: ignore[arg-type]
    client.close()


def test_the_command_shows_the_nearest_entry_of_a_sqlite_file(
    sim: Simulator, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    fill(url, sim, "app", "Hello", "Tell me about databases")
    fill(url, sim, "app", "Goodbye", keep=False)
    request = tmp_path / "request.json"
    request.write_text(json.dumps(bare("Hello!")))
    args = ["explain", url, "--request", str(request), "-n", "app", "--base-url", sim.base_url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2] == "held: no"
    assert lines[3] == (
        "read 3 entries of the namespace (all of them; at most 1000 are read), 2 with their request"
    )
    assert lines[4].startswith("nearest #1: chat.completions gpt-4o-mini (key v1-")
    assert lines[6] == "    messages[0].content: 'Hello!' != 'Hello'"
    assert "1 entry was stored without its request" in result.output


def test_the_scan_is_bounded_and_says_so(sim: Simulator, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    fill(url, sim, "app", "one", "two", "three", "four")
    found = explain(url, bare("five"), upstream=sim.base_url, namespace="app", scan=2)
    assert (found.scanned, found.recorded, found.complete) == (2, 2, False)
    assert len(found.nearest) == 2
    assert "read 2 entries of the namespace (the limit, 2: the rest were not compared" in (
        found.text()
    )
    with pytest.raises(ConfigError, match="scan must be a whole number of entries >= 1, not 0"):
        explain(url, bare("five"), scan=0)


def test_redis_shows_the_nearest_entry(redis_server: RedisServer, sim: Simulator) -> None:
    namespace = f"explain-{uuid.uuid4().hex[:8]}"
    fill(redis_server.url, sim, namespace, "Hello", "What is a cache?")
    found = explain(
        redis_server.url, bare("What is caching?"), upstream=sim.base_url, namespace=namespace
    )
    assert not found.held
    assert (found.scanned, found.recorded) == (2, 2)
    assert [d.text() for d in found.nearest[0].differences] == [
        "messages[0].content: 'What is caching?' != 'What is a cache?'"
    ]
    assert explain(redis_server.url, bare("Hello"), upstream=sim.base_url, namespace=namespace).held


def test_the_command_in_a_process_of_its_own_explains_a_postgresql_miss(
    postgres_db: Database, sim: Simulator, tmp_path: Path
) -> None:
    table, url = table_url(postgres_db)
    try:
        fill(url, sim, "app", "Hello")
        request = tmp_path / "request.json"
        request.write_text(json.dumps({**bare("Hello"), "temperature": 0.2}))
        argv = [sys.executable, "-m", "llmcache", "explain", url, "--request", str(request)]
        argv += ["--namespace", "app", "--base-url", sim.base_url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert "held: no" in done.stdout
        assert "    temperature: 0.2 != (absent)" in done.stdout
    finally:
        drop_tables(postgres_db.url, table)


def test_a_client_explains_a_miss_from_its_memory_tier(sim: Simulator) -> None:
    openai = OpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    client = llmcache.CachedClient(openai, namespace="mine", keep_requests=True)
    ask(client, "Hello")  # type: ignore[arg-type]
    held = explain(client, bare("Hello"))  # its upstream, namespace and key strategy
    assert held.held
    missed = explain(client, {**bare("Hello"), "max_tokens": 5})
    assert (missed.namespace, missed.store) == ("mine", "L1:memory")
    assert [d.text() for d in missed.nearest[0].differences] == ["max_tokens: 5 != (absent)"]


async def test_an_async_client_explains_its_memory_tier_and_not_its_redis_one(
    sim: Simulator, redis_server: RedisServer
) -> None:
    openai = AsyncOpenAI(base_url=sim.base_url, api_key="sk-x", max_retries=0)
    namespace = f"explain-{uuid.uuid4().hex[:8]}"
    client = llmcache.CachedClient(
        openai, tiers=["memory://", redis_server.url], namespace=namespace, keep_requests=True
    )
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    found = explain(client, bare("Hi!"))
    assert [d.text() for d in found.nearest[0].differences] == [
        "messages[0].content: 'Hi!' != 'Hi'"
    ]
    assert "L2:redis is read with asyncio: explain it by its URL" in found.text()
    await client.close()


def test_explain_names_what_it_takes(sim: Simulator) -> None:
    taken = r"a tier URL, a CachedClient or an llmcache\.http_client\(\), not int"
    with pytest.raises(ConfigError, match=taken):
        explain(42, bare("Hello"))


def test_memcached_says_it_cannot_list_its_keys(
    memcached_servers: Callable[[int], list[MemcachedServer]], sim: Simulator
) -> None:
    (server,) = memcached_servers(1)
    url = f"memcached://{server.address}"
    fill(url, sim, "default", "Hello")
    found = explain(url, bare("Hello!"), upstream=sim.base_url)
    assert not found.held
    assert (found.scanned, found.nearest) == (None, [])
    assert "a memcached store cannot list its keys, so its entries cannot be compared" in (
        found.text()
    )
    assert explain(url, bare("Hello"), upstream=sim.base_url).held
